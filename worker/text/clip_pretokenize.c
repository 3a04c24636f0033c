/* CLIP text clean-up and pre-tokenisation, as transformers' slow CLIPTokenizer does it without
 * ftfy (see clip_pretokenize.h). */
#include "clip_pretokenize.h"

#include "../../kernels/error.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

void sd_codepoints_free(sd_codepoints *cps) {
  free(cps->data);
  memset(cps, 0, sizeof *cps);
}

static int cps_reserve(sd_codepoints *cps, size_t extra) {
  if (cps->len + extra <= cps->capacity)
    return 0;
  size_t capacity = cps->capacity ? cps->capacity : 256;
  while (capacity < cps->len + extra)
    capacity *= 2;
  int32_t *grown = realloc(cps->data, capacity * sizeof *grown);
  if (!grown)
    return SD_ERROR("out of memory for %zu code points", capacity);
  cps->data = grown;
  cps->capacity = capacity;
  return 0;
}

static int cps_push(sd_codepoints *cps, int32_t cp) {
  SD_TRY(cps_reserve(cps, 1));
  cps->data[cps->len++] = cp;
  return 0;
}

int sd_utf8_decode(const char *text, size_t len, sd_codepoints *out) {
  out->len = 0;
  SD_TRY(cps_reserve(out, len));
  const utf8proc_uint8_t *bytes = (const utf8proc_uint8_t *)text;
  for (size_t at = 0; at < len;) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t used = utf8proc_iterate(bytes + at, (utf8proc_ssize_t)(len - at), &cp);
    if (used < 0)
      return SD_ERROR("invalid UTF-8 at byte %zu (0x%02x): %s", at, bytes[at],
                      utf8proc_errmsg(used));
    out->data[out->len++] = cp;
    at += (size_t)used;
  }
  return 0;
}

int sd_clip_is_control(int32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r')
    return 0;
  switch (utf8proc_category(cp)) {
  case UTF8PROC_CATEGORY_CC:
  case UTF8PROC_CATEGORY_CF:
  case UTF8PROC_CATEGORY_CS:
  case UTF8PROC_CATEGORY_CO:
  case UTF8PROC_CATEGORY_CN:
    return 1;
  default:
    return 0;
  }
}

int sd_clip_is_whitespace(int32_t cp) {
  return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' ||
         utf8proc_category(cp) == UTF8PROC_CATEGORY_ZS;
}

int sd_clip_is_cjk(int32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

int sd_py_isspace(int32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

int sd_regex_is_space(int32_t cp) {
  return sd_py_isspace(cp) && !(cp >= 0x1C && cp <= 0x1F);
}

int sd_regex_is_letter(int32_t cp) {
  utf8proc_category_t c = utf8proc_category(cp);
  return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT ||
         c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_LO;
}

int sd_regex_is_number(int32_t cp) {
  utf8proc_category_t c = utf8proc_category(cp);
  return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

int sd_regex_is_other(int32_t cp) {
  if (sd_regex_is_space(cp) || sd_regex_is_letter(cp) || sd_regex_is_number(cp))
    return 0;
  int32_t variants[] = {utf8proc_toupper(cp), utf8proc_tolower(cp), utf8proc_totitle(cp)};
  for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
    if (variants[i] != cp && (sd_regex_is_letter(variants[i]) || sd_regex_is_number(variants[i])))
      return 0;
  return 1;
}

/* Unicode's Case_Ignorable: Mn, Me, Cf, Lm, Sk and the Word_Break classes MidLetter,
 * MidNumLet, Single_Quote. */
int sd_py_is_case_ignorable(int32_t cp) {
  static const int32_t mid_letter_or_quote[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,
                                                0x5F4,  0x2018, 0x2019, 0x2024, 0x2027, 0xFE13,
                                                0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
  switch (utf8proc_category(cp)) {
  case UTF8PROC_CATEGORY_MN:
  case UTF8PROC_CATEGORY_ME:
  case UTF8PROC_CATEGORY_CF:
  case UTF8PROC_CATEGORY_LM:
  case UTF8PROC_CATEGORY_SK:
    return 1;
  default:
    break;
  }
  for (size_t i = 0; i < sizeof mid_letter_or_quote / sizeof mid_letter_or_quote[0]; i++)
    if (cp == mid_letter_or_quote[i])
      return 1;
  return 0;
}

/* Unicode's Cased (Lu, Ll, Lt, Other_Lowercase, Other_Uppercase) less the case-ignorable
 * characters, which the final-sigma scan skips before it asks. */
int sd_py_is_cased(int32_t cp) {
  utf8proc_category_t c = utf8proc_category(cp);
  if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT)
    return 1;
  /* Other_Lowercase / Other_Uppercase outside Lm and Mn. */
  return cp == 0xAA || cp == 0xBA || (cp >= 0x2160 && cp <= 0x217F) ||
         (cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) ||
         (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189);
}

/* CPython's handle_capital_sigma: a capital sigma preceded by a cased letter and not followed by
 * one (case-ignorable characters skipped both ways) lower-cases to final sigma. */
static int is_final_sigma(const int32_t *cps, size_t n, size_t i) {
  size_t j = i;
  while (j > 0 && sd_py_is_case_ignorable(cps[j - 1]))
    j--;
  if (j == 0 || !sd_py_is_cased(cps[j - 1]))
    return 0;
  size_t k = i + 1;
  while (k < n && sd_py_is_case_ignorable(cps[k]))
    k++;
  return k == n || !sd_py_is_cased(cps[k]);
}

int sd_py_lower(const int32_t *cps, size_t n, sd_codepoints *out) {
  SD_TRY(cps_reserve(out, n + 1));
  for (size_t i = 0; i < n; i++) {
    int32_t cp = cps[i];
    if (cp == 0x130) {
      /* Python applies SpecialCasing's unconditional mapping; utf8proc gives only 'i'. */
      SD_TRY(cps_push(out, 'i'));
      SD_TRY(cps_push(out, 0x307));
    } else if (cp == 0x3A3) {
      SD_TRY(cps_push(out, is_final_sigma(cps, n, i) ? 0x3C2 : 0x3C3));
    } else {
      SD_TRY(cps_push(out, utf8proc_tolower(cp)));
    }
  }
  return 0;
}

/* NFC of cps into out (replacing its contents), via utf8proc's UTF-8 interface. */
static int nfc(const sd_codepoints *cps, sd_codepoints *out) {
  size_t bytes_len = 0;
  utf8proc_uint8_t *bytes = malloc(4 * cps->len + 1);
  if (!bytes)
    return SD_ERROR("out of memory for %zu code points of text", cps->len);
  for (size_t i = 0; i < cps->len; i++)
    bytes_len += (size_t)utf8proc_encode_char(cps->data[i], bytes + bytes_len);
  utf8proc_uint8_t *composed = NULL;
  utf8proc_ssize_t composed_len = utf8proc_map(bytes, (utf8proc_ssize_t)bytes_len, &composed,
                                               UTF8PROC_STABLE | UTF8PROC_COMPOSE);
  free(bytes);
  if (composed_len < 0)
    return SD_ERROR("NFC normalisation failed: %s", utf8proc_errmsg(composed_len));
  int rc = sd_utf8_decode((const char *)composed, (size_t)composed_len, out);
  free(composed);
  return rc;
}

int sd_clip_basic_tokenize(const int32_t *cps, size_t n, sd_codepoints *out) {
  sd_codepoints cleaned = {0}, normalized = {0};
  int rc = -1;
  /* _clean_text, then _tokenize_chinese_chars. */
  for (size_t i = 0; i < n; i++) {
    int32_t cp = cps[i];
    if (cp == 0 || cp == 0xFFFD || sd_clip_is_control(cp))
      continue;
    if (sd_clip_is_whitespace(cp))
      cp = ' ';
    int cjk = sd_clip_is_cjk(cp);
    if ((cjk && cps_push(&cleaned, ' ') < 0) || cps_push(&cleaned, cp) < 0 ||
        (cjk && cps_push(&cleaned, ' ') < 0))
      goto out_free;
  }
  if (nfc(&cleaned, &normalized) < 0)
    goto out_free;
  /* whitespace_tokenize, lower-case each word, join with single spaces. */
  out->len = 0;
  for (size_t i = 0; i < normalized.len;) {
    if (sd_py_isspace(normalized.data[i])) {
      i++;
      continue;
    }
    size_t end = i;
    while (end < normalized.len && !sd_py_isspace(normalized.data[end]))
      end++;
    if ((out->len && cps_push(out, ' ') < 0) || sd_py_lower(normalized.data + i, end - i, out) < 0)
      goto out_free;
    i = end;
  }
  rc = 0;
out_free:
  sd_codepoints_free(&cleaned);
  sd_codepoints_free(&normalized);
  return rc;
}

/* Whether pattern (lower-case ASCII) matches t at i under IGNORECASE, which folds U+017F LONG S
 * onto 's' (the only non-ASCII character folding onto the pattern's letters). */
static size_t match_literal(const int32_t *t, size_t n, size_t i, const char *pattern) {
  size_t len = strlen(pattern);
  if (n - i < len)
    return 0;
  for (size_t k = 0; k < len; k++) {
    int32_t c = t[i + k], p = (unsigned char)pattern[k];
    int letter = p >= 'a' && p <= 'z';
    if (c != p && !(letter && c == p - 'a' + 'A') && !(p == 's' && c == 0x17F))
      return 0;
  }
  return len;
}

int sd_clip_next_piece(const int32_t *t, size_t n, size_t *pos, size_t *start, size_t *end) {
  static const char *const alternatives[] = {
      "<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  for (size_t i = *pos; i < n; i++) {
    size_t len = 0;
    for (size_t a = 0; a < sizeof alternatives / sizeof alternatives[0] && !len; a++)
      len = match_literal(t, n, i, alternatives[a]);
    if (!len && sd_regex_is_letter(t[i])) {
      while (i + len < n && sd_regex_is_letter(t[i + len]))
        len++;
    } else if (!len && sd_regex_is_number(t[i])) {
      len = 1;
    } else if (!len && sd_regex_is_other(t[i])) {
      while (i + len < n && sd_regex_is_other(t[i + len]))
        len++;
    }
    if (len) {
      *start = i;
      *end = i + len;
      *pos = i + len;
      return 1;
    }
  }
  *pos = n;
  return 0;
}
