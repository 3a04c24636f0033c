/* Elementwise activations (SiLU, exact and tanh GELU, QuickGELU, ReLU) as PyTorch defines them, in
 * vectorizable float math (cpu_internal.h); also the fused bias + activation used by linear. */
#include "cpu_internal.h"

float sd_cpu_activate(float x, sd_activation act) {
  switch (act) {
  case SD_ACT_SILU:
    return sd_cpu_silu(x);
  case SD_ACT_GELU:
    return sd_cpu_gelu(x);
  case SD_ACT_GELU_TANH:
    return sd_cpu_gelu_tanh(x);
  case SD_ACT_QUICK_GELU:
    return sd_cpu_quick_gelu(x);
  case SD_ACT_RELU:
    return sd_cpu_relu(x);
  case SD_ACT_NONE:
    break;
  }
  return x;
}

/* One loop per activation so that each vectorizes with the activation inlined. */
#define SD_ACT_LOOP(fn)                                                                            \
  do {                                                                                             \
    if (bias) {                                                                                    \
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) y[i] = fn(x[i] + bias[i]);               \
    } else {                                                                                       \
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) y[i] = fn(x[i]);                         \
    }                                                                                              \
  } while (0)

static inline float identity(float x) {
  return x;
}

SD_CPU_MULTIVERSION void sd_cpu_activate_array(const float *x, const float *bias, sd_activation act,
                                               int64_t n, float *y) {
  switch (act) {
  case SD_ACT_SILU:
    SD_ACT_LOOP(sd_cpu_silu);
    break;
  case SD_ACT_GELU:
    SD_ACT_LOOP(sd_cpu_gelu);
    break;
  case SD_ACT_GELU_TANH:
    SD_ACT_LOOP(sd_cpu_gelu_tanh);
    break;
  case SD_ACT_QUICK_GELU:
    SD_ACT_LOOP(sd_cpu_quick_gelu);
    break;
  case SD_ACT_RELU:
    SD_ACT_LOOP(sd_cpu_relu);
    break;
  case SD_ACT_NONE:
    SD_ACT_LOOP(identity);
    break;
  }
}

int sd_cpu_activation(sd_backend *be, const sd_tensor *x, sd_activation act, sd_tensor *y) {
  const float *src = x->data;
  float *dst = y->data;
  int64_t n = sd_tensor_numel(x);
  const int64_t block = 4096;
  int64_t blocks = (n + block - 1) / block;
  int threads = n > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t b = 0; b < blocks; b++) {
    int64_t first = b * block;
    sd_cpu_activate_array(src + first, NULL, act, n - first < block ? n - first : block,
                          dst + first);
  }
  return 0;
}
