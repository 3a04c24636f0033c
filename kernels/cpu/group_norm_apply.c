/* GroupNorm's affine step with statistics given by the caller (spatial parallelism: statistics
 * all-reduced over the ranks of a group, docs/spatial.md), through the same code as group_norm.
 * Work is split over (image, group). */
#include "cpu_internal.h"

int sd_cpu_group_norm_apply(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                            const sd_tensor *beta, int groups, const float *stats, bool silu,
                            sd_tensor *y) {
  int64_t batch = x->shape[0], channels = x->shape[1];
  int64_t planes = batch * channels;
  int64_t spatial = planes > 0 ? sd_tensor_numel(x) / planes : 0;
  int64_t group_channels = channels / groups;
  int64_t group_size = group_channels * spatial;
  const float *src = x->data, *g = gamma->data, *bt = beta->data;
  float *dst = y->data;
  int threads = batch * channels * spatial > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t task = 0; task < batch * groups; task++) {
    int64_t c0 = task % groups * group_channels;
    sd_cpu_group_affine(src + task * group_size, g + c0, bt + c0, group_channels, spatial,
                        stats[2 * task], stats[2 * task + 1], silu, dst + task * group_size);
  }
  return 0;
}
