/* Training the CLIP text encoder together with the model that reads its output (docs/training.md):
 * the caller runs sd_clip_trainer_forward (the text embeddings, with a tape), then its own model's
 * step that gives the gradient of the loss with respect to those embeddings
 * (sd_unet_trainer_step_dcontext), then sd_clip_trainer_step: the encoder's backward, its own
 * clip_grad_norm_ and an AdamW step at the schedule's learning rate. As diffusers' scripts with
 * --train_text_encoder do, except that the gradients are clipped per model, not over both at
 * once (sd_unet_trainer_step_joint steps both models as one: the script's step exactly). float32
 * master weights and AdamW's moments on the host (param_optim.h). */
#ifndef SD_CLIP_TRAINER_H
#define SD_CLIP_TRAINER_H

#include "lr_schedule.h"
#include "optim.h"

#include "../model/clip_text_train.h"

typedef struct sd_clip_trainer sd_clip_trainer;

typedef struct sd_clip_train_config {
  sd_adamw_config adamw;
  double learning_rate; /* the base learning rate (the schedule multiplies it) */
  sd_lr_schedule schedule;
  int64_t warmup_steps;
  int64_t total_steps;
  double max_grad_norm; /* <= 0: no clipping */
} sd_clip_train_config;

/* A trainer of `clip`, whose weights are `weights` (updated in place). wants (NULL: every weight)
 * chooses the weights trained. Borrows be, clip and weights. */
int sd_clip_trainer_create(sd_backend *be, sd_clip_text *clip, const sd_weights *weights,
                           const sd_clip_train_config *cfg, sd_grads_filter wants, void *user,
                           sd_clip_trainer **out);
void sd_clip_trainer_free(sd_clip_trainer *trainer);

/* The step's forward: ids (B, L) int32 on the host -> hidden (B, L, hidden_size), bit for bit
 * sd_clip_text_forward's, recording the tape that sd_clip_trainer_step consumes. hidden: persistent
 * memory, or arena memory allocated before this call; the tape holds the arena from here until
 * sd_clip_trainer_step (or sd_clip_trainer_drop) releases it. batch 0 (a data-parallel rank
 * without rows): nothing computed, and the backward gives zero gradients. */
int sd_clip_trainer_forward(sd_clip_trainer *trainer, const int32_t *ids, int batch,
                            sd_tensor *hidden);

typedef struct sd_clip_step_report {
  float grad_norm;      /* the encoder's gradients' total L2 norm before clipping */
  double learning_rate; /* what the update used */
} sd_clip_step_report;

/* Backpropagates dhidden (B, L, hidden_size), the gradient of the loss with respect to the last
 * forward's hidden, then clips and takes the AdamW step; releases the tape. */
int sd_clip_trainer_step(sd_clip_trainer *trainer, const sd_tensor *dhidden,
                         sd_clip_step_report *report);
/* For one optimizer step over the UNet and the encoder together (sd_unet_trainer_step_joint):
 * backpropagates dhidden into the trainer's gradients (zeroed first) without a step, and
 * releases the tape. */
int sd_clip_trainer_backward(sd_clip_trainer *trainer, const sd_tensor *dhidden);
/* The optimizer state that sd_clip_trainer_step steps (for sd_param_optim_step_chain). */
struct sd_param_optim *sd_clip_trainer_optim(sd_clip_trainer *trainer);
/* Data parallel: gradients summed over reduce's ranks before every step (NULL: none). Borrows
 * reduce. */
void sd_clip_trainer_set_reduce(sd_clip_trainer *trainer, const sd_grad_reduce *reduce);
/* Counts a step taken by sd_unet_trainer_step_joint (the schedule and AdamW's bias corrections
 * of a later sd_clip_trainer_step continue from there). */
void sd_clip_trainer_count_step(sd_clip_trainer *trainer);

/* Releases the last forward's tape without a step (after an error). */
void sd_clip_trainer_drop(sd_clip_trainer *trainer);

int64_t sd_clip_trainer_steps(const sd_clip_trainer *trainer);
sd_grads *sd_clip_trainer_grads(sd_clip_trainer *trainer);
/* Checkpoints, as sd_unet_trainer_state_at / sd_unet_trainer_restore. */
int sd_clip_trainer_state_at(sd_clip_trainer *trainer, size_t i, float **master, float **exp_avg,
                             float **exp_avg_sq);
int sd_clip_trainer_restore(sd_clip_trainer *trainer, int64_t steps);

#endif
