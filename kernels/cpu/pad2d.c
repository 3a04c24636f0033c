/* Constant padding of x (B, C, H, W) into y (B, C, Ho, Wo) at (top, left), see sd_op_pad2d (BiT's
 * "same" padding, which can be one pixel larger on the bottom and right). */
#include "cpu_internal.h"

int sd_cpu_pad2d(sd_backend *be, const sd_tensor *x, int64_t top, int64_t left, float value,
                 sd_tensor *y) {
  int64_t planes = x->shape[0] * x->shape[1];
  int64_t h = x->shape[2], w = x->shape[3], ho = y->shape[2], wo = y->shape[3];
  const float *src = x->data;
  float *dst = y->data;
  int threads = planes * ho * wo > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < planes; p++)
    for (int64_t i = 0; i < ho; i++) {
      float *out = dst + (p * ho + i) * wo;
      int64_t si = i - top;
      if (si < 0 || si >= h) {
        for (int64_t j = 0; j < wo; j++)
          out[j] = value;
        continue;
      }
      for (int64_t j = 0; j < left; j++)
        out[j] = value;
      memcpy(out + left, src + (p * h + si) * w, (size_t)w * sizeof(float));
      for (int64_t j = left + w; j < wo; j++)
        out[j] = value;
    }
  return 0;
}
