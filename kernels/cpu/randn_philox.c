/* torch.randn of torch.Generator('cuda') per batch item on the host: element i of item b is
 * sd_philox_randn(seeds[b], offsets[b], i), the same function worker/rng's host stream uses, so
 * the two agree bit for bit. */
#include "cpu_internal.h"

#include "../philox.h"

int sd_cpu_randn_philox(sd_backend *be, const uint64_t *seeds, const uint64_t *offsets,
                        sd_tensor *out) {
  float *dst = out->data;
  int64_t batch = out->shape[0];
  int64_t per_item = sd_tensor_numel(out) / batch;
  int threads = batch * per_item > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
  for (int64_t b = 0; b < batch; b++) {
    uint64_t seed = seeds[b], offset = offsets[b];
    float *item = dst + b * per_item;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < per_item; i++)
      item[i] = sd_philox_randn(seed, offset, (uint64_t)i);
  }
  return 0;
}
