/* The optimizer state of a model's trained weights, shared by the full trainers (unet_trainer.h,
 * vae_trainer.h): optim.h's sd_param_set (float32 master weights, gradients and AdamW's two
 * moments on the host) bound to every weight of a gradient store, and the step that downloads the
 * store's gradients, runs sd_param_set_step (clip_grad_norm_, then AdamW) and uploads each updated
 * weight (so the backend's prepared copies follow, docs/training.md). The LoRA trainer, whose
 * parameters live on the host, uses sd_param_set directly. */
#ifndef SD_TRAIN_PARAM_OPTIM_H
#define SD_TRAIN_PARAM_OPTIM_H

#include "optim.h"

#include "../model/grads.h"

typedef struct sd_param_optim sd_param_optim;

/* State for the weights of `grads` (their current values become the master weights; the moments
 * start at 0). Borrows be and grads. */
int sd_param_optim_create(sd_backend *be, sd_grads *grads, sd_param_optim **out);
void sd_param_optim_free(sd_param_optim *o);

/* Gradients summed over reduce's ranks before every step (NULL: none). Borrows reduce. */
void sd_param_optim_set_reduce(sd_param_optim *o, const sd_grad_reduce *reduce);

/* One optimizer step on the gradients in the store: clip_grad_norm_(max_grad_norm) over all of
 * them (<= 0: none), AdamW at learning rate lr as step number `step` (from 1), then every weight
 * uploaded. *grad_norm: the gradients' total L2 norm before clipping. */
int sd_param_optim_step(sd_param_optim *o, const sd_adamw_config *adamw, double lr, int64_t step,
                        double max_grad_norm, float *grad_norm);

/* One optimizer step over several stores' weights as one chain of parameters (torch's
 * clip_grad_norm_(itertools.chain(a.parameters(), b.parameters())) and one AdamW over both, as
 * train_dreambooth.py --train_text_encoder steps the UNet and the text encoder): every store's
 * gradients downloaded and summed over its reduce's ranks, clip_grad_norm_(max_grad_norm) over
 * all of them in the order given, AdamW on each, every weight uploaded. count 1 is
 * sd_param_optim_step, bit for bit. */
int sd_param_optim_step_chain(sd_param_optim *const *chain, int count, const sd_adamw_config *adamw,
                              double lr, int64_t step, double max_grad_norm, float *grad_norm);

/* The state of trained parameter i (sd_grads order, i < the store's count), for checkpoints: host
 * float32 master weights (what the model's weight holds), exp_avg and exp_avg_sq, each of
 * sd_tensor_numel(weight) values, writable (a resumed run overwrites them, then calls
 * sd_param_optim_restore). -1 past the end. */
int sd_param_optim_state_at(sd_param_optim *o, size_t i, float **master, float **exp_avg,
                            float **exp_avg_sq);
/* Uploads every master weight into the model's weight (after the state was overwritten). */
int sd_param_optim_restore(sd_param_optim *o);

#endif
