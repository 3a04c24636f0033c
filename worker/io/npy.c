/* The .npy reader of npy.h. Format (NumPy's format.py): the magic "\x93NUMPY", a major and minor
 * version byte (1.0: 2-byte header length; 2.0 and 3.0: 4-byte), a little-endian header length,
 * an ASCII (3.0: UTF-8) Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...), }
 * padded with spaces and a newline, then the raw data. */
#include "npy.h"

#include "../../kernels/error.h"
#include "../../kernels/file.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Header dicts NumPy writes are well under this; the limit bounds the parse. */
#define NPY_MAX_HEADER 65536

typedef struct npy_cursor {
  const char *p, *end;
} npy_cursor;

static void skip_space(npy_cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
    c->p++;
}

static bool take(npy_cursor *c, char ch) {
  skip_space(c);
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return true;
  }
  return false;
}

/* A quoted string ('...' or "...") into out (at most size - 1 bytes). */
static bool take_string(npy_cursor *c, char *out, size_t size) {
  skip_space(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
    return false;
  char quote = *c->p++;
  size_t n = 0;
  while (c->p < c->end && *c->p != quote) {
    if (n + 1 >= size)
      return false;
    out[n++] = *c->p++;
  }
  if (c->p >= c->end)
    return false;
  c->p++;
  out[n] = '\0';
  return true;
}

/* A non-negative decimal integer of at most 9 digits. */
static bool take_int(npy_cursor *c, int64_t *out) {
  skip_space(c);
  int64_t v = 0;
  int digits = 0;
  while (c->p < c->end && isdigit((unsigned char)*c->p) && digits < 10) {
    v = v * 10 + (*c->p++ - '0');
    digits++;
  }
  if (digits == 0 || digits > 9)
    return false;
  *out = v;
  return true;
}

static bool take_word(npy_cursor *c, const char *word) {
  skip_space(c);
  size_t n = strlen(word);
  if ((size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0) {
    c->p += n;
    return true;
  }
  return false;
}

/* Parses the header dict; fills descr, fortran, shape (ndim at most 3). */
static int parse_header(const char *path, const char *text, size_t len, char *descr, size_t dsize,
                        bool *fortran, int64_t *shape, int *ndim) {
  npy_cursor c = {text, text + len};
  bool have_descr = false, have_order = false, have_shape = false;
  if (!take(&c, '{'))
    return SD_ERROR("%s: .npy header is not a dict", path);
  while (!take(&c, '}')) {
    char key[32];
    if (!take_string(&c, key, sizeof key) || !take(&c, ':'))
      return SD_ERROR("%s: .npy header: malformed key", path);
    if (strcmp(key, "descr") == 0 && !have_descr) {
      if (!take_string(&c, descr, dsize))
        return SD_ERROR("%s: .npy header: 'descr' is not a simple dtype string (structured "
                        "arrays are not depth maps)",
                        path);
      have_descr = true;
    } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
      if (take_word(&c, "True"))
        *fortran = true;
      else if (take_word(&c, "False"))
        *fortran = false;
      else
        return SD_ERROR("%s: .npy header: 'fortran_order' is not True or False", path);
      have_order = true;
    } else if (strcmp(key, "shape") == 0 && !have_shape) {
      if (!take(&c, '('))
        return SD_ERROR("%s: .npy header: 'shape' is not a tuple", path);
      *ndim = 0;
      while (!take(&c, ')')) {
        if (*ndim == 3)
          return SD_ERROR("%s: .npy array has more than 3 dimensions; a depth map is (H, W) or "
                          "(1, H, W)",
                          path);
        if (!take_int(&c, &shape[*ndim]))
          return SD_ERROR("%s: .npy header: 'shape' entry is not a size", path);
        (*ndim)++;
        if (!take(&c, ',')) {
          if (!take(&c, ')'))
            return SD_ERROR("%s: .npy header: malformed 'shape'", path);
          break;
        }
      }
      have_shape = true;
    } else {
      return SD_ERROR("%s: .npy header: unexpected or repeated key '%s'", path, key);
    }
    if (!take(&c, ',')) {
      if (!take(&c, '}'))
        return SD_ERROR("%s: .npy header: malformed dict", path);
      break;
    }
  }
  if (!have_descr || !have_order || !have_shape)
    return SD_ERROR("%s: .npy header lacks '%s'", path,
                    !have_descr   ? "descr"
                    : !have_order ? "fortran_order"
                                  : "shape");
  return 0;
}

int sd_npy_read_depth(const char *path, float **data, int *height, int *width) {
  *data = NULL;
  char *file;
  size_t len;
  /* the largest accepted map plus the largest header */
  size_t max_bytes = (size_t)SD_NPY_MAX_SIDE * SD_NPY_MAX_SIDE * 4 + NPY_MAX_HEADER + 16;
  SD_TRY(sd_file_read(path, max_bytes, &file, &len));
  int rc = -1;
  const unsigned char *u = (const unsigned char *)file;
  if (len < 10 || memcmp(file, "\x93NUMPY", 6) != 0) {
    SD_ERROR("%s: not a NumPy .npy file (no \\x93NUMPY magic)", path);
    goto out;
  }
  int major = u[6];
  size_t header_len, start;
  if (major == 1) {
    header_len = (size_t)u[8] | (size_t)u[9] << 8;
    start = 10;
  } else if ((major == 2 || major == 3) && len >= 12) {
    header_len = (size_t)u[8] | (size_t)u[9] << 8 | (size_t)u[10] << 16 | (size_t)u[11] << 24;
    start = 12;
  } else {
    SD_ERROR("%s: .npy format version %d.%d (sdbatch reads 1.0, 2.0 and 3.0)", path, major, u[7]);
    goto out;
  }
  if (header_len > NPY_MAX_HEADER || start + header_len > len) {
    SD_ERROR("%s: .npy header of %zu bytes runs past the file (%zu bytes)", path, header_len, len);
    goto out;
  }
  char descr[32];
  bool fortran = false;
  int64_t shape[3];
  int ndim = 0;
  if (parse_header(path, file + start, header_len, descr, sizeof descr, &fortran, shape, &ndim) < 0)
    goto out;
  if (strcmp(descr, "<f4") != 0) {
    SD_ERROR("%s: .npy dtype '%s'; a depth map must be little-endian float32 ('<f4', "
             "np.float32)",
             path, descr);
    goto out;
  }
  if (fortran) {
    SD_ERROR("%s: .npy array is in Fortran order; save it C-ordered "
             "(np.ascontiguousarray)",
             path);
    goto out;
  }
  if (ndim == 3 && shape[0] != 1) {
    SD_ERROR("%s: .npy shape (%lld, %lld, %lld): a depth map is (H, W) or (1, H, W)", path,
             (long long)shape[0], (long long)shape[1], (long long)shape[2]);
    goto out;
  }
  if (ndim < 2) {
    SD_ERROR("%s: .npy array has %d dimension%s; a depth map is (H, W) or (1, H, W)", path, ndim,
             ndim == 1 ? "" : "s");
    goto out;
  }
  int64_t h = shape[ndim - 2], w = shape[ndim - 1];
  if (h < 1 || w < 1 || h > SD_NPY_MAX_SIDE || w > SD_NPY_MAX_SIDE) {
    SD_ERROR("%s: .npy depth map of %lldx%lld (sides 1 to %d)", path, (long long)h, (long long)w,
             SD_NPY_MAX_SIDE);
    goto out;
  }
  size_t want = (size_t)(h * w) * 4, have = len - start - header_len;
  if (have != want) {
    SD_ERROR("%s: .npy data is %zu bytes, a %lldx%lld float32 map needs %zu (%s)", path, have,
             (long long)h, (long long)w, want, have < want ? "truncated" : "trailing bytes");
    goto out;
  }
  float *values = malloc(want);
  if (!values) {
    SD_ERROR("%s: out of memory for a %lldx%lld depth map", path, (long long)h, (long long)w);
    goto out;
  }
  const unsigned char *src = u + start + header_len;
  for (size_t i = 0; i < (size_t)(h * w); i++) {
    uint32_t bits = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 |
                    (uint32_t)src[4 * i + 2] << 16 | (uint32_t)src[4 * i + 3] << 24;
    memcpy(&values[i], &bits, sizeof bits);
    if (!isfinite(values[i])) {
      SD_ERROR("%s: depth value at row %zu, column %zu is not finite", path, i / (size_t)w,
               i % (size_t)w);
      free(values);
      goto out;
    }
  }
  *data = values;
  *height = (int)h;
  *width = (int)w;
  rc = 0;
out:
  free(file);
  return rc;
}
