/* Constant padding of x (B, C, H, W) into y (B, C, Ho, Wo) at (top, left), see sd_op_pad2d; one
 * thread per output value. */
#include "cuda_internal.h"

template <typename T>
__global__ void pad2d_kernel(const T *__restrict__ x, int64_t h, int64_t w, int64_t ho, int64_t wo,
                             int64_t top, int64_t left, float value, int64_t count,
                             T *__restrict__ y) {
  for (int64_t idx = sd_grid_first(); idx < count; idx += sd_grid_stride()) {
    int64_t j = idx % wo - left, rest = idx / wo;
    int64_t i = rest % ho - top, plane = rest / ho;
    if (i >= 0 && i < h && j >= 0 && j < w)
      y[idx] = x[(plane * h + i) * w + j];
    else
      sd_store_f32(y + idx, value);
  }
}

template <typename T>
static int launch_pad2d(sd_cuda *cu, const sd_tensor *x, int64_t top, int64_t left, float value,
                        sd_tensor *y) {
  int64_t count = sd_tensor_numel(y);
  pad2d_kernel<T><<<sd_cuda_blocks(count), SD_CUDA_THREADS, 0, cu->stream>>>(
      (const T *)x->data, x->shape[2], x->shape[3], y->shape[2], y->shape[3], top, left, value,
      count, (T *)y->data);
  CUDA_CHECK_LAUNCH("pad2d_kernel");
  return 0;
}

int sd_cuda_pad2d(sd_backend *be, const sd_tensor *x, int64_t top, int64_t left, float value,
                  sd_tensor *y) {
  return SD_CUDA_TYPED_CALL(x->dtype, "pad2d", launch_pad2d, sd_cuda_of(be), x, top, left, value,
                            y);
}
