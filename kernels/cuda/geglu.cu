/* GEGLU as diffusers computes it: hidden, gate = x.chunk(2, dim=-1); y = hidden * gelu(gate),
 * exact (erf) GELU, float32 arithmetic. */
#include "cuda_internal.h"

/* y (rows, N) = x[:, :N] * gelu(x[:, N:]) for x (rows, 2N). */
template <typename T>
__global__ void geglu_kernel(const T *__restrict__ x, int64_t n, int64_t count, T *__restrict__ y) {
  for (int64_t i = sd_grid_first(); i < count; i += sd_grid_stride()) {
    int64_t row = i / n, j = i % n;
    const T *in = x + row * 2 * n;
    sd_store_f32(y + i, sd_load_f32(in + j) * sd_gelu_f32(sd_load_f32(in + n + j)));
  }
}

template <typename T> static int launch_geglu(sd_cuda *cu, const sd_tensor *x, sd_tensor *y) {
  int64_t n = y->shape[y->ndim - 1];
  int64_t count = sd_tensor_numel(y);
  if (count == 0)
    return 0;
  geglu_kernel<T><<<sd_cuda_blocks(count), SD_CUDA_THREADS, 0, cu->stream>>>((const T *)x->data, n,
                                                                             count, (T *)y->data);
  CUDA_CHECK_LAUNCH("geglu_kernel");
  return 0;
}

int sd_cuda_geglu(sd_backend *be, const sd_tensor *x, sd_tensor *y) {
  return SD_CUDA_TYPED_CALL(x->dtype, "geglu", launch_geglu, sd_cuda_of(be), x, y);
}
