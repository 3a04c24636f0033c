/* y = sum_i c_i x_i evaluated left to right in float32 with one rounding per product and per sum
 * (__fmul_rn / __fadd_rn are never contracted into FMAs), as the CPU backend and the equivalent
 * PyTorch float32 expression do; the result is rounded once to the activation dtype. The inputs
 * and coefficients travel by value in the kernel arguments. Each element reads all inputs before
 * y is written, so y may alias any input. */
#include "cuda_internal.h"

template <typename T> struct lincomb_args {
  const T *x[SD_LINCOMB_MAX];
  float c[SD_LINCOMB_MAX];
  int n;
};

template <typename T> __global__ void lincomb_kernel(lincomb_args<T> args, int64_t count, T *y) {
  for (int64_t e = sd_grid_first(); e < count; e += sd_grid_stride()) {
    float acc = __fmul_rn(args.c[0], sd_load_f32(args.x[0] + e));
    for (int i = 1; i < args.n; i++)
      acc = __fadd_rn(acc, __fmul_rn(args.c[i], sd_load_f32(args.x[i] + e)));
    sd_store_f32(y + e, acc);
  }
}

template <typename T>
static int launch_lincomb(sd_cuda *cu, int n, const float *coeffs, const sd_tensor *const *xs,
                          sd_tensor *y) {
  int64_t count = sd_tensor_numel(y);
  if (count == 0)
    return 0;
  lincomb_args<T> args = {};
  for (int i = 0; i < n; i++) {
    args.x[i] = (const T *)xs[i]->data;
    args.c[i] = coeffs[i];
  }
  args.n = n;
  lincomb_kernel<T>
      <<<sd_cuda_blocks(count), SD_CUDA_THREADS, 0, cu->stream>>>(args, count, (T *)y->data);
  CUDA_CHECK_LAUNCH("lincomb_kernel");
  return 0;
}

int sd_cuda_lincomb(sd_backend *be, int n, const float *coeffs, const sd_tensor *const *xs,
                    sd_tensor *y) {
  return SD_CUDA_TYPED_CALL(y->dtype, "lincomb", launch_lincomb, sd_cuda_of(be), n, coeffs, xs, y);
}
