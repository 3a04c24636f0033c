/* Backward of scaled dot-product attention. One task per (image, head), which owns that head's
 * dk and dv; it walks the queries in blocks of SD_ATTN_BWD_BLOCK rows and, per block, recomputes
 * the probabilities P (rows, Lk) as the forward does (scores by sgemm, max subtraction, the
 * forward's exp), so no (Lq, Lk) matrix is ever stored:
 *   dP = dout v^T,  dS = P * (dP - rowsum(P * dP)),
 *   dq = scale dS k,  dk += scale dS^T q,  dv += P^T dout  (blocks added in order).
 * A thread's scratch is two (block, Lk) buffers. */
#include "cpu_internal.h"

#include <math.h>
#include <string.h>

#define SD_ATTN_BWD_BLOCK 256

/* Rows of s (rows, ld) over their first keep(r) keys become probabilities; keys beyond keep
 * (causal) become 0 up to len. */
SD_CPU_MULTIVERSION static void probabilities(float *s, int64_t rows, int64_t ld, int64_t len,
                                              bool causal, int64_t q0) {
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
    float inv = 1.0f / sum;
    for (int64_t j = 0; j < keep; j++)
      row[j] *= inv;
    for (int64_t j = keep; j < len; j++)
      row[j] = 0.0f;
  }
}

/* dp (rows, ld) over len keys becomes dS = p * (dp - rowsum(p * dp)). */
SD_CPU_MULTIVERSION static void softmax_grad(const float *p, float *dp, int64_t rows, int64_t ld,
                                             int64_t len) {
  for (int64_t r = 0; r < rows; r++) {
    const float *prob = p + r * ld;
    float *grad = dp + r * ld;
    double dot = 0.0;
    for (int64_t j = 0; j < len; j++)
      dot += (double)prob[j] * grad[j];
    float d = (float)dot;
#pragma omp simd
    for (int64_t j = 0; j < len; j++)
      grad[j] = prob[j] * (grad[j] - d);
  }
}

/* rows (count, D) with leading dim ld set to 0. */
static void zero_rows(float *rows, int64_t count, int64_t d, int64_t ld) {
  for (int64_t r = 0; r < count; r++)
    memset(rows + r * ld, 0, (size_t)d * sizeof(float));
}

int sd_cpu_attention_backward(sd_backend *be, const sd_tensor *q, const sd_tensor *k,
                              const sd_tensor *v, const sd_tensor *dout, int heads, float scale,
                              bool causal, sd_tensor *dq, sd_tensor *dk, sd_tensor *dv) {
  int64_t batch = q->shape[0], lq = q->shape[1], lk = k->shape[1], width = q->shape[2];
  int64_t d = width / heads;
  int64_t block = lq < SD_ATTN_BWD_BLOCK ? lq : SD_ATTN_BWD_BLOCK;
  int64_t tasks = batch * heads;
  int threads = sd_cpu_threads(be);
  if (10.0 * (double)batch * (double)lq * (double)lk * (double)width < SD_CPU_PARALLEL_FLOPS)
    threads = 1;
  if (tasks < threads)
    threads = (int)tasks;
  size_t per_thread = 2 * (size_t)block * (size_t)lk; /* P, then dP / dS */
  sd_arena_mark mark = sd_arena_get_mark(be);
  float *scratch = sd_cpu_scratch(be, (size_t)threads * per_thread, "attention_backward scores");
  if (!scratch)
    return -1;
  const float *qd = q->data, *kd = k->data, *vd = v->data, *god = dout->data;
  float *dqd = dq ? dq->data : NULL, *dkd = dk ? dk->data : NULL, *dvd = dv ? dv->data : NULL;
  sd_dnnl_status failed = {dnnl_success};
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t task = 0; task < tasks; task++) {
    int64_t n = task / heads, h = task % heads;
    float *p = scratch + (size_t)SD_CPU_THREAD_ID() * per_thread; /* (block, Lk) */
    float *ds = p + (size_t)block * (size_t)lk;                   /* (block, Lk) */
    const float *kh = kd + n * lk * width + h * d;                /* (Lk, D), ld width */
    const float *vh = vd + n * lk * width + h * d;
    float *dkh = dkd ? dkd + n * lk * width + h * d : NULL;
    float *dvh = dvd ? dvd + n * lk * width + h * d : NULL;
    if (dkh)
      zero_rows(dkh, lk, d, width);
    if (dvh)
      zero_rows(dvh, lk, d, width);
    for (int64_t q0 = 0; q0 < lq; q0 += block) {
      int64_t rows = lq - q0 < block ? lq - q0 : block;
      int64_t len = causal ? q0 + rows : lk;                /* keys this block can see */
      const float *qh = qd + (n * lq + q0) * width + h * d; /* (rows, D), ld width */
      const float *goh = god + (n * lq + q0) * width + h * d;
      DNNL_NOTE(&failed,
                sd_cpu_sgemm('N', 'T', rows, len, d, scale, qh, width, kh, width, 0.0f, p, lk));
      probabilities(p, rows, lk, len, causal, q0);
      if (dvh)
        DNNL_NOTE(&failed,
                  sd_cpu_sgemm('T', 'N', len, d, rows, 1.0f, p, lk, goh, width, 1.0f, dvh, width));
      if (!dqd && !dkh)
        continue;
      DNNL_NOTE(&failed,
                sd_cpu_sgemm('N', 'T', rows, len, d, 1.0f, goh, width, vh, width, 0.0f, ds, lk));
      softmax_grad(p, ds, rows, lk, len);
      if (dqd)
        DNNL_NOTE(&failed, sd_cpu_sgemm('N', 'N', rows, d, len, scale, ds, lk, kh, width, 0.0f,
                                        dqd + (n * lq + q0) * width + h * d, width));
      if (dkh)
        DNNL_NOTE(&failed,
                  sd_cpu_sgemm('T', 'N', len, d, rows, scale, ds, lk, qh, width, 1.0f, dkh, width));
    }
  }
  sd_arena_release(be, mark);
  return sd_dnnl_report(&failed);
}
