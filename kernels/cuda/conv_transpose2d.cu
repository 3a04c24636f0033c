/* Transposed 2-D convolution, see sd_op_conv_transpose2d, as a gather: one thread per output
 * value sums, over input channels and the kernel taps that land on it, x * w in float32, then adds
 * the bias. Written for DPT's reassemble layers (a few per image, kernel = stride), where it is a
 * small part of the model; not tuned. */
#include "cuda_internal.h"

template <typename T>
__global__ void conv_transpose2d_kernel(const T *__restrict__ x, const T *__restrict__ w,
                                        const T *__restrict__ b, int64_t c, int64_t h, int64_t wd,
                                        int64_t k, int64_t kh, int64_t kw, int64_t ho, int64_t wo,
                                        int stride, int pad, int64_t count, T *__restrict__ y) {
  for (int64_t idx = sd_grid_first(); idx < count; idx += sd_grid_stride()) {
    int64_t oj = idx % wo, rest = idx / wo;
    int64_t oi = rest % ho;
    rest /= ho;
    int64_t o = rest % k, n = rest / k;
    const T *image = x + n * c * h * wd;
    float acc = 0.0f;
    for (int64_t u = 0; u < kh; u++) {
      int64_t ti = oi + pad - u; /* = i * stride */
      if (ti < 0 || ti % stride != 0 || ti / stride >= h)
        continue;
      int64_t i = ti / stride;
      for (int64_t v = 0; v < kw; v++) {
        int64_t tj = oj + pad - v;
        if (tj < 0 || tj % stride != 0 || tj / stride >= wd)
          continue;
        int64_t j = tj / stride;
        for (int64_t ci = 0; ci < c; ci++)
          acc += sd_load_f32(image + (ci * h + i) * wd + j) *
                 sd_load_f32(w + ((ci * k + o) * kh + u) * kw + v);
      }
    }
    if (b)
      acc += sd_load_f32(b + o);
    sd_store_f32(y + idx, acc);
  }
}

template <typename T>
static int launch_conv_transpose2d(sd_cuda *cu, const sd_tensor *x, const sd_tensor *w,
                                   const sd_tensor *b, int stride, int pad, sd_tensor *y) {
  int64_t count = sd_tensor_numel(y);
  conv_transpose2d_kernel<T><<<sd_cuda_blocks(count), SD_CUDA_THREADS, 0, cu->stream>>>(
      (const T *)x->data, (const T *)w->data, b ? (const T *)b->data : NULL, x->shape[1],
      x->shape[2], x->shape[3], w->shape[1], w->shape[2], w->shape[3], y->shape[2], y->shape[3],
      stride, pad, count, (T *)y->data);
  CUDA_CHECK_LAUNCH("conv_transpose2d_kernel");
  return 0;
}

int sd_cuda_conv_transpose2d(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                             const sd_tensor *b, int stride, int pad, sd_tensor *y) {
  if (w->dtype != x->dtype || (b && b->dtype != x->dtype))
    return SD_ERROR("conv_transpose2d: weight dtype %s differs from activations %s",
                    sd_dtype_name(w->dtype), sd_dtype_name(x->dtype));
  return SD_CUDA_TYPED_CALL(x->dtype, "conv_transpose2d", launch_conv_transpose2d, sd_cuda_of(be),
                            x, w, b, stride, pad, y);
}
