/* Backward of the elementwise activations: dx = dy * act'(x), with the derivatives torch's
 * autograd uses (SiLU s (1 + x (1 - s)); exact GELU Phi(x) + x phi(x); tanh GELU differentiated
 * through its tanh; QuickGELU through x sigmoid(1.702 x); ReLU 0 at x <= 0), in float with the
 * forward's exp and erf (cpu_internal.h). */
#include "cpu_internal.h"

/* One loop per activation so that each vectorizes with the derivative inlined. */
#define SD_ACT_GRAD_LOOP(fn)                                                                       \
  do {                                                                                             \
    _Pragma("omp simd") for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * fn(x[i]);                  \
  } while (0)

SD_CPU_MULTIVERSION static void activation_grad_array(const float *x, const float *dy,
                                                      sd_activation act, int64_t n, float *dx) {
  switch (act) {
  case SD_ACT_SILU:
    SD_ACT_GRAD_LOOP(sd_cpu_silu_grad);
    break;
  case SD_ACT_GELU:
    SD_ACT_GRAD_LOOP(sd_cpu_gelu_grad);
    break;
  case SD_ACT_GELU_TANH:
    SD_ACT_GRAD_LOOP(sd_cpu_gelu_tanh_grad);
    break;
  case SD_ACT_QUICK_GELU:
    SD_ACT_GRAD_LOOP(sd_cpu_quick_gelu_grad);
    break;
  case SD_ACT_RELU:
    SD_ACT_GRAD_LOOP(sd_cpu_relu_grad);
    break;
  case SD_ACT_NONE:
    for (int64_t i = 0; i < n; i++)
      dx[i] = dy[i];
    break;
  }
}

int sd_cpu_activation_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *dy,
                               sd_activation act, sd_tensor *dx) {
  const float *src = x->data, *grad_out = dy->data;
  float *grad_in = dx->data;
  int64_t n = sd_tensor_numel(x);
  const int64_t block = 4096;
  int64_t blocks = (n + block - 1) / block;
  int threads = n > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t b = 0; b < blocks; b++) {
    int64_t first = b * block;
    activation_grad_array(src + first, grad_out + first, act, n - first < block ? n - first : block,
                          grad_in + first);
  }
  return 0;
}
