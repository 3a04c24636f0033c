/* DPMSolverMultistepScheduler as diffusers' defaults make it: algorithm_type dpmsolver++,
 * solver_order 2, solver_type midpoint, lower_order_final True, euler_at_final False,
 * final_sigmas_type "zero", lambda_min_clipped -inf. The model output is converted to a data
 * prediction x0; the first step is first order (no history yet), the others second order, and
 * the final step is first order again: with final_sigmas_type "zero" diffusers always lowers
 * the last step's order (lower_order_final and fewer than 15 steps would too). History: the
 * last two x0 predictions. */
#include "sched_internal.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#define DPM_SOLVER_ORDER      2
#define DPM_LOWER_ORDER_FINAL true
#define DPM_EULER_AT_FINAL    false
#define DPM_FINAL_SIGMAS_ZERO true
#define DPM_LOWER_ORDER_BELOW 15 /* lower_order_final applies below this many steps */

/* _sigma_to_alpha_sigma_t and lambda = log(alpha) - log(sigma), float32 as diffusers. */
typedef struct dpm_point {
  float alpha, sigma, lambda;
} dpm_point;

static dpm_point dpm_point_of(float sigma) {
  dpm_point p;
  p.alpha = 1.0f / sqrtf(sigma * sigma + 1.0f);
  p.sigma = sigma * p.alpha;
  p.lambda = logf(p.alpha) - logf(p.sigma);
  return p;
}

static int dpm_step(sd_scheduler *s, sd_backend *be, int i, const sd_tensor *model_out,
                    sd_tensor *latents, sd_noise_fill_fn noise_fill, void *noise_ctx) {
  (void)noise_fill, (void)noise_ctx;
  int count = s->count;
  bool lower_order_final =
      i == count - 1 &&
      (DPM_EULER_AT_FINAL || (DPM_LOWER_ORDER_FINAL && count < DPM_LOWER_ORDER_BELOW) ||
       DPM_FINAL_SIGMAS_ZERO);

  /* model_outputs shift left; the newest goes into the older slot. */
  int newest = s->lower_order_nums == 0 ? 0 : 1 - s->dpm_newest;
  sd_tensor *m0;
  SD_TRY(sd_sched_history(s, be, latents, newest, &m0));
  s->dpm_newest = newest;

  /* convert_model_output: the data prediction x0 at sigmas[i]. */
  dpm_point now = dpm_point_of(s->sigmas[i]);
  switch (s->cfg.prediction_type) {
  case SD_PREDICT_EPSILON: /* (sample - sigma_t * model_output) / alpha_t */
    SD_TRY(sd_sched_axpby(be, 1.0f, latents, -now.sigma, model_out, m0));
    SD_TRY(sd_op_scale(be, m0, (float)(1.0 / (double)now.alpha), m0));
    break;
  case SD_PREDICT_SAMPLE:
    SD_TRY(sd_op_copy(be, model_out, m0));
    break;
  case SD_PREDICT_V: /* alpha_t * sample - sigma_t * model_output */
    SD_TRY(sd_sched_axpby(be, now.alpha, latents, -now.sigma, model_out, m0));
    break;
  default:
    return SD_ERROR("unknown prediction_type %d", (int)s->cfg.prediction_type);
  }

  dpm_point t = dpm_point_of(s->sigmas[i + 1]);
  dpm_point s0 = now;
  float h = t.lambda - s0.lambda;
  float phi = t.alpha * (expf(-h) - 1.0f); /* alpha_t * (exp(-h) - 1) */
  float sample_coeff = t.sigma / s0.sigma;
  if (DPM_SOLVER_ORDER == 1 || s->lower_order_nums < 1 || lower_order_final) {
    /* x_t = (sigma_t / sigma_s) * sample - (alpha_t * (exp(-h) - 1)) * x0 */
    SD_TRY(sd_sched_axpby(be, sample_coeff, latents, -phi, m0, latents));
  } else {
    /* Second order, midpoint: D0 = m0, D1 = (1 / r0) * (m0 - m1),
     * x_t = (sigma_t / sigma_s0) * sample - phi * D0 - 0.5 * phi * D1. */
    dpm_point s1 = dpm_point_of(s->sigmas[i - 1]);
    float h0 = s0.lambda - s1.lambda;
    float r0 = h0 / h;
    const sd_tensor *m1 = &s->history[1 - newest];
    sd_arena_mark mark = sd_arena_get_mark(be);
    sd_tensor d1;
    int rc = sd_sched_scratch(be, latents, &d1);
    if (rc == 0)
      rc = sd_sched_axpby(be, 1.0f, m0, -1.0f, m1, &d1);
    if (rc == 0)
      rc = sd_op_scale(be, &d1, 1.0f / r0, &d1);
    if (rc == 0) {
      const float coeffs[3] = {sample_coeff, -phi, -(0.5f * phi)};
      const sd_tensor *xs[3] = {latents, m0, &d1};
      rc = sd_op_lincomb(be, 3, coeffs, xs, latents);
    }
    sd_arena_release(be, mark);
    SD_TRY(rc);
  }
  if (s->lower_order_nums < DPM_SOLVER_ORDER)
    s->lower_order_nums++;
  return 0;
}

/* set_timesteps' integer timesteps (steps + 1 points, the last dropped) for the spacing. */
static int dpm_timesteps(const sd_scheduler *s, double *out) {
  int n = s->steps, T = s->cfg.num_train_timesteps;
  int last = T; /* lambda_min_clipped = -inf clips nothing */
  switch (s->cfg.timestep_spacing) {
  case SD_SPACING_LINSPACE: {
    double *v = malloc((size_t)(n + 1) * sizeof *v);
    if (!v)
      return SD_ERROR("out of memory for %d timesteps", n);
    sd_sched_linspace(0.0, (double)(last - 1), n + 1, v);
    for (int i = 0; i < n; i++)
      out[i] = rint(v[n - i]);
    free(v);
    break;
  }
  case SD_SPACING_LEADING: {
    int ratio = last / (n + 1);
    for (int i = 0; i < n; i++)
      out[i] = (double)((n - i) * ratio + s->cfg.steps_offset);
    break;
  }
  case SD_SPACING_TRAILING: {
    double ratio = (double)T / n;
    int len = sd_sched_arange_len((double)last, 0.0, -ratio);
    if (len != n)
      return SD_ERROR("trailing spacing of %d steps over %d gives %d timesteps", n, T, len);
    double *v = malloc((size_t)n * sizeof *v);
    if (!v)
      return SD_ERROR("out of memory for %d timesteps", n);
    sd_sched_arange((double)last, 0.0, -ratio, v);
    for (int i = 0; i < n; i++)
      out[i] = rint(v[i]) - 1.0;
    free(v);
    break;
  }
  default:
    return SD_ERROR("unknown timestep_spacing %d", (int)s->cfg.timestep_spacing);
  }
  return 0;
}

int sd_sched_dpmpp_2m_setup(sd_scheduler *s) {
  int n = s->steps, T = s->cfg.num_train_timesteps;
  s->timesteps = malloc((size_t)n * sizeof *s->timesteps);
  s->sigmas = malloc((size_t)(n + 1) * sizeof *s->sigmas);
  float *train = malloc((size_t)T * 2 * sizeof *train);
  double *work = malloc((size_t)n * sizeof *work);
  float *log_train = train ? train + T : NULL;
  int rc = -1;
  if (!s->timesteps || !s->sigmas || !train || !work) {
    SD_ERROR("out of memory for %d timesteps", n);
    goto out;
  }
  if (dpm_timesteps(s, s->timesteps) < 0)
    goto out;
  sd_sched_train_sigmas(s->alphas_cumprod, T, train, log_train);
  if (s->karras) {
    /* Karras over the whole training range, timesteps back from the sigmas: rounded, except
     * for squaredcos_cap_v2 where int64 truncates the fractional ones. */
    sd_sched_karras(train[0], train[T - 1], n, work);
    for (int i = 0; i < n; i++) {
      double t = sd_sched_sigma_to_t(work[i], log_train, T);
      s->timesteps[i] = s->cfg.beta_schedule != SD_BETA_SQUAREDCOS_CAP_V2 ? rint(t) : trunc(t);
    }
  } else {
    for (int i = 0; i < n; i++)
      work[i] = sd_sched_interp(s->timesteps[i], train, T);
  }
  for (int i = 0; i < n; i++)
    s->sigmas[i] = (float)work[i];
  s->sigmas[n] = 0.0f; /* final_sigmas_type "zero" */
  s->count = n;
  s->init_noise_sigma = 1.0f;
  s->scales_input = false;
  s->step = dpm_step;
  rc = 0;
out:
  free(train);
  free(work);
  return rc;
}
