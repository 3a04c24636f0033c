/* Elementwise clamp to [lo, hi]; NaN passes through as in torch.clamp. */
#include "cpu_ops.h"

int sd_cpu_clamp(sd_backend *be, const sd_tensor *x, float lo, float hi, sd_tensor *y) {
  (void)be;
  const float *src = x->data;
  float *dst = y->data;
  int64_t n = sd_tensor_numel(x);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    float v = src[i];
    dst[i] = v < lo ? lo : (v > hi ? hi : v);
  }
  return 0;
}
