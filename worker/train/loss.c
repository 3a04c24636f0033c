/* Mean squared and mean absolute error, plain and weighted, and their gradients. */
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

float sd_weighted_l1_loss(const float *x, const float *target, const float *weight, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++)
    sum += (double)(fabsf(x[i] - target[i]) * weight[i]);
  return (float)(sum / (double)n);
}

void sd_weighted_l1_loss_backward(const float *x, const float *target, const float *weight,
                                  int64_t n, float dloss, float *dx) {
  const float grad = (float)((double)dloss / (double)n);
  for (int64_t i = 0; i < n; i++) {
    float d = x[i] - target[i], g = grad * weight[i];
    dx[i] = d > 0.0f ? g : d < 0.0f ? -g : 0.0f;
  }
}

float sd_weighted_mse_loss(const float *x, const float *target, const float *weight, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) {
    float d = x[i] - target[i];
    sum += (double)(d * d * weight[i]);
  }
  return (float)(sum / (double)n);
}

void sd_weighted_mse_loss_backward(const float *x, const float *target, const float *weight,
                                   int64_t n, float dloss, float *dx) {
  const float grad = (float)((double)dloss / (double)n);
  for (int64_t i = 0; i < n; i++)
    dx[i] = grad * weight[i] * (2.0f * (x[i] - target[i]));
}
