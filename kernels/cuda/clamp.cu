/* Elementwise clamp to [lo, hi] in float32; NaN passes through as in torch.clamp (both
 * comparisons are false for NaN). */
#include "cuda_internal.h"

template <typename T>
__global__ void clamp_kernel(const T *x, float lo, float hi, int64_t n, T *y) {
  for (int64_t i = sd_grid_first(); i < n; i += sd_grid_stride()) {
    float v = sd_load_f32(x + i);
    sd_store_f32(y + i, v < lo ? lo : (v > hi ? hi : v));
  }
}

template <typename T>
static int launch_clamp(sd_cuda *cu, const sd_tensor *x, float lo, float hi, sd_tensor *y) {
  int64_t n = sd_tensor_numel(x);
  if (n == 0)
    return 0;
  clamp_kernel<T><<<sd_cuda_blocks(n), SD_CUDA_THREADS, 0, cu->stream>>>((const T *)x->data, lo, hi,
                                                                         n, (T *)y->data);
  CUDA_CHECK_LAUNCH("clamp_kernel");
  return 0;
}

int sd_cuda_clamp(sd_backend *be, const sd_tensor *x, float lo, float hi, sd_tensor *y) {
  return SD_CUDA_TYPED_CALL(x->dtype, "clamp", launch_clamp, sd_cuda_of(be), x, lo, hi, y);
}
