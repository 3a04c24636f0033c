/* Backward of add_channel_bias: dv (B, C) = the sum of dy (B, C, H, W) over each plane, in
 * double. */
#include "cpu_internal.h"

int sd_cpu_add_channel_bias_backward(sd_backend *be, const sd_tensor *dy, sd_tensor *dv) {
  int64_t planes = dy->shape[0] * dy->shape[1];
  int64_t hw = dy->shape[2] * dy->shape[3];
  const float *grad_out = dy->data;
  float *grad_v = dv->data; /* (B * C) */
  int threads = planes * hw > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < planes; p++) {
    const float *plane = grad_out + p * hw;
    double sum = 0.0;
    for (int64_t i = 0; i < hw; i++)
      sum += plane[i];
    grad_v[p] = (float)sum;
  }
  return 0;
}
