/* Scaled dot-product attention per (image, head): S = q k^T * scale (keys after the query
 * masked when causal), P = softmax(S) with max subtraction, o = P v. One task per (image, head,
 * block of queries); a thread computes its block's scores (block, Lk) with one sgemm into its
 * own buffer, exponentiates them in place, multiplies by v with a second sgemm, and divides each
 * output row by its sum. */
#include "cpu_internal.h"

#include <math.h>

/* Queries per block: large enough that repacking k and v per block is cheap, small enough that
 * the score blocks (SD_ATTN_BLOCK, Lk) of all threads stay in L3 at Lk = 4096. */
#define SD_ATTN_BLOCK 256

/* Replaces each row of s (rows, ld) over its first `keep(r)` keys by exp(s - max); returns the
 * row sums in sums. Keys beyond keep (causal) are zeroed up to `len`. */
SD_CPU_MULTIVERSION static void softmax_rows(float *s, int64_t rows, int64_t ld, int64_t len,
                                             bool causal, int64_t q0, float *sums) {
  for (int64_t r = 0; r < rows; r++) {
    float *row = s + r * ld;
    int64_t keep = causal ? q0 + r + 1 : len;
    float max = -INFINITY;
#pragma omp simd reduction(max : max)
    for (int64_t j = 0; j < keep; j++)
      max = row[j] > max ? row[j] : max;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < keep; j++) {
      float e = sd_cpu_expf(row[j] - max);
      row[j] = e;
      sum += e;
    }
    for (int64_t j = keep; j < len; j++)
      row[j] = 0.0f;
    sums[r] = sum;
  }
}

int sd_cpu_attention(sd_backend *be, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                     int heads, float scale, bool causal, sd_tensor *o) {
  int64_t batch = q->shape[0], lq = q->shape[1], lk = k->shape[1], width = q->shape[2];
  int64_t d = width / heads;
  int64_t block = lq < SD_ATTN_BLOCK ? lq : SD_ATTN_BLOCK;
  int64_t blocks = (lq + block - 1) / block;
  int64_t tasks = batch * heads * blocks;
  int threads = sd_cpu_threads(be);
  if (4.0 * (double)batch * (double)lq * (double)lk * (double)width < SD_CPU_PARALLEL_FLOPS)
    threads = 1; /* too small to be worth waking the other threads */
  if (tasks < threads)
    threads = (int)tasks;
  size_t per_thread = (size_t)block * (size_t)(lk + 1); /* scores, then row sums */
  sd_arena_mark mark = sd_arena_get_mark(be);
  float *scratch = sd_cpu_scratch(be, (size_t)threads * per_thread, "attention scores");
  if (!scratch)
    return -1;
  const float *qd = q->data, *kd = k->data, *vd = v->data;
  float *od = o->data;
  sd_dnnl_status failed = {dnnl_success};
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t task = 0; task < tasks; task++) {
    int64_t n = task / (heads * blocks), h = task / blocks % heads;
    int64_t q0 = task % blocks * block;
    int64_t rows = lq - q0 < block ? lq - q0 : block;
    /* keys this block can see: all, or up to its last query when causal */
    int64_t len = causal ? q0 + rows : lk;
    float *scores = scratch + (size_t)SD_CPU_THREAD_ID() * per_thread; /* (rows, len), ld lk */
    float *sums = scores + (size_t)block * (size_t)lk;
    const float *qh = qd + (n * lq + q0) * width + h * d; /* (rows, D), ld width */
    const float *kh = kd + n * lk * width + h * d;        /* (Lk, D), ld width */
    const float *vh = vd + n * lk * width + h * d;
    float *oh = od + (n * lq + q0) * width + h * d;
    DNNL_NOTE(&failed,
              sd_cpu_sgemm('N', 'T', rows, len, d, scale, qh, width, kh, width, 0.0f, scores, lk));
    softmax_rows(scores, rows, lk, len, causal, q0, sums);
    DNNL_NOTE(&failed,
              sd_cpu_sgemm('N', 'N', rows, d, len, 1.0f, scores, lk, vh, width, 0.0f, oh, width));
    for (int64_t r = 0; r < rows; r++) {
      float inv = 1.0f / sums[r];
      for (int64_t e = 0; e < d; e++)
        oh[r * width + e] *= inv;
    }
  }
  sd_arena_release(be, mark);
  return sd_dnnl_report(&failed);
}
