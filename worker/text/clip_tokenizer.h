/* CLIP BPE tokenizer with the ids of transformers' CLIPTokenizer (without ftfy): BasicTokenizer
 * clean-up (control characters dropped, whitespace normalised, spaces around CJK ideographs,
 * NFC, lower-casing, accents kept), CLIP's pre-tokenisation regex, byte-level BPE with </w>
 * word ends, <|startoftext|> ... <|endoftext|>, truncation and padding to the model length.
 *
 * The reference is the slow (Python) CLIPTokenizer of transformers 4.x, which diffusers uses for
 * SD 1.x / 2.x. transformers 5 replaced it with a tokenizers-backed one that differs on CJK,
 * control characters, final sigma and special-token spellings (see
 * tests/reference/make_tokenizer_fixtures.py). Character data are utf8proc's (Unicode 15.0 in
 * utf8proc 2.8), which equal Python 3.12's; Python 3.11 (Unicode 14) drops the characters
 * Unicode 15 added as unassigned, where this keeps them. */
#ifndef SD_CLIP_TOKENIZER_H
#define SD_CLIP_TOKENIZER_H

#include <stdint.h>

typedef struct sd_tokenizer sd_tokenizer;

/* Loaders. Each returns 0 and a new tokenizer in *out, or -1 (error set, naming the file) with
 * *out NULL. pad_token is a vocabulary entry ("<|endoftext|>" for SD 1.x, "!" for SD 2.x);
 * <|startoftext|> and <|endoftext|> must be in the vocabulary too; max_length >= 2 (77).
 *
 * transformers layout: vocab.json + merges.txt. As CLIPTokenizer, the first line of merges.txt
 * is skipped and at most 48894 merges are read. */
int sd_tokenizer_load_vocab_merges(const char *vocab_json, const char *merges_txt,
                                   const char *pad_token, int max_length, sd_tokenizer **out);
/* tokenizers' tokenizer.json: model.vocab and all of model.merges ("a b" strings or ["a", "b"]
 * pairs); the rest of the file (normalizer, pre-tokenizer, added tokens) is not read: the text
 * is processed as CLIPTokenizer does. */
int sd_tokenizer_load_tokenizer_json(const char *tokenizer_json, const char *pad_token,
                                     int max_length, sd_tokenizer **out);
/* OpenAI's bpe_simple_vocab_16e6.txt.gz (the vocabulary is derived as CLIP derives it). */
int sd_tokenizer_load_bpe_gz(const char *bpe_gz, const char *pad_token, int max_length,
                             sd_tokenizer **out);
void sd_tokenizer_free(sd_tokenizer *tok);

/* Writes the tokenizer's vocabulary and merges in transformers' layout: vocab.json as one JSON
 * object in id order (json.dumps style, UTF-8 unescaped), merges.txt as "#version: 0.2" then one
 * "first second" line per merge in rank order. From the .gz this gives CLIP's vocabulary and
 * merges, as in the tokenizer folders of SD 1.x / 2.x (openai/clip-vit-large-patch14). */
int sd_tokenizer_write_vocab_merges(const sd_tokenizer *tok, const char *vocab_json_path,
                                    const char *merges_txt_path);

int sd_tokenizer_max_length(const sd_tokenizer *tok);
/* The id of a vocabulary entry, or -1 (error set) when the vocabulary lacks it. */
int32_t sd_tokenizer_token_id(const sd_tokenizer *tok, const char *token);
/* Writes exactly max_length ids: BOS, tokens (truncated so EOS fits), EOS, pad ids, as
 * tokenizer(text, padding="max_length", max_length=max_length, truncation=True) does. The special
 * tokens (<|startoftext|>, <|endoftext|>, the pad token) are split out of the text verbatim
 * first, as transformers' added tokens are. text must be valid UTF-8 (error otherwise). Safe to
 * call from several threads at once on one tokenizer. */
int sd_tokenizer_encode(const sd_tokenizer *tok, const char *text, int32_t *ids);

#endif
