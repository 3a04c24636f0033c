/* Nearest-neighbour 2x upsampling: y[b, c, i, j] = x[b, c, i / 2, j / 2], one thread per output
 * value (reads of neighbouring threads coincide, so they are served from cache). */
#include "cuda_internal.h"

/* y (planes, 2H, 2W) from x (planes, H, W). */
template <typename T>
__global__ void upsample_nearest2x_kernel(const T *__restrict__ x, int64_t h, int64_t w,
                                          int64_t count, T *__restrict__ y) {
  for (int64_t idx = sd_grid_first(); idx < count; idx += sd_grid_stride()) {
    int64_t j = idx % (2 * w), rest = idx / (2 * w);
    int64_t i = rest % (2 * h), plane = rest / (2 * h);
    y[idx] = x[(plane * h + i / 2) * w + j / 2];
  }
}

template <typename T> static int launch_upsample(sd_cuda *cu, const sd_tensor *x, sd_tensor *y) {
  int64_t count = sd_tensor_numel(y);
  if (count == 0)
    return 0;
  upsample_nearest2x_kernel<T><<<sd_cuda_blocks(count), SD_CUDA_THREADS, 0, cu->stream>>>(
      (const T *)x->data, x->shape[2], x->shape[3], count, (T *)y->data);
  CUDA_CHECK_LAUNCH("upsample_nearest2x_kernel");
  return 0;
}

int sd_cuda_upsample_nearest2x(sd_backend *be, const sd_tensor *x, sd_tensor *y) {
  return SD_CUDA_TYPED_CALL(x->dtype, "upsample_nearest2x", launch_upsample, sd_cuda_of(be), x, y);
}
