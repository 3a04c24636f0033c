/* LMSDiscreteScheduler: linear multistep of order up to 4 in sigma. The derivative
 * (sample - x0) / sigma of each step is kept; the update adds the derivatives weighted by the
 * integrals over [sigma_i, sigma_{i+1}] of the Lagrange basis polynomials through the past
 * sigmas. diffusers integrates them with scipy.integrate.quad; the integrand is a polynomial of
 * degree < 4, which 3-point Gauss-Legendre integrates exactly. */
#include "sched_internal.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdlib.h>

/* The pipeline calls step() without `order`, so diffusers uses its default. */
#define LMS_ORDER 4

/* Lagrange basis polynomial `current` through sigmas[i - k], k < order, at tau. */
static double lms_basis(const float *sigmas, int order, int i, int current, double tau) {
  double prod = 1.0;
  for (int k = 0; k < order; k++) {
    if (k == current)
      continue;
    prod *= (tau - sigmas[i - k]) / ((double)sigmas[i - current] - sigmas[i - k]);
  }
  return prod;
}

static double lms_coefficient(const float *sigmas, int order, int i, int current) {
  static const double nodes[3] = {-0.7745966692414834, 0.0, 0.7745966692414834};
  static const double weights[3] = {5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0};
  double a = sigmas[i], b = sigmas[i + 1];
  double mid = 0.5 * (a + b), half = 0.5 * (b - a);
  double sum = 0.0;
  for (int q = 0; q < 3; q++)
    sum += weights[q] * lms_basis(sigmas, order, i, current, mid + half * nodes[q]);
  return sum * half;
}

static int lms_step(sd_scheduler *s, sd_backend *be, int i, const sd_tensor *model_out,
                    sd_tensor *latents, sd_noise_fill_fn noise_fill, void *noise_ctx) {
  (void)noise_fill, (void)noise_ctx;
  float sigma = s->sigmas[i];

  /* self.derivatives.append(...), keeping the last LMS_ORDER (history slots rotate). */
  sd_tensor *slot;
  if (s->derivative_count < LMS_ORDER) {
    SD_TRY(sd_sched_history(s, be, latents, s->derivative_count, &slot));
    s->derivative_count++;
  } else {
    sd_tensor oldest = s->history[0];
    for (int k = 0; k < LMS_ORDER - 1; k++)
      s->history[k] = s->history[k + 1];
    s->history[LMS_ORDER - 1] = oldest;
    slot = &s->history[LMS_ORDER - 1];
  }
  SD_TRY(sd_sched_sigma_pred_original(s, be, sigma, latents, model_out, slot));
  SD_TRY(sd_sched_sigma_derivative(be, sigma, latents, slot, slot));

  /* diffusers: order = min(step_index + 1, 4) sets the coefficients; zip() with the derivatives
   * uses only as many as there are (fewer when the loop began mid-schedule, img2img). */
  int order = i + 1 < LMS_ORDER ? i + 1 : LMS_ORDER;
  int terms = order < s->derivative_count ? order : s->derivative_count;
  float coeffs[LMS_ORDER];
  const sd_tensor *xs[LMS_ORDER];
  for (int k = 0; k < terms; k++) {
    coeffs[k] = (float)lms_coefficient(s->sigmas, order, i, k);
    xs[k] = &s->history[s->derivative_count - 1 - k]; /* reversed(derivatives) */
  }
  /* prev = sample + sum(coeff * derivative), the sum formed first as diffusers does. */
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor sum;
  int rc = sd_sched_scratch(be, latents, &sum);
  if (rc == 0)
    rc = sd_op_lincomb(be, terms, coeffs, xs, &sum);
  if (rc == 0)
    rc = sd_op_add(be, latents, &sum, latents);
  sd_arena_release(be, mark);
  return rc;
}

int sd_sched_lms_setup(sd_scheduler *s) {
  SD_TRY(sd_sched_sigma_setup(s));
  s->step = lms_step;
  return 0;
}
