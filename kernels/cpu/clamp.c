/* Elementwise clamp to [lo, hi]; NaN passes through as in torch.clamp. */
#include "cpu_internal.h"

int sd_cpu_clamp(sd_backend *be, const sd_tensor *x, float lo, float hi, sd_tensor *y) {
  const float *src = x->data;
  float *dst = y->data;
  int64_t n = sd_tensor_numel(x);
  int threads = n > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < n; i++) {
    float v = src[i];
    dst[i] = v < lo ? lo : (v > hi ? hi : v);
  }
  return 0;
}
