/* Window copy / cross-fade between two (B, C, H, W) images, the seam blending of tiled VAE
 * decoding: one thread per window element. The blend computes in float32 with one rounding per
 * product and for the sum (__fmul_rn / __fadd_rn are never contracted into FMAs), as the CPU
 * backend and torch's `a * w_a + b * w_b` in diffusers' blend_v / blend_h do; the result is
 * rounded once to the activation dtype. */
#include "cuda_internal.h"

/* Geometry of one call: the window and where it sits in x (B, C, Hx, Wx) and y (B, C, Hy, Wy). */
struct blend_window_geometry {
  int64_t xh, xw, yh, yw;
  int64_t x_row, x_col, y_row, y_col;
  int64_t rows, cols;
};

template <typename T>
__global__ void blend_window_kernel(const T *x, blend_window_geometry g, int mode, int64_t count,
                                    T *y) {
  for (int64_t e = sd_grid_first(); e < count; e += sd_grid_stride()) {
    const int64_t c = e % g.cols, r = (e / g.cols) % g.rows, p = e / (g.cols * g.rows);
    const T *s = x + (p * g.xh + g.x_row + r) * g.xw + g.x_col + c;
    T *d = y + (p * g.yh + g.y_row + r) * g.yw + g.y_col + c;
    if (mode == SD_BLEND_COPY) {
      *d = *s;
      continue;
    }
    const double t =
        mode == SD_BLEND_ROWS ? (double)r / (double)g.rows : (double)c / (double)g.cols;
    const float wa = (float)(1.0 - t), wb = (float)t;
    sd_store_f32(d, __fadd_rn(__fmul_rn(sd_load_f32(s), wa), __fmul_rn(sd_load_f32(d), wb)));
  }
}

template <typename T>
static int launch_blend_window(sd_cuda *cu, const sd_tensor *x, int64_t x_row, int64_t x_col,
                               sd_tensor *y, int64_t y_row, int64_t y_col, int64_t rows,
                               int64_t cols, sd_blend_mode mode) {
  const int64_t count = x->shape[0] * x->shape[1] * rows * cols;
  if (count == 0)
    return 0;
  blend_window_geometry g = {x->shape[2], x->shape[3], y->shape[2], y->shape[3], x_row,
                             x_col,       y_row,       y_col,       rows,        cols};
  blend_window_kernel<T><<<sd_cuda_blocks(count), SD_CUDA_THREADS, 0, cu->stream>>>(
      (const T *)x->data, g, (int)mode, count, (T *)y->data);
  CUDA_CHECK_LAUNCH("blend_window_kernel");
  return 0;
}

int sd_cuda_blend_window(sd_backend *be, const sd_tensor *x, int64_t x_row, int64_t x_col,
                         sd_tensor *y, int64_t y_row, int64_t y_col, int64_t rows, int64_t cols,
                         sd_blend_mode mode) {
  return SD_CUDA_TYPED_CALL(y->dtype, "blend_window", launch_blend_window, sd_cuda_of(be), x, x_row,
                            x_col, y, y_row, y_col, rows, cols, mode);
}
