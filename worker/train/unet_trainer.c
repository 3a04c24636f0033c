/* The UNet's optimizer step (unet_trainer.h). */
#include "unet_trainer.h"

#include "clip_trainer.h"
#include "param_optim.h"

#include "../sched/ddpm_noise.h"

#include "../../kernels/error.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sd_unet_trainer {
  sd_backend *be;
  sd_unet *unet;
  const sd_scheduler_config *noise;
  sd_unet_train_config cfg;
  sd_grads *grads;
  sd_param_optim *optim;
  const sd_grad_reduce *reduce; /* or NULL */
  int64_t steps;
};

sd_unet_train_config sd_unet_train_config_init(void) {
  return (sd_unet_train_config){
      .adamw = sd_adamw_config_init(),
      .learning_rate = 5e-6,
      .schedule = SD_LR_CONSTANT,
      .warmup_steps = 500,
      .total_steps = 500,
      .max_grad_norm = 1.0,
      .tape = SD_UNET_TAPE_FULL,
  };
}

void sd_unet_trainer_free(sd_unet_trainer *t) {
  if (!t)
    return;
  sd_param_optim_free(t->optim);
  sd_grads_free(t->grads);
  free(t);
}

int sd_unet_train_check(const sd_scheduler_config *noise) {
  if (noise->prediction_type != SD_PREDICT_EPSILON && noise->prediction_type != SD_PREDICT_V)
    return SD_ERROR("unet training: prediction type 'sample' is not supported (epsilon and "
                    "v_prediction are)");
  return 0;
}

int sd_unet_trainer_create(sd_backend *be, sd_unet *unet, const sd_weights *weights,
                           const sd_scheduler_config *noise, const sd_unet_train_config *cfg,
                           sd_grads_filter wants, void *user, sd_unet_trainer **out) {
  *out = NULL;
  SD_TRY(sd_unet_train_check(noise));
  sd_unet_trainer *t = calloc(1, sizeof *t);
  if (!t)
    return SD_ERROR("out of memory");
  t->be = be;
  t->unet = unet;
  t->noise = noise;
  t->cfg = *cfg;
  if (sd_grads_create(be, weights, wants, user, &t->grads) < 0 ||
      sd_param_optim_create(be, t->grads, &t->optim) < 0) {
    sd_unet_trainer_free(t);
    return sd_error_context("unet training");
  }
  *out = t;
  return 0;
}

/* Item b's forward and backward: its squared error sum (in double) into *sum_sq and its gradients
 * added to the store; the loss counts the item's squared errors times weight (dpred = (float)(2
 * weight) (pred - target)), or with weight < 0 the whole batch's mean over n_total elements. */
static int item_backward(sd_backend *be, sd_unet *unet, const sd_scheduler_config *schedule,
                         sd_unet_tape_mode mode, sd_grads *grads, const sd_tensor *latents,
                         const sd_tensor *noise, int32_t timestep, const sd_tensor *context,
                         int64_t n_total, double weight, double *sum_sq, sd_tensor *dcontext) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor noisy = sd_tensor_make(SD_DTYPE_F32, latents->ndim, latents->shape);
  sd_tensor target = noisy, pred = noisy, dpred = noisy;
  noisy.dtype = target.dtype = pred.dtype = dpred.dtype = be->ops->act_dtype;
  int64_t n = sd_tensor_numel(latents);
  float *host = malloc(2 * (size_t)n * sizeof(float));
  sd_unet_tape *tape = NULL;
  int rc = host ? 0 : SD_ERROR("out of memory");
  if (rc == 0 && (sd_tensor_alloc(be, &noisy) < 0 || sd_tensor_alloc(be, &target) < 0 ||
                  sd_tensor_alloc(be, &pred) < 0))
    rc = -1;
  if (rc == 0)
    rc = sd_ddpm_add_noise(schedule, timestep, be, latents, noise, &noisy);
  if (rc == 0)
    rc = schedule->prediction_type == SD_PREDICT_V
             ? sd_ddpm_velocity(schedule, timestep, be, latents, noise, &target)
             : sd_op_copy(be, noise, &target);
  if (rc == 0)
    rc = sd_unet_forward_train(unet, &noisy, (double)timestep, context, mode, &pred, &tape);
  float *p = host, *want = host + n;
  if (rc == 0 &&
      (sd_tensor_download_f32(be, &pred, p) < 0 || sd_tensor_download_f32(be, &target, want) < 0))
    rc = -1;
  if (rc == 0) {
    /* F.mse_loss over the batch: dpred = (float)(2 / N) (pred - target), N the batch's elements */
    const float norm = weight < 0 ? (float)(2.0 / (double)n_total) : (float)(2.0 * weight);
    for (int64_t i = 0; i < n; i++) {
      float d = p[i] - want[i];
      *sum_sq += (double)d * d;
      p[i] = norm * d;
    }
    dpred.data = NULL;
    rc = sd_tensor_alloc(be, &dpred);
  }
  if (rc == 0)
    rc = sd_tensor_upload_f32(be, &dpred, p);
  if (rc == 0)
    rc = sd_unet_backward(tape, &dpred, grads, NULL, dcontext);
  sd_unet_tape_free(tape);
  sd_arena_release(be, mark);
  free(host);
  return rc;
}

int sd_unet_loss_backward(sd_backend *be, sd_unet *unet, const sd_scheduler_config *noise_cfg,
                          sd_unet_tape_mode mode, sd_grads *grads, const sd_tensor *latents,
                          const sd_tensor *noise, const int32_t *timesteps,
                          const sd_tensor *context, int64_t step, float *loss) {
  return sd_unet_loss_backward_weighted(be, unet, noise_cfg, mode, grads, latents, noise, timesteps,
                                        context, NULL, step, loss);
}

/* sd_unet_loss_backward_weighted, and d(loss)/d(context) into dcontext (B, L, D) unless NULL. */
static int loss_backward(sd_backend *be, sd_unet *unet, const sd_scheduler_config *noise_cfg,
                         sd_unet_tape_mode mode, sd_grads *grads, const sd_tensor *latents,
                         const sd_tensor *noise, const int32_t *timesteps, const sd_tensor *context,
                         const double *item_weights, int64_t step, float *loss,
                         sd_tensor *dcontext) {
  *loss = 0;
  if (latents->ndim != 4 || !sd_tensor_same_shape(latents, noise) || context->ndim != 3 ||
      context->shape[0] != latents->shape[0])
    return SD_ERROR("unet training: latents, noise (B, C, h, w) and context (B, L, D) disagree");
  if (dcontext && !sd_tensor_same_shape(dcontext, context))
    return SD_ERROR("unet training: dcontext's shape is not context's (B, L, D)");
  int64_t batch = latents->shape[0];
  int64_t n_total = sd_tensor_numel(latents);
  if (item_weights)
    for (int64_t b = 0; b < batch; b++)
      if (!(item_weights[b] >= 0) || !isfinite(item_weights[b]))
        return SD_ERROR("unet training: item %" PRId64 "'s loss weight %g is not finite and >= 0",
                        b, item_weights[b]);
  SD_TRY(sd_grads_zero(grads));
  double sum_sq = 0.0, weighted = 0.0;
  for (int64_t b = 0; b < batch; b++) {
    sd_tensor x = sd_tensor_slice0(latents, b, 1), e = sd_tensor_slice0(noise, b, 1);
    sd_tensor c = sd_tensor_slice0(context, b, 1);
    sd_tensor dc = dcontext ? sd_tensor_slice0(dcontext, b, 1) : c;
    double item_sq = 0.0;
    if (item_backward(be, unet, noise_cfg, mode, grads, &x, &e, timesteps[b], &c, n_total,
                      item_weights ? item_weights[b] : -1.0, item_weights ? &item_sq : &sum_sq,
                      dcontext ? &dc : NULL) < 0)
      return sd_error_context("unet training: step %" PRId64 ", item %" PRId64 " (timestep %d)",
                              step, b, timesteps[b]);
    if (item_weights)
      weighted += item_weights[b] * item_sq;
  }
  *loss = item_weights ? (float)weighted : (float)(sum_sq / (double)n_total);
  return 0;
}

int sd_unet_loss_backward_weighted(sd_backend *be, sd_unet *unet,
                                   const sd_scheduler_config *noise_cfg, sd_unet_tape_mode mode,
                                   sd_grads *grads, const sd_tensor *latents,
                                   const sd_tensor *noise, const int32_t *timesteps,
                                   const sd_tensor *context, const double *item_weights,
                                   int64_t step, float *loss) {
  return loss_backward(be, unet, noise_cfg, mode, grads, latents, noise, timesteps, context,
                       item_weights, step, loss, NULL);
}

int sd_unet_loss_backward_dcontext(sd_backend *be, sd_unet *unet,
                                   const sd_scheduler_config *noise_cfg, sd_unet_tape_mode mode,
                                   sd_grads *grads, const sd_tensor *latents,
                                   const sd_tensor *noise, const int32_t *timesteps,
                                   const sd_tensor *context, const double *item_weights,
                                   int64_t step, float *loss, sd_tensor *dcontext) {
  return loss_backward(be, unet, noise_cfg, mode, grads, latents, noise, timesteps, context,
                       item_weights, step, loss, dcontext);
}

double sd_unet_train_lr(const sd_unet_train_config *cfg, int64_t step) {
  return cfg->learning_rate *
         sd_lr_multiplier(cfg->schedule, step, cfg->warmup_steps, cfg->total_steps);
}

int sd_unet_trainer_step(sd_unet_trainer *t, const sd_tensor *latents, const sd_tensor *noise,
                         const int32_t *timesteps, const sd_tensor *context,
                         sd_unet_step_report *report) {
  return sd_unet_trainer_step_weighted(t, latents, noise, timesteps, context, NULL, report);
}

/* The step of sd_unet_trainer_step_weighted, with d(loss)/d(context) into dcontext (NULL: not
 * wanted). */
static int trainer_step(sd_unet_trainer *t, const sd_tensor *latents, const sd_tensor *noise,
                        const int32_t *timesteps, const sd_tensor *context,
                        const double *item_weights, sd_tensor *dcontext,
                        sd_unet_step_report *report) {
  memset(report, 0, sizeof *report);
  SD_TRY(loss_backward(t->be, t->unet, t->noise, t->cfg.tape, t->grads, latents, noise, timesteps,
                       context, item_weights, t->steps, &report->loss, dcontext));
  SD_TRY(sd_grad_reduce_f32(t->reduce, &report->loss, 1));
  report->learning_rate = sd_unet_train_lr(&t->cfg, t->steps);
  if (sd_param_optim_step(t->optim, &t->cfg.adamw, report->learning_rate, t->steps + 1,
                          t->cfg.max_grad_norm, &report->grad_norm) < 0)
    return sd_error_context("unet training: step %" PRId64, t->steps);
  t->steps++;
  return 0;
}

int sd_unet_trainer_step_weighted(sd_unet_trainer *t, const sd_tensor *latents,
                                  const sd_tensor *noise, const int32_t *timesteps,
                                  const sd_tensor *context, const double *item_weights,
                                  sd_unet_step_report *report) {
  return trainer_step(t, latents, noise, timesteps, context, item_weights, NULL, report);
}

int sd_unet_trainer_step_dcontext(sd_unet_trainer *t, const sd_tensor *latents,
                                  const sd_tensor *noise, const int32_t *timesteps,
                                  const sd_tensor *context, sd_tensor *dcontext,
                                  sd_unet_step_report *report) {
  return trainer_step(t, latents, noise, timesteps, context, NULL, dcontext, report);
}

int sd_unet_trainer_step_joint(sd_unet_trainer *t, sd_clip_trainer *encoder,
                               const sd_tensor *latents, const sd_tensor *noise,
                               const int32_t *timesteps, const sd_tensor *context,
                               const double *item_weights, sd_tensor *dcontext,
                               sd_unet_step_report *report) {
  memset(report, 0, sizeof *report);
  if (loss_backward(t->be, t->unet, t->noise, t->cfg.tape, t->grads, latents, noise, timesteps,
                    context, item_weights, t->steps, &report->loss, dcontext) < 0) {
    sd_clip_trainer_drop(encoder);
    return -1;
  }
  SD_TRY(sd_clip_trainer_backward(encoder, dcontext));
  SD_TRY(sd_grad_reduce_f32(t->reduce, &report->loss, 1));
  report->learning_rate = sd_unet_train_lr(&t->cfg, t->steps);
  sd_param_optim *chain[2] = {t->optim, sd_clip_trainer_optim(encoder)};
  if (sd_param_optim_step_chain(chain, 2, &t->cfg.adamw, report->learning_rate, t->steps + 1,
                                t->cfg.max_grad_norm, &report->grad_norm) < 0)
    return sd_error_context("unet and text encoder training: step %" PRId64, t->steps);
  t->steps++;
  sd_clip_trainer_count_step(encoder);
  return 0;
}

void sd_unet_trainer_set_reduce(sd_unet_trainer *t, const sd_grad_reduce *reduce) {
  t->reduce = reduce;
  sd_param_optim_set_reduce(t->optim, reduce);
}

int64_t sd_unet_trainer_steps(const sd_unet_trainer *t) {
  return t->steps;
}

sd_grads *sd_unet_trainer_grads(sd_unet_trainer *t) {
  return t->grads;
}

int sd_unet_trainer_state_at(sd_unet_trainer *t, size_t i, float **master, float **exp_avg,
                             float **exp_avg_sq) {
  if (sd_param_optim_state_at(t->optim, i, master, exp_avg, exp_avg_sq) < 0)
    return sd_error_context("unet training");
  return 0;
}

int sd_unet_trainer_restore(sd_unet_trainer *t, int64_t steps) {
  if (sd_param_optim_restore(t->optim) < 0)
    return sd_error_context("unet training: restoring");
  t->steps = steps;
  return 0;
}
