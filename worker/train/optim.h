/* The optimizer of fine-tuning: AdamW and global gradient-norm clipping, computed as
 * torch.optim.AdamW (foreach=False) and torch.nn.utils.clip_grad_norm_ compute them in float32.
 * Parameters, gradients and optimizer state are host float32 arrays (the CPU backend's tensors
 * are host memory). docs/training.md. */
#ifndef SD_TRAIN_OPTIM_H
#define SD_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* AdamW's hyperparameters; the learning rate is given to each step (it follows a schedule). */
typedef struct sd_adamw_config {
  double beta1, beta2; /* torch's betas */
  double eps;          /* added to the bias-corrected sqrt of the second moment */
  double weight_decay; /* decoupled: p *= 1 - lr weight_decay before the update */
} sd_adamw_config;

/* torch.optim.AdamW's defaults: betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2. */
sd_adamw_config sd_adamw_config_init(void);

/* One AdamW step of one parameter p (n) with its gradient grad (n) and state exp_avg (n),
 * exp_avg_sq (n) (both zero before the first step); step is the step number counted from 1 (all
 * parameters of a model share it). In torch's order and float32 rounding, with the scalars in
 * double as Python computes them and rounded to float where torch's kernels take them:
 *   p *= (float)(1 - lr wd)
 *   m = fma(1 - beta1, g - m, m)                  (lerp_ with weight 1 - beta1 < 0.5)
 *   v = v * beta2 + ((1 - beta2) g) g
 *   denom = sqrt(v) / (float)sqrt(1 - beta2^step) + eps
 *   p = p + (-(lr / (1 - beta1^step)) m) / denom. */
void sd_adamw_step(const sd_adamw_config *cfg, double lr, int64_t step, float *p, const float *grad,
                   float *exp_avg, float *exp_avg_sq, int64_t n);

/* torch.nn.utils.clip_grad_norm_(norm_type 2) over `count` gradients grads[i] (sizes[i]): the
 * total L2 norm of all of them (each tensor's norm, then the norm of those norms, each summed in
 * double and rounded to float), and every gradient multiplied by
 * min(max_norm / (total + 1e-6), 1) in float. Returns the total norm before clipping. */
float sd_clip_grad_norm(int count, float *const *grads, const int64_t *sizes, float max_norm);

/* A trainer's parameters on the host: float32 values (the master copy), their gradients and
 * AdamW's moments, count arrays of sizes[i] floats each, all owned. */
typedef struct sd_param_set {
  size_t count;
  int64_t *sizes;     /* (count) */
  float **values;     /* (count) the parameters */
  float **grads;      /* (count) their gradients, filled by the trainer before a step */
  float **exp_avg;    /* (count) AdamW's first moments, zero before the first step */
  float **exp_avg_sq; /* (count) and second moments */
} sd_param_set;

/* Data parallel training (docs/training.md, "Data parallel"): the ranks that share each step's
 * items, and the sum over them. sum_f64 replaces data (n values) by the sum over all ranks, the
 * same bits on every rank (added in rank order); barrier waits for every rank. Both collective,
 * 0 or -1 with an error. NULL where a trainer takes one: this process alone. */
typedef struct sd_grad_reduce {
  int rank, size;
  int (*sum_f64)(void *ctx, double *data, size_t n);
  int (*barrier)(void *ctx);
  void *ctx;
} sd_grad_reduce;

/* data (n floats) = the sum over r's ranks (each float added in double precision in rank order,
 * then rounded back). r NULL or of one rank: nothing. */
int sd_grad_reduce_f32(const sd_grad_reduce *r, float *data, size_t n);

/* Allocates count parameters of sizes[i] values each (values and gradients uninitialised, moments
 * zero). 0, or -1 with an error (out of memory; set is then freed). */
int sd_param_set_init(sd_param_set *set, size_t count, const int64_t *sizes);
void sd_param_set_free(sd_param_set *set);
/* One optimizer step of every parameter: clip_grad_norm_(max_norm; <= 0: no clipping) over all
 * the gradients, then AdamW at lr with step number `step` (from 1). Returns the gradients' total
 * norm before clipping. */
float sd_param_set_step(sd_param_set *set, const sd_adamw_config *cfg, double lr, int64_t step,
                        double max_norm);

#ifdef __cplusplus
}
#endif

#endif
