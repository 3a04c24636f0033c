/* The CUDA backend: one device, one stream, activations and weights in one dtype (F16 by default,
 * BF16, or F32 for debugging) with float32 arithmetic inside every op. This file holds the
 * backend's life cycle, memory (cudaMallocAsync from the device's default pool, which keeps freed
 * memory for reuse), host <-> device copies with dtype conversion, the op scratch and the vtable;
 * the ops live one per file. Ops only enqueue work on the stream; synchronize() waits for it. */
#include "cuda_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cuBLASLt workspace, allocated once. */
#define SD_CUDA_LT_WORKSPACE ((size_t)32 << 20)
/* Bytes staged per step when an upload or download converts dtypes. */
#define SD_CUDA_CONVERT_CHUNK ((size_t)64 << 20)

/* ---- memory ------------------------------------------------------------------------------ */

static int alloc_device(sd_cuda *cu, size_t bytes, void **out) {
  CUDA_CHECK(cudaMallocAsync(out, bytes, cu->stream));
  return 0;
}

static int free_device(sd_cuda *cu, void *ptr) {
  CUDA_CHECK(cudaFreeAsync(ptr, cu->stream));
  return 0;
}

static void *cuda_alloc(sd_backend *be, size_t bytes) {
  void *ptr = NULL;
  if (alloc_device(sd_cuda_of(be), bytes ? bytes : 1, &ptr) < 0) {
    sd_error_context("allocating %zu bytes of device memory", bytes);
    return NULL;
  }
  return ptr;
}

/* The vtable's free returns nothing: a failure stays recorded as the current error message. */
static void cuda_free(sd_backend *be, void *ptr) {
  if (ptr && free_device(sd_cuda_of(be), ptr) < 0)
    sd_error_context("freeing device memory");
}

int sd_cuda_scratch(sd_cuda *cu, size_t bytes, void **out) {
  if (bytes > cu->scratch_bytes) {
    if (cu->scratch) {
      SD_TRY(free_device(cu, cu->scratch));
      cu->scratch = NULL;
      cu->scratch_bytes = 0;
    }
    SD_TRY(alloc_device(cu, bytes, &cu->scratch));
    cu->scratch_bytes = bytes;
  }
  *out = cu->scratch;
  return 0;
}

int sd_cuda_stage_to_device(sd_cuda *cu, const void *host, size_t bytes, void *device_dst) {
  sd_cuda_staging_slot *slot = &cu->staging[cu->staging_next];
  cu->staging_next = (cu->staging_next + 1) % SD_CUDA_STAGING_SLOTS;
  /* blocks only when the host is SD_CUDA_STAGING_SLOTS copies ahead of the device */
  CUDA_CHECK(cudaEventSynchronize(slot->done));
  if (slot->capacity < bytes) {
    if (slot->host) {
      CUDA_CHECK(cudaFreeHost(slot->host));
      slot->host = NULL;
      slot->capacity = 0;
    }
    CUDA_CHECK(cudaHostAlloc(&slot->host, bytes, cudaHostAllocDefault));
    slot->capacity = bytes;
  }
  memcpy(slot->host, host, bytes);
  CUDA_CHECK(cudaMemcpyAsync(device_dst, slot->host, bytes, cudaMemcpyHostToDevice, cu->stream));
  CUDA_CHECK(cudaEventRecord(slot->done, cu->stream));
  return 0;
}

/* ---- dtype conversion ------------------------------------------------------------------- */

/* dst (n) = src (n), through float32. */
template <typename S, typename D>
__global__ void convert_kernel(const S *__restrict__ src, D *__restrict__ dst, int64_t n) {
  for (int64_t i = sd_grid_first(); i < n; i += sd_grid_stride())
    sd_store_f32(dst + i, sd_load_f32(src + i));
}

template <typename D>
static int convert_to(sd_cuda *cu, sd_dtype src_dtype, const void *src, void *dst, int64_t n) {
  unsigned blocks = sd_cuda_blocks(n);
  D *out = (D *)dst;
  switch (src_dtype) {
  case SD_DTYPE_F32:
    convert_kernel<<<blocks, SD_CUDA_THREADS, 0, cu->stream>>>((const float *)src, out, n);
    break;
  case SD_DTYPE_F16:
    convert_kernel<<<blocks, SD_CUDA_THREADS, 0, cu->stream>>>((const __half *)src, out, n);
    break;
  case SD_DTYPE_BF16:
    convert_kernel<<<blocks, SD_CUDA_THREADS, 0, cu->stream>>>((const __nv_bfloat16 *)src, out, n);
    break;
  case SD_DTYPE_I32:
    convert_kernel<<<blocks, SD_CUDA_THREADS, 0, cu->stream>>>((const int32_t *)src, out, n);
    break;
  }
  CUDA_CHECK_LAUNCH("convert_kernel");
  return 0;
}

int sd_cuda_convert(sd_cuda *cu, sd_dtype src_dtype, const void *src, sd_dtype dst_dtype, void *dst,
                    int64_t n) {
  if (n <= 0)
    return 0;
  return SD_CUDA_TYPED_CALL(dst_dtype, "convert", convert_to, cu, src_dtype, src, dst, n);
}

static bool is_float_dtype(sd_dtype dtype) {
  return dtype == SD_DTYPE_F32 || dtype == SD_DTYPE_F16 || dtype == SD_DTYPE_BF16;
}

/* ---- host <-> device --------------------------------------------------------------------- */

/* Blocking. Same dtype: one copy. Otherwise (any source into F32, F16 or BF16, as the CPU
 * backend converts any source into F32) the source goes up in chunks into the scratch and a
 * kernel converts each chunk into place. */
static int cuda_upload(sd_backend *be, sd_tensor *dst, sd_dtype src_dtype, const void *src) {
  sd_cuda *cu = sd_cuda_of(be);
  int64_t n = sd_tensor_numel(dst);
  if (n == 0)
    return 0;
  if (src_dtype == dst->dtype) {
    CUDA_CHECK(
        cudaMemcpyAsync(dst->data, src, sd_tensor_bytes(dst), cudaMemcpyHostToDevice, cu->stream));
    CUDA_CHECK(cudaStreamSynchronize(cu->stream));
    return 0;
  }
  if (!is_float_dtype(dst->dtype))
    return SD_ERROR("cuda upload: cannot convert %s to %s", sd_dtype_name(src_dtype),
                    sd_dtype_name(dst->dtype));
  size_t src_size = sd_dtype_size(src_dtype), dst_size = sd_dtype_size(dst->dtype);
  int64_t chunk = (int64_t)(SD_CUDA_CONVERT_CHUNK / src_size);
  if (chunk > n)
    chunk = n;
  void *staging;
  SD_TRY(sd_cuda_scratch(cu, (size_t)chunk * src_size, &staging));
  for (int64_t first = 0; first < n; first += chunk) {
    int64_t count = n - first < chunk ? n - first : chunk;
    CUDA_CHECK(cudaMemcpyAsync(staging, (const char *)src + (size_t)first * src_size,
                               (size_t)count * src_size, cudaMemcpyHostToDevice, cu->stream));
    SD_TRY(sd_cuda_convert(cu, src_dtype, staging, dst->dtype,
                           (char *)dst->data + (size_t)first * dst_size, count));
  }
  CUDA_CHECK(cudaStreamSynchronize(cu->stream));
  return 0;
}

/* Blocking; waits for the ops already enqueued (same stream). */
static int cuda_download_f32(sd_backend *be, const sd_tensor *src, float *dst) {
  sd_cuda *cu = sd_cuda_of(be);
  int64_t n = sd_tensor_numel(src);
  if (n == 0)
    return 0;
  if (src->dtype == SD_DTYPE_F32) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src->data, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost,
                               cu->stream));
    CUDA_CHECK(cudaStreamSynchronize(cu->stream));
    return 0;
  }
  size_t src_size = sd_dtype_size(src->dtype);
  int64_t chunk = (int64_t)(SD_CUDA_CONVERT_CHUNK / sizeof(float));
  if (chunk > n)
    chunk = n;
  void *staging;
  SD_TRY(sd_cuda_scratch(cu, (size_t)chunk * sizeof(float), &staging));
  for (int64_t first = 0; first < n; first += chunk) {
    int64_t count = n - first < chunk ? n - first : chunk;
    SD_TRY(sd_cuda_convert(cu, src->dtype, (const char *)src->data + (size_t)first * src_size,
                           SD_DTYPE_F32, staging, count));
    CUDA_CHECK(cudaMemcpyAsync(dst + first, staging, (size_t)count * sizeof(float),
                               cudaMemcpyDeviceToHost, cu->stream));
  }
  CUDA_CHECK(cudaStreamSynchronize(cu->stream));
  return 0;
}

static int cuda_synchronize(sd_backend *be) {
  CUDA_CHECK(cudaStreamSynchronize(sd_cuda_of(be)->stream));
  return 0;
}

/* ---- life cycle --------------------------------------------------------------------------- */

/* Releases whatever part of the state exists. Teardown has nowhere to report a failure and must
 * release the rest regardless, so return codes are deliberately ignored here. */
static void release_state(sd_cuda *cu) {
  if (cu->stream)
    (void)cudaStreamSynchronize(cu->stream);
  sd_cuda_linear_cache_destroy(cu);
  sd_cuda_conv_cache_destroy(cu);
  for (int i = 0; i < SD_CUDA_STAGING_SLOTS; i++) {
    if (cu->staging[i].done)
      (void)cudaEventDestroy(cu->staging[i].done);
    if (cu->staging[i].host)
      (void)cudaFreeHost(cu->staging[i].host);
  }
  if (cu->scratch)
    (void)cudaFreeAsync(cu->scratch, cu->stream);
  if (cu->dnn)
    (void)cudnnDestroy(cu->dnn);
  if (cu->lt_workspace)
    (void)cudaFree(cu->lt_workspace);
  if (cu->lt)
    (void)cublasLtDestroy(cu->lt);
  if (cu->blas)
    (void)cublasDestroy(cu->blas);
  if (cu->stream) {
    (void)cudaStreamSynchronize(cu->stream);
    (void)cudaStreamDestroy(cu->stream);
  }
  /* give the pool's cached memory back to the driver */
  cudaMemPool_t pool;
  if (cudaDeviceGetDefaultMemPool(&pool, cu->device) == cudaSuccess)
    (void)cudaMemPoolTrimTo(pool, 0);
}

static void cuda_destroy(sd_backend *be) {
  sd_cuda *cu = sd_cuda_of(be);
  sd_arena_destroy(be); /* frees through cuda_free, in stream order */
  release_state(cu);
  free(cu);
  free(be);
}

static void fill_ops(sd_backend_ops *ops, sd_dtype act_dtype) {
  ops->name = "cuda";
  ops->act_dtype = act_dtype;
  ops->weight_dtype = act_dtype;
  ops->alloc = cuda_alloc;
  ops->free = cuda_free;
  ops->upload = cuda_upload;
  ops->download_f32 = cuda_download_f32;
  ops->synchronize = cuda_synchronize;
  ops->destroy = cuda_destroy;
  ops->linear = sd_cuda_linear;
  ops->conv2d = sd_cuda_conv2d;
  ops->group_norm = sd_cuda_group_norm;
  ops->layer_norm = sd_cuda_layer_norm;
  ops->attention = sd_cuda_attention;
  ops->activation = sd_cuda_activation;
  ops->geglu = sd_cuda_geglu;
  ops->lincomb = sd_cuda_lincomb;
  ops->add_channel_bias = sd_cuda_add_channel_bias;
  ops->upsample_nearest = sd_cuda_upsample_nearest;
  ops->concat_channels = sd_cuda_concat_channels;
  ops->transpose = sd_cuda_transpose;
  ops->embedding = sd_cuda_embedding;
  ops->clamp = sd_cuda_clamp;
  ops->mask_blend = sd_cuda_mask_blend;
  ops->blend_window = sd_cuda_blend_window;
  ops->randn_philox = sd_cuda_randn_philox;
  ops->timestep_embedding = sd_cuda_timestep_embedding;
  ops->interpolate = sd_cuda_interpolate;
  ops->max_pool2d = sd_cuda_max_pool2d;
  ops->pad2d = sd_cuda_pad2d;
  ops->conv_transpose2d = sd_cuda_conv_transpose2d;
  ops->group_norm_sums = sd_cuda_group_norm_sums;
  ops->group_norm_apply = sd_cuda_group_norm_apply;
}

static int init_state(sd_cuda *cu, int device, sd_dtype act_dtype) {
  cu->device = device;
  CUDA_CHECK(cudaSetDevice(device));
  int major = 0, pools = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  CUDA_CHECK(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device));
  CUDA_CHECK(cudaDeviceGetAttribute(&cu->sm_count, cudaDevAttrMultiProcessorCount, device));
  if (act_dtype == SD_DTYPE_BF16 && major < 8)
    return SD_ERROR("BF16 activations need compute capability 8.0 or newer; device %d is %d.x",
                    device, major);
  if (!pools)
    return SD_ERROR("device %d does not support stream-ordered memory pools", device);
  /* keep freed memory in the pool instead of returning it at every synchronization */
  cudaMemPool_t pool;
  uint64_t keep_all = UINT64_MAX;
  CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all));

  CUDA_CHECK(cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking));
  CUBLAS_CHECK(cublasCreate(&cu->blas));
  CUBLAS_CHECK(cublasSetStream(cu->blas, cu->stream));
  /* fp32 accumulation also inside split-K reductions of 16-bit GEMMs */
  CUBLAS_CHECK(cublasSetMathMode(
      cu->blas,
      (cublasMath_t)(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
  CUBLAS_CHECK(cublasLtCreate(&cu->lt));
  CUDA_CHECK(cudaMalloc(&cu->lt_workspace, SD_CUDA_LT_WORKSPACE));
  cu->lt_workspace_bytes = SD_CUDA_LT_WORKSPACE;
  CUDNN_CHECK(cudnnCreate(&cu->dnn));
  CUDNN_CHECK(cudnnSetStream(cu->dnn, cu->stream));
  for (int i = 0; i < SD_CUDA_STAGING_SLOTS; i++)
    CUDA_CHECK(cudaEventCreateWithFlags(&cu->staging[i].done, cudaEventDisableTiming));
  fill_ops(&cu->ops, act_dtype);
  return 0;
}

extern "C" sd_backend *sd_backend_cuda_create(int device_index, sd_dtype act_dtype) {
  if (act_dtype != SD_DTYPE_F16 && act_dtype != SD_DTYPE_BF16 && act_dtype != SD_DTYPE_F32) {
    SD_ERROR("CUDA backend: activation dtype %s (F16, BF16 or F32)", sd_dtype_name(act_dtype));
    return NULL;
  }
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    SD_ERROR("no CUDA device available (%s)",
             err != cudaSuccess ? cudaGetErrorString(err) : "device count is 0");
    return NULL;
  }
  if (device_index < 0 || device_index >= count) {
    SD_ERROR("CUDA device %d requested, %d present", device_index, count);
    return NULL;
  }
  sd_backend *be = (sd_backend *)calloc(1, sizeof *be);
  sd_cuda *cu = (sd_cuda *)calloc(1, sizeof *cu);
  if (!be || !cu) {
    free(be);
    free(cu);
    SD_ERROR("out of host memory creating the CUDA backend");
    return NULL;
  }
  if (init_state(cu, device_index, act_dtype) < 0) {
    sd_error_context("creating the CUDA backend on device %d", device_index);
    release_state(cu);
    free(cu);
    free(be);
    return NULL;
  }
  be->ops = &cu->ops;
  be->impl = cu;
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, device_index) == cudaSuccess)
    snprintf(be->device_name, sizeof be->device_name, "%s (cuda:%d, %s)", prop.name, device_index,
             sd_dtype_name(act_dtype));
  return be;
}
