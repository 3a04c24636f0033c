/* Private parts of the CUDA backend, shared by its .cu files: the backend state, stream-ordered
 * scratch memory, dtype helpers for kernels (every kernel loads its dtype, computes in float32,
 * and rounds once when it stores), launch helpers and block reductions, and the ops (one per
 * file, named as in kernels/cpu). */
#ifndef SD_CUDA_INTERNAL_H
#define SD_CUDA_INTERNAL_H

#include "../ops.h"
#include "cuda_check.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

/* Pinned host slots for host -> device copies that must not block the host (embedding ids). A
 * slot is reused only after the copy that read it has run (its event). */
#define SD_CUDA_STAGING_SLOTS 8

typedef struct sd_cuda_staging_slot {
  void *host; /* pinned */
  size_t capacity;
  cudaEvent_t done; /* recorded after the copy out of this slot */
} sd_cuda_staging_slot;

typedef struct sd_cuda_linear_cache sd_cuda_linear_cache;
typedef struct sd_cuda_conv_cache sd_cuda_conv_cache;

/* One backend instance (be->impl). Everything runs on `stream`; ops only enqueue. */
typedef struct sd_cuda {
  sd_backend_ops ops; /* this instance's vtable: act_dtype differs between instances */
  int device;
  int sm_count;
  cudaStream_t stream;
  cublasHandle_t blas; /* batched GEMMs of attention, GEMM fallback of linear */
  cublasLtHandle_t lt; /* linear */
  void *lt_workspace;  /* cuBLASLt workspace (device) */
  size_t lt_workspace_bytes;
  cudnnHandle_t dnn; /* conv2d */
  void *scratch;     /* op scratch (device), see sd_cuda_scratch */
  size_t scratch_bytes;
  sd_cuda_staging_slot staging[SD_CUDA_STAGING_SLOTS];
  int staging_next;
  sd_cuda_linear_cache *linear_cache; /* cuBLASLt plans per shape (linear.cu) */
  sd_cuda_conv_cache *conv_cache;     /* cuDNN descriptors and algorithms per shape (conv2d.cu) */
} sd_cuda;

static inline sd_cuda *sd_cuda_of(sd_backend *be) {
  return (sd_cuda *)be->impl;
}

/* Device scratch of at least `bytes`, valid until the next call. Ops run in stream order, so an
 * op may use the scratch as soon as it has it; growing frees the old buffer in stream order. An
 * op that needs several areas asks once and carves them. */
int sd_cuda_scratch(sd_cuda *cu, size_t bytes, void **out);

/* Enqueues a copy of `bytes` from host memory (which may be reused as soon as this returns) to
 * device memory, through a pinned staging slot. */
int sd_cuda_stage_to_device(sd_cuda *cu, const void *host, size_t bytes, void *device_dst);

/* Elementwise dtype conversion dst (n, dst_dtype) = src (n, src_dtype) on the stream; sources
 * F32, F16, BF16, I32, destinations F32, F16, BF16; float32 -> 16-bit rounds to nearest even. */
int sd_cuda_convert(sd_cuda *cu, sd_dtype src_dtype, const void *src, sd_dtype dst_dtype, void *dst,
                    int64_t n);

/* y (rows, cols) = act(x + bias (cols)) (bias may be NULL; y may alias x): the activation op,
 * and the epilogue of linear when cuBLASLt does not fuse it. */
int sd_cuda_bias_activation(sd_cuda *cu, sd_dtype dtype, const void *x, const void *bias,
                            sd_activation act, int64_t rows, int64_t cols, void *y);

/* y (B, C, HW) = x + v[b * v_batch_stride + c] (y may alias x): add_channel_bias
 * (v_batch_stride = C) and the bias of conv2d (v_batch_stride = 0). */
int sd_cuda_add_plane_bias(sd_cuda *cu, sd_dtype dtype, const void *x, const void *v,
                           int64_t v_batch_stride, int64_t batch, int64_t channels, int64_t hw,
                           void *y);

/* y = x * (gamma * rstd) + (beta - mean * gamma * rstd) (then SiLU) with stats (B * groups)
 * device (mean, rstd) pairs: group_norm's apply kernel, shared with group_norm_apply. */
int sd_cuda_group_affine(sd_cuda *cu, const sd_tensor *x, const float *stats,
                         const sd_tensor *gamma, const sd_tensor *beta, int groups, bool silu,
                         sd_tensor *y);

/* Free the plan caches (backend destroy). */
void sd_cuda_linear_cache_destroy(sd_cuda *cu);
void sd_cuda_conv_cache_destroy(sd_cuda *cu);

/* The ops (contracts in ops.h; shapes and dtypes are checked by sd_op_*). */
int sd_cuda_linear(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                   sd_activation act, sd_tensor *y);
int sd_cuda_conv2d(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                   int stride, int pad, sd_tensor *y);
int sd_cuda_group_norm(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                       const sd_tensor *beta, int groups, float eps, bool silu, sd_tensor *y);
int sd_cuda_group_norm_sums(sd_backend *be, const sd_tensor *x, int groups, const float *center,
                            double *sums);
int sd_cuda_group_norm_apply(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                             const sd_tensor *beta, int groups, const float *stats, bool silu,
                             sd_tensor *y);
int sd_cuda_layer_norm(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                       const sd_tensor *beta, float eps, sd_tensor *y);
int sd_cuda_attention(sd_backend *be, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                      int heads, float scale, bool causal, sd_tensor *o);
int sd_cuda_activation(sd_backend *be, const sd_tensor *x, sd_activation act, sd_tensor *y);
int sd_cuda_geglu(sd_backend *be, const sd_tensor *x, sd_tensor *y);
int sd_cuda_lincomb(sd_backend *be, int n, const float *coeffs, const sd_tensor *const *xs,
                    sd_tensor *y);
int sd_cuda_add_channel_bias(sd_backend *be, const sd_tensor *x, const sd_tensor *v, sd_tensor *y);
int sd_cuda_upsample_nearest(sd_backend *be, const sd_tensor *x, sd_tensor *y);
int sd_cuda_concat_channels(sd_backend *be, const sd_tensor *a, const sd_tensor *b, sd_tensor *y);
int sd_cuda_transpose(sd_backend *be, const sd_tensor *x, sd_tensor *y);
int sd_cuda_embedding(sd_backend *be, const sd_tensor *table, const int32_t *ids, int64_t n,
                      sd_tensor *y);
int sd_cuda_clamp(sd_backend *be, const sd_tensor *x, float lo, float hi, sd_tensor *y);
int sd_cuda_mask_blend(sd_backend *be, const sd_tensor *a, const sd_tensor *b, const sd_tensor *m,
                       sd_tensor *y);
int sd_cuda_blend_window(sd_backend *be, const sd_tensor *x, int64_t x_row, int64_t x_col,
                         sd_tensor *y, int64_t y_row, int64_t y_col, int64_t rows, int64_t cols,
                         sd_blend_mode mode);
int sd_cuda_randn_philox(sd_backend *be, const uint64_t *seeds, const uint64_t *offsets,
                         sd_tensor *out);
int sd_cuda_timestep_embedding(sd_backend *be, double timestep, bool flip_sin_to_cos,
                               float freq_shift, double max_period, sd_tensor *out);
int sd_cuda_interpolate(sd_backend *be, const sd_tensor *x, sd_interp_mode mode, bool align_corners,
                        sd_tensor *y);
int sd_cuda_max_pool2d(sd_backend *be, const sd_tensor *x, int kernel, int stride, int pad,
                       sd_tensor *y);
int sd_cuda_pad2d(sd_backend *be, const sd_tensor *x, int64_t top, int64_t left, float value,
                  sd_tensor *y);
int sd_cuda_conv_transpose2d(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                             const sd_tensor *b, int stride, int pad, sd_tensor *y);

/* ---- dtype helpers ---------------------------------------------------------------------- */

/* Calls fn<T>(args...) with T the device type of `dtype` (float, __half, __nv_bfloat16); other
 * dtypes are an error naming `what`. */
#define SD_CUDA_TYPED_CALL(dtype, what, fn, ...)                                                   \
  ((dtype) == SD_DTYPE_F16    ? fn<__half>(__VA_ARGS__)                                            \
   : (dtype) == SD_DTYPE_BF16 ? fn<__nv_bfloat16>(__VA_ARGS__)                                     \
   : (dtype) == SD_DTYPE_F32                                                                       \
       ? fn<float>(__VA_ARGS__)                                                                    \
       : SD_ERROR("%s: dtype %s is not supported on CUDA", what, sd_dtype_name(dtype)))

template <typename T> __device__ __forceinline__ float sd_load_f32(const T *p);
template <> __device__ __forceinline__ float sd_load_f32<float>(const float *p) {
  return *p;
}
template <> __device__ __forceinline__ float sd_load_f32<__half>(const __half *p) {
  return __half2float(*p);
}
template <> __device__ __forceinline__ float sd_load_f32<__nv_bfloat16>(const __nv_bfloat16 *p) {
  return __bfloat162float(*p);
}
template <> __device__ __forceinline__ float sd_load_f32<int32_t>(const int32_t *p) {
  return (float)*p;
}

/* Rounds to nearest even, as the host conversions in tensor.c do. */
template <typename T> __device__ __forceinline__ void sd_store_f32(T *p, float v);
template <> __device__ __forceinline__ void sd_store_f32<float>(float *p, float v) {
  *p = v;
}
template <> __device__ __forceinline__ void sd_store_f32<__half>(__half *p, float v) {
  *p = __float2half_rn(v);
}
template <> __device__ __forceinline__ void sd_store_f32<__nv_bfloat16>(__nv_bfloat16 *p, float v) {
  *p = __float2bfloat16_rn(v);
}

/* cuBLAS / cuDNN names of an activation dtype (F32, F16 or BF16). */
static inline cudaDataType_t sd_cuda_data_type(sd_dtype dtype) {
  return dtype == SD_DTYPE_F16 ? CUDA_R_16F : dtype == SD_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* ---- launch helpers --------------------------------------------------------------------- */

#define SD_CUDA_THREADS 256

/* Blocks for a grid-stride loop over n items with SD_CUDA_THREADS threads each: enough to fill
 * the device many times over, capped so that the grid is always legal. */
static inline unsigned sd_cuda_blocks(int64_t n) {
  int64_t blocks = (n + SD_CUDA_THREADS - 1) / SD_CUDA_THREADS;
  const int64_t cap = (int64_t)1 << 20;
  return (unsigned)(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

/* First index and stride of this thread in a 1-D grid-stride loop. */
__device__ __forceinline__ int64_t sd_grid_first(void) {
  return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t sd_grid_stride(void) {
  return (int64_t)gridDim.x * blockDim.x;
}

__device__ __forceinline__ float sd_warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float sd_warp_max(float v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024), returned to every
 * thread. `shared` holds 32 floats; the function synchronizes before it returns, so the same
 * buffer can serve the next reduction. */
__device__ __forceinline__ float sd_block_sum(float v, float *shared) {
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = sd_warp_sum(v);
  if (lane == 0)
    shared[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < warps; w++) /* same order in every thread: identical results */
    total += shared[w];
  __syncthreads();
  return total;
}

__device__ __forceinline__ float sd_block_max(float v, float *shared) {
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = sd_warp_max(v);
  if (lane == 0)
    shared[warp] = v;
  __syncthreads();
  float best = -INFINITY;
  for (int w = 0; w < warps; w++)
    best = fmaxf(best, shared[w]);
  __syncthreads();
  return best;
}

/* ---- activations, as PyTorch defines them, in float32 ----------------------------------- */

__device__ __forceinline__ float sd_gelu_f32(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

__device__ __forceinline__ float sd_activate_f32(float x, sd_activation act) {
  switch (act) {
  case SD_ACT_SILU:
    return x / (1.0f + expf(-x));
  case SD_ACT_GELU:
    return sd_gelu_f32(x);
  case SD_ACT_GELU_TANH:
    return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
  case SD_ACT_QUICK_GELU:
    return x / (1.0f + expf(-1.702f * x));
  case SD_ACT_RELU:
    return x < 0.0f ? 0.0f : x;
  case SD_ACT_NONE:
    break;
  }
  return x;
}

#endif
