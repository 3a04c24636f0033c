/* Per (image, group) sums of d = x - center and d^2 (ops.h group_norm_sums) for GroupNorm
 * statistics gathered over the parts of an image (spatial parallelism, docs/spatial.md). One
 * block per group; each thread accumulates its strided share in double, the block adds its
 * threads in a fixed order (deterministic); the (B, groups, 2) sums are copied to the host and
 * the call waits for them. */
#include "cuda_internal.h"

template <typename T>
__global__ void group_sums_kernel(const T *__restrict__ x, int64_t group_size,
                                  const float *__restrict__ center, double *__restrict__ sums) {
  __shared__ double shared[2 * SD_CUDA_THREADS];
  int64_t group = blockIdx.x;
  const T *values = x + group * group_size;
  float c = center ? center[group] : 0.0f;
  double total = 0.0, squares = 0.0;
  for (int64_t i = threadIdx.x; i < group_size; i += blockDim.x) {
    float d = sd_load_f32(values + i) - c;
    total += d;
    squares += (double)d * d;
  }
  shared[threadIdx.x] = total;
  shared[SD_CUDA_THREADS + threadIdx.x] = squares;
  __syncthreads();
  for (int half = SD_CUDA_THREADS / 2; half > 0; half /= 2) {
    if ((int)threadIdx.x < half) {
      shared[threadIdx.x] += shared[threadIdx.x + half];
      shared[SD_CUDA_THREADS + threadIdx.x] += shared[SD_CUDA_THREADS + threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    sums[2 * group] = shared[0];
    sums[2 * group + 1] = shared[SD_CUDA_THREADS];
  }
}

template <typename T>
static int launch_group_sums(sd_cuda *cu, const sd_tensor *x, int groups, const float *center,
                             double *sums) {
  int64_t batch = x->shape[0], channels = x->shape[1];
  int64_t groups_total = batch * groups;
  if (groups_total == 0)
    return 0;
  if (groups_total > INT32_MAX)
    return SD_ERROR("group_norm_sums: %lld groups in all", (long long)groups_total);
  int64_t group_size = sd_tensor_numel(x) / groups_total;
  size_t sums_bytes = (size_t)groups_total * 2 * sizeof(double);
  size_t center_offset = (sums_bytes + 255) & ~(size_t)255;
  void *scratch;
  SD_TRY(sd_cuda_scratch(cu, center_offset + (size_t)groups_total * sizeof(float), &scratch));
  double *device_sums = (double *)scratch;
  float *device_center = NULL;
  if (center) {
    device_center = (float *)((char *)scratch + center_offset);
    SD_TRY(
        sd_cuda_stage_to_device(cu, center, (size_t)groups_total * sizeof(float), device_center));
  }
  group_sums_kernel<T><<<(unsigned)groups_total, SD_CUDA_THREADS, 0, cu->stream>>>(
      (const T *)x->data, group_size, device_center, device_sums);
  CUDA_CHECK_LAUNCH("group_sums_kernel");
  CUDA_CHECK(cudaMemcpyAsync(sums, device_sums, sums_bytes, cudaMemcpyDeviceToHost, cu->stream));
  CUDA_CHECK(cudaStreamSynchronize(cu->stream));
  (void)channels;
  return 0;
}

int sd_cuda_group_norm_sums(sd_backend *be, const sd_tensor *x, int groups, const float *center,
                            double *sums) {
  return SD_CUDA_TYPED_CALL(x->dtype, "group_norm_sums", launch_group_sums, sd_cuda_of(be), x,
                            groups, center, sums);
}
