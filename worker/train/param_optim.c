/* The trainers' optimizer state and step (param_optim.h): sd_param_set (optim.h) bound to a
 * gradient store's weights. */
#include "param_optim.h"

#include "../../kernels/error.h"

#include <stdlib.h>

struct sd_param_optim {
  sd_backend *be;
  sd_grads *grads;
  sd_tensor **params;           /* (set.count) the trained weights, updated in place */
  sd_param_set set;             /* float32 master weights, gradients and moments on the host */
  const sd_grad_reduce *reduce; /* or NULL */
};

void sd_param_optim_set_reduce(sd_param_optim *o, const sd_grad_reduce *reduce) {
  o->reduce = reduce;
}

void sd_param_optim_free(sd_param_optim *o) {
  if (!o)
    return;
  sd_param_set_free(&o->set);
  free(o->params);
  free(o);
}

int sd_param_optim_create(sd_backend *be, sd_grads *grads, sd_param_optim **out) {
  *out = NULL;
  size_t n = sd_grads_count(grads);
  sd_param_optim *o = calloc(1, sizeof *o);
  int64_t *sizes = calloc(n ? n : 1, sizeof *sizes);
  if (o)
    o->params = calloc(n ? n : 1, sizeof *o->params);
  if (!o || !sizes || !o->params) {
    free(sizes);
    sd_param_optim_free(o);
    return SD_ERROR("out of memory for %zu parameters", n);
  }
  o->be = be;
  o->grads = grads;
  for (size_t i = 0; i < n; i++) {
    /* the optimizer owns the update of the weights the model borrows */
    o->params[i] = (sd_tensor *)sd_grads_weight_at(grads, i);
    sizes[i] = sd_tensor_numel(o->params[i]);
  }
  int rc = sd_param_set_init(&o->set, n, sizes);
  free(sizes);
  for (size_t i = 0; rc == 0 && i < n; i++)
    if (sd_tensor_download_f32(be, o->params[i], o->set.values[i]) < 0)
      rc = sd_error_context("reading %s", sd_grads_name_at(grads, i));
  if (rc < 0) {
    sd_param_optim_free(o);
    return rc;
  }
  *out = o;
  return 0;
}

/* The store's gradients into the host set, summed over the ranks. */
static int gather_grads(sd_param_optim *o) {
  for (size_t i = 0; i < o->set.count; i++)
    if (sd_tensor_download_f32(o->be, sd_grads_at(o->grads, i), o->set.grads[i]) < 0)
      return sd_error_context("reading the gradient of %s", sd_grads_name_at(o->grads, i));
  for (size_t i = 0; i < o->set.count; i++)
    SD_TRY(sd_grad_reduce_f32(o->reduce, o->set.grads[i], (size_t)o->set.sizes[i]));
  return 0;
}

int sd_param_optim_step(sd_param_optim *o, const sd_adamw_config *adamw, double lr, int64_t step,
                        double max_grad_norm, float *grad_norm) {
  return sd_param_optim_step_chain(&o, 1, adamw, lr, step, max_grad_norm, grad_norm);
}

int sd_param_optim_step_chain(sd_param_optim *const *chain, int count, const sd_adamw_config *adamw,
                              double lr, int64_t step, double max_grad_norm, float *grad_norm) {
  size_t total = 0;
  for (int k = 0; k < count; k++) {
    SD_TRY(gather_grads(chain[k]));
    total += chain[k]->set.count;
  }
  float **grads = calloc(total ? total : 1, sizeof *grads);
  int64_t *sizes = calloc(total ? total : 1, sizeof *sizes);
  if (!grads || !sizes) {
    free(grads);
    free(sizes);
    return SD_ERROR("out of memory for %zu parameters", total);
  }
  size_t at = 0;
  for (int k = 0; k < count; k++)
    for (size_t i = 0; i < chain[k]->set.count; i++, at++) {
      grads[at] = chain[k]->set.grads[i];
      sizes[at] = chain[k]->set.sizes[i];
    }
  *grad_norm = sd_clip_grad_norm((int)total, grads, sizes,
                                 max_grad_norm > 0 ? (float)max_grad_norm : 3.4e38f);
  free(grads);
  free(sizes);
  for (int k = 0; k < count; k++) {
    sd_param_set *set = &chain[k]->set;
    for (size_t i = 0; i < set->count; i++)
      sd_adamw_step(adamw, lr, step, set->values[i], set->grads[i], set->exp_avg[i],
                    set->exp_avg_sq[i], set->sizes[i]);
  }
  for (int k = 0; k < count; k++)
    SD_TRY(sd_param_optim_restore(chain[k]));
  return 0;
}

int sd_param_optim_state_at(sd_param_optim *o, size_t i, float **master, float **exp_avg,
                            float **exp_avg_sq) {
  if (i >= o->set.count)
    return SD_ERROR("no parameter %zu (%zu trained)", i, o->set.count);
  *master = o->set.values[i];
  *exp_avg = o->set.exp_avg[i];
  *exp_avg_sq = o->set.exp_avg_sq[i];
  return 0;
}

int sd_param_optim_restore(sd_param_optim *o) {
  for (size_t i = 0; i < o->set.count; i++)
    if (sd_tensor_upload_f32(o->be, o->params[i], o->set.values[i]) < 0)
      return sd_error_context("writing %s", sd_grads_name_at(o->grads, i));
  return 0;
}
