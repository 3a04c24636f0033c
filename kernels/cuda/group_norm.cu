/* GroupNorm as torch.nn.GroupNorm: per (image, group), mean and biased variance over the group's
 * channels and spatial positions, eps inside the sqrt, then the per-channel affine and an
 * optional fused SiLU; statistics in float32 (merged in double), output rounded once.
 *
 * Three kernels, so that a few huge groups (the VAE at full size: 32 groups of millions of values)
 * still fill the device:
 *  1. group_stats_kernel: each group is cut into `parts` contiguous parts; one block per (group,
 *     part) runs Welford's algorithm per thread and merges the threads (Chan et al.) into a
 *     partial (count, mean, M2).
 *  2. group_finalize_kernel: per group, merges its partials in order into mean and 1/std.
 *  3. group_apply_kernel: y = x * (gamma * rstd) + (beta - mean * gamma * rstd), then SiLU.
 * Statistics are read completely before any y is written, so y may alias x. */
#include "cuda_internal.h"

/* A statistics block handles at least this many values (unless the group is smaller). */
#define SD_GN_MIN_PART 4096

typedef struct welford {
  float count, mean, m2; /* m2: sum of squared deviations from mean */
} welford;

__device__ __forceinline__ welford welford_merge(welford a, welford b) {
  float count = a.count + b.count;
  if (count == 0.0f)
    return a;
  float delta = b.mean - a.mean;
  float b_share = b.count / count;
  welford merged = {count, a.mean + delta * b_share,
                    a.m2 + b.m2 + delta * delta * a.count * b_share};
  return merged;
}

/* partials (BG, parts) of x (BG, group_size); grid (BG, parts). */
template <typename T>
__global__ void group_stats_kernel(const T *__restrict__ x, int64_t group_size, int64_t part_len,
                                   float3 *__restrict__ partials) {
  __shared__ welford warp_results[32];
  int64_t group = blockIdx.x;
  int64_t first = (int64_t)blockIdx.y * part_len;
  int64_t last = first + part_len < group_size ? first + part_len : group_size;
  const T *values = x + group * group_size;
  welford acc = {0.0f, 0.0f, 0.0f};
  for (int64_t i = first + threadIdx.x; i < last; i += blockDim.x) {
    float v = sd_load_f32(values + i);
    acc.count += 1.0f;
    float delta = v - acc.mean;
    acc.mean += delta / acc.count;
    acc.m2 += delta * (v - acc.mean);
  }
  for (int offset = 16; offset > 0; offset /= 2) { /* lane 0 ends with the warp's total */
    welford other = {__shfl_down_sync(0xffffffffu, acc.count, offset),
                     __shfl_down_sync(0xffffffffu, acc.mean, offset),
                     __shfl_down_sync(0xffffffffu, acc.m2, offset)};
    acc = welford_merge(acc, other);
  }
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0)
    warp_results[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    welford total = warp_results[0];
    for (int w = 1; w < (int)blockDim.x / 32; w++)
      total = welford_merge(total, warp_results[w]);
    partials[group * gridDim.y + blockIdx.y] = make_float3(total.count, total.mean, total.m2);
  }
}

/* stats (BG) = (mean, 1 / sqrt(var + eps)) from partials (BG, parts), merged in double. */
__global__ void group_finalize_kernel(const float3 *__restrict__ partials, int64_t parts,
                                      int64_t groups_total, float eps, float2 *__restrict__ stats) {
  for (int64_t g = sd_grid_first(); g < groups_total; g += sd_grid_stride()) {
    double count = 0.0, mean = 0.0, m2 = 0.0;
    for (int64_t p = 0; p < parts; p++) {
      float3 part = partials[g * parts + p];
      if (part.x == 0.0f)
        continue;
      double merged = count + part.x;
      double delta = (double)part.y - mean;
      mean += delta * part.x / merged;
      m2 += part.z + delta * delta * count * part.x / merged;
      count = merged;
    }
    double var = m2 / count;
    stats[g] = make_float2((float)mean, (float)(1.0 / sqrt(var + (double)eps)));
  }
}

/* y = affine(normalized x) per plane (b * C + c) of spatial values; grid (planes, spatial
 * blocks). */
template <typename T>
__global__ void group_apply_kernel(const T *x, const float2 *__restrict__ stats,
                                   const T *__restrict__ gamma, const T *__restrict__ beta,
                                   int64_t channels, int64_t group_channels, int64_t spatial,
                                   int64_t planes, bool silu, T *y) {
  for (int64_t plane = blockIdx.x; plane < planes; plane += gridDim.x) {
    int64_t c = plane % channels;
    float2 st = stats[plane / group_channels]; /* plane / group_channels = b * G + g */
    float scale = sd_load_f32(gamma + c) * st.y;
    float shift = sd_load_f32(beta + c) - st.x * scale;
    const T *in = x + plane * spatial;
    T *out = y + plane * spatial;
    for (int64_t i = (int64_t)blockIdx.y * blockDim.x + threadIdx.x; i < spatial;
         i += (int64_t)gridDim.y * blockDim.x) {
      float v = sd_load_f32(in + i) * scale + shift;
      if (silu)
        v = v / (1.0f + expf(-v));
      sd_store_f32(out + i, v);
    }
  }
}

template <typename T>
static int launch_group_affine(sd_cuda *cu, const sd_tensor *x, const float2 *stats,
                               const sd_tensor *gamma, const sd_tensor *beta, int groups, bool silu,
                               sd_tensor *y) {
  int64_t batch = x->shape[0], channels = x->shape[1];
  int64_t spatial = sd_tensor_numel(x) / (batch * channels);
  int64_t planes = batch * channels;
  int64_t spatial_blocks = (spatial + SD_CUDA_THREADS - 1) / SD_CUDA_THREADS;
  dim3 grid((unsigned)(planes < INT32_MAX ? planes : INT32_MAX),
            (unsigned)(spatial_blocks < 65535 ? spatial_blocks : 65535));
  group_apply_kernel<T><<<grid, SD_CUDA_THREADS, 0, cu->stream>>>(
      (const T *)x->data, stats, (const T *)gamma->data, (const T *)beta->data, channels,
      channels / groups, spatial, planes, silu, (T *)y->data);
  CUDA_CHECK_LAUNCH("group_apply_kernel");
  return 0;
}

int sd_cuda_group_affine(sd_cuda *cu, const sd_tensor *x, const float *stats,
                         const sd_tensor *gamma, const sd_tensor *beta, int groups, bool silu,
                         sd_tensor *y) {
  if (sd_tensor_numel(x) == 0)
    return 0;
  return SD_CUDA_TYPED_CALL(x->dtype, "group_norm_apply", launch_group_affine, cu, x,
                            (const float2 *)stats, gamma, beta, groups, silu, y);
}

template <typename T>
static int launch_group_norm(sd_cuda *cu, const sd_tensor *x, const sd_tensor *gamma,
                             const sd_tensor *beta, int groups, float eps, bool silu,
                             sd_tensor *y) {
  int64_t batch = x->shape[0], channels = x->shape[1];
  int64_t spatial = sd_tensor_numel(x) / (batch * channels);
  int64_t group_channels = channels / groups;
  int64_t group_size = group_channels * spatial;
  int64_t groups_total = batch * groups;
  int64_t planes = batch * channels;
  if (groups_total == 0 || spatial == 0)
    return 0;
  if (groups_total > INT32_MAX)
    return SD_ERROR("group_norm: %lld groups in all", (long long)groups_total);

  /* about four blocks per SM for ONE image's groups, each on at least SD_GN_MIN_PART values: the
   * split of a group (hence its statistics' rounding) must not depend on the batch (ops.h) */
  int64_t parts = (4 * (int64_t)cu->sm_count + groups - 1) / groups;
  int64_t most = (group_size + SD_GN_MIN_PART - 1) / SD_GN_MIN_PART;
  if (parts > most)
    parts = most;
  if (parts < 1)
    parts = 1;
  int64_t part_len = (group_size + parts - 1) / parts;

  size_t stats_bytes = (size_t)groups_total * sizeof(float2);
  size_t partials_offset = (stats_bytes + 255) & ~(size_t)255;
  void *scratch;
  SD_TRY(sd_cuda_scratch(cu, partials_offset + (size_t)(groups_total * parts) * sizeof(float3),
                         &scratch));
  float2 *stats = (float2 *)scratch;                                /* (BG) */
  float3 *partials = (float3 *)((char *)scratch + partials_offset); /* (BG, parts) */

  group_stats_kernel<T>
      <<<dim3((unsigned)groups_total, (unsigned)parts), SD_CUDA_THREADS, 0, cu->stream>>>(
          (const T *)x->data, group_size, part_len, partials);
  CUDA_CHECK_LAUNCH("group_stats_kernel");
  group_finalize_kernel<<<sd_cuda_blocks(groups_total), SD_CUDA_THREADS, 0, cu->stream>>>(
      partials, parts, groups_total, eps, stats);
  CUDA_CHECK_LAUNCH("group_finalize_kernel");
  int64_t spatial_blocks = (spatial + SD_CUDA_THREADS - 1) / SD_CUDA_THREADS;
  dim3 grid((unsigned)(planes < INT32_MAX ? planes : INT32_MAX),
            (unsigned)(spatial_blocks < 65535 ? spatial_blocks : 65535));
  group_apply_kernel<T><<<grid, SD_CUDA_THREADS, 0, cu->stream>>>(
      (const T *)x->data, stats, (const T *)gamma->data, (const T *)beta->data, channels,
      group_channels, spatial, planes, silu, (T *)y->data);
  CUDA_CHECK_LAUNCH("group_apply_kernel");
  return 0;
}

int sd_cuda_group_norm(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                       const sd_tensor *beta, int groups, float eps, bool silu, sd_tensor *y) {
  return SD_CUDA_TYPED_CALL(x->dtype, "group_norm", launch_group_norm, sd_cuda_of(be), x, gamma,
                            beta, groups, eps, silu, y);
}
