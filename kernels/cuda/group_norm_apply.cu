/* GroupNorm's affine step with statistics given on the host (ops.h group_norm_apply): the
 * (mean, rstd) pairs are staged to the device and group_norm's own apply kernel runs on them, so
 * equal statistics give what group_norm gives. */
#include "cuda_internal.h"

int sd_cuda_group_norm_apply(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                             const sd_tensor *beta, int groups, const float *stats, bool silu,
                             sd_tensor *y) {
  sd_cuda *cu = sd_cuda_of(be);
  int64_t groups_total = x->shape[0] * groups;
  if (groups_total == 0)
    return 0;
  void *device_stats;
  SD_TRY(sd_cuda_scratch(cu, (size_t)groups_total * 2 * sizeof(float), &device_stats));
  SD_TRY(
      sd_cuda_stage_to_device(cu, stats, (size_t)groups_total * 2 * sizeof(float), device_stats));
  return sd_cuda_group_affine(cu, x, (const float *)device_stats, gamma, beta, groups, silu, y);
}
