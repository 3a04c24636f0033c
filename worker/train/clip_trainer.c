/* The CLIP text encoder's optimizer step (clip_trainer.h). */
#include "clip_trainer.h"

#include "param_optim.h"

#include "../../kernels/error.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>

struct sd_clip_trainer {
  sd_backend *be;
  sd_clip_text *clip;
  sd_clip_train_config cfg;
  sd_grads *grads;
  sd_param_optim *optim;
  sd_clip_text_tape *tape; /* of the last forward, until its step */
  bool empty_forward;      /* the last forward had no rows (a data-parallel rank's share) */
  int64_t steps;
};

int sd_clip_trainer_create(sd_backend *be, sd_clip_text *clip, const sd_weights *weights,
                           const sd_clip_train_config *cfg, sd_grads_filter wants, void *user,
                           sd_clip_trainer **out) {
  *out = NULL;
  sd_clip_trainer *t = calloc(1, sizeof *t);
  if (!t)
    return SD_ERROR("out of memory");
  t->be = be;
  t->clip = clip;
  t->cfg = *cfg;
  if (sd_grads_create(be, weights, wants, user, &t->grads) < 0 ||
      sd_param_optim_create(be, t->grads, &t->optim) < 0) {
    sd_clip_trainer_free(t);
    return sd_error_context("text encoder training");
  }
  *out = t;
  return 0;
}

void sd_clip_trainer_drop(sd_clip_trainer *t) {
  if (t && t->tape) {
    sd_clip_text_tape_free(t->tape);
    t->tape = NULL;
  }
}

void sd_clip_trainer_free(sd_clip_trainer *t) {
  if (!t)
    return;
  sd_clip_trainer_drop(t);
  sd_param_optim_free(t->optim);
  sd_grads_free(t->grads);
  free(t);
}

int sd_clip_trainer_forward(sd_clip_trainer *t, const int32_t *ids, int batch, sd_tensor *hidden) {
  sd_clip_trainer_drop(t);
  t->empty_forward = batch == 0;
  if (batch == 0)
    return 0;
  if (sd_clip_text_forward_train(t->clip, ids, batch, hidden, &t->tape) < 0)
    return sd_error_context("text encoder training: step %" PRId64 "'s forward", t->steps);
  return 0;
}

int sd_clip_trainer_step(sd_clip_trainer *t, const sd_tensor *dhidden,
                         sd_clip_step_report *report) {
  report->grad_norm = 0;
  report->learning_rate =
      t->cfg.learning_rate *
      sd_lr_multiplier(t->cfg.schedule, t->steps, t->cfg.warmup_steps, t->cfg.total_steps);
  int rc = sd_clip_trainer_backward(t, dhidden);
  if (rc == 0)
    rc = sd_param_optim_step(t->optim, &t->cfg.adamw, report->learning_rate, t->steps + 1,
                             t->cfg.max_grad_norm, &report->grad_norm);
  if (rc < 0)
    return sd_error_context("text encoder training: step %" PRId64, t->steps);
  t->steps++;
  return 0;
}

int sd_clip_trainer_backward(sd_clip_trainer *t, const sd_tensor *dhidden) {
  if (!t->tape && !t->empty_forward)
    return SD_ERROR("text encoder training: a backward without its forward");
  int rc = sd_grads_zero(t->grads);
  if (rc == 0 && t->empty_forward) { /* no rows: no gradient */
    t->empty_forward = false;
    return 0;
  }
  if (rc == 0)
    rc = sd_clip_text_backward(t->tape, dhidden, t->grads);
  sd_clip_trainer_drop(t);
  return rc < 0 ? sd_error_context("text encoder training: step %" PRId64 "'s backward", t->steps)
                : 0;
}

sd_param_optim *sd_clip_trainer_optim(sd_clip_trainer *t) {
  return t->optim;
}

void sd_clip_trainer_set_reduce(sd_clip_trainer *t, const sd_grad_reduce *reduce) {
  sd_param_optim_set_reduce(t->optim, reduce);
}

void sd_clip_trainer_count_step(sd_clip_trainer *t) {
  t->steps++;
}

int64_t sd_clip_trainer_steps(const sd_clip_trainer *t) {
  return t->steps;
}

sd_grads *sd_clip_trainer_grads(sd_clip_trainer *t) {
  return t->grads;
}

int sd_clip_trainer_state_at(sd_clip_trainer *t, size_t i, float **master, float **exp_avg,
                             float **exp_avg_sq) {
  if (sd_param_optim_state_at(t->optim, i, master, exp_avg, exp_avg_sq) < 0)
    return sd_error_context("text encoder training");
  return 0;
}

int sd_clip_trainer_restore(sd_clip_trainer *t, int64_t steps) {
  SD_TRY(sd_param_optim_restore(t->optim));
  t->steps = steps;
  return 0;
}
