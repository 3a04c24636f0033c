/* Linear layer: y (M, N) = act(x (M, K) . w (N, K)^T + b (N)). The outermost dim of x is the
 * batch: each item's rows go through their own sgemm calls (split into up to one chunk
 * per thread), so an item's result is bit for bit the same whatever else is in the batch
 * (GEMM kernels round differently by problem size). Each task applies the bias and
 * activation to its rows while they are still in cache. */
#include "cpu_internal.h"

/* An item's rows are split over threads only into chunks of at least this many rows. */
#define SD_LINEAR_MIN_ROWS 32

int sd_cpu_linear(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                  sd_activation act, sd_tensor *y) {
  int64_t n = w->shape[0], k = w->shape[1];
  int64_t m = sd_tensor_numel(x) / k;
  int64_t items = x->ndim >= 2 ? x->shape[0] : 1;
  int64_t item_rows = m / items;
  const float *in = x->data, *weight = w->data, *bias = b ? b->data : NULL;
  float *out = y->data;
  /* the split of an item depends on its own size and the backend only, never on the batch */
  int team = sd_cpu_threads(be);
  int64_t chunks = item_rows / SD_LINEAR_MIN_ROWS;
  chunks = chunks < 1 ? 1 : (chunks > team ? team : chunks);
  int64_t chunk_rows = (item_rows + chunks - 1) / chunks;
  double flops = 2.0 * (double)m * (double)n * (double)k;
  int threads = flops < SD_CPU_PARALLEL_FLOPS ? 1 : team;
  sd_dnnl_status failed = {dnnl_success};
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t task = 0; task < items * chunks; task++) {
    int64_t first = task / chunks * item_rows + task % chunks * chunk_rows;
    int64_t end = (task / chunks + 1) * item_rows;
    int64_t rows = end - first < chunk_rows ? end - first : chunk_rows;
    if (rows <= 0)
      continue;
    float *rows_out = out + first * n; /* (rows, N) */
    DNNL_NOTE(&failed, dnnl_sgemm('N', 'T', rows, n, k, 1.0f, in + first * k, k, weight, k, 0.0f,
                                  rows_out, n));
    if (bias || act != SD_ACT_NONE)
      for (int64_t r = 0; r < rows; r++)
        sd_cpu_activate_array(rows_out + r * n, bias, act, n, rows_out + r * n);
  }
  return sd_dnnl_report(&failed);
}
