/* Linear layer: y (M, N) = act(x (M, K) . w (N, K)^T + b (N)). Each thread runs one OpenBLAS
 * sgemm on its share of the rows of y (or of the columns when M is small) and applies the bias
 * and activation to its share while it is still in cache. */
#include "cpu_internal.h"

/* Below this many rows per thread the columns are split instead. */
#define SD_LINEAR_MIN_ROWS 32

int sd_cpu_linear(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                  sd_activation act, sd_tensor *y) {
  (void)be;
  int64_t n = w->shape[0], k = w->shape[1];
  int64_t m = sd_tensor_numel(x) / k;
  const float *in = x->data, *weight = w->data, *bias = b ? b->data : NULL;
  float *out = y->data;
  int threads = SD_CPU_THREADS();
  if (2.0 * (double)(m * n * k) < 4e6)
    threads = 1;
  sd_cpu_blas_single_thread();
#pragma omp parallel num_threads(threads)
  {
    int team = SD_CPU_TEAM_SIZE();
    int64_t r0 = 0, rows = m, c0 = 0, cols = n;
    if (m >= SD_LINEAR_MIN_ROWS * team)
      sd_cpu_split(m, team, SD_CPU_THREAD_ID(), &r0, &rows);
    else
      sd_cpu_split(n, team, SD_CPU_THREAD_ID(), &c0, &cols);
    if (rows > 0 && cols > 0) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)cols, (blasint)k,
                  1.0f, in + r0 * k, (blasint)k, weight + c0 * k, (blasint)k, 0.0f,
                  out + r0 * n + c0, (blasint)n);
      if (bias || act != SD_ACT_NONE)
        for (int64_t r = r0; r < r0 + rows; r++)
          sd_cpu_activate_array(out + r * n + c0, bias ? bias + c0 : NULL, act, cols,
                                out + r * n + c0);
    }
  }
  return 0;
}
