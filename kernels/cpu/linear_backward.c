/* Backward of linear (act NONE): dx = dy . w in blocks of 128 rows of one item (so an item's dx
 * does not depend on the batch); dw += dy^T . x with the output rows of dw in blocks of 128 over
 * threads and, within a block, one accumulating sgemm per item in item order;
 * db += the column sums of dy, rows added in order in double. No task's arithmetic depends on the
 * thread count. */
#include "cpu_internal.h"

/* Rows of dx, and of dw, per sgemm call (fixed, so results do not depend on the threads). */
#define SD_LINEAR_BWD_ROWS 128

int sd_cpu_linear_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                           const sd_tensor *dy, sd_tensor *dx, sd_tensor *dw, sd_tensor *db) {
  int64_t n = w->shape[0], k = w->shape[1];
  int64_t m = sd_tensor_numel(x) / k;
  int64_t items = x->ndim >= 2 ? x->shape[0] : 1;
  int64_t item_rows = m / items;
  const float *in = x->data, *weight = w->data, *grad_out = dy->data;
  double flops = 2.0 * (double)m * (double)n * (double)k;
  int threads = flops < SD_CPU_PARALLEL_FLOPS ? 1 : sd_cpu_threads(be);
  sd_dnnl_status failed = {dnnl_success};
  if (dx) {
    float *grad_in = dx->data;
    int64_t chunks = (item_rows + SD_LINEAR_BWD_ROWS - 1) / SD_LINEAR_BWD_ROWS;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t task = 0; task < items * chunks; task++) {
      int64_t first = task / chunks * item_rows + task % chunks * SD_LINEAR_BWD_ROWS;
      int64_t end = (task / chunks + 1) * item_rows;
      int64_t rows = end - first < SD_LINEAR_BWD_ROWS ? end - first : SD_LINEAR_BWD_ROWS;
      DNNL_NOTE(&failed, sd_cpu_sgemm('N', 'N', rows, k, n, 1.0f, grad_out + first * n, n, weight,
                                      k, 0.0f, grad_in + first * k, k));
    }
  }
  if (dw) {
    float *grad_w = dw->data;
    int64_t tasks = (n + SD_LINEAR_BWD_ROWS - 1) / SD_LINEAR_BWD_ROWS;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t task = 0; task < tasks; task++) {
      int64_t j0 = task * SD_LINEAR_BWD_ROWS;
      int64_t cols = n - j0 < SD_LINEAR_BWD_ROWS ? n - j0 : SD_LINEAR_BWD_ROWS;
      for (int64_t item = 0; item < items; item++) {
        int64_t first = item * item_rows;
        /* dw[j0 .. j0 + cols) (cols, K) += dy[:, j0 ..]^T (cols, rows) . x (rows, K) */
        DNNL_NOTE(&failed,
                  sd_cpu_sgemm('T', 'N', cols, k, item_rows, 1.0f, grad_out + first * n + j0, n,
                               in + first * k, k, 1.0f, grad_w + j0 * k, k));
      }
    }
  }
  if (db) {
    float *grad_b = db->data;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t j = 0; j < n; j++) {
      double sum = 0.0;
      for (int64_t r = 0; r < m; r++)
        sum += grad_out[r * n + j];
      grad_b[j] = (float)((double)grad_b[j] + sum);
    }
  }
  return sd_dnnl_report(&failed);
}
