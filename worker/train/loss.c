/* Mean squared error and its gradient. */
#include "loss.h"

float sd_mse_loss(const float *x, const float *target, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) {
    float d = x[i] - target[i];
    sum += (double)d * d;
  }
  return (float)(sum / (double)n);
}

void sd_mse_loss_backward(const float *x, const float *target, int64_t n, float dloss, float *dx) {
  const float norm = (float)(2.0 / (double)n);
  for (int64_t i = 0; i < n; i++)
    dx[i] = norm * (x[i] - target[i]) * dloss;
}
