/* Nearest-neighbour resize of x (B, C, H, W) to y (B, C, Ho, Wo) with PyTorch's "nearest" source
 * index, see sd_op_upsample_nearest; one thread per output value (reads of neighbouring threads
 * coincide, so they are served from cache). */
#include "cuda_internal.h"

/* ATen's nearest_idx: identity and 2x are special-cased, else min(floor(dst * (in / out)), in - 1)
 * in float32 (round-to-nearest product, as on the CPU). */
__device__ static int64_t source_index(int64_t dst, int64_t in, int64_t out) {
  if (out == in)
    return dst;
  if (out == 2 * in)
    return dst >> 1;
  float scale = __fdiv_rn((float)in, (float)out);
  int64_t src = (int64_t)floorf(__fmul_rn((float)dst, scale));
  return src < in - 1 ? src : in - 1;
}

/* y (planes, Ho, Wo) from x (planes, H, W). */
template <typename T>
__global__ void upsample_nearest_kernel(const T *__restrict__ x, int64_t h, int64_t w, int64_t ho,
                                        int64_t wo, int64_t count, T *__restrict__ y) {
  for (int64_t idx = sd_grid_first(); idx < count; idx += sd_grid_stride()) {
    int64_t j = idx % wo, rest = idx / wo;
    int64_t i = rest % ho, plane = rest / ho;
    y[idx] = x[(plane * h + source_index(i, h, ho)) * w + source_index(j, w, wo)];
  }
}

template <typename T> static int launch_upsample(sd_cuda *cu, const sd_tensor *x, sd_tensor *y) {
  int64_t count = sd_tensor_numel(y);
  if (count == 0)
    return 0;
  upsample_nearest_kernel<T><<<sd_cuda_blocks(count), SD_CUDA_THREADS, 0, cu->stream>>>(
      (const T *)x->data, x->shape[2], x->shape[3], y->shape[2], y->shape[3], count, (T *)y->data);
  CUDA_CHECK_LAUNCH("upsample_nearest_kernel");
  return 0;
}

int sd_cuda_upsample_nearest(sd_backend *be, const sd_tensor *x, sd_tensor *y) {
  return SD_CUDA_TYPED_CALL(x->dtype, "upsample_nearest", launch_upsample, sd_cuda_of(be), x, y);
}
