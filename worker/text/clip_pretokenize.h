/* Text clean-up and pre-tokenisation of the CLIP tokenizer (internal to worker/text): the steps
 * of transformers' slow CLIPTokenizer without ftfy, i.e. BasicTokenizer(strip_accents=False,
 * do_split_on_punc=False).tokenize joined with spaces, then CLIP's pattern
 *   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * (regex module, IGNORECASE). Character data come from utf8proc; the classes below follow the
 * Python definitions named with each (tests/test_tokenizer.c checks them over all code points
 * against Python's). */
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

/* " ".join(BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize(text)) of
 * cps[0, n) into out (replacing its contents): NUL, U+FFFD and control characters dropped,
 * whitespace made a space, spaces around CJK ideographs, NFC, split on whitespace, each word
 * lower-cased with str.lower, words joined by single spaces. -1 (error set) on failure. */
int sd_clip_basic_tokenize(const int32_t *cps, size_t n, sd_codepoints *out);

/* Python's str.lower of cps[0, n) appended to out: utf8proc's simple mappings plus the two
 * differences Python makes, U+0130 -> "i\u0307" and final sigma by context. */
int sd_py_lower(const int32_t *cps, size_t n, sd_codepoints *out);

/* The next match of CLIP's pattern in t[*pos, n): returns 1 with the match at [*start, *end) and
 * *pos moved past it, or 0 when none is left. Unmatched characters (whitespace, U+0345) are
 * skipped, as re.findall skips them. */
int sd_clip_next_piece(const int32_t *t, size_t n, size_t *pos, size_t *start, size_t *end);

/* Character classes. */
int sd_clip_is_control(int32_t cp);    /* transformers' _is_control: category C*, not \t \n \r */
int sd_clip_is_whitespace(int32_t cp); /* transformers' _is_whitespace: \t \n \r space, Zs */
int sd_clip_is_cjk(int32_t cp);        /* BasicTokenizer._is_chinese_char */
int sd_py_isspace(int32_t cp);         /* str.isspace */
int sd_py_is_cased(int32_t cp);        /* cased and not case-ignorable, for final sigma */
int sd_py_is_case_ignorable(int32_t cp);
int sd_regex_is_letter(int32_t cp); /* \p{L} */
int sd_regex_is_number(int32_t cp); /* \p{N} */
int sd_regex_is_space(int32_t cp);  /* \s of the regex module */
/* [^\s\p{L}\p{N}] under IGNORECASE, which also refuses a character whose other case is a letter
 * or number: U+0345 (upper-case Iota) matches no class and is dropped like whitespace. */
int sd_regex_is_other(int32_t cp);

#endif
