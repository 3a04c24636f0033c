/* The trainers' optimizer state and step (param_optim.h). */
#include "param_optim.h"

#include "../../kernels/error.h"

#include <stdlib.h>

struct sd_param_optim {
  sd_backend *be;
  sd_grads *grads;
  size_t n;
  sd_tensor **params; /* (n) the trained weights, updated in place */
  int64_t *sizes;     /* (n) elements of each */
  float **master;     /* (n) float32 master weights on the host */
  float **exp_avg, **exp_avg_sq;
  float **grad_host; /* (n) the step's gradients, downloaded for clipping and AdamW */
};

void sd_param_optim_free(sd_param_optim *o) {
  if (!o)
    return;
  for (size_t i = 0; i < o->n; i++) {
    free(o->master[i]);
    free(o->exp_avg[i]);
    free(o->exp_avg_sq[i]);
    free(o->grad_host[i]);
  }
  free(o->master);
  free(o->exp_avg);
  free(o->exp_avg_sq);
  free(o->grad_host);
  free(o->params);
  free(o->sizes);
  free(o);
}

int sd_param_optim_create(sd_backend *be, sd_grads *grads, sd_param_optim **out) {
  *out = NULL;
  sd_param_optim *o = calloc(1, sizeof *o);
  if (!o)
    return SD_ERROR("out of memory");
  o->be = be;
  o->grads = grads;
  size_t n = sd_grads_count(grads);
  o->params = calloc(n, sizeof *o->params);
  o->sizes = calloc(n, sizeof *o->sizes);
  o->master = calloc(n, sizeof *o->master);
  o->exp_avg = calloc(n, sizeof *o->exp_avg);
  o->exp_avg_sq = calloc(n, sizeof *o->exp_avg_sq);
  o->grad_host = calloc(n, sizeof *o->grad_host);
  if (!o->params || !o->sizes || !o->master || !o->exp_avg || !o->exp_avg_sq || !o->grad_host) {
    sd_param_optim_free(o);
    return SD_ERROR("out of memory for %zu parameters", n);
  }
  o->n = n;
  for (size_t i = 0; i < n; i++) {
    /* the optimizer owns the update of the weights the model borrows */
    o->params[i] = (sd_tensor *)sd_grads_weight_at(grads, i);
    int64_t size = sd_tensor_numel(o->params[i]);
    o->sizes[i] = size;
    o->master[i] = malloc((size_t)size * sizeof(float));
    o->exp_avg[i] = calloc((size_t)size, sizeof(float));
    o->exp_avg_sq[i] = calloc((size_t)size, sizeof(float));
    o->grad_host[i] = malloc((size_t)size * sizeof(float));
    if (!o->master[i] || !o->exp_avg[i] || !o->exp_avg_sq[i] || !o->grad_host[i]) {
      sd_param_optim_free(o);
      return SD_ERROR("out of host memory for the optimizer state of %zu parameters", n);
    }
    if (sd_tensor_download_f32(be, o->params[i], o->master[i]) < 0) {
      sd_param_optim_free(o);
      return sd_error_context("reading %s", sd_grads_name_at(grads, i));
    }
  }
  *out = o;
  return 0;
}

int sd_param_optim_step(sd_param_optim *o, const sd_adamw_config *adamw, double lr, int64_t step,
                        double max_grad_norm, float *grad_norm) {
  for (size_t i = 0; i < o->n; i++)
    if (sd_tensor_download_f32(o->be, sd_grads_at(o->grads, i), o->grad_host[i]) < 0)
      return sd_error_context("reading the gradient of %s", sd_grads_name_at(o->grads, i));
  *grad_norm = sd_clip_grad_norm((int)o->n, o->grad_host, o->sizes,
                                 max_grad_norm > 0 ? (float)max_grad_norm : 3.4e38f);
  for (size_t i = 0; i < o->n; i++) {
    sd_adamw_step(adamw, lr, step, o->master[i], o->grad_host[i], o->exp_avg[i], o->exp_avg_sq[i],
                  o->sizes[i]);
    if (sd_tensor_upload_f32(o->be, o->params[i], o->master[i]) < 0)
      return sd_error_context("writing %s", sd_grads_name_at(o->grads, i));
  }
  return 0;
}

int sd_param_optim_state_at(sd_param_optim *o, size_t i, float **master, float **exp_avg,
                            float **exp_avg_sq) {
  if (i >= o->n)
    return SD_ERROR("no parameter %zu (%zu trained)", i, o->n);
  *master = o->master[i];
  *exp_avg = o->exp_avg[i];
  *exp_avg_sq = o->exp_avg_sq[i];
  return 0;
}

int sd_param_optim_restore(sd_param_optim *o) {
  for (size_t i = 0; i < o->n; i++)
    if (sd_tensor_upload_f32(o->be, o->params[i], o->master[i]) < 0)
      return sd_error_context("restoring %s", sd_grads_name_at(o->grads, i));
  return 0;
}
