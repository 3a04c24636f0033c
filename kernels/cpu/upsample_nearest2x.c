/* Nearest-neighbour 2x upsampling: y[b, c, i, j] = x[b, c, i / 2, j / 2]. */
#include "cpu_internal.h"

#include <string.h>

int sd_cpu_upsample_nearest2x(sd_backend *be, const sd_tensor *x, sd_tensor *y) {
  int64_t planes = x->shape[0] * x->shape[1];
  int64_t h = x->shape[2], w = x->shape[3];
  const float *src = x->data;
  float *dst = y->data;
  int threads = planes * h * w > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < planes; p++) {
    for (int64_t i = 0; i < h; i++) {
      const float *in = src + (p * h + i) * w;        /* row i of x */
      float *out = dst + (p * 2 * h + 2 * i) * 2 * w; /* rows 2i, 2i+1 of y */
      for (int64_t j = 0; j < w; j++) {
        out[2 * j] = in[j];
        out[2 * j + 1] = in[j];
      }
      memcpy(out + 2 * w, out, (size_t)(2 * w) * sizeof(float));
    }
  }
  return 0;
}
