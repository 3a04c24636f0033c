/* CLIP normalisation and pre-tokenisation as transformers >= 5 runs them (see
 * clip_pretokenize.h). */
#include "clip_pretokenize.h"

#include "../../kernels/error.h"
#include "clip_chars.h"

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

int sd_utf8_decode(const char *text, size_t len, sd_codepoints *out) {
  out->len = 0;
  SD_TRY(cps_reserve(out, len + 1)); /* + 1: data is never NULL, even for "" */
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

/* Canonical ordering: a stable sort of each run of non-zero combining classes by class. */
static void canonical_order(int32_t *cps, size_t n) {
  for (size_t i = 1; i < n; i++) {
    int32_t cp = cps[i];
    int cc = sd_clip_combining_class(cp);
    if (cc == 0)
      continue;
    size_t j = i;
    while (j > 0 && sd_clip_combining_class(cps[j - 1]) > cc) {
      cps[j] = cps[j - 1];
      j--;
    }
    cps[j] = cp;
  }
}

/* Canonical composition in place (UAX #15): each character composes with the last starter
 * unless a character between them has class 0 or a class not below its own. Returns the new
 * length. */
static size_t compose(int32_t *cps, size_t n) {
  size_t out = 0, starter = 0;
  int have_starter = 0, last_cc = -1; /* -1: nothing kept since the starter */
  for (size_t i = 0; i < n; i++) {
    int32_t cp = cps[i];
    int cc = sd_clip_combining_class(cp);
    if (have_starter && (last_cc == -1 || last_cc < cc)) {
      int32_t composite = sd_clip_compose(cps[starter], cp);
      if (composite >= 0) {
        cps[starter] = composite;
        continue;
      }
    }
    cps[out] = cp;
    if (cc == 0) {
      starter = out;
      have_starter = 1;
      last_cc = -1;
    } else {
      last_cc = cc;
    }
    out++;
  }
  return out;
}

int sd_clip_nfc(const int32_t *cps, size_t n, sd_codepoints *out) {
  out->len = 0;
  SD_TRY(cps_reserve(out, 4 * n));
  for (size_t i = 0; i < n; i++)
    out->len += (size_t)sd_clip_decompose(cps[i], out->data + out->len);
  canonical_order(out->data, out->len);
  out->len = compose(out->data, out->len);
  return 0;
}

int sd_clip_normalize(const int32_t *cps, size_t n, sd_codepoints *out) {
  sd_codepoints composed = {0};
  if (sd_clip_nfc(cps, n, &composed) < 0 || cps_reserve(out, 2 * composed.len) < 0) {
    sd_codepoints_free(&composed);
    return -1;
  }
  out->len = 0;
  for (size_t i = 0; i < composed.len; i++) {
    int32_t cp = composed.data[i];
    if (sd_clip_is_space(cp)) {
      if (i == 0 || !sd_clip_is_space(composed.data[i - 1]))
        out->data[out->len++] = ' ';
      continue;
    }
    out->len += (size_t)sd_clip_lower(cp, out->data + out->len);
  }
  sd_codepoints_free(&composed);
  return 0;
}

static int is_other(int32_t cp) {
  return !sd_clip_is_space(cp) && !sd_clip_is_letter(cp) && !sd_clip_is_number(cp);
}

/* Length of the ASCII literal at t[i] (0 when it does not match). */
static size_t match_literal(const int32_t *t, size_t n, size_t i, const char *literal) {
  size_t len = strlen(literal);
  if (n - i < len)
    return 0;
  for (size_t k = 0; k < len; k++)
    if (t[i + k] != (unsigned char)literal[k])
      return 0;
  return len;
}

int sd_clip_next_piece(const int32_t *t, size_t n, size_t *pos, size_t *start, size_t *end) {
  static const char *const specials[] = {"<|startoftext|>", "<|endoftext|>"};
  static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  size_t i = *pos;
  while (i < n && sd_clip_is_space(t[i]))
    i++;
  if (i == n) {
    *pos = n;
    return 0;
  }
  size_t len = 0;
  for (size_t a = 0; a < 2 && !len; a++)
    len = match_literal(t, n, i, specials[a]);
  for (size_t a = 0; a < sizeof contractions / sizeof contractions[0] && !len; a++)
    len = match_literal(t, n, i, contractions[a]);
  if (!len && sd_clip_is_letter(t[i])) {
    while (i + len < n && sd_clip_is_letter(t[i + len]))
      len++;
  } else if (!len && sd_clip_is_number(t[i])) {
    len = 1;
  } else if (!len) {
    while (i + len < n && is_other(t[i + len]))
      len++;
  }
  *start = i;
  *end = i + len;
  *pos = i + len;
  return 1;
}
