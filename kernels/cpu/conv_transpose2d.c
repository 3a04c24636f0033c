/* Transposed 2-D convolution (DPT's reassemble upsampling) as GEMM + col2im: per image,
 * col (K*kh*kw, H*W) = w (C, K*kh*kw)^T . x (C, H*W), then every column of col is added into the
 * output window it belongs to, on top of the bias. The output channels are cut into chunks, one
 * task per chunk, each with its own single-threaded sgemm into its rows of col and its own
 * col2im; images run one after another over the same chunks, so an image's result does not
 * depend on the batch. */
#include "cpu_internal.h"

int sd_cpu_conv_transpose2d(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                            const sd_tensor *b, int stride, int pad, sd_tensor *y) {
  int64_t batch = x->shape[0], c = x->shape[1], h = x->shape[2], wd = x->shape[3];
  int64_t k = w->shape[1], kh = w->shape[2], kw = w->shape[3];
  int64_t ho = y->shape[2], wo = y->shape[3];
  int64_t hw = h * wd, taps = kh * kw, depth = k * taps;
  const float *weight = w->data; /* (C, K*kh*kw) */
  const float *bias = b ? b->data : NULL;
  int team = sd_cpu_threads(be);
  double flops = 2.0 * (double)c * (double)depth * (double)hw;
  int threads = flops < SD_CPU_PARALLEL_FLOPS ? 1 : team;
  int64_t chunks = k < team ? k : team; /* independent of the batch */
  int64_t chunk_k = (k + chunks - 1) / chunks;
  sd_arena_mark mark = sd_arena_get_mark(be);
  float *col = sd_cpu_scratch(be, (size_t)depth * (size_t)hw, "conv_transpose2d col");
  if (!col)
    return -1;
  sd_dnnl_status failed = {dnnl_success};
  for (int64_t n = 0; n < batch; n++) {
    const float *image = (const float *)x->data + n * c * hw; /* (C, H*W) */
    float *out = (float *)y->data + n * k * ho * wo;          /* (K, Ho, Wo) */
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t chunk = 0; chunk < chunks; chunk++) {
      int64_t k0 = chunk * chunk_k, k1 = k0 + chunk_k < k ? k0 + chunk_k : k;
      if (k0 >= k1)
        continue;
      float *rows = col + k0 * taps * hw; /* (k1 - k0) * taps rows of col */
      DNNL_NOTE(&failed, sd_cpu_sgemm('T', 'N', (k1 - k0) * taps, hw, c, 1.0f, weight + k0 * taps,
                                      depth, image, hw, 0.0f, rows, hw));
      for (int64_t o = k0; o < k1; o++) {
        float *plane = out + o * ho * wo;
        float bo = bias ? bias[o] : 0.0f;
        for (int64_t p = 0; p < ho * wo; p++)
          plane[p] = bo;
        for (int64_t u = 0; u < kh; u++)
          for (int64_t v = 0; v < kw; v++) {
            const float *src = col + ((o * kh + u) * kw + v) * hw;
            for (int64_t i = 0; i < h; i++) {
              int64_t oi = i * stride - pad + u;
              if (oi < 0 || oi >= ho)
                continue;
              for (int64_t j = 0; j < wd; j++) {
                int64_t oj = j * stride - pad + v;
                if (oj >= 0 && oj < wo)
                  plane[oi * wo + oj] += src[i * wd + j];
              }
            }
          }
      }
    }
  }
  sd_arena_release(be, mark);
  return sd_dnnl_report(&failed);
}
