/* DDPMScheduler.add_noise at one integer timestep, as the x4 upscaler's low_res_scheduler noises
 * the low-resolution image at noise_level: out = sqrt(a_t) x + sqrt(1 - a_t) noise with a_t the
 * config's alphas_cumprod[t], all in float32 as torch computes it. */
#ifndef SD_DDPM_NOISE_H
#define SD_DDPM_NOISE_H

#include "../model/config.h"

/* timestep in [0, num_train_timesteps); x, noise, out of one shape (out may alias either). */
int sd_ddpm_add_noise(const sd_scheduler_config *cfg, int timestep, sd_backend *be,
                      const sd_tensor *x, const sd_tensor *noise, sd_tensor *out);

/* DDPMScheduler.get_velocity at one timestep, v-prediction's training target:
 * out = sqrt(a_t) noise - sqrt(1 - a_t) x in float32 (the same coefficients). */
int sd_ddpm_velocity(const sd_scheduler_config *cfg, int timestep, sd_backend *be,
                     const sd_tensor *x, const sd_tensor *noise, sd_tensor *out);

#endif
