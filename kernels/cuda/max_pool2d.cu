/* Max pooling of x (B, C, H, W) over kernel x kernel windows, see sd_op_max_pool2d; one thread
 * per output value, padding positions skipped (as -inf padding), NaN propagated. */
#include "cuda_internal.h"

template <typename T>
__global__ void max_pool2d_kernel(const T *__restrict__ x, int64_t h, int64_t w, int64_t ho,
                                  int64_t wo, int kernel, int stride, int pad, int64_t count,
                                  T *__restrict__ y) {
  for (int64_t idx = sd_grid_first(); idx < count; idx += sd_grid_stride()) {
    int64_t j = idx % wo, rest = idx / wo;
    int64_t i = rest % ho, plane = rest / ho;
    const T *src = x + plane * h * w;
    float best = -INFINITY;
    for (int u = 0; u < kernel; u++) {
      int64_t ii = i * stride - pad + u;
      if (ii < 0 || ii >= h)
        continue;
      for (int v = 0; v < kernel; v++) {
        int64_t jj = j * stride - pad + v;
        if (jj < 0 || jj >= w)
          continue;
        float val = sd_load_f32(src + ii * w + jj);
        if (val > best || isnan(val))
          best = val;
      }
    }
    sd_store_f32(y + idx, best);
  }
}

template <typename T>
static int launch_max_pool2d(sd_cuda *cu, const sd_tensor *x, int kernel, int stride, int pad,
                             sd_tensor *y) {
  int64_t count = sd_tensor_numel(y);
  max_pool2d_kernel<T><<<sd_cuda_blocks(count), SD_CUDA_THREADS, 0, cu->stream>>>(
      (const T *)x->data, x->shape[2], x->shape[3], y->shape[2], y->shape[3], kernel, stride, pad,
      count, (T *)y->data);
  CUDA_CHECK_LAUNCH("max_pool2d_kernel");
  return 0;
}

int sd_cuda_max_pool2d(sd_backend *be, const sd_tensor *x, int kernel, int stride, int pad,
                       sd_tensor *y) {
  return SD_CUDA_TYPED_CALL(x->dtype, "max_pool2d", launch_max_pool2d, sd_cuda_of(be), x, kernel,
                            stride, pad, y);
}
