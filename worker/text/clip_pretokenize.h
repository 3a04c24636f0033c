/* Normalisation and pre-tokenisation of the CLIP tokenizer (internal to worker/text): the
 * pipeline that transformers >= 5's CLIPTokenizer gives the `tokenizers` library:
 *   normalizer     NFC, then Replace(\s+ -> " "), then Lowercase (per character, full mapping)
 *   pre-tokenizer  Split(<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|
 *                  [\p{N}]|[^\s\p{L}\p{N}]+, invert, removed), then ByteLevel's GPT-2 split,
 *                  which only splits the two special-token spellings into "<|", word, "|>"
 * with Oniguruma's classes (case-sensitive). Character data: clip_chars.h. */
#ifndef SD_TEXT_CLIP_PRETOKENIZE_H
#define SD_TEXT_CLIP_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

/* A growable array of code points. An empty one needs no set-up beyond zeroing. */
typedef struct sd_codepoints {
  int32_t *data; /* (len) */
  size_t len, capacity;
} sd_codepoints;

void sd_codepoints_free(sd_codepoints *cps);

/* Decodes len bytes of UTF-8 into out (replacing its contents). -1 (error set, with the byte
 * offset) on invalid UTF-8: bad sequences, overlong forms, surrogates, values over U+10FFFF. */
int sd_utf8_decode(const char *text, size_t len, sd_codepoints *out);

/* NFC of cps[0, n) into out (replacing its contents), with the normalisation data of the
 * tokenizers library (clip_chars.h). */
int sd_clip_nfc(const int32_t *cps, size_t n, sd_codepoints *out);

/* The normalizer: NFC, each run of \s made one space, each character lower-cased; cps[0, n)
 * into out (replacing its contents). -1 (error set) when out of memory. */
int sd_clip_normalize(const int32_t *cps, size_t n, sd_codepoints *out);

/* The next match of the Split pattern in normalised text t[*pos, n): returns 1 with the piece
 * at [*start, *end) and *pos moved past it, or 0 when none is left. Spaces between pieces are
 * skipped. A piece spelling a special token is left whole: ByteLevel's split is the caller's. */
int sd_clip_next_piece(const int32_t *t, size_t n, size_t *pos, size_t *start, size_t *end);

#endif
