/* Bilinear and bicubic resize of x (B, C, H, W) to y (B, C, Ho, Wo) as torch's F.interpolate,
 * see sd_op_interpolate: the taps of every output row and column come from kernels/interpolate.h
 * (shared with the CUDA kernel); each output value weights its taps along the width, then the
 * rows along the height, summing left to right in float32 as ATen's generic kernel does. */
#include "cpu_internal.h"

#include "../interpolate.h"

#include <stdlib.h>

/* Taps of every position of one axis: idx (n, SD_INTERP_MAX_TAPS), w alike. */
static void axis_taps(sd_interp_mode mode, bool align_corners, int64_t in, int64_t out,
                      int64_t *idx, float *w, int *taps) {
  for (int64_t o = 0; o < out; o++)
    *taps = sd_interp_taps(mode, align_corners, in, out, o, idx + o * SD_INTERP_MAX_TAPS,
                           w + o * SD_INTERP_MAX_TAPS);
}

int sd_cpu_interpolate(sd_backend *be, const sd_tensor *x, sd_interp_mode mode, bool align_corners,
                       sd_tensor *y) {
  int64_t planes = x->shape[0] * x->shape[1];
  int64_t h = x->shape[2], w = x->shape[3], ho = y->shape[2], wo = y->shape[3];
  int64_t *rows = malloc((size_t)(ho + wo) * SD_INTERP_MAX_TAPS * sizeof *rows);
  float *weights = malloc((size_t)(ho + wo) * SD_INTERP_MAX_TAPS * sizeof *weights);
  if (!rows || !weights) {
    free(rows);
    free(weights);
    return SD_ERROR("interpolate: out of memory for %lld taps", (long long)(ho + wo));
  }
  int64_t *cols = rows + ho * SD_INTERP_MAX_TAPS;
  float *row_w = weights, *col_w = weights + ho * SD_INTERP_MAX_TAPS;
  int taps = 2;
  axis_taps(mode, align_corners, h, ho, rows, row_w, &taps);
  axis_taps(mode, align_corners, w, wo, cols, col_w, &taps);
  const float *src = x->data;
  float *dst = y->data;
  int threads = planes * ho * wo * taps > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < planes; p++) {
    const float *plane = src + p * h * w;
    for (int64_t i = 0; i < ho; i++) {
      const int64_t *ri = rows + i * SD_INTERP_MAX_TAPS;
      const float *rw = row_w + i * SD_INTERP_MAX_TAPS;
      float *out = dst + (p * ho + i) * wo;
      for (int64_t j = 0; j < wo; j++) {
        const int64_t *ci = cols + j * SD_INTERP_MAX_TAPS;
        const float *cw = col_w + j * SD_INTERP_MAX_TAPS;
        float acc = 0.0f;
        for (int r = 0; r < taps; r++) {
          const float *line = plane + ri[r] * w;
          float t = line[ci[0]] * cw[0];
          for (int c = 1; c < taps; c++)
            t += line[ci[c]] * cw[c];
          acc = r == 0 ? t * rw[0] : acc + t * rw[r];
        }
        out[j] = acc;
      }
    }
  }
  free(rows);
  free(weights);
  return 0;
}
