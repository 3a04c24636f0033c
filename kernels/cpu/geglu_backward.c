/* Backward of GEGLU (y = hidden * gelu(gate) with hidden, gate = x.chunk(2, -1)):
 * dhidden = dy gelu(gate), dgate = dy hidden gelu'(gate). */
#include "cpu_internal.h"

/* One row: x (2N) = [hidden, gate], dy (N), dx (2N). */
SD_CPU_MULTIVERSION static void geglu_row_backward(const float *x, const float *dy, int64_t n,
                                                   float *dx) {
#pragma omp simd
  for (int64_t j = 0; j < n; j++) {
    float gate = x[n + j];
    dx[j] = dy[j] * sd_cpu_gelu(gate);
    dx[n + j] = dy[j] * x[j] * sd_cpu_gelu_grad(gate);
  }
}

int sd_cpu_geglu_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *dy, sd_tensor *dx) {
  int64_t n = dy->shape[dy->ndim - 1];
  int64_t rows = sd_tensor_numel(dy) / n;
  const float *src = x->data, *grad_out = dy->data;
  float *grad_in = dx->data;
  int threads = rows * n > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t r = 0; r < rows; r++)
    geglu_row_backward(src + r * 2 * n, grad_out + r * n, n, grad_in + r * 2 * n);
  return 0;
}
