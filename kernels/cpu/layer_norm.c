/* LayerNorm over the last dim as torch.nn.LayerNorm: mean, then biased variance from squared
 * deviations (float sums over vector lanes, one row is at most a few thousand values), eps
 * inside the sqrt, then gamma and beta. Rows are split across threads; y may alias x. */
#include "cpu_internal.h"

#include <math.h>

/* Normalizes rows [0, rows) of x (rows, C) into y. */
SD_CPU_MULTIVERSION static void normalize_rows(const float *x, const float *gamma,
                                               const float *beta, int64_t rows, int64_t c,
                                               float eps, float *y) {
  for (int64_t r = 0; r < rows; r++) {
    const float *in = x + r * c;
    float *out = y + r * c;
    float mean, rstd;
    sd_cpu_row_mean_rstd(in, c, eps, &mean, &rstd);
#pragma omp simd
    for (int64_t i = 0; i < c; i++)
      out[i] = (in[i] - mean) * rstd * gamma[i] + beta[i];
  }
}

int sd_cpu_layer_norm(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                      const sd_tensor *beta, float eps, sd_tensor *y) {
  int64_t c = x->shape[x->ndim - 1];
  int64_t rows = sd_tensor_numel(x) / c;
  const int64_t block = 16; /* rows per task */
  int64_t tasks = (rows + block - 1) / block;
  const float *src = x->data;
  float *dst = y->data;
  int threads = rows * c > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < tasks; t++) {
    int64_t r0 = t * block;
    normalize_rows(src + r0 * c, gamma->data, beta->data, rows - r0 < block ? rows - r0 : block, c,
                   eps, dst + r0 * c);
  }
  return 0;
}
