/* Backward of LayerNorm over the last dim. Per row, the statistics are recomputed with
 * layer_norm.c's arithmetic; with xhat = (x - mean) rstd and dxhat = dy gamma,
 *   dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)).
 * dgamma += sum over rows of dy xhat and dbeta += sum of dy: each block of 16 rows sums its rows
 * in double, and the blocks are added in order, so the result does not depend on the thread
 * count. */
#include "cpu_internal.h"

#include <math.h>

/* Rows per task (fixed: the parameter gradients add blocks in order). */
#define SD_LN_BWD_ROWS 16

/* Rows [0, rows) of x, dy (rows, C): dx (may be NULL) and the block's sums into
 * sums (2, C) = (sum dy xhat, sum dy). */
SD_CPU_MULTIVERSION static void rows_backward(const float *x, const float *gamma, const float *dy,
                                              int64_t rows, int64_t c, float eps, float *dx,
                                              double *sums) {
  for (int64_t i = 0; i < 2 * c; i++)
    sums[i] = 0.0;
  for (int64_t r = 0; r < rows; r++) {
    const float *in = x + r * c, *grad_out = dy + r * c;
    float mean, rstd;
    sd_cpu_row_mean_rstd(in, c, eps, &mean, &rstd);
    double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
    for (int64_t i = 0; i < c; i++) {
      float xhat = (in[i] - mean) * rstd;
      float dxhat = grad_out[i] * gamma[i];
      sums[i] += (double)grad_out[i] * xhat;
      sums[c + i] += grad_out[i];
      sum_dxhat += dxhat;
      sum_dxhat_xhat += (double)dxhat * xhat;
    }
    if (!dx)
      continue;
    float a = (float)(sum_dxhat / (double)c), p = (float)(sum_dxhat_xhat / (double)c);
    float *out = dx + r * c;
    for (int64_t i = 0; i < c; i++) {
      float xhat = (in[i] - mean) * rstd;
      out[i] = rstd * (grad_out[i] * gamma[i] - a - xhat * p);
    }
  }
}

int sd_cpu_layer_norm_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                               const sd_tensor *dy, float eps, sd_tensor *dx, sd_tensor *dgamma,
                               sd_tensor *dbeta) {
  int64_t c = x->shape[x->ndim - 1];
  int64_t rows = sd_tensor_numel(x) / c;
  int64_t tasks = (rows + SD_LN_BWD_ROWS - 1) / SD_LN_BWD_ROWS;
  sd_arena_mark mark = sd_arena_get_mark(be);
  /* (tasks, 2, C) doubles */
  double *sums = (double *)sd_cpu_scratch(be, (size_t)(tasks * c * 4), "layer_norm_backward sums");
  if (!sums)
    return -1;
  const float *src = x->data, *grad_out = dy->data;
  float *grad_in = dx ? dx->data : NULL;
  int threads = rows * c > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < tasks; t++) {
    int64_t r0 = t * SD_LN_BWD_ROWS;
    rows_backward(src + r0 * c, gamma->data, grad_out + r0 * c,
                  rows - r0 < SD_LN_BWD_ROWS ? rows - r0 : SD_LN_BWD_ROWS, c, eps,
                  grad_in ? grad_in + r0 * c : NULL, sums + 2 * t * c);
  }
  float *grad_gamma = dgamma ? dgamma->data : NULL, *grad_beta = dbeta ? dbeta->data : NULL;
  for (int64_t i = 0; i < c; i++) {
    double sum_dy_xhat = 0.0, sum_dy = 0.0;
    for (int64_t t = 0; t < tasks; t++) {
      sum_dy_xhat += sums[2 * t * c + i];
      sum_dy += sums[2 * t * c + c + i];
    }
    if (grad_gamma)
      grad_gamma[i] = (float)((double)grad_gamma[i] + sum_dy_xhat);
    if (grad_beta)
      grad_beta[i] = (float)((double)grad_beta[i] + sum_dy);
  }
  sd_arena_release(be, mark);
  return 0;
}
