/* PNDMScheduler: pseudo linear multistep (PLMS) with skip_prk_steps (every SD config), or the
 * Runge-Kutta warm-up of 12 calls (PRK) when skip_prk_steps is false. History: up to four past
 * model outputs (ets), the sample the current multistep started from, and the PRK accumulator.
 * Every update ends in diffusers' _get_prev_sample (formula (9) of the PNDM paper). */
#include "sched_internal.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdlib.h>

/* History slots. */
enum { ETS_FIRST = 0, ETS_SLOTS = 4, SLOT_CUR_SAMPLE = 4, SLOT_PRK_ACC = 5 };

/* diffusers' pndm_order: the PRK warm-up covers the last four timesteps and their midpoints
 * (12 model calls). */
#define PNDM_ORDER 4

/* diffusers' _get_prev_sample: prev = (alpha_prev / alpha_t)^0.5 * sample
 * - (alpha_prev - alpha_t) * eps / (alpha_t * beta_prev^0.5 + (alpha_t beta_t alpha_prev)^0.5),
 * eps the model output (converted from v with the same sample). out may alias sample. */
static int get_prev_sample(const sd_scheduler *s, sd_backend *be, const sd_tensor *sample, int t,
                           int prev_t, const sd_tensor *model_output, sd_tensor *out) {
  float alpha_t = s->alphas_cumprod[t];
  float alpha_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : s->final_alpha_cumprod;
  float beta_t = 1.0f - alpha_t;
  float beta_prev = 1.0f - alpha_prev;
  float sample_coeff = sqrtf(alpha_prev / alpha_t);
  float denom = alpha_t * sqrtf(beta_prev) + sqrtf(alpha_t * beta_t * alpha_prev);
  float model_coeff = (float)(-(double)(alpha_prev - alpha_t) / (double)denom);
  if (s->cfg.prediction_type != SD_PREDICT_V)
    return sd_sched_axpby(be, sample_coeff, sample, model_coeff, model_output, out);
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor eps;
  int rc = sd_sched_scratch(be, sample, &eps);
  if (rc == 0)
    rc = sd_sched_axpby(be, sqrtf(alpha_t), model_output, sqrtf(beta_t), sample, &eps);
  if (rc == 0)
    rc = sd_sched_axpby(be, sample_coeff, sample, model_coeff, &eps, out);
  sd_arena_release(be, mark);
  return rc;
}

/* The ets slots in diffusers' list order (oldest first). */
static sd_tensor *ets(sd_scheduler *s, int k) {
  return &s->history[ETS_FIRST + k];
}

/* self.ets = self.ets[-3:] + [model_output] (a copy: the caller reuses its buffer). */
static int ets_append(sd_scheduler *s, sd_backend *be, const sd_tensor *model_out) {
  sd_tensor *slot;
  if (s->ets_count < ETS_SLOTS) {
    SD_TRY(sd_sched_history(s, be, model_out, ETS_FIRST + s->ets_count, &slot));
    s->ets_count++;
  } else {
    sd_tensor oldest = *ets(s, 0);
    for (int k = 0; k < ETS_SLOTS - 1; k++)
      *ets(s, k) = *ets(s, k + 1);
    *ets(s, ETS_SLOTS - 1) = oldest;
    slot = ets(s, ETS_SLOTS - 1);
  }
  return sd_op_copy(be, model_out, slot);
}

/* model_output = scale * (sum_k w[k] * xs[k]) into out (diffusers' multistep combination:
 * integer weights, then one division or multiplication). */
static int combine(sd_backend *be, int n, const float *w, const sd_tensor *const *xs, float scale,
                   sd_tensor *out) {
  SD_TRY(sd_op_lincomb(be, n, w, xs, out));
  return scale == 1.0f ? 0 : sd_op_scale(be, out, scale, out);
}

static int plms_step(sd_scheduler *s, sd_backend *be, int i, const sd_tensor *model_out,
                     sd_tensor *latents) {
  int ratio = s->cfg.num_train_timesteps / s->steps;
  int t = (int)s->timesteps[i];
  int prev_t = t - ratio;
  if (s->counter != 1) {
    SD_TRY(ets_append(s, be, model_out));
  } else {
    prev_t = t;
    t = t + ratio;
  }
  if (t >= s->cfg.num_train_timesteps)
    return SD_ERROR("plms timestep %d beyond the schedule", t);

  const sd_tensor *sample = latents;
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor combined;
  const sd_tensor *mo = &combined;
  int rc = sd_sched_scratch(be, latents, &combined);
  if (rc < 0) {
    sd_arena_release(be, mark);
    return rc;
  }
  if (s->ets_count == 1 && s->counter == 0) {
    /* model_output as is; remember the sample for the second call. */
    sd_tensor *cur;
    rc = sd_sched_history(s, be, latents, SLOT_CUR_SAMPLE, &cur);
    if (rc == 0)
      rc = sd_op_copy(be, latents, cur);
    mo = model_out;
  } else if (s->ets_count == 1 && s->counter == 1) {
    /* (model_output + ets[-1]) / 2, from the first call's sample; halving is exact, so
     * 0.5 x + 0.5 y rounds as (x + y) / 2. */
    sample = &s->history[SLOT_CUR_SAMPLE];
    const float w[2] = {0.5f, 0.5f};
    const sd_tensor *xs[2] = {model_out, ets(s, 0)};
    rc = combine(be, 2, w, xs, 1.0f, &combined);
  } else if (s->ets_count == 2) {
    /* (3 ets[-1] - ets[-2]) / 2, the halving folded in exactly. */
    const float w[2] = {1.5f, -0.5f};
    const sd_tensor *xs[2] = {ets(s, 1), ets(s, 0)};
    rc = combine(be, 2, w, xs, 1.0f, &combined);
  } else if (s->ets_count == 3) {
    /* (23 ets[-1] - 16 ets[-2] + 5 ets[-3]) / 12 */
    const float w[3] = {23.0f, -16.0f, 5.0f};
    const sd_tensor *xs[3] = {ets(s, 2), ets(s, 1), ets(s, 0)};
    rc = combine(be, 3, w, xs, (float)(1.0 / 12.0), &combined);
  } else {
    /* (1 / 24) * (55 ets[-1] - 59 ets[-2] + 37 ets[-3] - 9 ets[-4]) */
    const float w[4] = {55.0f, -59.0f, 37.0f, -9.0f};
    const sd_tensor *xs[4] = {ets(s, 3), ets(s, 2), ets(s, 1), ets(s, 0)};
    rc = combine(be, 4, w, xs, (float)(1.0 / 24.0), &combined);
  }
  if (rc == 0)
    rc = get_prev_sample(s, be, sample, t, prev_t, mo, latents);
  sd_arena_release(be, mark);
  if (rc == 0)
    s->counter++;
  return rc;
}

/* One of the 12 Runge-Kutta calls: the model outputs at the four points of each RK step are
 * weighted 1/6, 1/3, 1/3, 1/6, all updates starting from the RK step's first sample. */
static int prk_step(sd_scheduler *s, sd_backend *be, int i, const sd_tensor *model_out,
                    sd_tensor *latents) {
  int half = s->cfg.num_train_timesteps / s->steps / 2;
  int phase = s->counter % 4;
  int prev_t = (int)s->timesteps[i] - (s->counter % 2 ? 0 : half);
  int t = s->prk_timesteps[s->counter / 4 * 4];
  sd_tensor *acc, *cur;
  SD_TRY(sd_sched_history(s, be, latents, SLOT_PRK_ACC, &acc));
  SD_TRY(sd_sched_history(s, be, latents, SLOT_CUR_SAMPLE, &cur));
  const float sixth = (float)(1.0 / 6.0), third = (float)(1.0 / 3.0);
  if (phase == 0) {
    SD_TRY(sd_op_scale(be, model_out, sixth, acc)); /* 0 + 1/6 * model_output */
    SD_TRY(ets_append(s, be, model_out));
    SD_TRY(sd_op_copy(be, latents, cur));
  } else if (phase == 1 || phase == 2) {
    SD_TRY(sd_sched_axpby(be, 1.0f, acc, third, model_out, acc));
  }
  int rc;
  if (phase == 3) {
    /* model_output = cur_model_output + 1/6 * model_output */
    sd_arena_mark mark = sd_arena_get_mark(be);
    sd_tensor combined;
    rc = sd_sched_scratch(be, latents, &combined);
    if (rc == 0)
      rc = sd_sched_axpby(be, 1.0f, acc, sixth, model_out, &combined);
    if (rc == 0)
      rc = get_prev_sample(s, be, cur, t, prev_t, &combined, latents);
    sd_arena_release(be, mark);
  } else {
    rc = get_prev_sample(s, be, cur, t, prev_t, model_out, latents);
  }
  if (rc == 0)
    s->counter++;
  return rc;
}

static int pndm_step(sd_scheduler *s, sd_backend *be, int i, const sd_tensor *model_out,
                     sd_tensor *latents, sd_noise_fill_fn noise_fill, void *noise_ctx) {
  (void)noise_fill, (void)noise_ctx;
  if (s->counter < s->prk_count && !s->cfg.skip_prk_steps)
    return prk_step(s, be, i, model_out, latents);
  return plms_step(s, be, i, model_out, latents);
}

int sd_sched_pndm_setup(sd_scheduler *s) {
  if (s->cfg.prediction_type != SD_PREDICT_EPSILON && s->cfg.prediction_type != SD_PREDICT_V)
    return SD_ERROR("pndm supports prediction_type epsilon and v_prediction only");
  int n = s->steps, T = s->cfg.num_train_timesteps;
  int *asc = malloc((size_t)n * sizeof *asc);
  if (!asc)
    return SD_ERROR("out of memory for %d timesteps", n);
  if (sd_sched_discrete_timesteps(s, asc) < 0) {
    free(asc);
    return -1;
  }
  /* diffusers' _timesteps run ascending. */
  for (int i = 0; i < n / 2; i++) {
    int tmp = asc[i];
    asc[i] = asc[n - 1 - i];
    asc[n - 1 - i] = tmp;
  }
  int max_count = n + 3 * PNDM_ORDER;
  s->timesteps = malloc((size_t)max_count * sizeof *s->timesteps);
  if (!s->timesteps) {
    free(asc);
    return SD_ERROR("out of memory for %d timesteps", max_count);
  }
  int count = 0;
  if (s->cfg.skip_prk_steps) {
    /* concatenate([_t[:-1], _t[-2:-1], _t[-1:]])[::-1] */
    s->timesteps[count++] = asc[n - 1];
    if (n >= 2)
      s->timesteps[count++] = asc[n - 2];
    for (int k = n - 2; k >= 0; k--)
      s->timesteps[count++] = asc[k];
  } else {
    if (n < PNDM_ORDER) {
      free(asc);
      return SD_ERROR("pndm's Runge-Kutta warm-up (skip_prk_steps false) needs at least %d "
                      "steps, got %d",
                      PNDM_ORDER, n);
    }
    /* The last four timesteps and their midpoints, each used twice, newest first. */
    int half = T / n / 2;
    int points[2 * PNDM_ORDER];
    for (int k = 0; k < PNDM_ORDER; k++) {
      points[2 * k] = asc[n - PNDM_ORDER + k];
      points[2 * k + 1] = asc[n - PNDM_ORDER + k] + half;
    }
    int doubled[2 * (2 * PNDM_ORDER - 1)];
    for (int k = 0; k < 2 * PNDM_ORDER - 1; k++)
      doubled[2 * k] = doubled[2 * k + 1] = points[k];
    s->prk_count = 2 * (2 * PNDM_ORDER - 1) - 2;
    s->prk_timesteps = malloc((size_t)s->prk_count * sizeof *s->prk_timesteps);
    if (!s->prk_timesteps) {
      free(asc);
      return SD_ERROR("out of memory for the PRK timesteps");
    }
    for (int k = 0; k < s->prk_count; k++)
      s->prk_timesteps[k] = doubled[s->prk_count - k];
    for (int k = 0; k < s->prk_count; k++)
      s->timesteps[count++] = s->prk_timesteps[k];
    for (int k = n - PNDM_ORDER; k >= 0; k--)
      s->timesteps[count++] = asc[k];
  }
  free(asc);
  for (int i = 0; i < count; i++)
    if (s->timesteps[i] >= T)
      return SD_ERROR("pndm timestep %g is beyond num_train_timesteps %d", s->timesteps[i], T);
  s->count = count;
  s->final_alpha_cumprod = s->cfg.set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
  s->init_noise_sigma = 1.0f;
  s->scales_input = false;
  s->step = pndm_step;
  return 0;
}
