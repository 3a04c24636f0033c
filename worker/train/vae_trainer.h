/* Training the VAE (docs/training.md): the optimizer step of the LDM autoencoder's loss without
 * its discriminator and LPIPS parts, on images the caller gives:
 *   moments = quant_conv(encoder(x)); posterior = DiagonalGaussian(moments) (diffusers: logvar
 *     clamped to [-30, 20], std = exp(logvar / 2), var = exp(logvar))
 *   z = mean + std * eps                 eps (B, latent_channels, h, w) given, or torch.randn from
 *                                        a generator (posterior.sample(generator))
 *   x_rec = decoder(post_quant_conv(z))
 *   rec = mean |x - x_rec| (L1, LDM's reconstruction term), or F.mse_loss(x_rec, x); with a
 *     saturation weight k, each element's error times 1 + k (max_c x - min_c x) / 2 (the pixel's
 *     saturation in [0, 1], x in [-1, 1]) before the mean
 *   kl = sum over (C, h, w) of 0.5 (mean^2 + var - 1 - logvar), averaged over the batch
 *   loss = rec + kl_weight kl; loss.backward() through the decoder, the reparameterisation and the
 *   encoder; clip_grad_norm_(max_grad_norm); AdamW at the schedule's learning rate.
 * The whole batch runs through the model at once (the VAE has no per-item input). The optimizer
 * state is param_optim.h's (float32 master weights and moments on the host, weights uploaded after
 * each step). */
#ifndef SD_VAE_TRAINER_H
#define SD_VAE_TRAINER_H

#include "lr_schedule.h"
#include "optim.h"

#include "../model/grads.h"
#include "../model/vae.h"
#include "../rng/rng.h"

typedef struct sd_vae_trainer sd_vae_trainer;

typedef enum sd_vae_rec_loss {
  SD_VAE_REC_L1 = 0, /* mean |x - x_rec| */
  SD_VAE_REC_MSE,    /* mean (x - x_rec)^2 */
} sd_vae_rec_loss;

typedef struct sd_vae_train_config {
  sd_adamw_config adamw;
  double learning_rate; /* the base learning rate (the schedule multiplies it) */
  sd_lr_schedule schedule;
  int64_t warmup_steps; /* of the schedule */
  int64_t total_steps;  /* of the schedule (linear and cosine) */
  double max_grad_norm; /* clip_grad_norm_'s max_norm; <= 0: no clipping */
  sd_vae_rec_loss rec_loss;
  /* 0: the plain mean. k > 0 weighs each pixel's error by 1 + k saturation: on pictures of a
   * small saturated shape on a gray background the plain loss is mostly background, and the VAE
   * learns outlines long before colours (docs/demo-model.md). */
  double saturation_weight;
  double kl_weight;
} sd_vae_train_config;

/* LDM's autoencoder (kl-f8 configs): Adam with betas (0.5, 0.9) (AdamW with weight decay 0),
 * learning rate 4.5e-6, constant; kl_weight 1e-6, L1 reconstruction; clipping at 1. */
sd_vae_train_config sd_vae_train_config_init(void);

/* A trainer of `vae`, whose weights are `weights` (updated in place). wants (NULL: every weight)
 * chooses the weights trained. Borrows be, vae and weights. */
int sd_vae_trainer_create(sd_backend *be, sd_vae *vae, const sd_weights *weights,
                          const sd_vae_train_config *cfg, sd_grads_filter wants, void *user,
                          sd_vae_trainer **out);
void sd_vae_trainer_free(sd_vae_trainer *trainer);

/* What a step measured (before the update). */
typedef struct sd_vae_step_report {
  float loss;           /* rec + kl_weight kl */
  float rec_loss;       /* the reconstruction term */
  float kl_loss;        /* kl (before kl_weight) */
  float grad_norm;      /* the gradients' total L2 norm before clipping */
  double learning_rate; /* what the update used */
} sd_vae_step_report;

/* One optimizer step on images (B, in_channels, H, W) in [-1, 1], H and W multiples of the VAE's
 * factor. eps (B, latent_channels, H / factor, W / factor), host float32; NULL: one
 * sd_rng_randn call of that many values from rng. */
int sd_vae_trainer_step(sd_vae_trainer *trainer, const sd_tensor *images, const float *eps,
                        sd_rng *rng, sd_vae_step_report *report);

int64_t sd_vae_trainer_steps(const sd_vae_trainer *trainer);
/* The trained weights (the store's order and names) and their gradients of the last step. */
sd_grads *sd_vae_trainer_grads(sd_vae_trainer *trainer);

/* The optimizer's state, for checkpoints, as sd_unet_trainer_state_at: trained parameter i's
 * host float32 master weights, exp_avg and exp_avg_sq (writable). -1 past the end. */
int sd_vae_trainer_state_at(sd_vae_trainer *trainer, size_t i, float **master, float **exp_avg,
                            float **exp_avg_sq);
/* After the state was overwritten: uploads every master weight and sets the steps taken. */
int sd_vae_trainer_restore(sd_vae_trainer *trainer, int64_t steps);

#endif
