/* Lookup and naming helpers shared by the single-file key maps, and the export list (see
 * ldm_checkpoint.h). */
#include "ldm_checkpoint.h"

#include "../../kernels/error.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Export ----------------------------------------------------------------------------------- */

int sd_ldm_prefixes_add(sd_ldm_prefixes *p, const char *ldm, const char *diffusers, int kind) {
  if (p->count == p->capacity) {
    size_t capacity = p->capacity ? 2 * p->capacity : 64;
    sd_ldm_prefix_pair *pairs = realloc(p->pairs, capacity * sizeof *pairs);
    if (!pairs)
      return SD_ERROR("out of memory");
    p->pairs = pairs;
    p->capacity = capacity;
  }
  sd_ldm_prefix_pair *pair = &p->pairs[p->count];
  if (strlen(ldm) >= sizeof pair->ldm || strlen(diffusers) >= sizeof pair->diffusers)
    return SD_ERROR("key prefix too long (%s)", ldm);
  strcpy(pair->ldm, ldm);
  strcpy(pair->diffusers, diffusers);
  pair->kind = kind;
  p->count++;
  return 0;
}

void sd_ldm_prefixes_free(sd_ldm_prefixes *p) {
  free(p->pairs);
  memset(p, 0, sizeof *p);
}

int sd_ldm_export_add(sd_ldm_export *out, const char *name, sd_dtype dtype, int ndim,
                      const int64_t *shape, const void *data, size_t bytes) {
  if (out->count == out->capacity) {
    size_t capacity = out->capacity ? 2 * out->capacity : 256;
    sd_st_tensor *tensors = realloc(out->tensors, capacity * sizeof *tensors);
    if (!tensors)
      return SD_ERROR("out of memory");
    out->tensors = tensors;
    out->capacity = capacity;
  }
  char *copy = strdup(name);
  if (!copy)
    return SD_ERROR("out of memory");
  sd_st_tensor *t = &out->tensors[out->count++];
  memset(t, 0, sizeof *t);
  t->name = copy;
  t->dtype = dtype;
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++)
    t->shape[d] = shape[d];
  t->data = data;
  t->bytes = bytes;
  return 0;
}

void *sd_ldm_export_buffer(sd_ldm_export *out, size_t bytes) {
  void **buffers = realloc(out->buffers, (out->n_buffers + 1) * sizeof *buffers);
  if (!buffers) {
    SD_ERROR("out of memory");
    return NULL;
  }
  out->buffers = buffers;
  void *buffer = malloc(bytes ? bytes : 1);
  if (!buffer) {
    SD_ERROR("out of memory (%zu bytes)", bytes);
    return NULL;
  }
  out->buffers[out->n_buffers++] = buffer;
  return buffer;
}

void sd_ldm_export_free(sd_ldm_export *out) {
  for (size_t i = 0; i < out->count; i++)
    free((char *)out->tensors[i].name);
  for (size_t i = 0; i < out->n_buffers; i++)
    free(out->buffers[i]);
  free(out->tensors);
  free(out->buffers);
  memset(out, 0, sizeof *out);
}

int sd_ldm_export_renamed(sd_ldm_export *out, const char *component, const char *model_prefix,
                          const sd_ldm_prefixes *pairs, const sd_tensor_map *map) {
  char name[512];
  for (size_t k = 0; k < sd_tensor_map_count(map); k++) {
    const sd_st_tensor *t = sd_tensor_map_at(map, k);
    const sd_ldm_prefix_pair *best = NULL;
    for (size_t i = 0; i < pairs->count; i++) {
      const sd_ldm_prefix_pair *pair = &pairs->pairs[i];
      size_t len = strlen(pair->diffusers);
      if (strncmp(t->name, pair->diffusers, len) == 0 && (!best || len > strlen(best->diffusers)))
        best = pair;
    }
    if (!best)
      return SD_ERROR("%s tensor '%s' has no original single-file name (not in the layout of "
                      "the model's config)",
                      component, t->name);
    SD_TRY(sd_ldm_name(name, sizeof name, "%s%s%s", model_prefix, best->ldm,
                       t->name + strlen(best->diffusers)));
    int64_t shape[SD_MAX_DIMS];
    int ndim = t->ndim;
    for (int d = 0; d < ndim; d++)
      shape[d] = t->shape[d];
    if (best->kind == 1 && ndim == 2) { /* linear (C, C) -> 1x1 conv (C, C, 1, 1): same bytes */
      shape[2] = shape[3] = 1;
      ndim = 4;
    }
    SD_TRY(sd_ldm_export_add(out, name, t->dtype, ndim, shape, t->data, t->bytes));
  }
  return 0;
}
