/* torch.randn of torch.Generator('cuda') per batch item on the device: one thread per element,
 * element i of item b is sd_philox_randn(seeds[b], offsets[b], i) in float32 (kernels/philox.h,
 * the function the CPU op and worker/rng use), rounded once to the tensor's dtype. One launch per
 * item, with its seed and offset as kernel arguments: nothing is copied from the host. */
#include "cuda_internal.h"

#include "../philox.h"

template <typename T>
__global__ void randn_philox_kernel(uint64_t seed, uint64_t offset, int64_t n, T *__restrict__ y) {
  for (int64_t i = sd_grid_first(); i < n; i += sd_grid_stride())
    sd_store_f32(y + i, sd_philox_randn(seed, offset, (uint64_t)i));
}

template <typename T>
static int launch_randn_philox(sd_cuda *cu, const uint64_t *seeds, const uint64_t *offsets,
                               sd_tensor *out) {
  int64_t batch = out->shape[0];
  int64_t per_item = sd_tensor_numel(out) / batch;
  for (int64_t b = 0; b < batch; b++) {
    randn_philox_kernel<T><<<sd_cuda_blocks(per_item), SD_CUDA_THREADS, 0, cu->stream>>>(
        seeds[b], offsets[b], per_item, (T *)out->data + b * per_item);
    CUDA_CHECK_LAUNCH("randn_philox_kernel");
  }
  return 0;
}

int sd_cuda_randn_philox(sd_backend *be, const uint64_t *seeds, const uint64_t *offsets,
                         sd_tensor *out) {
  return SD_CUDA_TYPED_CALL(out->dtype, "randn_philox", launch_randn_philox, sd_cuda_of(be), seeds,
                            offsets, out);
}
