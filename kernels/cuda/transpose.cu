/* Per-batch transpose y (B, N, M) = x (B, M, N)^T through 32 x 32 tiles in shared memory, so that
 * both the reads of x and the writes of y are coalesced (the tile has one padding column against
 * bank conflicts). Values are copied bit for bit. */
#include "cuda_internal.h"

#define TILE      32
#define TILE_ROWS 8 /* threads per tile column: each thread moves TILE / TILE_ROWS values */

/* grid (ceil(N / TILE), ceil(M / TILE), B), block (TILE, TILE_ROWS). */
template <typename T>
__global__ void transpose_kernel(const T *__restrict__ x, int64_t m, int64_t n, T *__restrict__ y) {
  __shared__ T tile[TILE][TILE + 1];
  const T *in = x + (int64_t)blockIdx.z * m * n; /* (M, N) */
  T *out = y + (int64_t)blockIdx.z * m * n;      /* (N, M) */
  int64_t i0 = (int64_t)blockIdx.y * TILE, j0 = (int64_t)blockIdx.x * TILE;
  for (int r = threadIdx.y; r < TILE; r += TILE_ROWS) {
    int64_t i = i0 + r, j = j0 + threadIdx.x;
    if (i < m && j < n)
      tile[r][threadIdx.x] = in[i * n + j];
  }
  __syncthreads();
  for (int r = threadIdx.y; r < TILE; r += TILE_ROWS) {
    int64_t j = j0 + r, i = i0 + threadIdx.x; /* y row j, column i */
    if (j < n && i < m)
      out[j * m + i] = tile[threadIdx.x][r];
  }
}

template <typename T> static int launch_transpose(sd_cuda *cu, const sd_tensor *x, sd_tensor *y) {
  int64_t batch = x->shape[0], m = x->shape[1], n = x->shape[2];
  if (batch * m * n == 0)
    return 0;
  int64_t n_tiles = (n + TILE - 1) / TILE, m_tiles = (m + TILE - 1) / TILE;
  if (n_tiles > INT32_MAX || m_tiles > 65535 || batch > 65535)
    return SD_ERROR("transpose: (%lld, %lld, %lld) beyond the grid limits", (long long)batch,
                    (long long)m, (long long)n);
  dim3 grid((unsigned)n_tiles, (unsigned)m_tiles, (unsigned)batch);
  transpose_kernel<T>
      <<<grid, dim3(TILE, TILE_ROWS), 0, cu->stream>>>((const T *)x->data, m, n, (T *)y->data);
  CUDA_CHECK_LAUNCH("transpose_kernel");
  return 0;
}

int sd_cuda_transpose(sd_backend *be, const sd_tensor *x, sd_tensor *y) {
  return SD_CUDA_TYPED_CALL(x->dtype, "transpose", launch_transpose, sd_cuda_of(be), x, y);
}
