/* Embedding lookup: y (n, C) = table (V, C) rows at ids (n), ids already range-checked. */
#include "cpu_ops.h"

#include <string.h>

int sd_cpu_embedding(sd_backend *be, const sd_tensor *table, const int32_t *ids, int64_t n,
                     sd_tensor *y) {
  (void)be;
  int64_t c = table->shape[1];
  const float *rows = table->data;
  float *dst = y->data;
  for (int64_t i = 0; i < n; i++)
    memcpy(dst + i * c, rows + (int64_t)ids[i] * c, (size_t)c * sizeof(float));
  return 0;
}
