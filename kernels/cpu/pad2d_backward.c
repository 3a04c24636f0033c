/* Backward of constant padding: dx (B, C, H, W) = the window of dy (B, C, Ho, Wo) at (top, left),
 * see sd_op_pad2d_backward (the VAE encoder's downsampler pads (0, 1, 0, 1) before its stride-2
 * convolution). */
#include "cpu_internal.h"

int sd_cpu_pad2d_backward(sd_backend *be, const sd_tensor *dy, int64_t top, int64_t left,
                          sd_tensor *dx) {
  int64_t planes = dx->shape[0] * dx->shape[1];
  int64_t h = dx->shape[2], w = dx->shape[3], ho = dy->shape[2], wo = dy->shape[3];
  const float *src = dy->data;
  float *dst = dx->data;
  int threads = planes * h * w > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < planes; p++)
    for (int64_t i = 0; i < h; i++)
      memcpy(dst + (p * h + i) * w, src + (p * ho + top + i) * wo + left,
             (size_t)w * sizeof(float));
  return 0;
}
