/* Fine-tuning the UNet (docs/training.md): the optimizer step of diffusers' DreamBooth script
 * (examples/dreambooth/train_dreambooth.py) on latents, noise, timesteps and text embeddings
 * given by the caller:
 *   noisy = DDPMScheduler.add_noise(latents, noise, t); pred = unet(noisy, t, context)
 *   target = noise (epsilon models) or get_velocity(latents, noise, t) (v-prediction)
 *   loss = F.mse_loss(pred, target) over the whole batch; loss.backward()
 *   clip_grad_norm_(max_grad_norm); AdamW step at the schedule's learning rate
 * Each item of a batch has its own timestep; items run one at a time through the UNet (each item's
 * result does not depend on its neighbours) and their gradients add up. The optimizer keeps
 * float32 master weights and AdamW's moments on the host and uploads the updated weights after
 * every step (the backend's prepared copies of them then follow). */
#ifndef SD_UNET_TRAINER_H
#define SD_UNET_TRAINER_H

#include "lr_schedule.h"
#include "optim.h"

#include "../model/unet_train.h"

typedef struct sd_unet_trainer sd_unet_trainer;

typedef struct sd_unet_train_config {
  sd_adamw_config adamw;
  double learning_rate; /* the base learning rate (the schedule multiplies it) */
  sd_lr_schedule schedule;
  int64_t warmup_steps;   /* of the schedule */
  int64_t total_steps;    /* of the schedule (linear and cosine) */
  double max_grad_norm;   /* clip_grad_norm_'s max_norm; <= 0: no clipping */
  sd_unet_tape_mode tape; /* full, or checkpointed per block (less memory) */
} sd_unet_train_config;

/* train_dreambooth.py's defaults: AdamW (0.9, 0.999, eps 1e-8, weight decay 1e-2), learning rate
 * 5e-6, constant schedule with 500 warmup steps, max_grad_norm 1, 500 steps; a full tape. */
sd_unet_train_config sd_unet_train_config_init(void);

/* A trainer of `unet`, whose weights are `weights` (the trainer updates them in place: the model
 * then renders with the fine-tuned weights), for the noise schedule and prediction type of
 * `noise` (the model's scheduler config read as DDPMScheduler). wants (NULL: every weight)
 * chooses the weights trained; the others stay frozen. Borrows be, unet, weights and noise. */
int sd_unet_trainer_create(sd_backend *be, sd_unet *unet, const sd_weights *weights,
                           const sd_scheduler_config *noise, const sd_unet_train_config *cfg,
                           sd_grads_filter wants, void *user, sd_unet_trainer **out);
void sd_unet_trainer_free(sd_unet_trainer *trainer);

/* What a step measured. */
typedef struct sd_unet_step_report {
  float loss;           /* the batch's mean squared error before the update */
  float grad_norm;      /* the gradients' total L2 norm before clipping */
  double learning_rate; /* what the update used */
} sd_unet_step_report;

/* One optimizer step on a batch: latents and noise (B, C, h, w) (h, w multiples of
 * 2^(levels - 1)), timesteps (B, host) in [0, num_train_timesteps), context (B, L, D). */
int sd_unet_trainer_step(sd_unet_trainer *trainer, const sd_tensor *latents, const sd_tensor *noise,
                         const int32_t *timesteps, const sd_tensor *context,
                         sd_unet_step_report *report);

/* sd_unet_trainer_step with a weighted loss (sd_unet_loss_backward_weighted); item_weights NULL
 * is sd_unet_trainer_step. */
int sd_unet_trainer_step_weighted(sd_unet_trainer *trainer, const sd_tensor *latents,
                                  const sd_tensor *noise, const int32_t *timesteps,
                                  const sd_tensor *context, const double *item_weights,
                                  sd_unet_step_report *report);

/* sd_unet_trainer_step that also gives dcontext (B, L, D), the gradient of the step's loss with
 * respect to context (before any clipping), for training the text encoder that made context
 * (clip_trainer.h); NULL: sd_unet_trainer_step. Not with a reduce (the gradient is this process's
 * share). */
int sd_unet_trainer_step_dcontext(sd_unet_trainer *trainer, const sd_tensor *latents,
                                  const sd_tensor *noise, const int32_t *timesteps,
                                  const sd_tensor *context, sd_tensor *dcontext,
                                  sd_unet_step_report *report);

struct sd_clip_trainer;
/* train_dreambooth.py --train_text_encoder's step: the UNet and the text encoder that made
 * context (encoder's last sd_clip_trainer_forward, whose tape this consumes) trained as one model.
 * The weighted loss's backward through the UNet gives dcontext (B, L, D, the caller's memory),
 * sd_clip_trainer_backward carries it through the encoder, then one sd_param_optim_step_chain:
 * clip_grad_norm_ over the chain of the UNet's then the encoder's parameters (report->grad_norm
 * their total norm) and AdamW on both with this trainer's AdamW config and learning rate (the
 * encoder trainer's own config is not used). With a reduce, both trainers' (each set with its
 * set_reduce) sum their gradients over the ranks; each rank passes its share of the rows. */
int sd_unet_trainer_step_joint(sd_unet_trainer *trainer, struct sd_clip_trainer *encoder,
                               const sd_tensor *latents, const sd_tensor *noise,
                               const int32_t *timesteps, const sd_tensor *context,
                               const double *item_weights, sd_tensor *dcontext,
                               sd_unet_step_report *report);

/* Data parallel: every later step sums its loss and gradients over reduce's ranks (each rank
 * passing its share of the batch, with the whole batch's item weights) before clip + AdamW, so
 * every rank takes the same update (NULL: this process alone). Borrows reduce. */
void sd_unet_trainer_set_reduce(sd_unet_trainer *trainer, const sd_grad_reduce *reduce);

/* Optimizer steps taken so far. */
int64_t sd_unet_trainer_steps(const sd_unet_trainer *trainer);
/* The trained weights (the store's order and names) and their gradients of the last step. */
sd_grads *sd_unet_trainer_grads(sd_unet_trainer *trainer);

/* The optimizer's state, for checkpoints: trained parameter i's (sd_grads order, i <
 * sd_grads_count of the trainer's grads) host float32 master weights (what the model's weight
 * holds), exp_avg and exp_avg_sq, each of sd_tensor_numel(weight) values. Writable: a resumed
 * run overwrites them, then calls sd_unet_trainer_restore. -1 past the end. */
int sd_unet_trainer_state_at(sd_unet_trainer *trainer, size_t i, float **master, float **exp_avg,
                             float **exp_avg_sq);
/* After the state was overwritten: uploads every master weight into the model's weight and sets
 * the steps taken (the schedule and AdamW's bias corrections continue from there). */
int sd_unet_trainer_restore(sd_unet_trainer *trainer, int64_t steps);

/* The parts of a step that other trainers (lora_trainer.h) share. */

/* 0 when the model's prediction type can be trained (epsilon, v_prediction), else -1 with an
 * error. */
int sd_unet_train_check(const sd_scheduler_config *noise);
/* A batch's forward and backward without the update: grads zeroed, then each item's noisy
 * latents, target, forward_train and backward of the batch-mean squared error added into grads;
 * *loss = the batch's mean squared error. step only names the step in errors. */
int sd_unet_loss_backward(sd_backend *be, sd_unet *unet, const sd_scheduler_config *noise_cfg,
                          sd_unet_tape_mode mode, sd_grads *grads, const sd_tensor *latents,
                          const sd_tensor *noise, const int32_t *timesteps,
                          const sd_tensor *context, int64_t step, float *loss);
/* sd_unet_loss_backward with per-item weights (B, host, each finite and >= 0): the loss is
 * sum_b item_weights[b] x (item b's sum of squared errors), its gradients accordingly. DreamBooth's
 * prior preservation, mse(instance half) + w x mse(class half), is weight 1 / (n_instance x
 * elements per item) for instance items and w / (n_class x elements per item) for class items.
 * item_weights NULL is sd_unet_loss_backward (the batch mean), bit for bit. */
int sd_unet_loss_backward_weighted(sd_backend *be, sd_unet *unet,
                                   const sd_scheduler_config *noise_cfg, sd_unet_tape_mode mode,
                                   sd_grads *grads, const sd_tensor *latents,
                                   const sd_tensor *noise, const int32_t *timesteps,
                                   const sd_tensor *context, const double *item_weights,
                                   int64_t step, float *loss);
/* sd_unet_loss_backward_weighted that also gives dcontext (B, L, D, the caller's memory), the
 * gradient of the loss with respect to context, for training the text encoder that made it. */
int sd_unet_loss_backward_dcontext(sd_backend *be, sd_unet *unet,
                                   const sd_scheduler_config *noise_cfg, sd_unet_tape_mode mode,
                                   sd_grads *grads, const sd_tensor *latents,
                                   const sd_tensor *noise, const int32_t *timesteps,
                                   const sd_tensor *context, const double *item_weights,
                                   int64_t step, float *loss, sd_tensor *dcontext);
/* The learning rate of the optimizer step counted from 0. */
double sd_unet_train_lr(const sd_unet_train_config *cfg, int64_t step);

#endif
