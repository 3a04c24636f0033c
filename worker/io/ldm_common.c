/* Lookup and naming helpers shared by the single-file key maps (see ldm_checkpoint.h). */
#include "ldm_checkpoint.h"

#include "../../kernels/error.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const sd_st_tensor *sd_ldm_find(const sd_safetensors *file, const char *name_fmt, ...) {
  char name[512];
  va_list args;
  va_start(args, name_fmt);
  int n = vsnprintf(name, sizeof name, name_fmt, args);
  va_end(args);
  if (n < 0 || (size_t)n >= sizeof name)
    return NULL;
  return sd_safetensors_find(file, name);
}

int sd_ldm_require(const sd_safetensors *file, const sd_st_tensor **out, int ndim,
                   const char *name_fmt, ...) {
  char name[512];
  va_list args;
  va_start(args, name_fmt);
  int n = vsnprintf(name, sizeof name, name_fmt, args);
  va_end(args);
  if (n < 0 || (size_t)n >= sizeof name)
    return SD_ERROR("%s: tensor name too long (%s...)", sd_safetensors_path(file), name);
  const sd_st_tensor *t = sd_safetensors_find(file, name);
  if (!t)
    return SD_ERROR("%s: tensor '%s' missing", sd_safetensors_path(file), name);
  if (t->ndim != ndim)
    return SD_ERROR("%s: tensor '%s' has %d dimensions, expected %d", sd_safetensors_path(file),
                    name, t->ndim, ndim);
  *out = t;
  return 0;
}

int sd_ldm_parse_index(const char **s, int *out) {
  const char *p = *s;
  if (!isdigit((unsigned char)*p))
    return -1;
  long v = 0;
  while (isdigit((unsigned char)*p) && v < 100000)
    v = v * 10 + (*p++ - '0');
  if (*p != '.')
    return -1;
  *out = (int)v;
  *s = p + 1;
  return 0;
}

int sd_ldm_name(char *out, size_t size, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  int n = vsnprintf(out, size, fmt, args);
  va_end(args);
  if (n < 0 || (size_t)n >= size)
    return SD_ERROR("diffusers name too long (%s...)", out);
  return 0;
}

int sd_ldm_count_indexed(const sd_safetensors *file, const char *prefix) {
  size_t len = strlen(prefix);
  int count = 0;
  for (size_t k = 0; k < sd_safetensors_count(file); k++) {
    const char *s = sd_safetensors_at(file, k)->name;
    int i;
    if (strncmp(s, prefix, len) != 0)
      continue;
    s += len;
    if (sd_ldm_parse_index(&s, &i) == 0 && i + 1 > count)
      count = i + 1;
  }
  return count;
}
