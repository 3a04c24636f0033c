/* EulerDiscreteScheduler with the pipeline's defaults (s_churn 0, so sigma_hat = sigma and no
 * noise): prev = sample + (sample - x0) / sigma * (sigma_next - sigma). */
#include "sched_internal.h"

#include "../../kernels/error.h"

static int euler_step(sd_scheduler *s, sd_backend *be, int i, const sd_tensor *model_out,
                      sd_tensor *latents, sd_noise_fill_fn noise_fill, void *noise_ctx) {
  (void)noise_fill, (void)noise_ctx;
  float sigma = s->sigmas[i];
  float sigma_hat = sigma * (0.0f + 1.0f); /* gamma = 0 */
  float dt = s->sigmas[i + 1] - sigma_hat;
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor derivative;
  int rc = sd_sched_scratch(be, latents, &derivative);
  /* diffusers' epsilon form uses sigma_hat, its v_prediction form sigma: equal here. */
  if (rc == 0)
    rc = sd_sched_sigma_pred_original(s, be, sigma_hat, latents, model_out, &derivative);
  if (rc == 0)
    rc = sd_sched_sigma_derivative(be, sigma_hat, latents, &derivative, &derivative);
  if (rc == 0) /* prev = sample + derivative * dt */
    rc = sd_sched_axpby(be, 1.0f, latents, dt, &derivative, latents);
  sd_arena_release(be, mark);
  return rc;
}

int sd_sched_euler_setup(sd_scheduler *s) {
  SD_TRY(sd_sched_sigma_setup(s));
  s->step = euler_step;
  return 0;
}
