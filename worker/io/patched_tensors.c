/* Float32 copies of tensor-map records, owned apart from the mmapped files (see
 * patched_tensors.h). */
#include "patched_tensors.h"

#include "name_index.h"

#include "../../kernels/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sd_patched {
  float **buffers; /* (count) */
  char **keys;     /* (count) "<map address>/<name>" */
  size_t count, capacity;
  sd_name_index index; /* key -> position */
};

int sd_patched_create(sd_patched **out) {
  *out = calloc(1, sizeof **out);
  return *out ? 0 : SD_ERROR("out of memory");
}

void sd_patched_free(sd_patched *patched) {
  if (!patched)
    return;
  for (size_t i = 0; i < patched->count; i++) {
    free(patched->buffers[i]);
    free(patched->keys[i]);
  }
  free(patched->buffers);
  free(patched->keys);
  sd_name_index_free(&patched->index);
  free(patched);
}

/* Takes ownership of buffer under key. */
static int keep(sd_patched *patched, const char *key, float *buffer) {
  if (patched->count == patched->capacity) {
    size_t capacity = patched->capacity ? 2 * patched->capacity : 64;
    float **buffers = realloc(patched->buffers, capacity * sizeof *buffers);
    if (buffers)
      patched->buffers = buffers;
    char **keys = realloc(patched->keys, capacity * sizeof *keys);
    if (keys)
      patched->keys = keys;
    if (!buffers || !keys)
      return SD_ERROR("out of memory");
    patched->capacity = capacity;
  }
  char *owned = strdup(key);
  if (!owned || sd_name_index_put(&patched->index, owned, patched->count) < 0) {
    free(owned);
    return SD_ERROR("out of memory");
  }
  patched->buffers[patched->count] = buffer;
  patched->keys[patched->count++] = owned;
  return 0;
}

static int make_key(char *key, size_t size, const sd_tensor_map *map, const char *name) {
  int n = snprintf(key, size, "%p/%s", (const void *)map, name);
  return n < 0 || (size_t)n >= size ? SD_ERROR("tensor name too long: %s", name) : 0;
}

int sd_patched_f32(sd_patched *patched, sd_tensor_map *map, const char *name, float **out) {
  char key[600];
  SD_TRY(make_key(key, sizeof key, map, name));
  size_t at;
  if (sd_name_index_get(&patched->index, key, &at)) {
    *out = patched->buffers[at];
    return 0;
  }
  const sd_st_tensor *t = sd_tensor_map_get(map, name);
  if (!t)
    return SD_ERROR("no tensor '%s'", name);
  sd_tensor header = sd_tensor_make(t->dtype, t->ndim, t->shape);
  size_t n = (size_t)sd_tensor_numel(&header);
  float *copy = malloc((n ? n : 1) * sizeof *copy);
  if (!copy)
    return SD_ERROR("out of memory for a float32 copy of '%s'", name);
  sd_convert_to_f32(t->dtype, t->data, copy, n);
  int64_t shape[SD_MAX_DIMS];
  int ndim = t->ndim;
  memcpy(shape, t->shape, sizeof shape);
  if (keep(patched, key, copy) < 0) {
    free(copy);
    return -1;
  }
  SD_TRY(sd_tensor_map_put(map, name, SD_DTYPE_F32, ndim, shape, copy));
  *out = copy;
  return 0;
}

int sd_patched_put(sd_patched *patched, sd_tensor_map *map, const char *name, int ndim,
                   const int64_t *shape, float **out) {
  char key[600];
  SD_TRY(make_key(key, sizeof key, map, name));
  size_t at;
  if (sd_name_index_get(&patched->index, key, &at))
    return SD_ERROR("tensor '%s' replaced twice", name);
  sd_tensor header = sd_tensor_make(SD_DTYPE_F32, ndim, shape);
  size_t n = (size_t)sd_tensor_numel(&header);
  float *buffer = calloc(n ? n : 1, sizeof *buffer);
  if (!buffer)
    return SD_ERROR("out of memory for tensor '%s'", name);
  if (keep(patched, key, buffer) < 0) {
    free(buffer);
    return -1;
  }
  SD_TRY(sd_tensor_map_put(map, name, SD_DTYPE_F32, ndim, shape, buffer));
  *out = buffer;
  return 0;
}
