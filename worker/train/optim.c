/* AdamW (torch's _single_tensor_adam with decoupled weight decay) and clip_grad_norm_. */
#include "optim.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

sd_adamw_config sd_adamw_config_init(void) {
  return (sd_adamw_config){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-2};
}

void sd_adamw_step(const sd_adamw_config *cfg, double lr, int64_t step, float *p, const float *grad,
                   float *exp_avg, float *exp_avg_sq, int64_t n) {
  double bias_correction1 = 1.0 - pow(cfg->beta1, (double)step);
  double bias_correction2 = 1.0 - pow(cfg->beta2, (double)step);
  double step_size = lr / bias_correction1;
  double bias_correction2_sqrt = pow(bias_correction2, 0.5);
  const float decay = (float)(1.0 - lr * cfg->weight_decay);
  const float avg_weight = (float)(1.0 - cfg->beta1);
  const float beta2 = (float)cfg->beta2, sq_weight = (float)(1.0 - cfg->beta2);
  const float bc2_sqrt = (float)bias_correction2_sqrt, eps = (float)cfg->eps;
  const float neg_step = (float)-step_size;
  for (int64_t i = 0; i < n; i++) {
    float g = grad[i];
    float param = p[i];
    if (cfg->weight_decay != 0.0)
      param *= decay;
    float m = fmaf(avg_weight, g - exp_avg[i], exp_avg[i]);
    float v = exp_avg_sq[i] * beta2;
    v = v + sq_weight * g * g;
    float denom = sqrtf(v) / bc2_sqrt + eps;
    p[i] = param + neg_step * m / denom;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
  }
}

float sd_clip_grad_norm(int count, float *const *grads, const int64_t *sizes, float max_norm) {
  double squares = 0.0;
  for (int t = 0; t < count; t++) {
    double sum = 0.0;
    for (int64_t i = 0; i < sizes[t]; i++)
      sum += (double)grads[t][i] * grads[t][i];
    float norm = (float)sqrt(sum);
    squares += (double)norm * norm;
  }
  float total = (float)sqrt(squares);
  float coef = max_norm / (total + 1e-6f);
  if (coef > 1.0f)
    coef = 1.0f;
  for (int t = 0; t < count; t++)
    for (int64_t i = 0; i < sizes[t]; i++)
      grads[t][i] *= coef;
  return total;
}

void sd_param_set_free(sd_param_set *set) {
  float **arrays[4] = {set->values, set->grads, set->exp_avg, set->exp_avg_sq};
  for (int a = 0; a < 4; a++) {
    for (size_t i = 0; arrays[a] && i < set->count; i++)
      free(arrays[a][i]);
    free(arrays[a]);
  }
  free(set->sizes);
  *set = (sd_param_set){0};
}

int sd_param_set_init(sd_param_set *set, size_t count, const int64_t *sizes) {
  *set = (sd_param_set){0};
  set->count = count;
  size_t slots = count ? count : 1;
  set->sizes = malloc(slots * sizeof *set->sizes);
  set->values = calloc(slots, sizeof *set->values);
  set->grads = calloc(slots, sizeof *set->grads);
  set->exp_avg = calloc(slots, sizeof *set->exp_avg);
  set->exp_avg_sq = calloc(slots, sizeof *set->exp_avg_sq);
  bool ok = set->sizes && set->values && set->grads && set->exp_avg && set->exp_avg_sq;
  for (size_t i = 0; ok && i < count; i++) {
    size_t n = (size_t)sizes[i];
    set->sizes[i] = sizes[i];
    set->values[i] = malloc((n ? n : 1) * sizeof(float));
    set->grads[i] = malloc((n ? n : 1) * sizeof(float));
    set->exp_avg[i] = calloc(n ? n : 1, sizeof(float));
    set->exp_avg_sq[i] = calloc(n ? n : 1, sizeof(float));
    ok = set->values[i] && set->grads[i] && set->exp_avg[i] && set->exp_avg_sq[i];
  }
  if (!ok) {
    sd_param_set_free(set);
    return SD_ERROR("out of host memory for the optimizer state of %zu parameters", count);
  }
  return 0;
}

float sd_param_set_step(sd_param_set *set, const sd_adamw_config *cfg, double lr, int64_t step,
                        double max_norm) {
  float norm = sd_clip_grad_norm((int)set->count, set->grads, set->sizes,
                                 max_norm > 0 ? (float)max_norm : 3.4e38f);
  for (size_t i = 0; i < set->count; i++)
    sd_adamw_step(cfg, lr, step, set->values[i], set->grads[i], set->exp_avg[i], set->exp_avg_sq[i],
                  set->sizes[i]);
  return norm;
}

int sd_grad_reduce_f32(const sd_grad_reduce *r, float *data, size_t n) {
  if (!r || r->size <= 1 || n == 0)
    return 0;
  enum { CHUNK = 1 << 20 };
  size_t chunk = n < CHUNK ? n : CHUNK;
  double *buf = malloc(chunk * sizeof *buf);
  if (!buf)
    return SD_ERROR("out of memory for a gradient all-reduce of %zu values", chunk);
  int rc = 0;
  for (size_t at = 0; rc == 0 && at < n; at += chunk) {
    size_t m = n - at < chunk ? n - at : chunk;
    for (size_t i = 0; i < m; i++)
      buf[i] = (double)data[at + i];
    rc = r->sum_f64(r->ctx, buf, m);
    for (size_t i = 0; rc == 0 && i < m; i++)
      data[at + i] = (float)buf[i];
  }
  free(buf);
  return rc < 0 ? sd_error_context("summing gradients over %d ranks", r->size) : 0;
}
