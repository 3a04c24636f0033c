/* Per-batch transpose y (B, N, M) = x (B, M, N)^T, in tiles of 8 rows of x by 128 columns: few
 * enough rows that the power-of-two strides of SD's sizes do not exhaust a cache set, wide
 * enough that each row of a tile is whole cache lines. */
#include "cpu_internal.h"

#define TILE_ROWS 8
#define TILE_COLS 128

int sd_cpu_transpose(sd_backend *be, const sd_tensor *x, sd_tensor *y) {
  int64_t batch = x->shape[0], m = x->shape[1], n = x->shape[2];
  int64_t m_tiles = (m + TILE_ROWS - 1) / TILE_ROWS, n_tiles = (n + TILE_COLS - 1) / TILE_COLS;
  int64_t tasks = batch * m_tiles * n_tiles;
  const float *src = x->data;
  float *dst = y->data;
  int threads = batch * m * n > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < tasks; t++) {
    int64_t bi = t / (m_tiles * n_tiles);
    int64_t i0 = (t / n_tiles) % m_tiles * TILE_ROWS;
    int64_t j0 = t % n_tiles * TILE_COLS;
    int64_t i1 = i0 + TILE_ROWS < m ? i0 + TILE_ROWS : m;
    int64_t j1 = j0 + TILE_COLS < n ? j0 + TILE_COLS : n;
    const float *in = src + bi * m * n; /* (M, N) */
    float *out = dst + bi * m * n;      /* (N, M) */
    for (int64_t j = j0; j < j1; j++)
      for (int64_t i = i0; i < i1; i++)
        out[j * m + i] = in[i * n + j];
  }
  return 0;
}
