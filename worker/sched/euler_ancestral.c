/* EulerAncestralDiscreteScheduler: an Euler step down to sigma_down, then fresh noise of
 * strength sigma_up (sigma_down^2 + sigma_up^2 = sigma_next^2). The noise is the next
 * torch.randn of each image's generator, drawn after the step as diffusers does (also on the
 * last step, where sigma_up is 0, so the streams stay in step with diffusers'). */
#include "sched_internal.h"

#include "../../kernels/error.h"

#include <math.h>

static int euler_a_step(sd_scheduler *s, sd_backend *be, int i, const sd_tensor *model_out,
                        sd_tensor *latents, sd_noise_fill_fn noise_fill, void *noise_ctx) {
  if (!noise_fill)
    return SD_ERROR("euler_a needs a noise source");
  float sigma = s->sigmas[i];
  float sigma_from = sigma, sigma_to = s->sigmas[i + 1];
  float from2 = sigma_from * sigma_from, to2 = sigma_to * sigma_to;
  float sigma_up = sqrtf(to2 * (from2 - to2) / from2);
  float sigma_down = sqrtf(to2 - sigma_up * sigma_up);
  float dt = sigma_down - sigma;

  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor derivative, noise;
  int rc = sd_sched_scratch(be, latents, &derivative);
  if (rc == 0)
    rc = sd_sched_scratch(be, latents, &noise);
  if (rc == 0)
    rc = sd_sched_sigma_pred_original(s, be, sigma, latents, model_out, &derivative);
  if (rc == 0)
    rc = sd_sched_sigma_derivative(be, sigma, latents, &derivative, &derivative);
  if (rc == 0 && (rc = noise_fill(noise_ctx, be, &noise)) < 0)
    sd_error_context("euler_a noise");
  if (rc == 0) {
    /* (sample + derivative * dt) + noise * sigma_up, rounded left to right as diffusers. */
    const float coeffs[3] = {1.0f, dt, sigma_up};
    const sd_tensor *xs[3] = {latents, &derivative, &noise};
    rc = sd_op_lincomb(be, 3, coeffs, xs, latents);
  }
  sd_arena_release(be, mark);
  return rc;
}

int sd_sched_euler_ancestral_setup(sd_scheduler *s) {
  SD_TRY(sd_sched_sigma_setup(s));
  s->step = euler_a_step;
  return 0;
}
