/* Backward of conv2d by im2col and GEMM, one image after another:
 *   col (C kh kw, Ho Wo)  = the input windows of image b (im2col; the image itself for a 1x1
 *                           convolution with stride 1 and no padding),
 *   dw (K, C kh kw)      += dy_b (K, Ho Wo) . col^T       (images added in order),
 *   dcol (C kh kw, Ho Wo) = w^T (C kh kw, K) . dy_b,
 *   dx_b                  = col2im(dcol) (each input position adds its windows in order).
 * Each GEMM is cut into blocks of rows of a fixed size, one sgemm per block, so the results do
 * not depend on the thread count, and an image's dx not on the batch; db sums dy per channel in
 * double, images in order. */
#include "cpu_internal.h"

#include <string.h>

/* Rows of dw, and of dcol, per sgemm call. */
#define SD_CONV_BWD_W_ROWS   128
#define SD_CONV_BWD_COL_ROWS 256

typedef struct conv_geometry {
  int64_t c, h, w, kh, kw, ho, wo;
  int stride, pad;
} conv_geometry;

/* The output columns ow whose input column iw = ow stride - pad + j lies inside [0, W): [lo, hi).
 */
static void valid_columns(const conv_geometry *g, int64_t j, int64_t *lo, int64_t *hi) {
  int64_t first = g->pad - j,
          last = g->w - 1 + g->pad - j; /* ow stride must lie in [first, last] */
  int64_t a = first > 0 ? (first + g->stride - 1) / g->stride : 0;
  int64_t b = last >= 0 ? last / g->stride + 1 : 0;
  b = b < g->wo ? b : g->wo;
  *lo = a < b ? a : b;
  *hi = b;
}

/* col (C kh kw, Ho Wo) from image (C, H, W); one task per input channel. Each output row is the
 * input row's valid stretch (a plain copy at stride 1) between zeros. */
static void im2col(const conv_geometry *g, const float *image, float *col, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t ch = 0; ch < g->c; ch++)
    for (int64_t i = 0; i < g->kh; i++)
      for (int64_t j = 0; j < g->kw; j++) {
        float *out = col + ((ch * g->kh + i) * g->kw + j) * g->ho * g->wo;
        int64_t lo, hi;
        valid_columns(g, j, &lo, &hi);
        for (int64_t oh = 0; oh < g->ho; oh++) {
          float *row = out + oh * g->wo;
          int64_t ih = oh * g->stride - g->pad + i;
          if (ih < 0 || ih >= g->h) {
            memset(row, 0, (size_t)g->wo * sizeof(float));
            continue;
          }
          const float *src = image + (ch * g->h + ih) * g->w - g->pad + j; /* src[ow stride] */
          memset(row, 0, (size_t)lo * sizeof(float));
          if (g->stride == 1)
            memcpy(row + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
          else
            for (int64_t ow = lo; ow < hi; ow++)
              row[ow] = src[ow * g->stride];
          memset(row + hi, 0, (size_t)(g->wo - hi) * sizeof(float));
        }
      }
}

/* image (C, H, W) = the sum of dcol's entries over the windows that read each position, added
 * in the order (i, j, oh, ow); one task per input channel. */
static void col2im(const conv_geometry *g, const float *dcol, float *image, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t ch = 0; ch < g->c; ch++) {
    float *plane = image + ch * g->h * g->w;
    memset(plane, 0, (size_t)(g->h * g->w) * sizeof(float));
    for (int64_t i = 0; i < g->kh; i++)
      for (int64_t j = 0; j < g->kw; j++) {
        const float *in = dcol + ((ch * g->kh + i) * g->kw + j) * g->ho * g->wo;
        int64_t lo, hi;
        valid_columns(g, j, &lo, &hi);
        for (int64_t oh = 0; oh < g->ho; oh++) {
          int64_t ih = oh * g->stride - g->pad + i;
          if (ih < 0 || ih >= g->h)
            continue;
          float *restrict dst = plane + ih * g->w - g->pad + j; /* dst[ow stride] */
          const float *restrict src = in + oh * g->wo;
          if (g->stride == 1)
            for (int64_t ow = lo; ow < hi; ow++)
              dst[ow] += src[ow];
          else
            for (int64_t ow = lo; ow < hi; ow++)
              dst[ow * g->stride] += src[ow];
        }
      }
  }
}

int sd_cpu_conv2d_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                           const sd_tensor *dy, int stride, int pad, sd_tensor *dx, sd_tensor *dw,
                           sd_tensor *db) {
  conv_geometry g = {.c = x->shape[1],
                     .h = x->shape[2],
                     .w = x->shape[3],
                     .kh = w->shape[2],
                     .kw = w->shape[3],
                     .ho = dy->shape[2],
                     .wo = dy->shape[3],
                     .stride = stride,
                     .pad = pad};
  int64_t batch = x->shape[0], k = w->shape[0];
  int64_t patch = g.c * g.kh * g.kw, positions = g.ho * g.wo;
  bool pointwise = g.kh == 1 && g.kw == 1 && stride == 1 && pad == 0;
  double flops = 4.0 * (double)k * (double)patch * (double)positions;
  int threads = flops < SD_CPU_PARALLEL_FLOPS ? 1 : sd_cpu_threads(be);
  sd_arena_mark mark = sd_arena_get_mark(be);
  float *col = NULL, *dcol = NULL;
  if (!pointwise) {
    col = dw ? sd_cpu_scratch(be, (size_t)(patch * positions), "conv2d_backward col") : NULL;
    dcol = dx ? sd_cpu_scratch(be, (size_t)(patch * positions), "conv2d_backward dcol") : NULL;
    if ((dw && !col) || (dx && !dcol)) {
      sd_arena_release(be, mark);
      return -1;
    }
  }
  const float *weight = w->data;
  sd_dnnl_status failed = {dnnl_success};
  for (int64_t n = 0; n < batch; n++) {
    const float *image = (const float *)x->data + n * g.c * g.h * g.w;   /* (C, H, W) */
    const float *grad_out = (const float *)dy->data + n * k * positions; /* (K, Ho Wo) */
    if (dw) {
      const float *windows = image;
      if (!pointwise) {
        im2col(&g, image, col, threads);
        windows = col;
      }
      float *grad_w = dw->data;
      int64_t tasks = (k + SD_CONV_BWD_W_ROWS - 1) / SD_CONV_BWD_W_ROWS;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
      for (int64_t t = 0; t < tasks; t++) {
        int64_t k0 = t * SD_CONV_BWD_W_ROWS;
        int64_t rows = k - k0 < SD_CONV_BWD_W_ROWS ? k - k0 : SD_CONV_BWD_W_ROWS;
        DNNL_NOTE(&failed,
                  sd_cpu_sgemm('N', 'T', rows, patch, positions, 1.0f, grad_out + k0 * positions,
                               positions, windows, positions, 1.0f, grad_w + k0 * patch, patch));
      }
    }
    if (dx) {
      float *grad_in = (float *)dx->data + n * g.c * g.h * g.w;
      float *target = pointwise ? grad_in : dcol;
      int64_t tasks = (patch + SD_CONV_BWD_COL_ROWS - 1) / SD_CONV_BWD_COL_ROWS;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
      for (int64_t t = 0; t < tasks; t++) {
        int64_t p0 = t * SD_CONV_BWD_COL_ROWS;
        int64_t rows = patch - p0 < SD_CONV_BWD_COL_ROWS ? patch - p0 : SD_CONV_BWD_COL_ROWS;
        /* dcol[p0 ..] (rows, Ho Wo) = w[:, p0 ..]^T (rows, K) . dy_b (K, Ho Wo) */
        DNNL_NOTE(&failed,
                  sd_cpu_sgemm('T', 'N', rows, positions, k, 1.0f, weight + p0, patch, grad_out,
                               positions, 0.0f, target + p0 * positions, positions));
      }
      if (!pointwise)
        col2im(&g, dcol, grad_in, threads);
    }
  }
  if (db) {
    float *grad_b = db->data;
    const float *grad_out = dy->data;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t j = 0; j < k; j++) {
      double sum = 0.0;
      for (int64_t n = 0; n < batch; n++) {
        const float *plane = grad_out + (n * k + j) * positions;
        for (int64_t i = 0; i < positions; i++)
          sum += plane[i];
      }
      grad_b[j] = (float)((double)grad_b[j] + sum);
    }
  }
  sd_arena_release(be, mark);
  return sd_dnnl_report(&failed);
}
