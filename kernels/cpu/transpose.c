/* Per-batch transpose y (B, N, M) = x (B, M, N)^T, in cache-sized tiles. */
#include "cpu_ops.h"

#define TILE 32

int sd_cpu_transpose(sd_backend *be, const sd_tensor *x, sd_tensor *y) {
  (void)be;
  int64_t batch = x->shape[0], m = x->shape[1], n = x->shape[2];
  int64_t m_tiles = (m + TILE - 1) / TILE, n_tiles = (n + TILE - 1) / TILE;
  int64_t tasks = batch * m_tiles * n_tiles;
  const float *src = x->data;
  float *dst = y->data;
#pragma omp parallel for schedule(static) if (batch * m * n > 65536)
  for (int64_t t = 0; t < tasks; t++) {
    int64_t bi = t / (m_tiles * n_tiles);
    int64_t i0 = (t / n_tiles) % m_tiles * TILE;
    int64_t j0 = t % n_tiles * TILE;
    int64_t i1 = i0 + TILE < m ? i0 + TILE : m;
    int64_t j1 = j0 + TILE < n ? j0 + TILE : n;
    const float *in = src + bi * m * n; /* (M, N) */
    float *out = dst + bi * m * n;      /* (N, M) */
    for (int64_t j = j0; j < j1; j++)
      for (int64_t i = i0; i < i1; i++)
        out[j * m + i] = in[i * n + j];
  }
  return 0;
}
