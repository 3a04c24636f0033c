/* The gradient store of a model's weights (grads.h): an array in the weights' order, and the same
 * entries sorted by the weight's address for the model's lookups. */
#include "grads.h"

#include "../../kernels/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct grad_entry {
  const char *name;        /* borrowed from the weights */
  const sd_tensor *weight; /* borrowed from the weights */
  sd_tensor grad;          /* persistent, the weight's shape */
} grad_entry;

struct sd_grads {
  sd_backend *be;
  grad_entry *entries;     /* (count), in the weights' order */
  grad_entry **by_address; /* (count) the entries sorted by weight address */
  size_t count;
  size_t bytes;
  size_t max_numel;
};

static int compare_address(const void *a, const void *b) {
  uintptr_t wa = (uintptr_t)(*(grad_entry *const *)a)->weight;
  uintptr_t wb = (uintptr_t)(*(grad_entry *const *)b)->weight;
  return wa < wb ? -1 : wa > wb;
}

void sd_grads_free(sd_grads *grads) {
  if (!grads)
    return;
  for (size_t i = 0; i < grads->count; i++)
    sd_tensor_free(grads->be, &grads->entries[i].grad);
  free(grads->entries);
  free(grads->by_address);
  free(grads);
}

int sd_grads_create(sd_backend *be, const sd_weights *weights, sd_grads_filter wants, void *user,
                    sd_grads **out) {
  *out = NULL;
  size_t total = sd_weights_count(weights);
  sd_grads *g = calloc(1, sizeof *g);
  if (!g)
    return SD_ERROR("gradients: out of memory");
  g->be = be;
  g->entries = calloc(total ? total : 1, sizeof *g->entries);
  g->by_address = calloc(total ? total : 1, sizeof *g->by_address);
  if (!g->entries || !g->by_address) {
    sd_grads_free(g);
    return SD_ERROR("gradients: out of memory for %zu entries", total);
  }
  for (size_t i = 0; i < total; i++) {
    const char *name = sd_weights_name_at(weights, i);
    if (wants && !wants(name, user))
      continue;
    const sd_tensor *w = sd_weights_at(weights, i);
    grad_entry *e = &g->entries[g->count];
    e->name = name;
    e->weight = w;
    e->grad = sd_tensor_make(be->ops->act_dtype, w->ndim, w->shape);
    if (sd_tensor_alloc_persistent(be, &e->grad) < 0) {
      sd_grads_free(g);
      return sd_error_context("gradient of %s", name);
    }
    g->by_address[g->count] = e;
    g->count++;
    g->bytes += sd_tensor_bytes(&e->grad);
    int64_t n = sd_tensor_numel(w);
    if ((size_t)n > g->max_numel)
      g->max_numel = (size_t)n;
  }
  qsort(g->by_address, g->count, sizeof *g->by_address, compare_address);
  if (sd_grads_zero(g) < 0) {
    sd_grads_free(g);
    return -1;
  }
  *out = g;
  return 0;
}

int sd_grads_zero(sd_grads *grads) {
  if (!grads->count)
    return 0;
  float *zeros = calloc(grads->max_numel, sizeof *zeros);
  if (!zeros)
    return SD_ERROR("gradients: out of memory for %zu zeros", grads->max_numel);
  int rc = 0;
  for (size_t i = 0; i < grads->count && rc == 0; i++)
    rc = sd_tensor_upload_f32(grads->be, &grads->entries[i].grad, zeros);
  free(zeros);
  return rc;
}

size_t sd_grads_count(const sd_grads *grads) {
  return grads->count;
}

const char *sd_grads_name_at(const sd_grads *grads, size_t index) {
  return index < grads->count ? grads->entries[index].name : NULL;
}

const sd_tensor *sd_grads_weight_at(const sd_grads *grads, size_t index) {
  return index < grads->count ? grads->entries[index].weight : NULL;
}

sd_tensor *sd_grads_at(sd_grads *grads, size_t index) {
  return index < grads->count ? &grads->entries[index].grad : NULL;
}

sd_tensor *sd_grads_find(sd_grads *grads, const char *name) {
  for (size_t i = 0; i < grads->count; i++)
    if (strcmp(grads->entries[i].name, name) == 0)
      return &grads->entries[i].grad;
  return NULL;
}

sd_tensor *sd_grads_of(sd_grads *grads, const sd_tensor *weight) {
  if (!grads)
    return NULL;
  size_t lo = 0, hi = grads->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    grad_entry *e = grads->by_address[mid];
    if (e->weight == weight)
      return &e->grad;
    if ((uintptr_t)e->weight < (uintptr_t)weight)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

size_t sd_grads_bytes(const sd_grads *grads) {
  return grads->bytes;
}
