/* y = sum_i c_i x_i evaluated left to right in float32, one rounding per product and per sum
 * (as the equivalent PyTorch tensor expression), so the scheduler math matches diffusers. Each
 * element reads all inputs before y is written, so y may alias any input. */
#include "cpu_internal.h"

/* GCC contracts a * b + c into an FMA where the target has FMA; that would skip the product's
 * rounding, so contraction is turned off here. */
#if defined(__GNUC__) && !defined(__clang__)
#define SD_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define SD_NO_FP_CONTRACT
#endif

/* y[first, first + count) for n inputs. */
SD_NO_FP_CONTRACT static void lincomb_range(int n, const float *c, const float *const *x,
                                            int64_t first, int64_t count, float *y) {
  const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
  int64_t end = first + count;
  switch (n) {
  case 1:
#pragma omp simd
    for (int64_t e = first; e < end; e++)
      y[e] = c[0] * x0[e];
    break;
  case 2:
#pragma omp simd
    for (int64_t e = first; e < end; e++)
      y[e] = c[0] * x0[e] + c[1] * x1[e];
    break;
  case 3:
#pragma omp simd
    for (int64_t e = first; e < end; e++)
      y[e] = (c[0] * x0[e] + c[1] * x1[e]) + c[2] * x2[e];
    break;
  default:
#pragma omp simd
    for (int64_t e = first; e < end; e++)
      y[e] = ((c[0] * x0[e] + c[1] * x1[e]) + c[2] * x2[e]) + c[3] * x3[e];
    break;
  }
}

int sd_cpu_lincomb(sd_backend *be, int n, const float *coeffs, const sd_tensor *const *xs,
                   sd_tensor *y) {
  int64_t count = sd_tensor_numel(y);
  const float *src[SD_LINCOMB_MAX] = {0};
  float c[SD_LINCOMB_MAX] = {0};
  for (int i = 0; i < n; i++) {
    src[i] = xs[i]->data;
    c[i] = coeffs[i];
  }
  const int64_t block = 16384;
  int64_t blocks = (count + block - 1) / block;
  int threads = count > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t b = 0; b < blocks; b++)
    lincomb_range(n, c, src, b * block, count - b * block < block ? count - b * block : block,
                  y->data);
  return 0;
}
