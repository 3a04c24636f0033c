/* The losses of training: mean squared error as F.mse_loss(x, target) (reduction "mean") and the
 * mean absolute error as (x - target).abs().mean() (F.l1_loss), with their gradients, on host
 * float32 arrays. docs/training.md. */
#ifndef SD_TRAIN_LOSS_H
#define SD_TRAIN_LOSS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* mean over n elements of (x - target)^2, summed in double, rounded to float. */
float sd_mse_loss(const float *x, const float *target, int64_t n);

/* dx (n) = (float)(2 / n) (x - target) dloss, as torch's mse_loss_backward. dx may alias x. */
void sd_mse_loss_backward(const float *x, const float *target, int64_t n, float dloss, float *dx);

/* mean over n elements of |x - target|, summed in double, rounded to float. */
float sd_l1_loss(const float *x, const float *target, int64_t n);

/* dx (n) = sign(x - target) (float)(1 / n) dloss (0 where x == target), as torch's backward of
 * abs().mean(). dx may alias x. */
void sd_l1_loss_backward(const float *x, const float *target, int64_t n, float dloss, float *dx);

/* The weighted means, as (weight * (x - target).abs()).mean() and
 * (weight * (x - target) ** 2).mean() in torch: per-element weights (n), mean over n elements,
 * summed in double. The gradients are torch's: sign(x - target) ((float)(dloss / n) weight), and
 * ((float)(dloss / n) weight) (2 (x - target)). dx may alias x. */
float sd_weighted_l1_loss(const float *x, const float *target, const float *weight, int64_t n);
void sd_weighted_l1_loss_backward(const float *x, const float *target, const float *weight,
                                  int64_t n, float dloss, float *dx);
float sd_weighted_mse_loss(const float *x, const float *target, const float *weight, int64_t n);
void sd_weighted_mse_loss_backward(const float *x, const float *target, const float *weight,
                                   int64_t n, float dloss, float *dx);

#ifdef __cplusplus
}
#endif

#endif
