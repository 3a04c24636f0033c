/* LoRA fine-tuning of the UNet (docs/training.md, "LoRA"): the optimizer step of diffusers'
 * DreamBooth-LoRA script (examples/dreambooth/train_dreambooth_lora.py): peft LoRA on the
 * attention projections (to_q, to_k, to_v, to_out.0 by default), rank r, lora_alpha, scale
 * s = alpha / r. For each adapted linear layer W (out, in): A (r, in), B (out, r), and the layer
 * computes with W' = W0 + s B A (W0 the frozen base weight). The layer only sees W', so
 *   dA = s B^T dW'   and   dB = s dW' A^T,
 * dW' being the gradient the UNet's backward gives for W'. A step:
 *   1. the batch's forward and backward (sd_unet_loss_backward: DDPM add_noise, epsilon or
 *      v-prediction target, batch-mean MSE) into gradients of the adapted weights only;
 *   2. dA, dB from dW' (float32 host GEMMs);
 *   3. clip_grad_norm_ over all A and B gradients (the trainable parameters torch clips), AdamW on
 *      A and B at the schedule's learning rate;
 *   4. W' = W0 + s B A re-merged (sd_lora_add_product, the arithmetic of sd_lora_merge) and
 *      uploaded: the model renders with the adapted weights.
 * Every other weight stays as loaded, bit for bit. A, B, W0 and AdamW's state are float32 on the
 * host.
 * With the text encoder's LoRA (train_dreambooth_lora.py --train_text_encoder:
 * sd_lora_trainer_add_text_encoder), its q_proj, k_proj, v_proj and out_proj are adapted the same
 * way; a step encodes its rows' prompts with a tape (sd_lora_trainer_encode), and
 * sd_lora_trainer_step_joint takes the UNet's loss backward on into the encoder (the gradient
 * with respect to the context), then one clip_grad_norm_ and AdamW over the UNet's A, B and then
 * the encoder's (the script's params_to_optimize, one optimizer). */
#ifndef SD_LORA_TRAINER_H
#define SD_LORA_TRAINER_H

#include "unet_trainer.h"

#include "../model/clip_text_train.h"

#include <stdint.h>

#define SD_LORA_MAX_TARGETS 16

/* How A starts (B starts at 0 either way). Our own random numbers, not torch's: peft draws from
 * torch's global generator between other draws, which no seed of ours reproduces. */
typedef enum sd_lora_init {
  SD_LORA_INIT_GAUSSIAN = 0, /* A ~ N(0, (1/r)^2): init_lora_weights="gaussian", the script's */
  SD_LORA_INIT_KAIMING,      /* A ~ U(-1/sqrt(in), 1/sqrt(in)): peft's default (kaiming_uniform_
                                with a = sqrt(5)) */
} sd_lora_init;

/* The key names a saved file uses. */
typedef enum sd_lora_key_style {
  /* unet.<module>.lora.down.weight (A) / .lora.up.weight (B): what train_dreambooth_lora.py writes
   * (convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))) */
  SD_LORA_KEYS_DIFFUSERS = 0,
  /* unet.<module>.lora_A.weight / .lora_B.weight: peft's names (get_peft_model_state_dict) */
  SD_LORA_KEYS_PEFT,
} sd_lora_key_style;

typedef struct sd_lora_train_config {
  sd_unet_train_config train; /* optimizer, learning rate and schedule, clipping, tape */
  int rank;                   /* r >= 1 */
  double alpha;               /* lora_alpha, finite and > 0; scale = alpha / r */
  /* peft's target_modules: a weight "<module>.weight" of 2 dims is adapted when module equals a
   * target or ends in "." + target. Every target must match at least one linear layer (stricter
   * than peft, which only needs one of them to match). */
  const char *targets[SD_LORA_MAX_TARGETS];
  int n_targets;
  sd_lora_init init;
} sd_lora_train_config;

/* train_dreambooth_lora.py's defaults: rank 4, alpha = rank, targets to_k, to_q, to_v, to_out.0
 * (its add_k_proj and add_v_proj name no layer of an SD 1.x / 2.x UNet and are left out), the
 * gaussian init; AdamW (0.9, 0.999, eps 1e-8, weight decay 1e-2) at learning rate 5e-4, constant
 * schedule (500 warmup steps, which "constant" ignores), max_grad_norm 1, a full tape. */
sd_lora_train_config sd_lora_train_config_init(void);

typedef struct sd_lora_trainer sd_lora_trainer;

/* A LoRA trainer of `unet`, whose weights are `weights` (the trainer writes W' into the adapted
 * ones: the model renders with the LoRA merged), for the noise schedule and prediction type of
 * `noise`. A starts from init_seed as cfg->init says, B at 0. A bad config (rank < 1, alpha not
 * > 0, no targets, a target matching no linear layer) is an error saying which. W0 is each adapted
 * weight as it is at create; sd_lora_trainer_free leaves the weights with W' (the LoRA merged).
 * Borrows be, unet, weights, noise and the target strings. */
int sd_lora_trainer_create(sd_backend *be, sd_unet *unet, const sd_weights *weights,
                           const sd_scheduler_config *noise, const sd_lora_train_config *cfg,
                           uint64_t init_seed, sd_lora_trainer **out);
void sd_lora_trainer_free(sd_lora_trainer *trainer);

/* Adds the LoRA of `clip`'s q_proj, k_proj, v_proj and out_proj (the script's text_lora_config:
 * the UNet's rank and alpha, the gaussian init from init_seed, B at 0), whose weights are
 * `weights` (W' written into them). Once, before the first step. Borrows clip and weights. */
int sd_lora_trainer_add_text_encoder(sd_lora_trainer *trainer, sd_clip_text *clip,
                                     const sd_weights *weights, uint64_t init_seed);
/* The step's text embeddings: ids (B, L) int32 on the host -> hidden (B, L, D) by the adapted
 * encoder (sd_clip_text_forward_train), recording the tape sd_lora_trainer_step_joint consumes
 * (hidden: persistent memory or arena memory allocated before). batch 0 (a data-parallel rank
 * without rows): nothing computed, zero encoder gradients. */
int sd_lora_trainer_encode(sd_lora_trainer *trainer, const int32_t *ids, int batch,
                           sd_tensor *hidden);
/* One optimizer step over the UNet's and the text encoder's LoRA: context is the last encode's
 * hidden, dcontext (B, L, D) scratch for its gradient; otherwise as
 * sd_lora_trainer_step_weighted (the gradient norm is that of all A and B gradients). */
int sd_lora_trainer_step_joint(sd_lora_trainer *trainer, const sd_tensor *latents,
                               const sd_tensor *noise, const int32_t *timesteps,
                               const sd_tensor *context, const double *item_weights,
                               sd_tensor *dcontext, sd_unet_step_report *report);

/* The adapted layers: the UNet's in the order of its `weights`, then the text encoder's. */
size_t sd_lora_trainer_layer_count(const sd_lora_trainer *trainer);
typedef struct sd_lora_layer_info {
  const char *prefix; /* "unet" or "text_encoder" */
  const char *module; /* diffusers module name, e.g. down_blocks.0....attn1.to_q */
  int64_t out, in;    /* W's shape */
  const float *a;     /* (rank, in) lora_A, the down projection */
  const float *b;     /* (out, rank) lora_B, the up projection */
  const float *base;  /* (out, in) W0, the frozen weight */
  /* the last step's gradients of A and B (after clipping); undefined before the first step */
  const float *grad_a, *grad_b;
} sd_lora_layer_info;
/* -1 with an error past the end. */
int sd_lora_trainer_layer(const sd_lora_trainer *trainer, size_t index, sd_lora_layer_info *out);
/* Index of the layer of `module`; -1 (no error set) when not adapted. */
int64_t sd_lora_trainer_find(const sd_lora_trainer *trainer, const char *module);
/* Sets layer index's A (rank, in) and B (out, rank) (copied) and re-merges its W'. AdamW's
 * moments are kept (set them before the first step to start a run from given values). */
int sd_lora_trainer_set_layer(sd_lora_trainer *trainer, size_t index, const float *a,
                              const float *b);

/* One optimizer step on a batch, as sd_unet_trainer_step (same arguments, same report; the
 * gradient norm is that of all A and B gradients). */
int sd_lora_trainer_step(sd_lora_trainer *trainer, const sd_tensor *latents, const sd_tensor *noise,
                         const int32_t *timesteps, const sd_tensor *context,
                         sd_unet_step_report *report);
/* The same with a weighted loss (sd_unet_loss_backward_weighted; NULL: sd_lora_trainer_step). */
int sd_lora_trainer_step_weighted(sd_lora_trainer *trainer, const sd_tensor *latents,
                                  const sd_tensor *noise, const int32_t *timesteps,
                                  const sd_tensor *context, const double *item_weights,
                                  sd_unet_step_report *report);
/* Data parallel: as sd_unet_trainer_set_reduce, on the LoRA parameters' gradients. */
void sd_lora_trainer_set_reduce(sd_lora_trainer *trainer, const sd_grad_reduce *reduce);
int64_t sd_lora_trainer_steps(const sd_lora_trainer *trainer);

/* The trained parameters for checkpoints: 2 x layer count of them, A of layer i at 2 i, B at
 * 2 i + 1. Parameter index's layer and kind, shape (A: rank x in, B: out x rank) and its host
 * float32 values, exp_avg and exp_avg_sq (writable: a resumed run overwrites them, then calls
 * sd_lora_trainer_restore). -1 with an error past the end. */
typedef struct sd_lora_param_info {
  const char *prefix; /* "unet" or "text_encoder" */
  const char *module; /* the layer's module name */
  int is_up;          /* 0: A (lora.down), 1: B (lora.up) */
  int64_t shape[2];
  float *value, *exp_avg, *exp_avg_sq;
} sd_lora_param_info;
size_t sd_lora_trainer_param_count(const sd_lora_trainer *trainer);
int sd_lora_trainer_param(sd_lora_trainer *trainer, size_t index, sd_lora_param_info *out);
/* After the parameters were overwritten: re-merges every W' = W0 + s B A (uploaded) and sets the
 * steps taken (the schedule and AdamW's bias corrections continue from there). */
int sd_lora_trainer_restore(sd_lora_trainer *trainer, int64_t steps);

/* Writes the LoRA as diffusers' save_lora_weights does (pytorch_lora_weights.safetensors when
 * path is a folder's file of that name): per layer A and B in float32 under the style's names
 * (the text encoder's "text_encoder.<module>.lora_linear_layer.down/up" in the diffusers style),
 * metadata "format": "pt", and where alpha != rank "lora_adapter_metadata" =
 * {"unet.lora_alpha": alpha, "unet.r": rank, "unet.target_modules": [...]} (diffusers'
 * unet_lora_adapter_metadata, and "text_encoder." the same; without it diffusers and
 * sd_lora_merge take alpha = rank). */
int sd_lora_trainer_save(const sd_lora_trainer *trainer, const char *path, sd_lora_key_style style);

#endif
