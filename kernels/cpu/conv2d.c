/* 2-D convolution (zero padding, square stride) as GEMM: per image, y (K, Ho*Wo) =
 * w (K, C*kh*kw) . col (C*kh*kw, Ho*Wo). The output positions are cut into column chunks, one
 * task per (image, chunk); a thread builds its chunk of col by im2col in its own bounded buffer
 * and runs one single-threaded sgemm into y[:, chunk]. 1x1 stride-1 unpadded convs use x itself
 * as col. Every sgemm call covers one image, so an image's result does not depend on the batch. */
#include "cpu_internal.h"

/* Bound of all threads' im2col buffers together. */
#define SD_CONV_COL_BYTES ((size_t)32 << 20)
/* An image's output positions are split over threads only into chunks of at least this many. */
#define SD_CONV_MIN_COLS 256

/* dst[q] = row[(oj + q) * stride - pad + kj] for q < run, zero outside the row [0, w). */
static void gather_run(const float *row, int64_t w, int64_t oj, int64_t run, int stride, int pad,
                       int64_t kj, float *dst) {
  if (stride == 1) {
    /* output columns oj + q with 0 <= oj + q - pad + kj < w form one contiguous stretch */
    int64_t lo = pad - kj - oj, hi = w + pad - kj - oj;
    lo = lo < 0 ? 0 : (lo > run ? run : lo);
    hi = hi < lo ? lo : (hi > run ? run : hi);
    memset(dst, 0, (size_t)lo * sizeof(float));
    memcpy(dst + lo, row + oj + lo - pad + kj, (size_t)(hi - lo) * sizeof(float));
    memset(dst + hi, 0, (size_t)(run - hi) * sizeof(float));
    return;
  }
  for (int64_t q = 0; q < run; q++) {
    int64_t jj = (oj + q) * stride - pad + kj;
    dst[q] = jj >= 0 && jj < w ? row[jj] : 0.0f;
  }
}

/* col (C*kh*kw, ncols) for output positions [p0, p0 + ncols) of one image x (C, H, W). */
static void im2col(const float *x, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
                   int stride, int pad, int64_t wo, int64_t p0, int64_t ncols, float *col) {
  for (int64_t ci = 0; ci < c; ci++) {
    const float *plane = x + ci * h * w;
    for (int64_t ki = 0; ki < kh; ki++)
      for (int64_t kj = 0; kj < kw; kj++) {
        float *dst = col + ((ci * kh + ki) * kw + kj) * ncols;
        int64_t oi = p0 / wo, oj = p0 % wo;
        for (int64_t p = 0; p < ncols;) {
          /* the rest of output row oi that falls into this chunk */
          int64_t run = wo - oj < ncols - p ? wo - oj : ncols - p;
          int64_t ii = oi * stride - pad + ki;
          if (ii < 0 || ii >= h)
            memset(dst + p, 0, (size_t)run * sizeof(float));
          else
            gather_run(plane + ii * w, w, oj, run, stride, pad, kj, dst + p);
          p += run;
          oi++;
          oj = 0;
        }
      }
  }
}

int sd_cpu_conv2d(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                  int stride, int pad, sd_tensor *y) {
  int64_t batch = x->shape[0], c = x->shape[1], h = x->shape[2], wd = x->shape[3];
  int64_t k = w->shape[0], kh = w->shape[2], kw = w->shape[3];
  int64_t ho = y->shape[2], wo = y->shape[3];
  int64_t hw_out = ho * wo, depth = c * kh * kw;
  const float *weight = w->data; /* (K, C*kh*kw) */
  const float *bias = b ? b->data : NULL;
  bool direct = kh == 1 && kw == 1 && stride == 1 && pad == 0;
  /* Chunks per image depend on the image's size and the backend only, never on the batch, so an
   * image's result is the same whatever else is in the batch: as many as the scratch bound
   * needs, and one per thread where each keeps SD_CONV_MIN_COLS columns. */
  int team = sd_cpu_threads(be);
  int64_t chunks = hw_out / SD_CONV_MIN_COLS;
  chunks = chunks < 1 ? 1 : (chunks > team ? team : chunks);
  if (!direct) {
    int64_t fit = (int64_t)(SD_CONV_COL_BYTES / (size_t)team / ((size_t)depth * sizeof(float)));
    fit = fit < 16 ? 16 : fit;
    if ((hw_out + chunks - 1) / chunks > fit)
      chunks = (hw_out + fit - 1) / fit;
  }
  int64_t chunk_cols = (hw_out + chunks - 1) / chunks;
  double flops = 2.0 * (double)batch * (double)k * (double)depth * (double)hw_out;
  int threads = flops < SD_CPU_PARALLEL_FLOPS ? 1 : team;
  sd_arena_mark mark = sd_arena_get_mark(be);
  float *cols = NULL;
  if (!direct) {
    cols =
        sd_cpu_scratch(be, (size_t)threads * (size_t)depth * (size_t)chunk_cols, "conv2d im2col");
    if (!cols)
      return -1;
  }
  sd_dnnl_status failed = {dnnl_success};
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t task = 0; task < batch * chunks; task++) {
    int64_t n = task / chunks;
    int64_t p0 = task % chunks * chunk_cols;
    int64_t ncols = hw_out - p0 < chunk_cols ? hw_out - p0 : chunk_cols;
    if (ncols <= 0)
      continue;
    const float *image = (const float *)x->data + n * c * h * wd; /* (C, H, W) */
    float *out = (float *)y->data + n * k * hw_out + p0;          /* (K, ncols), ld Ho*Wo */
    if (direct) {
      DNNL_NOTE(&failed, dnnl_sgemm('N', 'N', k, ncols, c, 1.0f, weight, c, image + p0, hw_out,
                                    0.0f, out, hw_out));
    } else {
      float *col = cols + (size_t)SD_CPU_THREAD_ID() * (size_t)depth * (size_t)chunk_cols;
      im2col(image, c, h, wd, kh, kw, stride, pad, wo, p0, ncols, col);
      DNNL_NOTE(&failed, dnnl_sgemm('N', 'N', k, ncols, depth, 1.0f, weight, depth, col, ncols,
                                    0.0f, out, hw_out));
    }
    if (bias)
      for (int64_t o = 0; o < k; o++) {
        float bo = bias[o];
        float *row = out + o * hw_out;
#pragma omp simd
        for (int64_t p = 0; p < ncols; p++)
          row[p] += bo;
      }
  }
  sd_arena_release(be, mark);
  return sd_dnnl_report(&failed);
}
