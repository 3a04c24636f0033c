/* Character data of the tokenizers pipeline on top of utf8proc (see clip_chars.h). */
#include "clip_chars.h"

#include <utf8proc.h>

typedef struct range {
  int32_t first, last;
} range;

static int in_ranges(const range *ranges, int count, int32_t cp) {
  int lo = 0, hi = count - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (cp < ranges[mid].first)
      hi = mid - 1;
    else if (cp > ranges[mid].last)
      lo = mid + 1;
    else
      return 1;
  }
  return 0;
}

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Letters (Lu, Ll, Lt, Lm, Lo) that Unicode 15.1 and 16.0 added, which Oniguruma knows and
 * utf8proc 2.8 does not: CJK Extension I, Garay, Tulu-Tigalari, Sunuwar, Egyptian hieroglyphs
 * extended-A, Gurung Khema, Kirat Rai, Ol Onal, Todhri, and a few Latin and Cyrillic letters. */
static const range letters_16[] = {
    {0x1C89, 0x1C8A},   {0xA7CB, 0xA7CD},   {0xA7DA, 0xA7DC},   {0x105C0, 0x105F3},
    {0x10D4A, 0x10D65}, {0x10D6F, 0x10D85}, {0x10EC2, 0x10EC4}, {0x11380, 0x11389},
    {0x1138B, 0x1138B}, {0x1138E, 0x1138E}, {0x11390, 0x113B5}, {0x113B7, 0x113B7},
    {0x113D1, 0x113D1}, {0x113D3, 0x113D3}, {0x11BC0, 0x11BE0}, {0x13460, 0x143FA},
    {0x16100, 0x1611D}, {0x16D40, 0x16D6C}, {0x18CFF, 0x18CFF}, {0x1E5D0, 0x1E5ED},
    {0x1E5F0, 0x1E5F0}, {0x2EBF0, 0x2EE5D},
};

/* Numbers (Nd, Nl, No) that Unicode 16.0 added. */
static const range numbers_16[] = {
    {0x10D40, 0x10D49}, {0x116D0, 0x116E3}, {0x11BF0, 0x11BF9}, {0x16130, 0x16139},
    {0x16D70, 0x16D79}, {0x1CCF0, 0x1CCF9}, {0x1E5F1, 0x1E5FA},
};

/* Combining marks (canonical combining class > 0) that Unicode 11.0 to 15.0 added: the
 * normalisation crate's data (Unicode 10.0) gives them class 0, so they neither reorder nor let
 * a later mark compose across them. */
static const range marks_after_10[] = {
    {0x07FD, 0x07FD},   {0x0898, 0x089F},   {0x08CA, 0x08D3},   {0x09FE, 0x09FE},
    {0x0C3C, 0x0C3C},   {0x0D3B, 0x0D3C},   {0x0EBA, 0x0EBA},   {0x1715, 0x1715},
    {0x1ABF, 0x1ACE},   {0x1DF6, 0x1DFA},   {0xA82C, 0xA82C},   {0x10D24, 0x10D27},
    {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50}, {0x10F82, 0x10F85},
    {0x11070, 0x11070}, {0x1133B, 0x1133B}, {0x1145E, 0x1145E}, {0x11839, 0x1183A},
    {0x1193D, 0x1193E}, {0x11943, 0x11943}, {0x119E0, 0x119E0}, {0x11A34, 0x11A34},
    {0x11A47, 0x11A47}, {0x11A99, 0x11A99}, {0x11D42, 0x11D42}, {0x11D44, 0x11D45},
    {0x11D97, 0x11D97}, {0x11F41, 0x11F42}, {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F},
    {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF},
};

/* The one canonical decomposition added after Unicode 10.0 that utf8proc 2.8 knows (13.0):
 * DIVES AKURU VOWEL SIGN O = U+11935 U+11930. */
#define DIVES_AKURU_O       0x11938
#define DIVES_AKURU_E       0x11935
#define DIVES_AKURU_AA_SIGN 0x11930

/* Lower-case mappings that Unicode 16.0 and 17.0 added. */
typedef struct case_pair {
  int32_t upper, lower;
} case_pair;

static const case_pair lower_17[] = {
    {0x1C89, 0x1C8A}, {0xA7CB, 0x0264}, {0xA7CC, 0xA7CD}, {0xA7CE, 0xA7CF},
    {0xA7D2, 0xA7D3}, {0xA7D4, 0xA7D5}, {0xA7DA, 0xA7DB}, {0xA7DC, 0x019B},
};

/* Whole alphabets with a fixed offset: Garay (16.0) and Beria Erfe (17.0). */
static const struct {
  int32_t first, last, offset;
} lower_17_blocks[] = {{0x10D50, 0x10D65, 0x20}, {0x16EA0, 0x16EB8, 0x1B}};

int sd_clip_is_space(int32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

int sd_clip_is_letter(int32_t cp) {
  switch (utf8proc_category(cp)) {
  case UTF8PROC_CATEGORY_LU:
  case UTF8PROC_CATEGORY_LL:
  case UTF8PROC_CATEGORY_LT:
  case UTF8PROC_CATEGORY_LM:
  case UTF8PROC_CATEGORY_LO:
    return 1;
  default:
    return in_ranges(letters_16, COUNT(letters_16), cp);
  }
}

int sd_clip_is_number(int32_t cp) {
  switch (utf8proc_category(cp)) {
  case UTF8PROC_CATEGORY_ND:
  case UTF8PROC_CATEGORY_NL:
  case UTF8PROC_CATEGORY_NO:
    return 1;
  default:
    return in_ranges(numbers_16, COUNT(numbers_16), cp);
  }
}

int sd_clip_lower(int32_t cp, int32_t out[2]) {
  if (cp == 0x130) {
    /* SpecialCasing's unconditional mapping; utf8proc's simple one gives only 'i'. */
    out[0] = 'i';
    out[1] = 0x307;
    return 2;
  }
  for (int i = 0; i < COUNT(lower_17); i++)
    if (lower_17[i].upper == cp) {
      out[0] = lower_17[i].lower;
      return 1;
    }
  for (int i = 0; i < COUNT(lower_17_blocks); i++)
    if (cp >= lower_17_blocks[i].first && cp <= lower_17_blocks[i].last) {
      out[0] = cp + lower_17_blocks[i].offset;
      return 1;
    }
  out[0] = utf8proc_tolower(cp);
  return 1;
}

int sd_clip_combining_class(int32_t cp) {
  if (cp < 0 || cp > 0x10FFFF || in_ranges(marks_after_10, COUNT(marks_after_10), cp))
    return 0;
  return utf8proc_get_property(cp)->combining_class;
}

int sd_clip_decompose(int32_t cp, int32_t out[4]) {
  if (cp == DIVES_AKURU_O) {
    out[0] = cp;
    return 1;
  }
  int last_boundclass = 0;
  utf8proc_ssize_t n = utf8proc_decompose_char(cp, out, 4, UTF8PROC_DECOMPOSE, &last_boundclass);
  if (n < 1 || n > 4) {
    /* Not reached: canonical decompositions are at most 4 long, and cp is valid. */
    out[0] = cp;
    return 1;
  }
  return (int)n;
}

int32_t sd_clip_compose(int32_t starter, int32_t next) {
  if (starter == DIVES_AKURU_E && next == DIVES_AKURU_AA_SIGN)
    return -1;
  if (utf8proc_get_property(starter)->combining_class != 0)
    return -1;
  utf8proc_int32_t pair[2] = {starter, next};
  return utf8proc_normalize_utf32(pair, 2, UTF8PROC_COMPOSE | UTF8PROC_STABLE) == 1 ? pair[0] : -1;
}
