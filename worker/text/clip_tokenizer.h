/* CLIP BPE tokenizer with the ids of transformers >= 5's CLIPTokenizer (the `tokenizers`
 * backend that every current diffusers install uses): added tokens (<|startoftext|>,
 * <|endoftext|>, the pad token) split out of the raw text; NFC, whitespace runs made one space,
 * lower-casing; CLIP's pre-tokenisation pattern; byte-level BPE with </w> word ends;
 * <|startoftext|> ... <|endoftext|>, truncation and padding to the model length. Where OpenAI
 * CLIP's own tokenizer (ftfy, HTML unescaping) gives other ids, this follows transformers: see
 * docs/tokenizer.md. Character data: clip_chars.h. */
#ifndef SD_CLIP_TOKENIZER_H
#define SD_CLIP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct sd_tokenizer sd_tokenizer;

/* Loaders. Each returns 0 and a new tokenizer in *out, or -1 (error set, naming the file) with
 * *out NULL. pad_token is a vocabulary entry ("<|endoftext|>" for SD 1.x, "!" for SD 2.x);
 * <|startoftext|> and <|endoftext|> must be in the vocabulary too; max_length >= 2 (77).
 *
 * transformers layout: vocab.json + merges.txt. As the tokenizers library reads them: lines of
 * merges.txt starting with "#version" are skipped, every other line is "first second" (one
 * space), all are used; both tokens of each merge and their join must be in the vocabulary. */
int sd_tokenizer_load_vocab_merges(const char *vocab_json, const char *merges_txt,
                                   const char *pad_token, int max_length, sd_tokenizer **out);
/* tokenizers' tokenizer.json: model.vocab and all of model.merges ("a b" strings or ["a", "b"]
 * pairs, checked against the vocabulary as above); the rest of the file (normalizer,
 * pre-tokenizer, added tokens) is not read: transformers' CLIPTokenizer also takes only the
 * vocabulary and merges from it and builds its own pipeline. */
int sd_tokenizer_load_tokenizer_json(const char *tokenizer_json, const char *pad_token,
                                     int max_length, sd_tokenizer **out);
/* OpenAI's bpe_simple_vocab_16e6.txt.gz (the vocabulary is derived as CLIP derives it: the
 * first line is a header, the next 48894 lines are the merges). */
int sd_tokenizer_load_bpe_gz(const char *bpe_gz, const char *pad_token, int max_length,
                             sd_tokenizer **out);
void sd_tokenizer_free(sd_tokenizer *tok);

/* The same loaders for files already in memory (the names are for messages only); the loaders
 * above read each file (a regular file within the limits of kernels/file.h) and call these. */
int sd_tokenizer_parse_vocab_merges(const char *vocab, size_t vocab_len, const char *vocab_name,
                                    const char *merges, size_t merges_len, const char *merges_name,
                                    const char *pad_token, int max_length, sd_tokenizer **out);
int sd_tokenizer_parse_tokenizer_json(const char *text, size_t len, const char *name,
                                      const char *pad_token, int max_length, sd_tokenizer **out);
/* gz: the compressed bytes; the text may expand to SD_FILE_MAX_BPE_TXT bytes at most. */
int sd_tokenizer_parse_bpe_gz(const void *gz, size_t gz_len, const char *name,
                              const char *pad_token, int max_length, sd_tokenizer **out);

/* Writes the tokenizer's vocabulary and merges in transformers' layout: vocab.json as one JSON
 * object in id order (json.dumps style, UTF-8 unescaped), merges.txt as "#version: 0.2" then one
 * "first second" line per merge in rank order. From the .gz this gives CLIP's vocabulary and
 * merges, as in the tokenizer folders of SD 1.x / 2.x (openai/clip-vit-large-patch14). */
int sd_tokenizer_write_vocab_merges(const sd_tokenizer *tok, const char *vocab_json_path,
                                    const char *merges_txt_path);

int sd_tokenizer_max_length(const sd_tokenizer *tok);
/* len(tokenizer) in transformers: vocabulary entries plus tokens added. */
int32_t sd_tokenizer_length(const sd_tokenizer *tok);
/* Adds token as transformers' tokenizer.add_tokens(token) does (a non-special added token, the
 * way diffusers' load_textual_inversion adds its tokens): id sd_tokenizer_length() before the
 * call; matched, leftmost-longest, in the normalized (lower-cased) text between the special
 * tokens, before pre-tokenisation. -1 (error set) when the token is already in the vocabulary or
 * added, or empty. Not thread-safe against concurrent encodes. */
int sd_tokenizer_add_token(sd_tokenizer *tok, const char *token, int32_t *id);
/* The id of a vocabulary entry or added token, or -1 (error set) when the vocabulary lacks it. */
int32_t sd_tokenizer_token_id(const sd_tokenizer *tok, const char *token);
/* Writes exactly max_length ids: BOS, tokens (truncated so EOS fits), EOS, pad ids, as
 * tokenizer(text, padding="max_length", max_length=max_length, truncation=True) does. The special
 * tokens (<|startoftext|>, <|endoftext|>, the pad token) are split out of the text verbatim
 * first (leftmost, longest), as transformers' added tokens are. text must be valid UTF-8 (error
 * otherwise); "" gives BOS, EOS and padding. Safe to call from several threads at once on one
 * tokenizer. */
int sd_tokenizer_encode(const sd_tokenizer *tok, const char *text, int32_t *ids);

#endif
