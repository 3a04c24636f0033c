/* diffusers' get_timestep_embedding of one timestep on the device: one thread per element of
 * out (B, dim), element k of every row is sd_timestep_embedding_element (kernels/
 * timestep_embedding.h, the function the CPU op and worker/model use) in float32, rounded once to
 * the tensor's dtype. The float32 scalars are computed on the host and passed as kernel
 * arguments: nothing is copied from the host, so the op never waits for the device. */
#include "cuda_internal.h"

#include "../timestep_embedding.h"

template <typename T>
__global__ void timestep_embedding_kernel(sd_timestep_embedding_args args, int64_t dim, int64_t n,
                                          T *__restrict__ y) {
  for (int64_t i = sd_grid_first(); i < n; i += sd_grid_stride())
    sd_store_f32(y + i, sd_timestep_embedding_element(args, i % dim));
}

template <typename T>
static int launch_timestep_embedding(sd_cuda *cu, sd_timestep_embedding_args args, sd_tensor *out) {
  int64_t dim = out->shape[1], n = sd_tensor_numel(out);
  timestep_embedding_kernel<T>
      <<<sd_cuda_blocks(n), SD_CUDA_THREADS, 0, cu->stream>>>(args, dim, n, (T *)out->data);
  CUDA_CHECK_LAUNCH("timestep_embedding_kernel");
  return 0;
}

int sd_cuda_timestep_embedding(sd_backend *be, double timestep, bool flip_sin_to_cos,
                               float freq_shift, double max_period, sd_tensor *out) {
  sd_timestep_embedding_args args =
      sd_timestep_embedding_setup(timestep, out->shape[1], flip_sin_to_cos, freq_shift, max_period);
  return SD_CUDA_TYPED_CALL(out->dtype, "timestep_embedding", launch_timestep_embedding,
                            sd_cuda_of(be), args, out);
}
