/* y (B, C, H, W) = x + v (B, C) broadcast over the spatial dims (e.g. the time embedding). */
#include "cpu_internal.h"

int sd_cpu_add_channel_bias(sd_backend *be, const sd_tensor *x, const sd_tensor *v, sd_tensor *y) {
  int64_t planes = x->shape[0] * x->shape[1];
  int64_t hw = x->shape[2] * x->shape[3];
  const float *src = x->data;
  const float *bias = v->data; /* (B * C) */
  float *dst = y->data;
  int threads = planes * hw > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < planes; p++) {
    float b = bias[p];
    const float *in = src + p * hw;
    float *out = dst + p * hw;
    for (int64_t i = 0; i < hw; i++)
      out[i] = in[i] + b;
  }
  return 0;
}
