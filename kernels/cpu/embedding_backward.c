/* Backward of embedding: dtable (V, C) rows at ids += dy (n, C) rows, positions in order (a
 * repeated id adds up in that order), ids already range-checked. */
#include "cpu_ops.h"

int sd_cpu_embedding_backward(sd_backend *be, const int32_t *ids, int64_t n, const sd_tensor *dy,
                              sd_tensor *dtable) {
  (void)be;
  int64_t c = dtable->shape[1];
  const float *grad_out = dy->data;
  float *rows = dtable->data;
  for (int64_t i = 0; i < n; i++) {
    float *row = rows + (int64_t)ids[i] * c;
    const float *in = grad_out + i * c;
    for (int64_t j = 0; j < c; j++)
      row[j] += in[j];
  }
  return 0;
}
