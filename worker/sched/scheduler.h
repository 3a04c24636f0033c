/* Schedulers with diffusers' arithmetic: ddim, pndm (skip_prk_steps), lms, euler, euler_a, heun,
 * dpmpp_2m, optionally with Karras sigmas where diffusers has them. The per-step coefficients
 * are computed on the host in double then float32 as diffusers does; the tensor arithmetic runs
 * on the backend (sd_op_lincomb, sd_op_clamp), so the loop never downloads latents.
 *
 * The denoising loop (as diffusers' StableDiffusionPipeline):
 *   latents = randn * init_noise_sigma
 *   for i in 0 .. count-1:
 *     x = scale_model_input(latents, i)
 *     model_out = unet(x, timestep(i))        (with classifier-free guidance)
 *     step(i, model_out, latents)             (latents updated in place)
 */
#ifndef SD_SCHEDULER_H
#define SD_SCHEDULER_H

#include "../../kernels/ops.h"
#include "../model/config.h"

#include <stdbool.h>

typedef enum sd_scheduler_kind {
  SD_SCHED_DDIM = 0,
  SD_SCHED_PNDM,
  SD_SCHED_LMS,
  SD_SCHED_EULER,
  SD_SCHED_EULER_A,
  SD_SCHED_HEUN,
  SD_SCHED_DPMPP_2M,
} sd_scheduler_kind;

/* "ddim", "pndm", ... -> kind; -1 with an error listing the names otherwise. */
int sd_scheduler_kind_parse(const char *name, sd_scheduler_kind *out);
const char *sd_scheduler_kind_name(sd_scheduler_kind kind);
/* The kind a model's scheduler config names (_class_name), e.g. PNDMScheduler -> pndm. */
int sd_scheduler_kind_from_config(const sd_scheduler_config *cfg, sd_scheduler_kind *out);
/* Whether `karras` is allowed for the kind (as diffusers' use_karras_sigmas). */
bool sd_scheduler_supports_karras(sd_scheduler_kind kind);

/* Fills noise (B, C, h, w) on the backend with the next torch.randn draw of each image's
 * generator (ancestral samplers). */
typedef int (*sd_noise_fill_fn)(void *ctx, sd_backend *be, sd_tensor *noise);

typedef struct sd_scheduler sd_scheduler;

/* steps: inference steps asked for (1 to num_train_timesteps). The scheduler sees cfg as
 * diffusers' <Class>.from_config(model config) does: stated fields (cfg->fields_set) keep their
 * values, the rest take the class's own defaults. karras: use Karras sigmas (an error for kinds
 * without them); a config stating use_karras_sigmas turns them on as well. */
int sd_scheduler_create(sd_scheduler_kind kind, const sd_scheduler_config *cfg, bool karras,
                        int steps, sd_scheduler **out);
/* Frees the scheduler and its history tensors (before the backend they live on goes). */
void sd_scheduler_free(sd_scheduler *s);

/* Number of model calls (len(timesteps): steps for most, more for pndm and heun). */
int sd_scheduler_count(const sd_scheduler *s);
/* The timestep passed to the UNet at call i (fractional for karras-sigma schedules). */
double sd_scheduler_timestep(const sd_scheduler *s, int i);
float sd_scheduler_init_noise_sigma(const sd_scheduler *s);

/* x = latents / sqrt(sigma^2 + 1) for sigma schedulers, a copy otherwise. x may alias latents. */
int sd_scheduler_scale_model_input(sd_scheduler *s, sd_backend *be, int i, const sd_tensor *latents,
                                   sd_tensor *x);
/* One step: latents (B, C, h, w) updated in place from model_out (same shape). noise_fill is
 * called for ancestral samplers (may be NULL otherwise). Keeps the history multistep
 * schedulers need (persistent backend tensors owned by the scheduler). Steps run once each, in
 * order i = 0 .. count - 1. */
int sd_scheduler_step(sd_scheduler *s, sd_backend *be, int i, const sd_tensor *model_out,
                      sd_tensor *latents, sd_noise_fill_fn noise_fill, void *noise_ctx);

/* Image-to-image and inpainting (diffusers' get_timesteps / set_begin_index): the loop runs
 * calls begin .. count - 1 only. Call before the first step; -1 when begin is outside
 * [0, count - 1] or a step has run. Multistep state starts empty at `begin`, as in a fresh
 * diffusers scheduler whose begin_index is set. */
int sd_scheduler_set_begin(sd_scheduler *s, int begin);

/* The first call of a loop that keeps `strength` of the schedule (diffusers' get_timesteps:
 * init_timestep = min(int(steps * strength), steps), t_start = steps - init_timestep, first
 * call t_start * order); count when strength keeps no step. */
int sd_scheduler_begin_for_strength(const sd_scheduler *s, double strength);

/* out = the scheduler's add_noise(original, noise, timestep of call i), as diffusers computes
 * it in float32: DDIM / PNDM sqrt(alphas_cumprod[t]) * original + sqrt(1 - alphas_cumprod[t]) *
 * noise; LMS / Euler / Euler a / Heun original + noise * sigmas[i]; DPM++ 2M alpha_t * original
 * + sigma_t * noise with alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t. i is the
 * call index (diffusers' step_index / begin_index); out may alias original or noise. */
int sd_scheduler_add_noise(const sd_scheduler *s, sd_backend *be, int i, const sd_tensor *original,
                           const sd_tensor *noise, sd_tensor *out);

#endif
