/* y (B, C, H, W) = x + v broadcast over the spatial dims: add_channel_bias with v (B, C) (e.g.
 * the time embedding), and conv2d's bias with v (C) shared by all images. */
#include "cuda_internal.h"

/* y (B, C, HW) = x + v[b * v_batch_stride + c]; y may alias x. */
template <typename T>
__global__ void plane_bias_kernel(const T *x, const T *__restrict__ v, int64_t v_batch_stride,
                                  int64_t channels, int64_t hw, int64_t n, T *y) {
  for (int64_t i = sd_grid_first(); i < n; i += sd_grid_stride()) {
    int64_t plane = i / hw; /* b * C + c */
    int64_t b = plane / channels, c = plane % channels;
    sd_store_f32(y + i, sd_load_f32(x + i) + sd_load_f32(v + b * v_batch_stride + c));
  }
}

template <typename T>
static int launch_plane_bias(sd_cuda *cu, const void *x, const void *v, int64_t v_batch_stride,
                             int64_t channels, int64_t hw, int64_t n, void *y) {
  plane_bias_kernel<T><<<sd_cuda_blocks(n), SD_CUDA_THREADS, 0, cu->stream>>>(
      (const T *)x, (const T *)v, v_batch_stride, channels, hw, n, (T *)y);
  CUDA_CHECK_LAUNCH("plane_bias_kernel");
  return 0;
}

int sd_cuda_add_plane_bias(sd_cuda *cu, sd_dtype dtype, const void *x, const void *v,
                           int64_t v_batch_stride, int64_t batch, int64_t channels, int64_t hw,
                           void *y) {
  int64_t n = batch * channels * hw;
  if (n == 0)
    return 0;
  return SD_CUDA_TYPED_CALL(dtype, "add_channel_bias", launch_plane_bias, cu, x, v, v_batch_stride,
                            channels, hw, n, y);
}

int sd_cuda_add_channel_bias(sd_backend *be, const sd_tensor *x, const sd_tensor *v, sd_tensor *y) {
  int64_t channels = x->shape[1];
  return sd_cuda_add_plane_bias(sd_cuda_of(be), x->dtype, x->data, v->data, channels, x->shape[0],
                                channels, x->shape[2] * x->shape[3], y->data);
}
