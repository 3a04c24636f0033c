/* Bilinear and bicubic resize of x (B, C, H, W) to y (B, C, Ho, Wo) as torch's F.interpolate,
 * see sd_op_interpolate; one thread per output value, the taps from kernels/interpolate.h (the
 * CPU op's), summed in the CPU op's order (width taps, then rows) in float32. */
#include "cuda_internal.h"

#include "../interpolate.h"

template <typename T>
__global__ void interpolate_kernel(const T *__restrict__ x, int64_t h, int64_t w, int64_t ho,
                                   int64_t wo, int64_t count, sd_interp_mode mode,
                                   bool align_corners, T *__restrict__ y) {
  for (int64_t idx = sd_grid_first(); idx < count; idx += sd_grid_stride()) {
    int64_t j = idx % wo, rest = idx / wo;
    int64_t i = rest % ho, plane = rest / ho;
    int64_t ri[SD_INTERP_MAX_TAPS], ci[SD_INTERP_MAX_TAPS];
    float rw[SD_INTERP_MAX_TAPS], cw[SD_INTERP_MAX_TAPS];
    int taps = sd_interp_taps(mode, align_corners, h, ho, i, ri, rw);
    sd_interp_taps(mode, align_corners, w, wo, j, ci, cw);
    const T *src = x + plane * h * w;
    float acc = 0.0f;
    for (int r = 0; r < taps; r++) {
      const T *line = src + ri[r] * w;
      float t = __fmul_rn(sd_load_f32(line + ci[0]), cw[0]);
      for (int c = 1; c < taps; c++)
        t = __fadd_rn(t, __fmul_rn(sd_load_f32(line + ci[c]), cw[c]));
      acc = r == 0 ? __fmul_rn(t, rw[0]) : __fadd_rn(acc, __fmul_rn(t, rw[r]));
    }
    sd_store_f32(y + idx, acc);
  }
}

template <typename T>
static int launch_interpolate(sd_cuda *cu, const sd_tensor *x, sd_interp_mode mode,
                              bool align_corners, sd_tensor *y) {
  int64_t count = sd_tensor_numel(y);
  interpolate_kernel<T><<<sd_cuda_blocks(count), SD_CUDA_THREADS, 0, cu->stream>>>(
      (const T *)x->data, x->shape[2], x->shape[3], y->shape[2], y->shape[3], count, mode,
      align_corners, (T *)y->data);
  CUDA_CHECK_LAUNCH("interpolate_kernel");
  return 0;
}

int sd_cuda_interpolate(sd_backend *be, const sd_tensor *x, sd_interp_mode mode, bool align_corners,
                        sd_tensor *y) {
  return SD_CUDA_TYPED_CALL(x->dtype, "interpolate", launch_interpolate, sd_cuda_of(be), x, mode,
                            align_corners, y);
}
