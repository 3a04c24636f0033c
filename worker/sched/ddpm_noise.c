/* DDPMScheduler.add_noise at one timestep, see ddpm_noise.h: the two coefficients are torch's
 * float32 alphas_cumprod[t] ** 0.5 and (1 - alphas_cumprod[t]) ** 0.5, and lincomb forms
 * c0 x + c1 noise in float32. */
#include "ddpm_noise.h"

#include "sched_internal.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdlib.h>

/* sqrt(alphas_cumprod[t]) and sqrt(1 - alphas_cumprod[t]) in float32. */
static int coefficients(const sd_scheduler_config *cfg, int timestep, float *sqrt_a,
                        float *sqrt_one_minus_a) {
  int n = cfg->num_train_timesteps;
  if (timestep < 0 || timestep >= n)
    return SD_ERROR("timestep %d outside the scheduler's [0, %d)", timestep, n);
  float *alphas = malloc((size_t)n * sizeof *alphas);
  if (!alphas)
    return SD_ERROR("out of memory for %d alphas", n);
  int rc = sd_sched_alphas_cumprod(cfg, alphas);
  float a = alphas[timestep];
  free(alphas);
  SD_TRY(rc);
  *sqrt_a = sqrtf(a);
  *sqrt_one_minus_a = sqrtf(1.0f - a);
  return 0;
}

int sd_ddpm_add_noise(const sd_scheduler_config *cfg, int timestep, sd_backend *be,
                      const sd_tensor *x, const sd_tensor *noise, sd_tensor *out) {
  float coeffs[2];
  SD_TRY(coefficients(cfg, timestep, &coeffs[0], &coeffs[1]));
  const sd_tensor *inputs[2] = {x, noise};
  return sd_op_lincomb(be, 2, coeffs, inputs, out);
}

int sd_ddpm_velocity(const sd_scheduler_config *cfg, int timestep, sd_backend *be,
                     const sd_tensor *x, const sd_tensor *noise, sd_tensor *out) {
  float sqrt_a, sqrt_one_minus_a;
  SD_TRY(coefficients(cfg, timestep, &sqrt_a, &sqrt_one_minus_a));
  /* torch: sqrt_a * noise - sqrt_1ma * x; a product negated is exact, so adding it is the same */
  const float coeffs[2] = {sqrt_a, -sqrt_one_minus_a};
  const sd_tensor *inputs[2] = {noise, x};
  return sd_op_lincomb(be, 2, coeffs, inputs, out);
}
