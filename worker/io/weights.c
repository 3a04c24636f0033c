/* A component's weights uploaded to a backend, with name lookup and shape checks; or a recorder
 * that lists the tensors a model asks for (see weights.h). */
#include "weights.h"

#include "name_index.h"

#include "../../kernels/error.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sd_weights {
  sd_backend *be; /* NULL for a recorder */
  bool recording; /* a recorder: sd_weights_get records what it is asked for */
  char component[64];
  sd_tensor **tensors; /* (count), each allocated alone so that pointers handed out stay valid
                          while a recorder grows; backend memory in the weight dtype, none for a
                          recorder */
  char **names;        /* (count) */
  size_t count;
  size_t capacity;
  size_t bytes;
  sd_name_index index; /* name -> position */
};

void sd_weights_free(sd_weights *weights) {
  if (!weights)
    return;
  for (size_t i = 0; i < weights->count; i++) {
    if (weights->be)
      sd_tensor_free(weights->be, weights->tensors[i]);
    free(weights->tensors[i]);
    free(weights->names[i]);
  }
  free(weights->tensors);
  free(weights->names);
  sd_name_index_free(&weights->index);
  free(weights);
}

/* Room for one more tensor. */
static int reserve(sd_weights *weights) {
  if (weights->count < weights->capacity)
    return 0;
  size_t capacity = weights->capacity ? weights->capacity * 2 : 256;
  sd_tensor **tensors = realloc(weights->tensors, capacity * sizeof *tensors);
  if (tensors)
    weights->tensors = tensors;
  char **names = realloc(weights->names, capacity * sizeof *names);
  if (names)
    weights->names = names;
  if (!tensors || !names)
    return SD_ERROR("%s: out of memory for %zu tensors", weights->component, capacity);
  weights->capacity = capacity;
  return 0;
}

/* Appends (name, t); on failure nothing is kept. */
static int append(sd_weights *weights, const char *name, const sd_tensor *t) {
  SD_TRY(reserve(weights));
  sd_tensor *copy = malloc(sizeof *copy);
  char *owned = strdup(name);
  if (!copy || !owned) {
    free(copy);
    free(owned);
    return SD_ERROR("out of memory");
  }
  *copy = *t;
  size_t i = weights->count;
  if (sd_name_index_put(&weights->index, owned, i) != 0) {
    free(copy);
    free(owned);
    return -1;
  }
  weights->tensors[i] = copy;
  weights->names[i] = owned;
  weights->count++;
  weights->bytes += sd_tensor_bytes(t);
  return 0;
}

/* Allocates and uploads one record, converting to the backend's weight dtype. */
static int upload_one(sd_weights *weights, const sd_st_tensor *src) {
  sd_backend *be = weights->be;
  sd_tensor t = sd_tensor_make(be->ops->weight_dtype, src->ndim, src->shape);
  SD_TRY(sd_tensor_alloc_persistent(be, &t));
  if (sd_tensor_upload(be, &t, src->dtype, src->data) != 0 || append(weights, src->name, &t) != 0) {
    sd_tensor_free(be, &t);
    return -1;
  }
  return 0;
}

int sd_weights_upload(sd_backend *be, const sd_tensor_map *map, const char *component,
                      sd_weights **out) {
  *out = NULL;
  sd_weights *weights = calloc(1, sizeof *weights);
  if (!weights)
    return SD_ERROR("%s: out of memory", component);
  weights->be = be;
  snprintf(weights->component, sizeof weights->component, "%s", component);
  for (size_t i = 0; i < sd_tensor_map_count(map); i++) {
    const sd_st_tensor *src = sd_tensor_map_at(map, i);
    if (upload_one(weights, src) != 0) {
      sd_error_context("%s: tensor '%s'", component, src->name);
      sd_weights_free(weights);
      return -1;
    }
  }
  *out = weights;
  return 0;
}

int sd_weights_recorder_create(sd_weights **out) {
  *out = calloc(1, sizeof **out);
  if (!*out)
    return SD_ERROR("out of memory creating a weights recorder");
  (*out)->recording = true;
  snprintf((*out)->component, sizeof(*out)->component, "recorder");
  return 0;
}

/* Recorder: adds a memory-less float32 tensor of exactly the asked shape. */
static int record_one(sd_weights *weights, const char *name, int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > SD_MAX_DIMS)
    return SD_ERROR("recorder: tensor '%s' asked for with %d dimensions", name, ndim);
  for (int i = 0; i < ndim; i++)
    if (shape[i] < 0)
      return SD_ERROR("recorder: tensor '%s': shape entry %d is a wildcard; a recorder needs "
                      "exact shapes",
                      name, i);
  sd_tensor record = sd_tensor_make(SD_DTYPE_F32, ndim, shape);
  return append(weights, name, &record);
}

size_t sd_weights_count(const sd_weights *weights) {
  return weights->count;
}

const char *sd_weights_name_at(const sd_weights *weights, size_t index) {
  return index < weights->count ? weights->names[index] : NULL;
}

const sd_tensor *sd_weights_at(const sd_weights *weights, size_t index) {
  return index < weights->count ? weights->tensors[index] : NULL;
}

const sd_tensor *sd_weights_find(const sd_weights *weights, const char *name) {
  size_t index;
  if (!sd_name_index_get(&weights->index, name, &index))
    return NULL;
  return weights->tensors[index];
}

/* "(32, *, 3, 3)": the expected shape, * for entries that match anything. */
static void expected_shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
  size_t used = (size_t)snprintf(buf, size, "(");
  for (int i = 0; i < ndim && used < size; i++) {
    const char *sep = i ? ", " : "";
    if (shape[i] < 0)
      used += (size_t)snprintf(buf + used, size - used, "%s*", sep);
    else
      used += (size_t)snprintf(buf + used, size - used, "%s%lld", sep, (long long)shape[i]);
  }
  if (used < size)
    snprintf(buf + used, size - used, ")");
}

int sd_weights_get(const sd_weights *weights, const sd_tensor **out, int ndim, const int64_t *shape,
                   const char *name_fmt, ...) {
  *out = NULL;
  char name[512];
  va_list args;
  va_start(args, name_fmt);
  int n = vsnprintf(name, sizeof name, name_fmt, args);
  va_end(args);
  if (n < 0 || (size_t)n >= sizeof name)
    return SD_ERROR("%s: tensor name too long (%s...)", weights->component, name);
  const sd_tensor *t = sd_weights_find(weights, name);
  if (!t && weights->recording) {
    /* the API hands models a const sd_weights; a recorder (always heap-allocated, never a const
     * object) is the one kind that changes on a lookup */
    SD_TRY(record_one((sd_weights *)weights, name, ndim, shape));
    t = weights->tensors[weights->count - 1];
  }
  if (!t)
    return SD_ERROR("%s: tensor '%s' missing from the checkpoint", weights->component, name);
  int match = t->ndim == ndim;
  for (int i = 0; match && i < ndim; i++)
    match = shape[i] < 0 || shape[i] == t->shape[i];
  if (!match) {
    char want[128], have[128];
    expected_shape_str(ndim, shape, want, sizeof want);
    sd_tensor_shape_str(t, have, sizeof have);
    return SD_ERROR("%s: tensor '%s': expected %s, checkpoint has %s", weights->component, name,
                    want, have);
  }
  *out = t;
  return 0;
}

size_t sd_weights_bytes(const sd_weights *weights) {
  return weights->bytes;
}
