/* HeunDiscreteScheduler: each of the steps but the last takes two model calls, an Euler step
 * to sigma_next and a correction with the mean of both derivatives; the last step is a plain
 * Euler step to 0. Calls therefore number 2 * steps - 1 and sigmas / timesteps repeat every
 * interior value. History: the first half's derivative and the sample it started from. */
#include "sched_internal.h"

#include "../../kernels/error.h"

#include <stdlib.h>

enum { SLOT_DERIVATIVE = 0, SLOT_SAMPLE = 1 };

/* derivative = (sample - x0) / sigma into out, x0 the prediction at sigma, clipped when the
 * config says so. */
static int heun_derivative(sd_scheduler *s, sd_backend *be, float sigma, const sd_tensor *sample,
                           const sd_tensor *model_out, sd_tensor *out) {
  SD_TRY(sd_sched_sigma_pred_original(s, be, sigma, sample, model_out, out));
  if (s->cfg.clip_sample)
    SD_TRY(sd_op_clamp(be, out, -s->cfg.clip_sample_range, s->cfg.clip_sample_range, out));
  return sd_sched_sigma_derivative(be, sigma, sample, out, out);
}

static int heun_step(sd_scheduler *s, sd_backend *be, int i, const sd_tensor *model_out,
                     sd_tensor *latents, sd_noise_fill_fn noise_fill, void *noise_ctx) {
  (void)noise_fill, (void)noise_ctx;
  sd_tensor *d1, *saved;
  SD_TRY(sd_sched_history(s, be, latents, SLOT_DERIVATIVE, &d1));
  SD_TRY(sd_sched_history(s, be, latents, SLOT_SAMPLE, &saved));
  if (!s->heun_second) {
    /* Euler to sigma_next; keep the derivative, dt and the sample for the correction. */
    float sigma_hat = s->sigmas[i], sigma_next = s->sigmas[i + 1];
    SD_TRY(heun_derivative(s, be, sigma_hat, latents, model_out, d1));
    s->heun_dt = sigma_next - sigma_hat;
    SD_TRY(sd_op_copy(be, latents, saved));
    SD_TRY(sd_sched_axpby(be, 1.0f, latents, s->heun_dt, d1, latents));
    s->heun_second = true;
    return 0;
  }
  /* prev = saved + (d1 + d2) / 2 * dt with d2 at sigma_next (the current sigma); halving is
   * exact, so 0.5 d1 + 0.5 d2 rounds as (d1 + d2) / 2. */
  float sigma_next = s->sigmas[i];
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor d2;
  int rc = sd_sched_scratch(be, latents, &d2);
  if (rc == 0)
    rc = heun_derivative(s, be, sigma_next, latents, model_out, &d2);
  if (rc == 0)
    rc = sd_sched_axpby(be, 0.5f, d1, 0.5f, &d2, &d2);
  if (rc == 0)
    rc = sd_sched_axpby(be, 1.0f, saved, s->heun_dt, &d2, latents);
  sd_arena_release(be, mark);
  s->heun_second = false;
  return rc;
}

int sd_sched_heun_setup(sd_scheduler *s) {
  int n = s->steps;
  float *ts = malloc((size_t)n * sizeof *ts);
  float *sig = malloc((size_t)(n + 1) * sizeof *sig);
  int count = 2 * n - 1;
  s->timesteps = malloc((size_t)count * sizeof *s->timesteps);
  s->sigmas = malloc((size_t)(count + 1) * sizeof *s->sigmas);
  if (!ts || !sig || !s->timesteps || !s->sigmas) {
    free(ts);
    free(sig);
    return SD_ERROR("out of memory for %d timesteps", count);
  }
  if (sd_sched_sigma_schedule(s, ts, sig) < 0) {
    free(ts);
    free(sig);
    return -1;
  }
  /* cat([x[:1], x[1:].repeat_interleave(2)]) for the timesteps; the sigmas likewise, with the
   * final 0 once. */
  float max_sigma = 0.0f;
  s->timesteps[0] = ts[0];
  s->sigmas[0] = sig[0];
  for (int k = 1; k < n; k++) {
    s->timesteps[2 * k - 1] = s->timesteps[2 * k] = ts[k];
    s->sigmas[2 * k - 1] = s->sigmas[2 * k] = sig[k];
  }
  s->sigmas[count] = 0.0f;
  for (int k = 0; k <= n; k++)
    if (sig[k] > max_sigma)
      max_sigma = sig[k];
  free(ts);
  free(sig);
  s->count = count;
  s->init_noise_sigma = sd_sched_sigma_init_noise(s, max_sigma);
  s->scales_input = true;
  s->step = heun_step;
  return 0;
}
