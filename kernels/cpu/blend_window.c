/* Window copy / cross-fade between two (B, C, H, W) images, the seam blending of tiled VAE
 * decoding: each window row is a contiguous run in both tensors; rows run over threads. The blend
 * rounds each product and the sum to float32 (no FMA contraction), as torch's
 * `a * w_a + b * w_b` does in diffusers' blend_v / blend_h. */
#include "cpu_internal.h"

#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__)
#define SD_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define SD_NO_FP_CONTRACT
#endif

/* d[c] = s[c] * wa + d[c] * wb for c < n, with one weight pair for the whole run (rows mode). */
SD_NO_FP_CONTRACT static void blend_run(const float *s, float wa, float wb, int64_t n, float *d) {
  for (int64_t c = 0; c < n; c++)
    d[c] = s[c] * wa + d[c] * wb;
}

/* d[c] = s[c] * wa[c] + d[c] * wb[c] for c < n (cols mode). */
SD_NO_FP_CONTRACT static void blend_run_cols(const float *s, const float *wa, const float *wb,
                                             int64_t n, float *d) {
  for (int64_t c = 0; c < n; c++)
    d[c] = s[c] * wa[c] + d[c] * wb[c];
}

int sd_cpu_blend_window(sd_backend *be, const sd_tensor *x, int64_t x_row, int64_t x_col,
                        sd_tensor *y, int64_t y_row, int64_t y_col, int64_t rows, int64_t cols,
                        sd_blend_mode mode) {
  const int64_t planes = x->shape[0] * x->shape[1];
  const int64_t xh = x->shape[2], xw = x->shape[3], yh = y->shape[2], yw = y->shape[3];
  const float *src = x->data;
  float *dst = y->data;
  /* weights of the cols mode, per window column: (1 - c / cols) and c / cols */
  float *col_wa = NULL, *col_wb = NULL;
  if (mode == SD_BLEND_COLS) {
    col_wa = malloc(2 * (size_t)cols * sizeof *col_wa);
    if (!col_wa)
      return SD_ERROR("blend_window: out of host memory for %lld weights", (long long)cols);
    col_wb = col_wa + cols;
    for (int64_t c = 0; c < cols; c++) {
      double t = (double)c / (double)cols;
      col_wa[c] = (float)(1.0 - t);
      col_wb[c] = (float)t;
    }
  }
  const int64_t runs = planes * rows;
  int threads = runs * cols > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t k = 0; k < runs; k++) {
    const int64_t p = k / rows, r = k % rows;
    const float *s = src + (p * xh + x_row + r) * xw + x_col;
    float *d = dst + (p * yh + y_row + r) * yw + y_col;
    if (mode == SD_BLEND_COPY) {
      memcpy(d, s, (size_t)cols * sizeof *d);
    } else if (mode == SD_BLEND_ROWS) {
      double t = (double)r / (double)rows;
      blend_run(s, (float)(1.0 - t), (float)t, cols, d);
    } else {
      blend_run_cols(s, col_wa, col_wb, cols, d);
    }
  }
  free(col_wa);
  return 0;
}
