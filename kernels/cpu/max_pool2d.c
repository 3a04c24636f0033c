/* Max pooling of x (B, C, H, W) over kernel x kernel windows, see sd_op_max_pool2d (the BiT stem
 * of DPT-hybrid). Positions in the padding are skipped, which is what -inf padding gives. */
#include "cpu_internal.h"

#include <math.h>

int sd_cpu_max_pool2d(sd_backend *be, const sd_tensor *x, int kernel, int stride, int pad,
                      sd_tensor *y) {
  int64_t planes = x->shape[0] * x->shape[1];
  int64_t h = x->shape[2], w = x->shape[3], ho = y->shape[2], wo = y->shape[3];
  const float *src = x->data;
  float *dst = y->data;
  int threads = planes * ho * wo * kernel * kernel > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < planes; p++) {
    const float *plane = src + p * h * w;
    for (int64_t i = 0; i < ho; i++)
      for (int64_t j = 0; j < wo; j++) {
        float best = -INFINITY;
        for (int64_t u = 0; u < kernel; u++) {
          int64_t ii = i * stride - pad + u;
          if (ii < 0 || ii >= h)
            continue;
          for (int64_t v = 0; v < kernel; v++) {
            int64_t jj = j * stride - pad + v;
            if (jj < 0 || jj >= w)
              continue;
            float val = plane[ii * w + jj];
            if (val > best || isnan(val))
              best = val;
          }
        }
        dst[(p * ho + i) * wo + j] = best;
      }
  }
  return 0;
}
