/* GroupNorm as torch.nn.GroupNorm: per (image, group), mean and biased variance over the
 * group's channels and spatial positions, eps inside the sqrt, then the per-channel affine and
 * an optional fused SiLU. Statistics take two passes (mean, then squared deviations), each
 * summed in float over vector lanes within chunks and in double across chunks, so groups of
 * millions of values stay accurate. Work is split over (image, group). */
#include "cpu_internal.h"

#include <math.h>

SD_CPU_MULTIVERSION void sd_cpu_group_affine(const float *x, const float *gamma, const float *beta,
                                             int64_t group_channels, int64_t spatial, float mean,
                                             float rstd, bool silu, float *y) {
  for (int64_t c = 0; c < group_channels; c++) {
    float scale = gamma[c] * rstd;
    float shift = beta[c] - mean * scale;
    const float *in = x + c * spatial;
    float *out = y + c * spatial;
    if (silu) {
#pragma omp simd
      for (int64_t i = 0; i < spatial; i++)
        out[i] = sd_cpu_silu(in[i] * scale + shift);
    } else {
#pragma omp simd
      for (int64_t i = 0; i < spatial; i++)
        out[i] = in[i] * scale + shift;
    }
  }
}

/* Normalizes one group x (group_channels, spatial) into y (may alias x), with gamma and beta
 * indexed by the group's channels. */
SD_CPU_MULTIVERSION static void normalize_group(const float *x, const float *gamma,
                                                const float *beta, int64_t group_channels,
                                                int64_t spatial, float eps, bool silu, float *y) {
  float mean, rstd;
  sd_cpu_group_mean_rstd(x, group_channels * spatial, eps, &mean, &rstd);
  sd_cpu_group_affine(x, gamma, beta, group_channels, spatial, mean, rstd, silu, y);
}

int sd_cpu_group_norm(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                      const sd_tensor *beta, int groups, float eps, bool silu, sd_tensor *y) {
  int64_t batch = x->shape[0], channels = x->shape[1];
  int64_t spatial = sd_tensor_numel(x) / (batch * channels);
  int64_t group_channels = channels / groups;
  int64_t group_size = group_channels * spatial;
  const float *src = x->data;
  const float *g = gamma->data, *bt = beta->data;
  float *dst = y->data;
  int threads = batch * channels * spatial > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t task = 0; task < batch * groups; task++) {
    int64_t c0 = task % groups * group_channels;
    normalize_group(src + task * group_size, g + c0, bt + c0, group_channels, spatial, eps, silu,
                    dst + task * group_size);
  }
  return 0;
}
