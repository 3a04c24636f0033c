/* LayerNorm over the last dim as torch.nn.LayerNorm: per row, the mean, then the biased variance
 * from squared deviations, eps inside the sqrt, then gamma and beta; float32 throughout, output
 * rounded once. One block per row (rows are at most a few thousand values and stay in L1/L2
 * between the three passes); each thread reads and writes the same elements, so y may alias x. */
#include "cuda_internal.h"

/* y (rows, C) = LayerNorm(x (rows, C)) * gamma (C) + beta (C). */
template <typename T>
__global__ void layer_norm_kernel(const T *x, const T *__restrict__ gamma,
                                  const T *__restrict__ beta, int64_t rows, int64_t c, float eps,
                                  T *y) {
  __shared__ float reduce_buffer[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T *in = x + row * c;
    T *out = y + row * c;
    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
      sum += sd_load_f32(in + i);
    float mean = sd_block_sum(sum, reduce_buffer) / (float)c;
    float squares = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
      float d = sd_load_f32(in + i) - mean;
      squares += d * d;
    }
    float rstd = 1.0f / sqrtf(sd_block_sum(squares, reduce_buffer) / (float)c + eps);
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
      float v = (sd_load_f32(in + i) - mean) * rstd;
      sd_store_f32(out + i, v * sd_load_f32(gamma + i) + sd_load_f32(beta + i));
    }
  }
}

template <typename T>
static int launch_layer_norm(sd_cuda *cu, const sd_tensor *x, const sd_tensor *gamma,
                             const sd_tensor *beta, float eps, sd_tensor *y) {
  int64_t c = x->shape[x->ndim - 1];
  int64_t rows = c ? sd_tensor_numel(x) / c : 0;
  if (rows == 0)
    return 0;
  /* a multiple of 32 threads, up to 256, no more than the row needs */
  int threads = (int)((c + 31) / 32 * 32);
  threads = threads > 256 ? 256 : threads;
  unsigned blocks = (unsigned)(rows < INT32_MAX ? rows : INT32_MAX);
  layer_norm_kernel<T>
      <<<blocks, threads, 0, cu->stream>>>((const T *)x->data, (const T *)gamma->data,
                                           (const T *)beta->data, rows, c, eps, (T *)y->data);
  CUDA_CHECK_LAUNCH("layer_norm_kernel");
  return 0;
}

int sd_cuda_layer_norm(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                       const sd_tensor *beta, float eps, sd_tensor *y) {
  return SD_CUDA_TYPED_CALL(x->dtype, "layer_norm", launch_layer_norm, sd_cuda_of(be), x, gamma,
                            beta, eps, y);
}
