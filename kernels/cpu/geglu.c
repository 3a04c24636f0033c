/* GEGLU as diffusers computes it: hidden, gate = x.chunk(2, dim=-1); y = hidden * gelu(gate). */
#include "cpu_internal.h"

/* out (N) = hidden (N) * gelu(gate (N)) */
SD_CPU_MULTIVERSION static void geglu_row(const float *hidden, const float *gate, int64_t n,
                                          float *out) {
#pragma omp simd
  for (int64_t j = 0; j < n; j++)
    out[j] = hidden[j] * sd_cpu_gelu(gate[j]);
}

int sd_cpu_geglu(sd_backend *be, const sd_tensor *x, sd_tensor *y) {
  int64_t n = y->shape[y->ndim - 1];
  int64_t rows = sd_tensor_numel(y) / n;
  const float *src = x->data;
  float *dst = y->data;
  int threads = rows * n > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t r = 0; r < rows; r++)
    geglu_row(src + r * 2 * n, src + r * 2 * n + n, n, dst + r * n);
  return 0;
}
