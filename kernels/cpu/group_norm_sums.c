/* Per (image, group) sums of d = x - center and d^2 for a GroupNorm whose statistics come from
 * several parts of an image (spatial parallelism, docs/spatial.md). Runs of at most
 * SD_NORM_SUMS_RUN values of one channel are summed in float over vector lanes, runs in double.
 * Work is split over (image, group). */
#include "cpu_internal.h"

#define SD_NORM_SUMS_RUN 4096

SD_CPU_MULTIVERSION static void sum_group(const float *x, int64_t group_channels, int64_t spatial,
                                          float center, double *out) {
  double total = 0.0, squares = 0.0;
  for (int64_t c = 0; c < group_channels; c++) {
    const float *plane = x + c * spatial;
    for (int64_t r0 = 0; r0 < spatial; r0 += SD_NORM_SUMS_RUN) {
      int64_t r1 = r0 + SD_NORM_SUMS_RUN < spatial ? r0 + SD_NORM_SUMS_RUN : spatial;
      float part = 0.0f, part2 = 0.0f;
#pragma omp simd reduction(+ : part, part2)
      for (int64_t i = r0; i < r1; i++) {
        float d = plane[i] - center;
        part += d;
        part2 += d * d;
      }
      total += part;
      squares += part2;
    }
  }
  out[0] = total;
  out[1] = squares;
}

int sd_cpu_group_norm_sums(sd_backend *be, const sd_tensor *x, int groups, const float *center,
                           double *sums) {
  int64_t batch = x->shape[0], channels = x->shape[1];
  int64_t planes = batch * channels;
  int64_t spatial = planes > 0 ? sd_tensor_numel(x) / planes : 0;
  int64_t group_channels = channels / groups;
  const float *src = x->data;
  int threads = batch * channels * spatial > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t task = 0; task < batch * groups; task++)
    sum_group(src + task * group_channels * spatial, group_channels, spatial,
              center ? center[task] : 0.0f, sums + 2 * task);
  return 0;
}
