/* CLIP tokenizer (worker/text) against transformers >= 5's CLIPTokenizer (tokenizers backend):
 * exact ids of every fixture prompt (hand-written tricky cases and seeded random mixes) for pad
 * "<|endoftext|>" (SD 1.x) and "!" (SD 2.x) from all three loaders and the tiny-sd1 / tiny-sd2
 * tokenizer folders, which also equal OpenAI CLIP's SimpleTokenizer except on the prompts the
 * fixture lists (docs/tokenizer.md says why); vocab.json / merges.txt written by C
 * byte-identical to CLIP's construction in Python; the character classes, lower-casing and NFC
 * behind the normalizer checked over every code point against the tokenizers library's own;
 * invalid input rejected; encoding speed. Fixtures: tests/reference/make_tokenizer_fixtures.py. */
#include "test_util.h"

#include "kernels/error.h"
#include "text/clip_chars.h"
#include "text/clip_pretokenize.h"
#include "text/clip_tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define FIXTURES SD_TEST_FIXTURES "/tokenizer"
#define BPE_GZ   SD_SOURCE_DIR "/third_party/clip/bpe_simple_vocab_16e6.txt.gz"
#define MAX_IDS  128

/* CHECK that returns the outcome, for the checks that later steps need; the message gets the
 * library's last error appended. */
static int require(int ok, const char *what) {
  CHECK(ok, "%s (last error: %s)", what, sd_error_message());
  return ok;
}

static cJSON *load_json(const char *path) {
  char *text = sd_test_read_file(path, NULL);
  cJSON *root = text ? cJSON_Parse(text) : NULL;
  free(text);
  CHECK(root != NULL, "cannot read %s", path);
  return root;
}

static int ids_from_json(const cJSON *array, int32_t *ids, int max) {
  int n = 0;
  for (const cJSON *item = array ? array->child : NULL; item && n < max; item = item->next)
    ids[n++] = (int32_t)item->valuedouble;
  return n;
}

/* The fixture's ids of one prompt (up to <|endoftext|>) padded with pad_id to n. */
static int expected_ids(const cJSON *array, int32_t pad_id, int32_t *ids, int n) {
  int count = ids_from_json(array, ids, n);
  if (count < 2 || (array && cJSON_GetArraySize(array) > n))
    return -1;
  for (int i = count; i < n; i++)
    ids[i] = pad_id;
  return 0;
}

/* Every prompt with both pads: exact ids. The prompts without an "openai" entry are those where
 * OpenAI CLIP's ids equal transformers' (counted when with_openai). */
static void check_prompts(const char *what, sd_tokenizer *eos_pad, sd_tokenizer *bang_pad,
                          const cJSON *prompts, int with_openai) {
  int checked = 0, openai_agrees = 0;
  for (const cJSON *p = prompts->child; p; p = p->next) {
    const cJSON *name = cJSON_GetObjectItem(p, "name");
    const char *text = cJSON_GetObjectItem(p, "text")->valuestring;
    const char *label = name ? name->valuestring : text;
    struct {
      sd_tokenizer *tok;
      const char *key, *pad;
    } cases[] = {{eos_pad, "ids_eos_pad", "<|endoftext|>"}, {bang_pad, "ids_bang_pad", "!"}};
    int all_equal = 1;
    for (int c = 0; c < 2; c++) {
      int n = sd_tokenizer_max_length(cases[c].tok);
      int32_t want[MAX_IDS], got[MAX_IDS];
      char title[160];
      snprintf(title, sizeof title, "%s: %s, %s", what, label, cases[c].key);
      if (!require(n <= MAX_IDS && expected_ids(cJSON_GetObjectItem(p, cases[c].key),
                                                sd_tokenizer_token_id(cases[c].tok, cases[c].pad),
                                                want, n) == 0,
                   title))
        continue;
      if (!require(sd_tokenizer_encode(cases[c].tok, text, got) == 0, title))
        continue;
      all_equal &= memcmp(got, want, (size_t)n * sizeof *got) == 0;
      sd_test_compare_i32(title, got, want, (size_t)n);
      checked++;
    }
    openai_agrees += all_equal && !cJSON_GetObjectItem(p, "openai");
  }
  fprintf(stderr, "%s: %d prompt encodings compared with transformers'", what, checked);
  if (with_openai)
    fprintf(stderr, "; %d prompts are also OpenAI CLIP's ids", openai_agrees);
  fputc('\n', stderr);
}

static uint32_t file_crc(const char *path, size_t *len) {
  char *data = sd_test_read_file(path, len);
  uint32_t crc = data ? (uint32_t)crc32(0, (const Bytef *)data, (uInt)*len) : 0;
  free(data);
  return crc;
}

static void check_digest(const char *path, const cJSON *digest) {
  size_t len = 0;
  uint32_t crc = file_crc(path, &len);
  double want_len = cJSON_GetObjectItem(digest, "bytes")->valuedouble;
  double want_crc = cJSON_GetObjectItem(digest, "crc32")->valuedouble;
  CHECK(len == (size_t)want_len && crc == (uint32_t)want_crc,
        "%s: %zu bytes crc32 %u, Python's file: %.0f bytes crc32 %.0f", path, len, crc, want_len,
        want_crc);
}

/* Loads the tokenizer with both pads from the .gz, checks their fixtures; written to
 * vocab.json + merges.txt, the files must equal Python's and load back to the same ids. */
static void check_gz_and_vocab_merges(const cJSON *fixture) {
  const cJSON *prompts = cJSON_GetObjectItem(fixture, "prompts");
  sd_tokenizer *eos_pad = NULL, *bang_pad = NULL;
  int rc = sd_tokenizer_load_bpe_gz(BPE_GZ, "<|endoftext|>", 77, &eos_pad);
  rc |= sd_tokenizer_load_bpe_gz(BPE_GZ, "!", 77, &bang_pad);
  if (!require(rc == 0, "load " BPE_GZ))
    return;
  CHECK(sd_tokenizer_token_id(eos_pad, "<|startoftext|>") == 49406 &&
            sd_tokenizer_token_id(eos_pad, "<|endoftext|>") == 49407 &&
            sd_tokenizer_token_id(bang_pad, "!") == 0 &&
            sd_tokenizer_token_id(eos_pad, "photo</w>") == 1125,
        "special token ids");
  check_prompts("bpe.gz", eos_pad, bang_pad, prompts, 1);

  char dir[] = "/tmp/sd_tokenizer_XXXXXX";
  if (!require(mkdtemp(dir) != NULL, "mkdtemp"))
    goto out_free;
  char vocab[64], merges[64];
  snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
  snprintf(merges, sizeof merges, "%s/merges.txt", dir);
  if (require(sd_tokenizer_write_vocab_merges(eos_pad, vocab, merges) == 0,
              "write vocab.json + merges.txt")) {
    check_digest(vocab, cJSON_GetObjectItem(fixture, "vocab_json"));
    check_digest(merges, cJSON_GetObjectItem(fixture, "merges_txt"));
    sd_tokenizer *eos_pad2 = NULL, *bang_pad2 = NULL;
    rc = sd_tokenizer_load_vocab_merges(vocab, merges, "<|endoftext|>", 77, &eos_pad2);
    rc |= sd_tokenizer_load_vocab_merges(vocab, merges, "!", 77, &bang_pad2);
    if (require(rc == 0, "load the written vocab.json + merges.txt"))
      check_prompts("vocab.json+merges.txt", eos_pad2, bang_pad2, prompts, 1);
    sd_tokenizer_free(eos_pad2);
    sd_tokenizer_free(bang_pad2);
  }
  remove(vocab);
  remove(merges);
  rmdir(dir);
out_free:
  sd_tokenizer_free(eos_pad);
  sd_tokenizer_free(bang_pad);
}

/* The committed SD tokenizer folders (tiny-sd1: pad <|endoftext|>, tiny-sd2: pad "!"), as the
 * pipeline loads them. */
static void check_sd_folders(const cJSON *fixture) {
  const char *dir = SD_TEST_FIXTURES;
  char vocab[2][512], merges[2][512];
  for (int i = 0; i < 2; i++) {
    snprintf(vocab[i], sizeof vocab[i], "%s/tiny-sd%d/tokenizer/vocab.json", dir, i + 1);
    snprintf(merges[i], sizeof merges[i], "%s/tiny-sd%d/tokenizer/merges.txt", dir, i + 1);
  }
  sd_tokenizer *eos_pad = NULL, *bang_pad = NULL;
  int rc = sd_tokenizer_load_vocab_merges(vocab[0], merges[0], "<|endoftext|>", 77, &eos_pad);
  rc |= sd_tokenizer_load_vocab_merges(vocab[1], merges[1], "!", 77, &bang_pad);
  if (require(rc == 0, "load tiny-sd1/tokenizer and tiny-sd2/tokenizer"))
    check_prompts("tiny-sd1 / tiny-sd2 tokenizer folders", eos_pad, bang_pad,
                  cJSON_GetObjectItem(fixture, "prompts"), 1);
  sd_tokenizer_free(eos_pad);
  sd_tokenizer_free(bang_pad);
}

static void check_tiny_tokenizer_json(const cJSON *fixture) {
  const cJSON *tiny = cJSON_GetObjectItem(fixture, "tiny");
  int max_length = (int)cJSON_GetObjectItem(tiny, "max_length")->valuedouble;
  const char *files[] = {FIXTURES "/tiny_tokenizer.json", FIXTURES "/tiny_tokenizer_pairs.json"};
  for (int f = 0; f < 2; f++) {
    sd_tokenizer *eos_pad = NULL, *bang_pad = NULL;
    int rc = sd_tokenizer_load_tokenizer_json(files[f], "<|endoftext|>", max_length, &eos_pad);
    rc |= sd_tokenizer_load_tokenizer_json(files[f], "!", max_length, &bang_pad);
    if (require(rc == 0, files[f]))
      check_prompts(f ? "tiny pairs" : "tiny", eos_pad, bang_pad,
                    cJSON_GetObjectItem(tiny, "prompts"), 0);
    sd_tokenizer_free(eos_pad);
    sd_tokenizer_free(bang_pad);
  }
}

/* Character data: Oniguruma's classes and the Lowercase normalizer on every code point, NFC on
 * the fixture's strings. */
enum { CLASS_SPACE, CLASS_LETTER, CLASS_NUMBER, CLASS_COUNT };

static int decode(const char *text, sd_codepoints *out) {
  return sd_utf8_decode(text, strlen(text), out);
}

static void check_nfc(const cJSON *cases) {
  sd_codepoints in = {0}, want = {0}, got = {0};
  int count = 0, mismatches = 0;
  for (const cJSON *e = cases ? cases->child : NULL; e; e = e->next, count++) {
    const char *text = e->child->valuestring, *want_text = e->child->next->valuestring;
    int ok = decode(text, &in) == 0 && decode(want_text, &want) == 0 &&
             sd_clip_nfc(in.data, in.len, &got) == 0 && got.len == want.len &&
             memcmp(got.data, want.data, got.len * sizeof(int32_t)) == 0;
    if (!ok && mismatches++ < 5)
      fprintf(stderr, "  nfc(U+%04X... %zu code points): got %zu code points (U+%04X...)\n",
              in.len ? (unsigned)in.data[0] : 0u, in.len, got.len,
              got.len ? (unsigned)got.data[0] : 0u);
  }
  CHECK(count > 1000 && mismatches == 0, "NFC differs from tokenizers' on %d of %d strings",
        mismatches, count);
  fprintf(stderr, "NFC compared on %d strings\n", count);
  sd_codepoints_free(&in);
  sd_codepoints_free(&want);
  sd_codepoints_free(&got);
}

static void check_unicode(const cJSON *unicode) {
  static const struct {
    const char *key;
    int (*predicate)(int32_t cp);
  } classes[CLASS_COUNT] = {
      [CLASS_SPACE] = {"space", sd_clip_is_space},
      [CLASS_LETTER] = {"letter", sd_clip_is_letter},
      [CLASS_NUMBER] = {"number", sd_clip_is_number},
  };
  const int32_t n_cp = 0x110000;
  uint8_t *bits = calloc((size_t)n_cp, sizeof *bits);
  int32_t(*lower)[3] = calloc((size_t)n_cp, sizeof *lower); /* count, code points */
  if (!require(bits && lower, "out of memory")) {
    free(bits);
    free(lower);
    return;
  }
  for (int c = 0; c < CLASS_COUNT; c++) {
    const cJSON *ranges = cJSON_GetObjectItem(unicode, classes[c].key);
    CHECK(cJSON_GetArraySize(ranges) > 0, "unicode.json: no %s ranges", classes[c].key);
    for (const cJSON *r = ranges ? ranges->child : NULL; r; r = r->next)
      for (int32_t cp = (int32_t)r->child->valuedouble; cp <= (int32_t)r->child->next->valuedouble;
           cp++)
        bits[cp] |= (uint8_t)(1u << c);
  }
  const cJSON *lowers = cJSON_GetObjectItem(unicode, "lower");
  CHECK(cJSON_GetArraySize(lowers) > 1000, "unicode.json: no lower-case mappings");
  for (const cJSON *e = lowers ? lowers->child : NULL; e; e = e->next) {
    int32_t cp = (int32_t)e->child->valuedouble;
    lower[cp][0] = ids_from_json(e->child->next, &lower[cp][1], 2);
  }

  int mismatches[CLASS_COUNT] = {0}, lower_mismatches = 0, checked = 0;
  for (int32_t cp = 0; cp < n_cp; cp++) {
    if (cp >= 0xD800 && cp <= 0xDFFF)
      continue;
    checked++;
    for (int c = 0; c < CLASS_COUNT; c++) {
      int want = !!(bits[cp] & (1u << c)), got = !!classes[c].predicate(cp);
      if (got != want && mismatches[c]++ < 5)
        fprintf(stderr, "  %s(U+%04X): got %d, tokenizers %d\n", classes[c].key, (unsigned)cp, got,
                want);
    }
    int32_t want_self[3] = {1, cp}, got[2];
    const int32_t *want = lower[cp][0] ? lower[cp] : want_self;
    int n = sd_clip_lower(cp, got);
    if ((n != want[0] || memcmp(got, want + 1, (size_t)n * sizeof *got) != 0) &&
        lower_mismatches++ < 5)
      fprintf(stderr, "  lower(U+%04X): got %d code points (U+%04X...), tokenizers %d\n",
              (unsigned)cp, n, (unsigned)got[0], want[0]);
  }
  for (int c = 0; c < CLASS_COUNT; c++)
    CHECK(mismatches[c] == 0, "class %s differs from tokenizers' on %d of %d code points",
          classes[c].key, mismatches[c], checked);
  CHECK(lower_mismatches == 0, "lower-casing differs from tokenizers' on %d code points",
        lower_mismatches);
  fprintf(stderr, "character classes and lower-casing compared on %d code points\n", checked);
  free(lower);
  free(bits);
  check_nfc(cJSON_GetObjectItem(unicode, "nfc"));
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

static void check_errors(void) {
  sd_tokenizer *tok = NULL;
  CHECK(sd_tokenizer_load_bpe_gz(BPE_GZ, "<pad>", 77, &tok) < 0 && !tok &&
            strstr(sd_error_message(), "'<pad>'"),
        "unknown pad token: %s", sd_error_message());
  CHECK(sd_tokenizer_load_bpe_gz(BPE_GZ, "!", 1, &tok) < 0, "max_length 1 accepted");
  CHECK(sd_tokenizer_load_bpe_gz("/nonexistent/bpe.txt.gz", "!", 77, &tok) < 0 &&
            strstr(sd_error_message(), "/nonexistent/bpe.txt.gz"),
        "missing file: %s", sd_error_message());

  char dir[] = "/tmp/sd_tokenizer_XXXXXX";
  if (!require(mkdtemp(dir) != NULL, "mkdtemp"))
    return;
  char vocab[64], merges[64], json[64];
  snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
  snprintf(merges, sizeof merges, "%s/merges.txt", dir);
  snprintf(json, sizeof json, "%s/tokenizer.json", dir);
  write_text(vocab, "{\"a\": 0, \"b\": 1, \"ab</w>\": 2, \"<|startoftext|>\": 3, "
                    "\"<|endoftext|>\": 4, \"b</w>\": 5, \"c\": 6}");
  static const struct {
    const char *merges, *error;
  } bad_merges[] = {
      {"#version: 0.2\na b</w>\na b c\n", "line 3"},
      {"#version: 0.2\na  b</w>\n", "line 2"},
      {"#version: 0.2\n\na b</w>\n", "line 2"},
      {"#version: 0.2\na x</w>\n", "'a x</w>': the second token"},
      {"#version: 0.2\nx b</w>\n", "'x b</w>': the first token"},
      {"#version: 0.2\na b</w>\na c\n", "'a c': the joined token"},
      {"#version: 0.2\n", "no merges"},
  };
  for (size_t i = 0; i < sizeof bad_merges / sizeof bad_merges[0]; i++) {
    write_text(merges, bad_merges[i].merges);
    CHECK(sd_tokenizer_load_vocab_merges(vocab, merges, "<|endoftext|>", 77, &tok) < 0 && !tok &&
              strstr(sd_error_message(), bad_merges[i].error),
          "bad merges.txt #%zu: %s", i, sd_error_message());
  }
  write_text(json, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"<|startoftext|>\": 1, "
                   "\"<|endoftext|>\": 2}, \"merges\": [\"a\"]}}");
  CHECK(sd_tokenizer_load_tokenizer_json(json, "<|endoftext|>", 77, &tok) < 0 &&
            strstr(sd_error_message(), "merges[0]"),
        "malformed tokenizer.json merges: %s", sd_error_message());
  write_text(json, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"<|startoftext|>\": 1, "
                   "\"<|endoftext|>\": 2}, \"merges\": [\"a a\"]}}");
  CHECK(sd_tokenizer_load_tokenizer_json(json, "<|endoftext|>", 77, &tok) < 0 &&
            strstr(sd_error_message(), "'a a': the joined token"),
        "tokenizer.json merge outside the vocabulary: %s", sd_error_message());
  remove(vocab);
  remove(merges);
  remove(json);
  rmdir(dir);

  if (!require(sd_tokenizer_load_bpe_gz(BPE_GZ, "<|endoftext|>", 77, &tok) == 0, "load"))
    return;
  /* The empty prompt: BOS, EOS, padding. */
  int32_t empty[77];
  if (require(sd_tokenizer_encode(tok, "", empty) == 0, "encode \"\"")) {
    int ok = empty[0] == 49406 && empty[1] == 49407;
    for (int i = 2; i < 77; i++)
      ok &= empty[i] == 49407;
    CHECK(ok, "\"\" gives %d %d %d ...", empty[0], empty[1], empty[2]);
  }
  const char *invalid[] = {"caf\xe9",           "\xff",         "ab\xe6\x9d",
                           "\xc0\xaf overlong", "\xed\xa0\x80", "\xf4\x90\x80\x80"};
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    int32_t ids[77];
    CHECK(sd_tokenizer_encode(tok, invalid[i], ids) < 0 &&
              strstr(sd_error_message(), "invalid UTF-8"),
          "invalid UTF-8 #%zu accepted (%s)", i, sd_error_message());
  }
  sd_tokenizer_free(tok);
}

static double seconds_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Speed: the 1000-word prompt (truncated after 75 tokens) and a 200 000-letter word (BPE over
 * the whole word). The bounds are loose; they catch quadratic behaviour. */
static void check_speed(const cJSON *fixture) {
  const char *thousand = NULL;
  for (const cJSON *p = cJSON_GetObjectItem(fixture, "prompts")->child; p; p = p->next)
    if (strcmp(cJSON_GetObjectItem(p, "name")->valuestring, "thousand_words") == 0)
      thousand = cJSON_GetObjectItem(p, "text")->valuestring;
  sd_tokenizer *tok = NULL;
  if (!require(thousand && sd_tokenizer_load_bpe_gz(BPE_GZ, "!", 77, &tok) == 0,
               "load, and the thousand_words prompt"))
    return;
  int32_t ids[77];
  const int reps = 50;
  double t0 = seconds_now();
  for (int i = 0; i < reps; i++)
    sd_tokenizer_encode(tok, thousand, ids);
  double per_prompt = (seconds_now() - t0) / reps;
  fprintf(stderr, "1000-word prompt: %.3f ms per encode\n", 1e3 * per_prompt);
  CHECK(per_prompt < 0.05, "1000-word prompt took %.1f ms", 1e3 * per_prompt);

  size_t n = 200000;
  char *word = malloc(n + 1);
  uint32_t state = 12345;
  for (size_t i = 0; i < n; i++) {
    state = state * 1664525u + 1013904223u;
    word[i] = (char)('a' + (state >> 24) % 26);
  }
  word[n] = '\0';
  t0 = seconds_now();
  int rc = sd_tokenizer_encode(tok, word, ids);
  double elapsed = seconds_now() - t0;
  fprintf(stderr, "%zu-letter word: %.1f ms\n", n, 1e3 * elapsed);
  CHECK(rc == 0 && elapsed < 2.0 * SD_TEST_TIME_SCALE, "%zu-letter word: rc %d, %.2f s", n, rc,
        elapsed);
  free(word);
  sd_tokenizer_free(tok);
}

int main(void) {
  cJSON *fixture = load_json(FIXTURES "/ids.json");
  cJSON *unicode = load_json(FIXTURES "/unicode.json");
  if (!fixture || !unicode)
    return sd_test_finish();
  check_gz_and_vocab_merges(fixture);
  check_sd_folders(fixture);
  check_tiny_tokenizer_json(fixture);
  check_unicode(unicode);
  check_errors();
  check_speed(fixture);
  cJSON_Delete(fixture);
  cJSON_Delete(unicode);
  return sd_test_finish();
}
