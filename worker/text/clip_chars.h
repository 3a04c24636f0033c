/* Character data of the CLIP tokenizer as transformers >= 5 runs it (internal to worker/text):
 * the `tokenizers` library's NFC, Lowercase and Oniguruma regex classes. Each mixes Unicode
 * versions: Oniguruma's \p{L}, \p{N} follow Unicode 16.0, Rust's char::to_lowercase Unicode 17.0,
 * the normalisation crate Unicode 10.0. Built on utf8proc (Unicode 15.0 in Debian 12's 2.8)
 * plus the differences, listed in clip_chars.c; tests/test_tokenizer.c compares every code point
 * with the library's own answers (tests/fixtures/tokenizer/unicode.json). */
#ifndef SD_TEXT_CLIP_CHARS_H
#define SD_TEXT_CLIP_CHARS_H

#include <stdint.h>

int sd_clip_is_space(int32_t cp);  /* Oniguruma's \s: Unicode White_Space */
int sd_clip_is_letter(int32_t cp); /* Oniguruma's \p{L} */
int sd_clip_is_number(int32_t cp); /* Oniguruma's \p{N} */
/* Rust's char::to_lowercase of cp into out: returns the count (1, or 2 for U+0130). */
int sd_clip_lower(int32_t cp, int32_t out[2]);
/* Canonical combining class as the normalisation crate knows it: 0 for the marks that Unicode
 * 11.0 to 15.0 added. */
int sd_clip_combining_class(int32_t cp);
/* Canonical decomposition of cp into out (at most 4 code points; cp itself when it has none):
 * returns the count. */
int sd_clip_decompose(int32_t cp, int32_t out[4]);
/* The primary composite of starter + next, or -1 when they do not compose. */
int32_t sd_clip_compose(int32_t starter, int32_t next);

#endif
