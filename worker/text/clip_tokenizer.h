/* CLIP BPE tokenizer with the ids of transformers' CLIPTokenizer (without ftfy): BasicTokenizer
 * clean-up (control characters dropped, whitespace normalised, spaces around CJK ideographs,
 * NFC, lower-casing, accents kept), CLIP's pre-tokenisation regex, byte-level BPE with </w>
 * word ends, <|startoftext|> ... <|endoftext|>, truncation and padding to the model length. */
#ifndef SD_CLIP_TOKENIZER_H
#define SD_CLIP_TOKENIZER_H

#include <stdint.h>

typedef struct sd_tokenizer sd_tokenizer;

/* transformers layout: vocab.json + merges.txt. pad_token is a vocabulary entry
 * ("<|endoftext|>" for SD 1.x, "!" for SD 2.x). */
int sd_tokenizer_load_vocab_merges(const char *vocab_json, const char *merges_txt,
                                   const char *pad_token, int max_length, sd_tokenizer **out);
/* tokenizers' tokenizer.json (model.vocab, model.merges). */
int sd_tokenizer_load_tokenizer_json(const char *tokenizer_json, const char *pad_token,
                                     int max_length, sd_tokenizer **out);
/* OpenAI's bpe_simple_vocab_16e6.txt.gz (the vocabulary is derived as CLIP derives it). */
int sd_tokenizer_load_bpe_gz(const char *bpe_gz, const char *pad_token, int max_length,
                             sd_tokenizer **out);
void sd_tokenizer_free(sd_tokenizer *tok);

int sd_tokenizer_max_length(const sd_tokenizer *tok);
/* Writes exactly max_length ids: BOS, tokens (truncated so EOS fits), EOS, pad ids.
 * text must be valid UTF-8 (error otherwise). */
int sd_tokenizer_encode(const sd_tokenizer *tok, const char *text, int32_t *ids);

#endif
