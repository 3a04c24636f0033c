/* Private helpers of the CPU ops: branch-free float math that the compiler vectorizes inside
 * `omp simd` loops, the array form of the activations, and the threading rule for oneDNN's GEMM.
 *
 * Vectorization: the hot loops live in functions marked SD_CPU_MULTIVERSION, which GCC compiles
 * for AVX-512, AVX2 and baseline x86-64 and picks from at load time, so a portable build still
 * uses the machine's vector width. Such functions are called once per row or block, not per
 * element, and never contain an OpenMP parallel region (its body would be outlined into a
 * separate, baseline-only function).
 *
 * GEMM: oneDNN's dnnl_sgemm (row-major), whose JIT kernels are chosen by the CPU's cpuid
 * features (AVX2, AVX-512, ...), not by a table of CPU models, so every x86 CPU gets its vector
 * width without tuning (Debian's OpenBLAS 0.3.21 falls back to its Prescott kernels on CPUs it
 * does not know). Every op runs its own OpenMP parallel region and calls dnnl_sgemm from inside
 * it, one call per task on a disjoint part of the output, through sd_cpu_sgemm, which keeps the
 * call on the calling thread.
 *
 * Batch invariance: an item's result must not depend on what else is in the batch (the engine
 * renders an item identically alone or batched). Elementwise and per-row work is invariant by
 * nature; GEMM-based ops make every sgemm call cover part of one item only, cut the same way
 * whatever the batch, because GEMM kernels round differently by problem size. */
#ifndef SD_CPU_INTERNAL_H
#define SD_CPU_INTERNAL_H

#include "cpu_ops.h"

#include "../error.h"
#include "dnnl_check.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
/* Inside a parallel region: this thread's index in the team. */
#define SD_CPU_THREAD_ID() omp_get_thread_num()
#else
#define SD_CPU_THREAD_ID() 0
#endif

typedef struct sd_cpu_upload sd_cpu_upload;
typedef struct sd_cpu_prepared sd_cpu_prepared;

/* The CPU backend's private state (be->impl). */
typedef struct sd_cpu_state {
  dnnl_engine_t engine; /* oneDNN's CPU engine */
  dnnl_stream_t stream;
  sd_dtype compute; /* inputs of GEMMs and convolutions: F32, or BF16 (float32 accumulation) */
  bool winograd;    /* conv2d may use Winograd on large 3x3 layers (SDBATCH_CPU_WINOGRAD=0: no) */
  /* prepared_weights.c: persistent memory written by upload, and weights prepared from it */
  sd_cpu_upload *uploads;
  size_t uploads_count, uploads_capacity;
  uint64_t upload_clock;
  sd_cpu_prepared *prepared;
  size_t prepared_bytes;
  /* "op impl" pairs of the oneDNN primitives chosen so far, "; "-separated (describe_kernels) */
  char kernels[512];
} sd_cpu_state;

/* Adds "op impl" to the kernels the backend has chosen (once per pair). */
void sd_cpu_note_kernel(sd_backend *be, const char *op, const char *impl);

/* Notes that upload wrote the persistent memory at ptr (scratch memory is ignored). */
int sd_cpu_note_upload(sd_backend *be, const void *ptr);
/* Drops what is known and prepared for the memory at ptr (it is being freed). */
void sd_cpu_forget(sd_backend *be, const void *ptr);
void sd_cpu_prepared_destroy(sd_backend *be);
/* w (layout src_md) in layout md: w's own memory when the two agree; else a copy kept across
 * calls when w is uploaded persistent memory, or a copy in the arena (release it with the
 * caller's mark) otherwise. */
int sd_cpu_prepared_weight(sd_backend *be, const sd_tensor *w, const dnnl_memory_desc_t *src_md,
                           const dnnl_memory_desc_t *md, const void **out);

/* Threads an op may use: the backend's count (set when it was created). */
static inline int sd_cpu_threads(const sd_backend *be) {
  return be->threads > 0 ? be->threads : 1;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__gnu_linux__)
#define SD_CPU_MULTIVERSION                                                                        \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SD_CPU_MULTIVERSION
#endif

/* Normalization statistics, written once for the forward ops and the backward ops that recompute
 * them (so both get the same bits). Always inlined: inside an SD_CPU_MULTIVERSION caller they
 * vectorize for that caller's instruction set, as they did when each op had its own copy. */

/* Elements GroupNorm sums in float before adding into its double total. */
#define SD_NORM_CHUNK 4096

/* GroupNorm's mean and rstd of a group of n values: two passes (mean, then squared deviations),
 * each summed in float over vector lanes within chunks of SD_NORM_CHUNK and in double across. */
static inline __attribute__((always_inline)) void
sd_cpu_group_mean_rstd(const float *x, int64_t n, float eps, float *mean_out, float *rstd_out) {
  double total = 0.0;
  for (int64_t c0 = 0; c0 < n; c0 += SD_NORM_CHUNK) {
    int64_t c1 = c0 + SD_NORM_CHUNK < n ? c0 + SD_NORM_CHUNK : n;
    float part = 0.0f;
#pragma omp simd reduction(+ : part)
    for (int64_t i = c0; i < c1; i++)
      part += x[i];
    total += part;
  }
  float mean = (float)(total / (double)n);
  double squares = 0.0;
  for (int64_t c0 = 0; c0 < n; c0 += SD_NORM_CHUNK) {
    int64_t c1 = c0 + SD_NORM_CHUNK < n ? c0 + SD_NORM_CHUNK : n;
    float part = 0.0f;
#pragma omp simd reduction(+ : part)
    for (int64_t i = c0; i < c1; i++)
      part += (x[i] - mean) * (x[i] - mean);
    squares += part;
  }
  *mean_out = mean;
  *rstd_out = (float)(1.0 / sqrt(squares / (double)n + (double)eps));
}

/* LayerNorm's mean and rstd of one row of c values (float sums over vector lanes). */
static inline __attribute__((always_inline)) void
sd_cpu_row_mean_rstd(const float *in, int64_t c, float eps, float *mean_out, float *rstd_out) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < c; i++)
    sum += in[i];
  float mean = (float)((double)sum / (double)c);
  float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
  for (int64_t i = 0; i < c; i++)
    squares += (in[i] - mean) * (in[i] - mean);
  *mean_out = mean;
  *rstd_out = (float)(1.0 / sqrt((double)squares / (double)c + (double)eps));
}

/* Below these sizes an op runs on the calling thread: waking the team costs more than it saves. */
#define SD_CPU_PARALLEL_ELEMS 32768 /* elementwise and normalization ops: values touched */
#define SD_CPU_PARALLEL_FLOPS 4e6   /* GEMM-based ops */

/* dnnl_sgemm on the calling thread alone, as every op's tasks mean it (see "GEMM" above). Inside
 * a parallel region of more than one thread oneDNN sees that and stays on the thread; inside a
 * region of one (an op below SD_CPU_PARALLEL_FLOPS) it does not, and it opened a nested team of
 * all the threads, made of fresh threads each call: 1,721 threads created and spinning against
 * each other in one UNet training step of the demo model, which ran 20x slower on two threads than
 * on one. The thread count here is the calling task's own setting, restored after the call. */
static inline dnnl_status_t sd_cpu_sgemm(char transa, char transb, dnnl_dim_t m, dnnl_dim_t n,
                                         dnnl_dim_t k, float alpha, const float *a, dnnl_dim_t lda,
                                         const float *b, dnnl_dim_t ldb, float beta, float *c,
                                         dnnl_dim_t ldc) {
#ifdef _OPENMP
  if (!omp_in_parallel()) {
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    dnnl_status_t status = dnnl_sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    omp_set_num_threads(threads);
    return status;
  }
#endif
  return dnnl_sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* exp(x) within about 2 ulp for x in [-87.3, 88.3] (Cephes' polynomial on the reduced argument,
 * 2^n assembled from bits); inputs outside are clamped, so exp(-inf) gives ~1e-38, not 0. */
static inline float sd_cpu_expf(float x) {
  const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  float t = x * 1.44269504088896341f + shifter;
  float n = t - shifter;
  int32_t t_bits;
  memcpy(&t_bits, &t, sizeof t_bits);
  int32_t n_int = t_bits - 0x4B400000; /* bits of the shifter */
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t scale_bits = (uint32_t)(n_int + 127) << 23; /* unsigned: NaN input stays defined */
  float scale;
  memcpy(&scale, &scale_bits, sizeof scale);
  return p * scale;
}

/* erf(x) with absolute error below 2e-7: Abramowitz & Stegun 7.1.26, the same form PyTorch's
 * vectorized CPU erf uses. */
static inline float sd_cpu_erff(float x) {
  float ax = x < 0.0f ? -x : x;
  float t = 1.0f / (1.0f + 0.3275911f * ax);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  float e = 1.0f - p * t * sd_cpu_expf(-ax * ax);
  return x < 0.0f ? -e : e;
}

static inline float sd_cpu_silu(float x) {
  return x / (1.0f + sd_cpu_expf(-x));
}

static inline float sd_cpu_gelu(float x) {
  return 0.5f * x * (1.0f + sd_cpu_erff(x * 0.70710678118654752f));
}

static inline float sd_cpu_gelu_tanh(float x) {
  const float k = 0.79788456080286536f; /* sqrt(2 / pi) */
  float u = k * (x + 0.044715f * x * x * x);
  float th = 1.0f - 2.0f / (sd_cpu_expf(2.0f * u) + 1.0f); /* tanh(u) */
  return 0.5f * x * (1.0f + th);
}

static inline float sd_cpu_quick_gelu(float x) {
  return x / (1.0f + sd_cpu_expf(-1.702f * x));
}

/* NaN passes through, as in torch.relu. */
static inline float sd_cpu_relu(float x) {
  return x < 0.0f ? 0.0f : x;
}

/* Derivatives of the activations, as torch's autograd computes them (for the backward ops). */
static inline float sd_cpu_sigmoid(float x) {
  return 1.0f / (1.0f + sd_cpu_expf(-x));
}

static inline float sd_cpu_silu_grad(float x) {
  float s = sd_cpu_sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}

/* Phi(x) + x phi(x) */
static inline float sd_cpu_gelu_grad(float x) {
  const float inv_sqrt_2pi = 0.39894228040143268f;
  float cdf = 0.5f * (1.0f + sd_cpu_erff(x * 0.70710678118654752f));
  return cdf + x * inv_sqrt_2pi * sd_cpu_expf(-0.5f * x * x);
}

static inline float sd_cpu_gelu_tanh_grad(float x) {
  const float k = 0.79788456080286536f; /* sqrt(2 / pi) */
  const float c = 0.044715f;
  float u = k * (x + c * x * x * x);
  float th = 1.0f - 2.0f / (sd_cpu_expf(2.0f * u) + 1.0f); /* tanh(u) */
  return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * k * (1.0f + 3.0f * c * x * x);
}

static inline float sd_cpu_quick_gelu_grad(float x) {
  float s = sd_cpu_sigmoid(1.702f * x);
  return s + 1.702f * x * s * (1.0f - s);
}

/* 0 at x <= 0, as torch's threshold_backward. */
static inline float sd_cpu_relu_grad(float x) {
  return x > 0.0f ? 1.0f : 0.0f;
}

/* y[i] = act(x[i] + (bias ? bias[i] : 0)) for i < n, vectorized; y may alias x. Runs on the
 * calling thread (callers parallelize over rows). */
void sd_cpu_activate_array(const float *x, const float *bias, sd_activation act, int64_t n,
                           float *y);

/* The affine step of GroupNorm for one group x (group_channels, spatial) into y (may alias x):
 * y = x * scale + shift (then SiLU) with scale = gamma[c] * rstd, shift = beta[c] - mean * scale;
 * shared by group_norm and group_norm_apply so that equal statistics give equal bits. */
void sd_cpu_group_affine(const float *x, const float *gamma, const float *beta,
                         int64_t group_channels, int64_t spatial, float mean, float rstd, bool silu,
                         float *y);

/* Scratch of `count` floats from the backend's arena (reused across calls, so no page faults
 * after the first); release with sd_arena_release(be, mark) taken before. NULL with an error
 * naming `what` on failure. */
static inline float *sd_cpu_scratch(sd_backend *be, size_t count, const char *what) {
  sd_tensor t = sd_tensor_1d(SD_DTYPE_F32, (int64_t)count);
  if (sd_tensor_alloc(be, &t) < 0) {
    sd_error_context("%s scratch (%zu floats)", what, count);
    return NULL;
  }
  return t.data;
}

#endif
