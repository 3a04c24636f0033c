/* Mean squared and mean absolute error and their gradients. */
#include "loss.h"

#include <math.h>

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

float sd_l1_loss(const float *x, const float *target, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++)
    sum += fabs((double)(x[i] - target[i]));
  return (float)(sum / (double)n);
}

void sd_l1_loss_backward(const float *x, const float *target, int64_t n, float dloss, float *dx) {
  const float norm = (float)(1.0 / (double)n);
  for (int64_t i = 0; i < n; i++) {
    float d = x[i] - target[i];
    dx[i] = (d > 0.0f ? norm : d < 0.0f ? -norm : 0.0f) * dloss;
  }
}
