/* DDIMScheduler (eta 0, as the pipelines call it): integer timesteps with the config's spacing;
 * each step forms pred_original_sample (clipped when clip_sample) and pred_epsilon, then
 * prev = sqrt(alpha_prev) * x0 + sqrt(1 - alpha_prev) * eps. */
#include "sched_internal.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdlib.h>

/* pred_original_sample into x0 and pred_epsilon into eps (or eps = model_out). */
static int ddim_predictions(const sd_scheduler *s, sd_backend *be, float sqrt_alpha,
                            float sqrt_beta, const sd_tensor *sample, const sd_tensor *model_out,
                            sd_tensor *x0, sd_tensor *eps, const sd_tensor **eps_out) {
  switch (s->cfg.prediction_type) {
  case SD_PREDICT_EPSILON: /* x0 = (sample - beta^0.5 * model_output) / alpha^0.5 */
    SD_TRY(sd_sched_axpby(be, 1.0f, sample, -sqrt_beta, model_out, x0));
    SD_TRY(sd_op_scale(be, x0, (float)(1.0 / (double)sqrt_alpha), x0));
    *eps_out = model_out;
    return 0;
  case SD_PREDICT_SAMPLE: /* eps = (sample - alpha^0.5 * x0) / beta^0.5 */
    SD_TRY(sd_op_copy(be, model_out, x0));
    SD_TRY(sd_sched_axpby(be, 1.0f, sample, -sqrt_alpha, x0, eps));
    SD_TRY(sd_op_scale(be, eps, (float)(1.0 / (double)sqrt_beta), eps));
    *eps_out = eps;
    return 0;
  case SD_PREDICT_V:
    SD_TRY(sd_sched_axpby(be, sqrt_alpha, sample, -sqrt_beta, model_out, x0));
    SD_TRY(sd_sched_axpby(be, sqrt_alpha, model_out, sqrt_beta, sample, eps));
    *eps_out = eps;
    return 0;
  }
  return SD_ERROR("unknown prediction_type %d", (int)s->cfg.prediction_type);
}

static int ddim_step(sd_scheduler *s, sd_backend *be, int i, const sd_tensor *model_out,
                     sd_tensor *latents, sd_noise_fill_fn noise_fill, void *noise_ctx) {
  (void)noise_fill, (void)noise_ctx;
  int t = (int)s->timesteps[i];
  /* diffusers steps back by T // steps whatever the spacing. */
  int prev_t = t - s->cfg.num_train_timesteps / s->steps;
  float alpha_t = s->alphas_cumprod[t];
  float alpha_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : s->final_alpha_cumprod;
  float beta_t = 1.0f - alpha_t;

  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor x0, eps;
  const sd_tensor *pred_eps = NULL;
  int rc = sd_sched_scratch(be, latents, &x0);
  if (rc == 0)
    rc = sd_sched_scratch(be, latents, &eps);
  if (rc == 0)
    rc = ddim_predictions(s, be, sqrtf(alpha_t), sqrtf(beta_t), latents, model_out, &x0, &eps,
                          &pred_eps);
  if (rc == 0 && s->cfg.clip_sample)
    rc = sd_op_clamp(be, &x0, -s->cfg.clip_sample_range, s->cfg.clip_sample_range, &x0);
  /* eta = 0: std_dev_t = 0, the direction is (1 - alpha_prev) ** 0.5 * eps, and
   * prev = alpha_prev ** 0.5 * x0 + direction. */
  if (rc == 0)
    rc = sd_sched_axpby(be, sqrtf(alpha_prev), &x0, sqrtf(1.0f - alpha_prev), pred_eps, latents);
  sd_arena_release(be, mark);
  return rc;
}

int sd_sched_ddim_setup(sd_scheduler *s) {
  int n = s->steps;
  int *ts = malloc((size_t)n * sizeof *ts);
  s->timesteps = malloc((size_t)n * sizeof *s->timesteps);
  if (!ts || !s->timesteps) {
    free(ts);
    return SD_ERROR("out of memory for %d timesteps", n);
  }
  if (sd_sched_discrete_timesteps(s, ts) < 0) {
    free(ts);
    return -1;
  }
  for (int i = 0; i < n; i++)
    s->timesteps[i] = ts[i];
  free(ts);
  s->count = n;
  s->final_alpha_cumprod = s->cfg.set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
  s->init_noise_sigma = 1.0f;
  s->scales_input = false;
  s->step = ddim_step;
  return 0;
}
