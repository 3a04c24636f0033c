/* Embedding lookup y (n, C) = table (V, C) rows at ids (n): the ids (host memory, already range
 * checked by sd_op_embedding) go to the device through a pinned staging slot, without waiting,
 * and a kernel gathers the rows. */
#include "cuda_internal.h"

template <typename T>
__global__ void embedding_kernel(const T *__restrict__ table, const int32_t *__restrict__ ids,
                                 int64_t c, int64_t count, T *__restrict__ y) {
  for (int64_t idx = sd_grid_first(); idx < count; idx += sd_grid_stride()) {
    int64_t row = idx / c, col = idx % c;
    y[idx] = table[(int64_t)ids[row] * c + col];
  }
}

template <typename T>
static int launch_embedding(sd_cuda *cu, const sd_tensor *table, const int32_t *ids, int64_t n,
                            sd_tensor *y) {
  int64_t c = table->shape[1];
  if (n == 0 || c == 0)
    return 0;
  void *device_ids;
  SD_TRY(sd_cuda_scratch(cu, (size_t)n * sizeof(int32_t), &device_ids));
  SD_TRY(sd_cuda_stage_to_device(cu, ids, (size_t)n * sizeof(int32_t), device_ids));
  embedding_kernel<T><<<sd_cuda_blocks(n * c), SD_CUDA_THREADS, 0, cu->stream>>>(
      (const T *)table->data, (const int32_t *)device_ids, c, n * c, (T *)y->data);
  CUDA_CHECK_LAUNCH("embedding_kernel");
  return 0;
}

int sd_cuda_embedding(sd_backend *be, const sd_tensor *table, const int32_t *ids, int64_t n,
                      sd_tensor *y) {
  return SD_CUDA_TYPED_CALL(y->dtype, "embedding", launch_embedding, sd_cuda_of(be), table, ids, n,
                            y);
}
