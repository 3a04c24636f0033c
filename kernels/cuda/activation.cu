/* Elementwise activations (SiLU, exact and tanh GELU, QuickGELU, ReLU) in float32 with the accurate
 * libdevice expf / erff / tanhf, and the bias + activation pass that linear uses when cuBLASLt
 * does not fuse them: y (rows, cols) = act(x + bias (cols)). */
#include "cuda_internal.h"

/* y (n) = act(x (n) + bias[i % cols]), bias may be NULL; y may alias x. */
template <typename T>
__global__ void bias_activation_kernel(const T *x, const T *__restrict__ bias, sd_activation act,
                                       int64_t cols, int64_t n, T *y) {
  for (int64_t i = sd_grid_first(); i < n; i += sd_grid_stride()) {
    float v = sd_load_f32(x + i);
    if (bias)
      v += sd_load_f32(bias + i % cols);
    sd_store_f32(y + i, sd_activate_f32(v, act));
  }
}

template <typename T>
static int launch_bias_activation(sd_cuda *cu, const void *x, const void *bias, sd_activation act,
                                  int64_t cols, int64_t n, void *y) {
  bias_activation_kernel<T><<<sd_cuda_blocks(n), SD_CUDA_THREADS, 0, cu->stream>>>(
      (const T *)x, (const T *)bias, act, cols, n, (T *)y);
  CUDA_CHECK_LAUNCH("bias_activation_kernel");
  return 0;
}

int sd_cuda_bias_activation(sd_cuda *cu, sd_dtype dtype, const void *x, const void *bias,
                            sd_activation act, int64_t rows, int64_t cols, void *y) {
  int64_t n = rows * cols;
  if (n == 0)
    return 0;
  return SD_CUDA_TYPED_CALL(dtype, "activation", launch_bias_activation, cu, x, bias, act, cols, n,
                            y);
}

int sd_cuda_activation(sd_backend *be, const sd_tensor *x, sd_activation act, sd_tensor *y) {
  return sd_cuda_bias_activation(sd_cuda_of(be), x->dtype, x->data, NULL, act, 1,
                                 sd_tensor_numel(x), y->data);
}
