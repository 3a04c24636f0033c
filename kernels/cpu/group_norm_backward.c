/* Backward of GroupNorm (+ fused SiLU). One task per (image, group): the statistics are
 * recomputed with group_norm.c's arithmetic (two passes, float over vector lanes within chunks,
 * double across chunks); with xhat = (x - mean) rstd, z = x scale + shift (the forward's affine)
 * and dz = dy (times silu'(z) when silu):
 *   per channel: sum dz and sum dz xhat (float within chunks, double across), kept per image;
 *   over the group: dxhat = dz gamma, A = sum dxhat, P = sum dxhat xhat;
 *   dx = rstd (dxhat - A / n - xhat P / n).
 * dgamma and dbeta then add the per-image channel sums in image order, so they do not depend on
 * the thread count. */
#include "cpu_internal.h"

#include <math.h>

/* One channel's n values: dz = dy (times silu'(x scale + shift) when silu) into dz, and
 * (sum dz, sum dz xhat) summed in float over vector lanes within chunks, in double across. */
SD_CPU_MULTIVERSION static void channel_dz(const float *x, const float *dy, int64_t n, float mean,
                                           float rstd, float scale, float shift, bool silu,
                                           float *dz, double *sum_dz, double *sum_dz_xhat) {
  double total = 0.0, total_xhat = 0.0;
  for (int64_t c0 = 0; c0 < n; c0 += SD_NORM_CHUNK) {
    int64_t c1 = c0 + SD_NORM_CHUNK < n ? c0 + SD_NORM_CHUNK : n;
    float part = 0.0f, part_xhat = 0.0f;
    if (silu) {
#pragma omp simd reduction(+ : part, part_xhat)
      for (int64_t i = c0; i < c1; i++) {
        float d = dy[i] * sd_cpu_silu_grad(x[i] * scale + shift);
        dz[i] = d;
        part += d;
        part_xhat += d * ((x[i] - mean) * rstd);
      }
    } else {
#pragma omp simd reduction(+ : part, part_xhat)
      for (int64_t i = c0; i < c1; i++) {
        float d = dy[i];
        dz[i] = d;
        part += d;
        part_xhat += d * ((x[i] - mean) * rstd);
      }
    }
    total += part;
    total_xhat += part_xhat;
  }
  *sum_dz = total;
  *sum_dz_xhat = total_xhat;
}

/* dx (n) = rstd (dz gamma - a - xhat p), in place over dz. */
SD_CPU_MULTIVERSION static void channel_dx(const float *x, int64_t n, float mean, float rstd,
                                           float gamma, float a, float p, float *dx) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++)
    dx[i] = rstd * (dx[i] * gamma - a - (x[i] - mean) * rstd * p);
}

/* One group x, dy (group_channels, spatial): per-channel sums (sum dz, sum dz xhat) into sums
 * (group_channels, 2), and dx; with dx NULL, dz goes to scratch (spatial floats). */
static void group_backward(const float *x, const float *gamma, const float *beta, const float *dy,
                           int64_t group_channels, int64_t spatial, float eps, bool silu, float *dx,
                           float *scratch, double *sums) {
  int64_t n = group_channels * spatial;
  float mean, rstd;
  sd_cpu_group_mean_rstd(x, n, eps, &mean, &rstd);
  double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
  for (int64_t c = 0; c < group_channels; c++) {
    float scale = gamma[c] * rstd;
    float shift = beta[c] - mean * scale;
    channel_dz(x + c * spatial, dy + c * spatial, spatial, mean, rstd, scale, shift, silu,
               dx ? dx + c * spatial : scratch, &sums[2 * c], &sums[2 * c + 1]);
    sum_dxhat += gamma[c] * sums[2 * c];
    sum_dxhat_xhat += gamma[c] * sums[2 * c + 1];
  }
  if (!dx)
    return;
  float a = (float)(sum_dxhat / (double)n), p = (float)(sum_dxhat_xhat / (double)n);
  for (int64_t c = 0; c < group_channels; c++)
    channel_dx(x + c * spatial, spatial, mean, rstd, gamma[c], a, p, dx + c * spatial);
}

int sd_cpu_group_norm_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                               const sd_tensor *beta, const sd_tensor *dy, int groups, float eps,
                               bool silu, sd_tensor *dx, sd_tensor *dgamma, sd_tensor *dbeta) {
  int64_t batch = x->shape[0], channels = x->shape[1];
  int64_t spatial = sd_tensor_numel(x) / (batch * channels);
  int64_t group_channels = channels / groups;
  int64_t group_size = group_channels * spatial;
  sd_arena_mark mark = sd_arena_get_mark(be);
  /* (B, C, 2) doubles: sum dz, sum dz xhat */
  double *sums =
      (double *)sd_cpu_scratch(be, (size_t)(batch * channels * 4), "group_norm_backward sums");
  int threads = batch * channels * spatial > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
  /* with no dx, each thread's dz of one channel */
  float *scratch =
      dx ? NULL : sd_cpu_scratch(be, (size_t)(threads * spatial), "group_norm_backward dz");
  if (!sums || (!dx && !scratch)) {
    sd_arena_release(be, mark);
    return -1;
  }
  const float *src = x->data, *grad_out = dy->data;
  const float *g = gamma->data, *bt = beta->data;
  float *grad_in = dx ? dx->data : NULL;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t task = 0; task < batch * groups; task++) {
    int64_t c0 = task % groups * group_channels;
    group_backward(src + task * group_size, g + c0, bt + c0, grad_out + task * group_size,
                   group_channels, spatial, eps, silu, grad_in ? grad_in + task * group_size : NULL,
                   scratch ? scratch + (size_t)SD_CPU_THREAD_ID() * (size_t)spatial : NULL,
                   sums + 2 * task * group_channels);
  }
  for (int64_t c = 0; c < channels; c++) {
    double sum_dz = 0.0, sum_dz_xhat = 0.0;
    for (int64_t n = 0; n < batch; n++) {
      sum_dz += sums[2 * (n * channels + c)];
      sum_dz_xhat += sums[2 * (n * channels + c) + 1];
    }
    if (dbeta)
      ((float *)dbeta->data)[c] = (float)((double)((float *)dbeta->data)[c] + sum_dz);
    if (dgamma)
      ((float *)dgamma->data)[c] = (float)((double)((float *)dgamma->data)[c] + sum_dz_xhat);
  }
  sd_arena_release(be, mark);
  return 0;
}
