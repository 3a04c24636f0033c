/* Backward of the 2x nearest-neighbour upsample: dx (B, C, H, W) = the sum of each 2x2 block of
 * dy (B, C, 2H, 2W), added as torch's upsample_nearest2d_backward adds them (output positions in
 * row-major order): ((top left + top right) + bottom left) + bottom right. */
#include "cpu_internal.h"

int sd_cpu_upsample_nearest_backward(sd_backend *be, const sd_tensor *dy, sd_tensor *dx) {
  int64_t planes = dx->shape[0] * dx->shape[1];
  int64_t h = dx->shape[2], w = dx->shape[3];
  const float *grad_out = dy->data;
  float *grad_in = dx->data;
  int threads = planes * h * w > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < planes; p++) {
    for (int64_t i = 0; i < h; i++) {
      const float *top = grad_out + (p * 2 * h + 2 * i) * 2 * w; /* rows 2i, 2i+1 of dy */
      const float *bottom = top + 2 * w;
      float *out = grad_in + (p * h + i) * w;
      for (int64_t j = 0; j < w; j++)
        out[j] = ((top[2 * j] + top[2 * j + 1]) + bottom[2 * j]) + bottom[2 * j + 1];
    }
  }
  return 0;
}
