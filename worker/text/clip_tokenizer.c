/* CLIP tokenizer: vocabulary loaders and writer, and encoding of a prompt into model ids (see
 * clip_tokenizer.h). Clean-up and pre-tokenisation live in clip_pretokenize.c, the BPE merge
 * loop in bpe.c. */
#include "clip_tokenizer.h"

#include "../../kernels/error.h"
#include "../../kernels/file.h"
#include "bpe.h"
#include "clip_pretokenize.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <zlib.h>

#define BOS_TOKEN   "<|startoftext|>"
#define EOS_TOKEN   "<|endoftext|>"
#define WORD_SUFFIX "</w>"
/* CLIP keeps merges[1 : 49152 - 256 - 2 + 1] of its merge list (the first line is a header). */
#define CLIP_MAX_MERGES (49152 - 256 - 2)
#define MAX_SPECIALS    3

struct sd_tokenizer {
  sd_strmap vocab;  /* token -> id */
  sd_strmap merges; /* "first second" -> rank */
  sd_byte_unicode bytes;
  /* Added tokens split out of the raw text before clean-up: BOS, EOS and the pad token. */
  sd_codepoints specials[MAX_SPECIALS];
  int32_t special_ids[MAX_SPECIALS];
  int special_count;
  int32_t bos_id, eos_id, pad_id; /* EOS doubles as the unknown token */
  int max_length;
  /* Tokens added with sd_tokenizer_add_token (textual inversion): their normalized text, matched
   * in the normalized text between the specials, ids after the vocabulary. */
  sd_codepoints *added; /* (added_count) */
  char **added_text;    /* (added_count) as given */
  int32_t *added_ids;   /* (added_count) */
  int added_count;
};

static sd_tokenizer *tokenizer_new(void) {
  sd_tokenizer *tok = calloc(1, sizeof *tok);
  if (!tok) {
    SD_ERROR("out of memory for a tokenizer");
    return NULL;
  }
  sd_byte_unicode_init(&tok->bytes);
  return tok;
}

void sd_tokenizer_free(sd_tokenizer *tok) {
  if (!tok)
    return;
  sd_strmap_free(&tok->vocab);
  sd_strmap_free(&tok->merges);
  for (int i = 0; i < MAX_SPECIALS; i++)
    sd_codepoints_free(&tok->specials[i]);
  for (int i = 0; i < tok->added_count; i++) {
    sd_codepoints_free(&tok->added[i]);
    free(tok->added_text[i]);
  }
  free(tok->added);
  free(tok->added_text);
  free(tok->added_ids);
  free(tok);
}

int sd_tokenizer_max_length(const sd_tokenizer *tok) {
  return tok->max_length;
}

int32_t sd_tokenizer_length(const sd_tokenizer *tok) {
  return (int32_t)tok->vocab.count + tok->added_count;
}

int32_t sd_tokenizer_token_id(const sd_tokenizer *tok, const char *token) {
  int32_t id = sd_strmap_get(&tok->vocab, token, strlen(token));
  for (int i = 0; id < 0 && i < tok->added_count; i++)
    if (!strcmp(tok->added_text[i], token))
      id = tok->added_ids[i];
  if (id < 0)
    return SD_ERROR("token '%s' is not in the vocabulary", token);
  return id;
}

int sd_tokenizer_add_token(sd_tokenizer *tok, const char *token, int32_t *id) {
  if (!token[0])
    return SD_ERROR("an added token cannot be empty");
  int32_t existing = sd_strmap_get(&tok->vocab, token, strlen(token));
  for (int i = 0; existing < 0 && i < tok->added_count; i++)
    if (!strcmp(tok->added_text[i], token))
      existing = tok->added_ids[i];
  if (existing >= 0)
    return SD_ERROR("token '%s' is already in the tokenizer's vocabulary (id %d); choose another "
                    "token",
                    token, existing);
  int n = tok->added_count + 1;
  sd_codepoints *added = realloc(tok->added, (size_t)n * sizeof *added);
  if (added)
    tok->added = added;
  char **text = realloc(tok->added_text, (size_t)n * sizeof *text);
  if (text)
    tok->added_text = text;
  int32_t *ids = realloc(tok->added_ids, (size_t)n * sizeof *ids);
  if (ids)
    tok->added_ids = ids;
  if (!added || !text || !ids)
    return SD_ERROR("out of memory adding token '%s'", token);
  sd_codepoints raw = {0}, normalized = {0};
  int rc = sd_utf8_decode(token, strlen(token), &raw);
  if (rc == 0)
    rc = sd_clip_normalize(raw.data, raw.len, &normalized);
  sd_codepoints_free(&raw);
  char *copy = rc == 0 ? strdup(token) : NULL;
  if (rc < 0 || !copy || normalized.len == 0) {
    free(copy);
    sd_codepoints_free(&normalized);
    return rc < 0 ? sd_error_context("token '%s'", token)
                  : SD_ERROR("token '%s': out of memory or empty once normalized", token);
  }
  *id = sd_tokenizer_length(tok);
  tok->added[tok->added_count] = normalized;
  tok->added_text[tok->added_count] = copy;
  tok->added_ids[tok->added_count++] = *id;
  return 0;
}

/* Decompresses gzip data (one or more members) into a new NUL-terminated buffer of at most
 * SD_FILE_MAX_BPE_TXT bytes: a small file cannot expand without bound. */
static int gunzip(const unsigned char *gz, size_t gz_len, const char *name, char **data_out,
                  size_t *len_out) {
  z_stream z = {0};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
    return SD_ERROR("%s: cannot initialise zlib", name);
  size_t len = 0, capacity = 1 << 20;
  char *data = malloc(capacity);
  int rc = -1;
  if (!data) {
    SD_ERROR("%s: out of memory", name);
    goto out_end;
  }
  z.next_in = (unsigned char *)gz;
  size_t in_left = gz_len;
  for (;;) {
    if (capacity - len < 2) {
      if (capacity > SD_FILE_MAX_BPE_TXT) {
        SD_ERROR("%s: decompresses to more than %zu bytes (not CLIP's BPE file?)", name,
                 SD_FILE_MAX_BPE_TXT);
        goto out_end;
      }
      char *grown = realloc(data, capacity * 2);
      if (!grown) {
        SD_ERROR("%s: out of memory reading %zu bytes", name, capacity * 2);
        goto out_end;
      }
      data = grown;
      capacity *= 2;
    }
    if (z.avail_in == 0) {
      z.avail_in = in_left > (1u << 30) ? (1u << 30) : (unsigned)in_left;
      in_left -= z.avail_in;
    }
    z.next_out = (unsigned char *)data + len;
    z.avail_out = (unsigned)(capacity - 1 - len > (1u << 30) ? (1u << 30) : capacity - 1 - len);
    unsigned out_before = z.avail_out;
    int zrc = inflate(&z, Z_NO_FLUSH);
    len += out_before - z.avail_out;
    if (zrc == Z_STREAM_END) {
      if (z.avail_in == 0 && in_left == 0)
        break;
      if (inflateReset(&z) != Z_OK) { /* another gzip member follows, as gzread reads on */
        SD_ERROR("%s: gzip error: cannot reset the stream", name);
        goto out_end;
      }
      continue;
    }
    if (zrc == Z_BUF_ERROR && z.avail_in == 0 && in_left == 0) {
      SD_ERROR("%s: gzip data truncated", name);
      goto out_end;
    }
    if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
      SD_ERROR("%s: gzip error: %s", name, z.msg ? z.msg : "corrupt data");
      goto out_end;
    }
  }
  data[len] = '\0';
  *data_out = data;
  *len_out = len;
  data = NULL;
  rc = 0;
out_end:
  free(data);
  inflateEnd(&z);
  return rc;
}

static int check_utf8(const char *data, size_t len, const char *path) {
  sd_codepoints scratch = {0};
  int rc = sd_utf8_decode(data, len, &scratch);
  sd_codepoints_free(&scratch);
  return rc < 0 ? sd_error_context("%s", path) : 0;
}

static int is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Merge lines of CLIP's .gz as CLIP reads them: the first line is a header, then at most
 * CLIP_MAX_MERGES lines of "first second"; the line index is the rank. Surrounding whitespace of
 * the text is ignored. Each joined pair is also added to the vocabulary with id (*next_id)++, as
 * CLIP builds its vocabulary list (a repeated entry keeps its first place and takes the later
 * id). */
static int parse_gz_merge_lines(sd_tokenizer *tok, const char *text, size_t len, const char *path,
                                int32_t *next_id) {
  size_t at = 0;
  while (at < len && is_ascii_space(text[at]))
    at++;
  while (len > at && is_ascii_space(text[len - 1]))
    len--;
  const char *header_end = memchr(text + at, '\n', len - at);
  if (!header_end)
    return SD_ERROR("%s: no merges after the header line", path);
  at = (size_t)(header_end - text) + 1;
  for (int32_t rank = 0; rank < CLIP_MAX_MERGES && at < len; rank++) {
    const char *line = text + at;
    const char *nl = memchr(line, '\n', len - at);
    size_t line_len = nl ? (size_t)(nl - line) : len - at;
    at += line_len + 1;
    /* Exactly two whitespace-separated fields. */
    const char *field[2];
    size_t field_len[2];
    int fields = 0;
    for (size_t i = 0; i < line_len;) {
      if (is_ascii_space(line[i])) {
        i++;
        continue;
      }
      size_t j = i;
      while (j < line_len && !is_ascii_space(line[j]))
        j++;
      if (fields == 2) {
        fields++;
        break;
      }
      field[fields] = line + i;
      field_len[fields++] = j - i;
      i = j;
    }
    if (fields != 2)
      return SD_ERROR("%s: merge line %d is not two tokens: '%.*s'", path, rank + 2,
                      (int)(line_len > 80 ? 80 : line_len), line);
    char key[512];
    if (field_len[0] + 1 + field_len[1] > sizeof key)
      return SD_ERROR("%s: merge line %d is too long (%zu bytes)", path, rank + 2, line_len);
    memcpy(key, field[0], field_len[0]);
    key[field_len[0]] = ' ';
    memcpy(key + field_len[0] + 1, field[1], field_len[1]);
    SD_TRY(sd_strmap_set(&tok->merges, key, field_len[0] + 1 + field_len[1], rank));
    memmove(key + field_len[0], key + field_len[0] + 1, field_len[1]);
    SD_TRY(sd_strmap_set(&tok->vocab, key, field_len[0] + field_len[1], (*next_id)++));
  }
  return 0;
}

/* merges.txt as the tokenizers library reads it: lines starting with "#version" are skipped,
 * every other line is two tokens separated by one space; the rank counts the merges. */
static int parse_merges_txt(sd_tokenizer *tok, const char *text, size_t len, const char *path) {
  int32_t rank = 0;
  size_t at = 0;
  for (int line_no = 1; at < len; line_no++) {
    const char *line = text + at;
    const char *nl = memchr(line, '\n', len - at);
    size_t line_len = nl ? (size_t)(nl - line) : len - at;
    at += line_len + 1;
    if (line_len && line[line_len - 1] == '\r')
      line_len--;
    if (line_len >= 8 && memcmp(line, "#version", 8) == 0)
      continue;
    const char *space = memchr(line, ' ', line_len);
    if (!space || memchr(space + 1, ' ', line_len - (size_t)(space + 1 - line)))
      return SD_ERROR("%s: line %d is not two tokens separated by one space: '%.*s'", path, line_no,
                      (int)(line_len > 80 ? 80 : line_len), line);
    SD_TRY(sd_strmap_set(&tok->merges, line, line_len, rank++));
  }
  if (rank == 0)
    return SD_ERROR("%s: no merges", path);
  return 0;
}

/* As the tokenizers library's BPE requires: both tokens of every merge and their join are in
 * the vocabulary. */
static int check_merges_in_vocab(const sd_tokenizer *tok, const char *path) {
  char *joined = NULL;
  size_t joined_capacity = 0;
  int rc = 0;
  for (size_t i = 0; i < tok->merges.count && rc == 0; i++) {
    size_t len;
    const char *key = sd_strmap_key(&tok->merges, i, &len);
    const char *space = memchr(key, ' ', len);
    size_t first = (size_t)(space - key), second = len - first - 1;
    if (len > joined_capacity) {
      char *grown = realloc(joined, len);
      if (!grown) {
        rc = SD_ERROR("%s: out of memory", path);
        break;
      }
      joined = grown;
      joined_capacity = len;
    }
    memcpy(joined, key, first);
    memcpy(joined + first, space + 1, second);
    const char *missing = sd_strmap_get(&tok->vocab, key, first) < 0          ? "first token"
                          : sd_strmap_get(&tok->vocab, space + 1, second) < 0 ? "second token"
                          : sd_strmap_get(&tok->vocab, joined, len - 1) < 0   ? "joined token"
                                                                              : NULL;
    if (missing)
      rc = SD_ERROR("%s: merge '%.*s': the %s is not in the vocabulary", path,
                    (int)(len > 80 ? 80 : len), key, missing);
  }
  free(joined);
  return rc;
}

/* Fills tok->vocab from a JSON object of token -> id. */
static int parse_vocab_object(sd_tokenizer *tok, const cJSON *object, const char *path) {
  if (!cJSON_IsObject(object))
    return SD_ERROR("%s: the vocabulary is not a JSON object", path);
  for (const cJSON *item = object->child; item; item = item->next) {
    double id = item->valuedouble;
    if (!cJSON_IsNumber(item) || id < 0 || id > INT32_MAX || id != floor(id))
      return SD_ERROR("%s: vocabulary entry '%s' has no valid id", path, item->string);
    SD_TRY(sd_strmap_set(&tok->vocab, item->string, strlen(item->string), (int32_t)id));
  }
  if (tok->vocab.count == 0)
    return SD_ERROR("%s: the vocabulary is empty", path);
  return 0;
}

static int add_special(sd_tokenizer *tok, const char *token, const char *source) {
  int32_t id = sd_strmap_get(&tok->vocab, token, strlen(token));
  if (id < 0)
    return SD_ERROR("%s: special token '%s' is not in the vocabulary", source, token);
  for (int i = 0; i < tok->special_count; i++)
    if (tok->special_ids[i] == id)
      return id;
  sd_codepoints *cps = &tok->specials[tok->special_count];
  SD_TRY(sd_utf8_decode(token, strlen(token), cps));
  if (cps->len == 0)
    return SD_ERROR("%s: the special token is empty", source);
  tok->special_ids[tok->special_count++] = id;
  return id;
}

/* Looks up the special tokens and checks the settings once the vocabulary is in. */
static int finish(sd_tokenizer *tok, const char *pad_token, int max_length, const char *source) {
  if (max_length < 2)
    return SD_ERROR("%s: max_length %d leaves no room for BOS and EOS", source, max_length);
  if (!pad_token)
    return SD_ERROR("%s: no pad token given", source);
  tok->max_length = max_length;
  SD_TRY(tok->bos_id = add_special(tok, BOS_TOKEN, source));
  SD_TRY(tok->eos_id = add_special(tok, EOS_TOKEN, source));
  SD_TRY(tok->pad_id = add_special(tok, pad_token, source));
  return 0;
}

int sd_tokenizer_parse_vocab_merges(const char *vocab, size_t vocab_len, const char *vocab_name,
                                    const char *merges, size_t merges_len, const char *merges_name,
                                    const char *pad_token, int max_length, sd_tokenizer **out) {
  *out = NULL;
  sd_tokenizer *tok = tokenizer_new();
  if (!tok)
    return -1;
  cJSON *root = NULL;
  if (check_utf8(vocab, vocab_len, vocab_name) < 0)
    goto fail;
  const char *parse_end = NULL;
  root = cJSON_ParseWithLengthOpts(vocab, vocab_len, &parse_end, 0);
  if (!root) {
    SD_ERROR("%s: invalid JSON near byte %td", vocab_name,
             parse_end ? parse_end - vocab : (ptrdiff_t)-1);
    goto fail;
  }
  if (parse_vocab_object(tok, root, vocab_name) < 0 ||
      check_utf8(merges, merges_len, merges_name) < 0 ||
      parse_merges_txt(tok, merges, merges_len, merges_name) < 0 ||
      check_merges_in_vocab(tok, merges_name) < 0 ||
      finish(tok, pad_token, max_length, vocab_name) < 0)
    goto fail;
  cJSON_Delete(root);
  *out = tok;
  return 0;
fail:
  cJSON_Delete(root);
  sd_tokenizer_free(tok);
  return -1;
}

int sd_tokenizer_load_vocab_merges(const char *vocab_json, const char *merges_txt,
                                   const char *pad_token, int max_length, sd_tokenizer **out) {
  *out = NULL;
  char *vocab = NULL, *merges = NULL;
  size_t vocab_len = 0, merges_len = 0;
  int rc = -1;
  if (sd_file_read(vocab_json, SD_FILE_MAX_VOCAB, &vocab, &vocab_len) == 0 &&
      sd_file_read(merges_txt, SD_FILE_MAX_VOCAB, &merges, &merges_len) == 0)
    rc = sd_tokenizer_parse_vocab_merges(vocab, vocab_len, vocab_json, merges, merges_len,
                                         merges_txt, pad_token, max_length, out);
  free(vocab);
  free(merges);
  return rc;
}

/* tokenizers' model.merges: "first second" strings or [first, second] pairs; all are used. */
static int parse_merges_array(sd_tokenizer *tok, const cJSON *merges, const char *path) {
  if (!cJSON_IsArray(merges))
    return SD_ERROR("%s: model.merges is not an array", path);
  int32_t rank = 0;
  for (const cJSON *item = merges->child; item; item = item->next, rank++) {
    const char *first, *second;
    size_t first_len, second_len;
    if (cJSON_IsString(item)) {
      const char *space = strchr(item->valuestring, ' ');
      if (!space || strchr(space + 1, ' ') || space == item->valuestring || !space[1])
        return SD_ERROR("%s: model.merges[%d] '%s' is not two tokens", path, rank,
                        item->valuestring);
      first = item->valuestring;
      first_len = (size_t)(space - first);
      second = space + 1;
      second_len = strlen(second);
    } else if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 2 &&
               cJSON_IsString(item->child) && cJSON_IsString(item->child->next)) {
      first = item->child->valuestring;
      second = item->child->next->valuestring;
      first_len = strlen(first);
      second_len = strlen(second);
      if (!first_len || !second_len || strchr(first, ' ') || strchr(second, ' '))
        return SD_ERROR("%s: model.merges[%d] has an empty token or one with a space", path, rank);
    } else {
      return SD_ERROR("%s: model.merges[%d] is neither \"a b\" nor [\"a\", \"b\"]", path, rank);
    }
    char *key = malloc(first_len + 1 + second_len);
    if (!key)
      return SD_ERROR("%s: out of memory", path);
    memcpy(key, first, first_len);
    key[first_len] = ' ';
    memcpy(key + first_len + 1, second, second_len);
    int rc = sd_strmap_set(&tok->merges, key, first_len + 1 + second_len, rank);
    free(key);
    SD_TRY(rc);
  }
  return 0;
}

int sd_tokenizer_parse_tokenizer_json(const char *text, size_t len, const char *tokenizer_json,
                                      const char *pad_token, int max_length, sd_tokenizer **out) {
  *out = NULL;
  sd_tokenizer *tok = tokenizer_new();
  if (!tok)
    return -1;
  cJSON *root = NULL;
  if (check_utf8(text, len, tokenizer_json) < 0)
    goto fail;
  const char *parse_end = NULL;
  root = cJSON_ParseWithLengthOpts(text, len, &parse_end, 0);
  if (!root) {
    SD_ERROR("%s: invalid JSON near byte %td", tokenizer_json,
             parse_end ? parse_end - text : (ptrdiff_t)-1);
    goto fail;
  }
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  if (!cJSON_IsObject(model)) {
    SD_ERROR("%s: no \"model\" object", tokenizer_json);
    goto fail;
  }
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
  if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "BPE") == 0)) {
    SD_ERROR("%s: model.type is not \"BPE\"", tokenizer_json);
    goto fail;
  }
  const cJSON *suffix = cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix");
  if (suffix && !(cJSON_IsString(suffix) && strcmp(suffix->valuestring, WORD_SUFFIX) == 0)) {
    SD_ERROR("%s: model.end_of_word_suffix is not \"" WORD_SUFFIX "\" (not a CLIP tokenizer)",
             tokenizer_json);
    goto fail;
  }
  if (parse_vocab_object(tok, cJSON_GetObjectItemCaseSensitive(model, "vocab"), tokenizer_json) <
          0 ||
      parse_merges_array(tok, cJSON_GetObjectItemCaseSensitive(model, "merges"), tokenizer_json) <
          0 ||
      check_merges_in_vocab(tok, tokenizer_json) < 0 ||
      finish(tok, pad_token, max_length, tokenizer_json) < 0)
    goto fail;
  cJSON_Delete(root);
  *out = tok;
  return 0;
fail:
  cJSON_Delete(root);
  sd_tokenizer_free(tok);
  return -1;
}

int sd_tokenizer_load_tokenizer_json(const char *tokenizer_json, const char *pad_token,
                                     int max_length, sd_tokenizer **out) {
  *out = NULL;
  char *text;
  size_t len;
  SD_TRY(sd_file_read(tokenizer_json, SD_FILE_MAX_VOCAB, &text, &len));
  int rc = sd_tokenizer_parse_tokenizer_json(text, len, tokenizer_json, pad_token, max_length, out);
  free(text);
  return rc;
}

int sd_tokenizer_parse_bpe_gz(const void *gz, size_t gz_len, const char *bpe_gz,
                              const char *pad_token, int max_length, sd_tokenizer **out) {
  *out = NULL;
  sd_tokenizer *tok = tokenizer_new();
  if (!tok)
    return -1;
  char *text = NULL;
  size_t len = 0;
  int32_t next_id = 0;
  if (gunzip(gz, gz_len, bpe_gz, &text, &len) < 0 || check_utf8(text, len, bpe_gz) < 0)
    goto fail;
  /* CLIP's vocabulary: the 256 byte characters, the same with the word suffix, each merge
   * joined, then the two special tokens. */
  for (int suffixed = 0; suffixed < 2; suffixed++) {
    for (int i = 0; i < 256; i++) {
      uint8_t b = tok->bytes.order[i];
      char token[8];
      size_t token_len = tok->bytes.len[b];
      memcpy(token, tok->bytes.utf8[b], token_len);
      if (suffixed) {
        memcpy(token + token_len, WORD_SUFFIX, strlen(WORD_SUFFIX));
        token_len += strlen(WORD_SUFFIX);
      }
      if (sd_strmap_set(&tok->vocab, token, token_len, next_id++) < 0)
        goto fail;
    }
  }
  if (parse_gz_merge_lines(tok, text, len, bpe_gz, &next_id) < 0 ||
      sd_strmap_set(&tok->vocab, BOS_TOKEN, strlen(BOS_TOKEN), next_id++) < 0 ||
      sd_strmap_set(&tok->vocab, EOS_TOKEN, strlen(EOS_TOKEN), next_id++) < 0 ||
      finish(tok, pad_token, max_length, bpe_gz) < 0)
    goto fail;
  free(text);
  *out = tok;
  return 0;
fail:
  free(text);
  sd_tokenizer_free(tok);
  return -1;
}

int sd_tokenizer_load_bpe_gz(const char *bpe_gz, const char *pad_token, int max_length,
                             sd_tokenizer **out) {
  *out = NULL;
  char *gz;
  size_t gz_len;
  SD_TRY(sd_file_read(bpe_gz, SD_FILE_MAX_BPE_GZ, &gz, &gz_len));
  int rc = sd_tokenizer_parse_bpe_gz(gz, gz_len, bpe_gz, pad_token, max_length, out);
  free(gz);
  return rc;
}

typedef struct ranked_entry {
  int32_t value;
  size_t index;
} ranked_entry;

static int compare_ranked(const void *a, const void *b) {
  int32_t x = ((const ranked_entry *)a)->value, y = ((const ranked_entry *)b)->value;
  return (x > y) - (x < y);
}

/* The entries of map sorted by value (NULL, error set, when out of memory). */
static ranked_entry *sorted_by_value(const sd_strmap *map) {
  ranked_entry *order = malloc((map->count ? map->count : 1) * sizeof *order);
  if (!order) {
    SD_ERROR("out of memory sorting %zu entries", map->count);
    return NULL;
  }
  for (size_t i = 0; i < map->count; i++)
    order[i] = (ranked_entry){map->entries[i].value, i};
  qsort(order, map->count, sizeof *order, compare_ranked);
  return order;
}

/* A JSON string as Python's json.dumps(ensure_ascii=False) writes it. */
static int write_json_string(FILE *f, const char *s, size_t len) {
  if (fputc('"', f) == EOF)
    return -1;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *escape = c == '"'    ? "\\\""
                         : c == '\\' ? "\\\\"
                         : c == '\n' ? "\\n"
                         : c == '\r' ? "\\r"
                         : c == '\t' ? "\\t"
                         : c == '\b' ? "\\b"
                         : c == '\f' ? "\\f"
                                     : NULL;
    int rc = escape ? fputs(escape, f) : c < 0x20 ? fprintf(f, "\\u%04x", c) : fputc(c, f);
    if (rc < 0)
      return -1;
  }
  return fputc('"', f) == EOF ? -1 : 0;
}

static int write_vocab_json(const sd_tokenizer *tok, const char *path) {
  ranked_entry *order = sorted_by_value(&tok->vocab);
  if (!order)
    return sd_error_context("%s", path);
  FILE *f = fopen(path, "wb");
  if (!f) {
    free(order);
    return SD_ERROR("%s: cannot create: %s", path, strerror(errno));
  }
  int failed = fputc('{', f) == EOF;
  for (size_t i = 0; i < tok->vocab.count && !failed; i++) {
    size_t key_len;
    const char *key = sd_strmap_key(&tok->vocab, order[i].index, &key_len);
    failed = (i && fputs(", ", f) < 0) || write_json_string(f, key, key_len) < 0 ||
             fprintf(f, ": %d", (int)order[i].value) < 0;
  }
  failed |= fputc('}', f) == EOF;
  failed |= fclose(f) != 0;
  free(order);
  if (failed)
    return SD_ERROR("%s: write error: %s", path, strerror(errno));
  return 0;
}

static int write_merges_txt(const sd_tokenizer *tok, const char *path) {
  ranked_entry *order = sorted_by_value(&tok->merges);
  if (!order)
    return sd_error_context("%s", path);
  FILE *f = fopen(path, "wb");
  if (!f) {
    free(order);
    return SD_ERROR("%s: cannot create: %s", path, strerror(errno));
  }
  int failed = fputs("#version: 0.2\n", f) < 0;
  for (size_t i = 0; i < tok->merges.count && !failed; i++) {
    size_t key_len;
    const char *key = sd_strmap_key(&tok->merges, order[i].index, &key_len);
    failed = fwrite(key, 1, key_len, f) != key_len || fputc('\n', f) == EOF;
  }
  failed |= fclose(f) != 0;
  free(order);
  if (failed)
    return SD_ERROR("%s: write error: %s", path, strerror(errno));
  return 0;
}

int sd_tokenizer_write_vocab_merges(const sd_tokenizer *tok, const char *vocab_json_path,
                                    const char *merges_txt_path) {
  SD_TRY(write_vocab_json(tok, vocab_json_path));
  return write_merges_txt(tok, merges_txt_path);
}

/* Per-call state of sd_tokenizer_encode. */
typedef struct encoder {
  const sd_tokenizer *tok;
  int32_t *ids; /* (max_length) output; tokens go to ids[1 + count] */
  int count;    /* tokens kept so far */
  int budget;   /* max_length - 2 */
  sd_codepoints text;
  char *word; /* byte-level characters of one piece + WORD_SUFFIX */
  size_t word_capacity;
  sd_bpe_work bpe;
} encoder;

static void emit(encoder *e, int32_t id) {
  if (e->count < e->budget)
    e->ids[1 + e->count++] = id;
}

/* One piece: UTF-8 bytes -> byte characters -> BPE -> ids (a character left outside the
 * vocabulary gives the unknown token, <|endoftext|>). */
static int encode_piece(encoder *e, const int32_t *cps, size_t n) {
  const sd_tokenizer *tok = e->tok;
  size_t needed = 8 * n + sizeof WORD_SUFFIX;
  if (needed > e->word_capacity) {
    char *grown = realloc(e->word, needed);
    if (!grown)
      return SD_ERROR("out of memory for a word of %zu characters", n);
    e->word = grown;
    e->word_capacity = needed;
  }
  SD_TRY(sd_bpe_work_reset(&e->bpe, 4 * n));
  size_t word_len = 0, symbols = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t utf8[4];
    utf8proc_ssize_t bytes = utf8proc_encode_char(cps[i], utf8);
    for (utf8proc_ssize_t k = 0; k < bytes; k++) {
      e->bpe.start[symbols] = (int32_t)word_len;
      e->bpe.len[symbols++] = tok->bytes.len[utf8[k]];
      memcpy(e->word + word_len, tok->bytes.utf8[utf8[k]], tok->bytes.len[utf8[k]]);
      word_len += tok->bytes.len[utf8[k]];
    }
  }
  memcpy(e->word + word_len, WORD_SUFFIX, strlen(WORD_SUFFIX));
  e->bpe.len[symbols - 1] += (int32_t)strlen(WORD_SUFFIX);
  e->bpe.count = symbols;
  SD_TRY(sd_bpe_merge(&e->bpe, e->word, &tok->merges));
  for (size_t i = 0; i < e->bpe.count; i++) {
    int32_t id = sd_strmap_get(&tok->vocab, e->word + e->bpe.start[i], (size_t)e->bpe.len[i]);
    emit(e, id >= 0 ? id : tok->eos_id);
  }
  return 0;
}

/* Whether piece t[0, n) spells a special token (its text, lower-cased, not split out as an added
 * token): ByteLevel's GPT-2 split then cuts it into "<|", the word, "|>". */
static int spells_special(const int32_t *t, size_t n) {
  static const char *const spellings[] = {BOS_TOKEN, EOS_TOKEN};
  for (size_t s = 0; s < 2; s++) {
    size_t len = strlen(spellings[s]), k = 0;
    while (k < len && k < n && t[k] == (unsigned char)spellings[s][k])
      k++;
    if (k == len && n == len)
      return 1;
  }
  return 0;
}

/* Length of the longest token added with sd_tokenizer_add_token at normalized t[i] (0 when
 * none), its id in *id. */
static size_t match_added(const sd_tokenizer *tok, const int32_t *t, size_t n, size_t i,
                          int32_t *id) {
  size_t best = 0;
  for (int a = 0; a < tok->added_count; a++) {
    const sd_codepoints *cp = &tok->added[a];
    if (cp->len > best && n - i >= cp->len && memcmp(t + i, cp->data, cp->len * sizeof *t) == 0) {
      best = cp->len;
      *id = tok->added_ids[a];
    }
  }
  return best;
}

/* Normalized text t[0, n) without added tokens: pre-tokenizer pieces, BPE. */
static int encode_pieces(encoder *e, const int32_t *t, size_t n) {
  size_t pos = 0, start, end;
  while (e->count < e->budget && sd_clip_next_piece(t, n, &pos, &start, &end)) {
    const int32_t *piece = t + start;
    size_t len = end - start;
    if (spells_special(piece, len)) {
      SD_TRY(encode_piece(e, piece, 2));
      SD_TRY(encode_piece(e, piece + 2, len - 4));
      SD_TRY(encode_piece(e, piece + len - 2, 2));
    } else {
      SD_TRY(encode_piece(e, piece, len));
    }
  }
  return 0;
}

/* Text between the special tokens: normalizer, then the added tokens split out of the normalized
 * text (leftmost, longest), as tokenizers does for non-special added tokens; the rest piece by
 * piece. Stops once the budget is full. */
static int encode_chunk(encoder *e, const int32_t *cps, size_t n) {
  if (n == 0)
    return 0;
  SD_TRY(sd_clip_normalize(cps, n, &e->text));
  const int32_t *t = e->text.data;
  size_t len = e->text.len, segment = 0;
  for (size_t i = 0; i < len && e->count < e->budget;) {
    int32_t id;
    size_t match = e->tok->added_count ? match_added(e->tok, t, len, i, &id) : 0;
    if (!match) {
      i++;
      continue;
    }
    SD_TRY(encode_pieces(e, t + segment, i - segment));
    emit(e, id);
    i += match;
    segment = i;
  }
  if (e->count < e->budget)
    SD_TRY(encode_pieces(e, t + segment, len - segment));
  return 0;
}

/* Length of the longest special token at cps[i] (0 when none), its id in *id. */
static size_t match_special(const sd_tokenizer *tok, const int32_t *cps, size_t n, size_t i,
                            int32_t *id) {
  size_t best = 0;
  for (int s = 0; s < tok->special_count; s++) {
    const sd_codepoints *sp = &tok->specials[s];
    if (sp->len > best && n - i >= sp->len &&
        memcmp(cps + i, sp->data, sp->len * sizeof *cps) == 0) {
      best = sp->len;
      *id = tok->special_ids[s];
    }
  }
  return best;
}

int sd_tokenizer_encode(const sd_tokenizer *tok, const char *text, int32_t *ids) {
  if (!tok || !text || !ids)
    return SD_ERROR("sd_tokenizer_encode: NULL argument");
  encoder e = {.tok = tok, .ids = ids, .budget = tok->max_length - 2};
  sd_codepoints cps = {0};
  int rc = -1;
  if (sd_utf8_decode(text, strlen(text), &cps) < 0) {
    sd_error_context("prompt");
    goto out_free;
  }
  /* Added tokens first, leftmost-longest (transformers' Trie); the text between them is
   * tokenized piece by piece. */
  size_t chunk_start = 0;
  for (size_t i = 0; i < cps.len && e.count < e.budget;) {
    int32_t id;
    size_t len = match_special(tok, cps.data, cps.len, i, &id);
    if (!len) {
      i++;
      continue;
    }
    if (encode_chunk(&e, cps.data + chunk_start, i - chunk_start) < 0)
      goto out_free;
    emit(&e, id);
    i += len;
    chunk_start = i;
  }
  if (e.count < e.budget && encode_chunk(&e, cps.data + chunk_start, cps.len - chunk_start) < 0)
    goto out_free;
  ids[0] = tok->bos_id;
  ids[1 + e.count] = tok->eos_id;
  for (int i = 2 + e.count; i < tok->max_length; i++)
    ids[i] = tok->pad_id;
  rc = 0;
out_free:
  sd_codepoints_free(&cps);
  sd_codepoints_free(&e.text);
  sd_bpe_work_free(&e.bpe);
  free(e.word);
  return rc;
}
