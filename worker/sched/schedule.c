/* diffusers' schedule arithmetic: betas and alphas_cumprod (float32 torch), numpy's linspace,
 * arange and interp (float64), timestep spacing (leading / linspace / trailing), the training
 * sigmas, Karras sigmas and the sigma -> timestep interpolation. */
#include "sched_internal.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* betas_for_alpha_bar's cosine alpha_bar and cap (squaredcos_cap_v2). */
#define ALPHA_BAR_MAX_BETA 0.999

static double cosine_alpha_bar(double t) {
  double c = cos((t + 0.008) / 1.008 * M_PI / 2.0);
  return c * c;
}

/* The config value diffusers holds as a Python float: the shortest decimal that reads back as
 * the float32 the config struct stores (0.012f -> 0.012, whose square root rounds to another
 * float32 than that of (double)0.012f). */
static double config_decimal(float v) {
  char text[32];
  for (int digits = 1; digits <= 9; digits++) {
    snprintf(text, sizeof text, "%.*g", digits, (double)v);
    if (strtof(text, NULL) == v)
      return strtod(text, NULL);
  }
  return (double)v;
}

/* torch.linspace(start, end, n, dtype=float32) on the CPU: float32 start, end and step, each
 * element one fused multiply-add from the nearer end (as torch's compiled kernel). */
static void torch_linspace_f32(double start, double end, int n, float *out) {
  float s = (float)start, e = (float)end;
  if (n == 1) {
    out[0] = s;
    return;
  }
  float step = (e - s) / (float)(n - 1);
  int halfway = n / 2;
  for (int i = 0; i < n; i++)
    out[i] = i < halfway ? fmaf(step, (float)i, s) : fmaf(-step, (float)(n - i - 1), e);
}

int sd_sched_alphas_cumprod(const sd_scheduler_config *cfg, float *out) {
  int n = cfg->num_train_timesteps;
  float *betas = malloc((size_t)n * sizeof *betas);
  if (!betas)
    return SD_ERROR("out of memory for %d betas", n);
  switch (cfg->beta_schedule) {
  case SD_BETA_LINEAR:
    torch_linspace_f32(cfg->beta_start, cfg->beta_end, n, betas);
    break;
  case SD_BETA_SCALED_LINEAR:
    torch_linspace_f32(sqrt(config_decimal(cfg->beta_start)), sqrt(config_decimal(cfg->beta_end)),
                       n, betas);
    for (int i = 0; i < n; i++)
      betas[i] = betas[i] * betas[i];
    break;
  case SD_BETA_SQUAREDCOS_CAP_V2:
    for (int i = 0; i < n; i++) {
      double t1 = (double)i / n, t2 = (double)(i + 1) / n;
      double beta = 1.0 - cosine_alpha_bar(t2) / cosine_alpha_bar(t1);
      betas[i] = (float)(beta < ALPHA_BAR_MAX_BETA ? beta : ALPHA_BAR_MAX_BETA);
    }
    break;
  default:
    free(betas);
    return SD_ERROR("unknown beta_schedule %d", (int)cfg->beta_schedule);
  }
  /* torch.cumprod on the CPU accumulates float32 inputs in double. */
  double product = 1.0;
  for (int i = 0; i < n; i++) {
    float alpha = 1.0f - betas[i];
    product *= (double)alpha;
    out[i] = (float)product;
  }
  free(betas);
  return 0;
}

void sd_sched_linspace(double start, double stop, int num, double *out) {
  if (num == 1) {
    out[0] = start;
    return;
  }
  double step = (stop - start) / (double)(num - 1);
  for (int i = 0; i < num; i++)
    out[i] = (double)i * step + start;
  out[num - 1] = stop;
}

int sd_sched_arange_len(double start, double stop, double step) {
  double len = ceil((stop - start) / step);
  return len > 0 ? (int)len : 0;
}

/* numpy fills an arange from its first two values: delta = (start + step) - start. */
void sd_sched_arange(double start, double stop, double step, double *out) {
  int n = sd_sched_arange_len(start, stop, step);
  if (n < 1)
    return;
  out[0] = start;
  if (n < 2)
    return;
  out[1] = start + step;
  double delta = out[1] - out[0];
  for (int i = 2; i < n; i++)
    out[i] = start + (double)i * delta;
}

double sd_sched_interp(double x, const float *fp, int n) {
  if (x <= 0.0)
    return fp[0];
  if (x >= (double)(n - 1))
    return fp[n - 1];
  int j = (int)floor(x);
  if ((double)j == x)
    return fp[j];
  double slope = (double)fp[j + 1] - (double)fp[j]; /* over xp[j + 1] - xp[j] = 1 */
  return slope * (x - (double)j) + (double)fp[j];
}

void sd_sched_train_sigmas(const float *alphas_cumprod, int n, float *sigmas, float *log_sigmas) {
  for (int i = 0; i < n; i++) {
    float a = alphas_cumprod[i];
    sigmas[i] = sqrtf((1.0f - a) / a);
    if (log_sigmas)
      log_sigmas[i] = logf(sigmas[i]);
  }
}

void sd_sched_karras(double sigma_min, double sigma_max, int steps, double *out) {
  const double rho = 7.0;
  double min_inv_rho = pow(sigma_min, 1.0 / rho);
  double max_inv_rho = pow(sigma_max, 1.0 / rho);
  sd_sched_linspace(0.0, 1.0, steps, out); /* the ramp, replaced element by element */
  for (int i = 0; i < steps; i++)
    out[i] = pow(max_inv_rho + out[i] * (min_inv_rho - max_inv_rho), rho);
}

double sd_sched_sigma_to_t(double sigma, const float *log_sigmas, int n) {
  double log_sigma = log(sigma > 1e-10 ? sigma : 1e-10);
  /* low_idx: the last index whose log sigma is <= log_sigma (0 when none), at most n - 2. */
  int low = 0;
  for (int k = 0; k < n; k++)
    if (log_sigma - (double)log_sigmas[k] >= 0.0)
      low = k;
  if (low > n - 2)
    low = n - 2;
  int high = low + 1;
  float lo = log_sigmas[low], hi = log_sigmas[high];
  double w = ((double)lo - log_sigma) / (double)(lo - hi);
  w = w < 0.0 ? 0.0 : (w > 1.0 ? 1.0 : w);
  return (1.0 - w) * low + w * high;
}

int sd_sched_discrete_timesteps(const sd_scheduler *s, int *out) {
  int n = s->steps, T = s->cfg.num_train_timesteps;
  switch (s->cfg.timestep_spacing) {
  case SD_SPACING_LINSPACE: {
    double *v = malloc((size_t)n * sizeof *v);
    if (!v)
      return SD_ERROR("out of memory for %d timesteps", n);
    sd_sched_linspace(0.0, (double)(T - 1), n, v);
    for (int i = 0; i < n; i++)
      out[i] = (int)rint(v[n - 1 - i]);
    free(v);
    break;
  }
  case SD_SPACING_LEADING: {
    int ratio = T / n;
    for (int i = 0; i < n; i++)
      out[i] = (n - 1 - i) * ratio + s->cfg.steps_offset;
    break;
  }
  case SD_SPACING_TRAILING: {
    double ratio = (double)T / n;
    int len = sd_sched_arange_len((double)T, 0.0, -ratio);
    if (len != n)
      return SD_ERROR("trailing spacing of %d steps over %d gives %d timesteps", n, T, len);
    double *v = malloc((size_t)n * sizeof *v);
    if (!v)
      return SD_ERROR("out of memory for %d timesteps", n);
    sd_sched_arange((double)T, 0.0, -ratio, v);
    for (int i = 0; i < n; i++)
      out[i] = (int)rint(v[i]) - 1;
    free(v);
    break;
  }
  default:
    return SD_ERROR("unknown timestep_spacing %d", (int)s->cfg.timestep_spacing);
  }
  for (int i = 0; i < n; i++)
    if (out[i] < 0 || out[i] >= T)
      return SD_ERROR("timestep %d of %d steps is outside [0, %d) (steps_offset %d)", out[i], n, T,
                      s->cfg.steps_offset);
  return 0;
}

/* The float32 timesteps of the sigma schedulers' set_timesteps, descending. */
static int sigma_timesteps(const sd_scheduler *s, float *out) {
  int n = s->steps, T = s->cfg.num_train_timesteps;
  switch (s->cfg.timestep_spacing) {
  case SD_SPACING_LINSPACE: {
    double *v = malloc((size_t)n * sizeof *v);
    if (!v)
      return SD_ERROR("out of memory for %d timesteps", n);
    sd_sched_linspace(0.0, (double)(T - 1), n, v);
    for (int i = 0; i < n; i++)
      out[i] = (float)v[n - 1 - i];
    free(v);
    return 0;
  }
  case SD_SPACING_LEADING: {
    int ratio = T / n;
    for (int i = 0; i < n; i++)
      out[i] = (float)((n - 1 - i) * ratio) + (float)s->cfg.steps_offset;
    return 0;
  }
  case SD_SPACING_TRAILING: {
    double ratio = (double)T / n;
    int len = sd_sched_arange_len((double)T, 0.0, -ratio);
    if (len != n)
      return SD_ERROR("trailing spacing of %d steps over %d gives %d timesteps", n, T, len);
    double *v = malloc((size_t)n * sizeof *v);
    if (!v)
      return SD_ERROR("out of memory for %d timesteps", n);
    sd_sched_arange((double)T, 0.0, -ratio, v);
    for (int i = 0; i < n; i++)
      out[i] = (float)rint(v[i]) - 1.0f;
    free(v);
    return 0;
  }
  }
  return SD_ERROR("unknown timestep_spacing %d", (int)s->cfg.timestep_spacing);
}

int sd_sched_sigma_schedule(const sd_scheduler *s, float *timesteps, float *sigmas) {
  int n = s->steps, T = s->cfg.num_train_timesteps;
  if (n < 1)
    return SD_ERROR("%d steps", n);
  SD_TRY(sigma_timesteps(s, timesteps)); /* beyond T - 1 (steps_offset) interp clamps */
  float *train = malloc((size_t)T * 2 * sizeof *train);
  double *work = malloc((size_t)n * sizeof *work);
  if (!train || !work) {
    free(train);
    free(work);
    return SD_ERROR("out of memory for the sigma schedule");
  }
  float *log_train = train + T;
  sd_sched_train_sigmas(s->alphas_cumprod, T, train, log_train);
  for (int i = 0; i < n; i++)
    work[i] = sd_sched_interp((double)timesteps[i], train, T);
  if (s->karras) {
    double sigma_min = work[n - 1], sigma_max = work[0];
    sd_sched_karras(sigma_min, sigma_max, n, work);
    for (int i = 0; i < n; i++)
      timesteps[i] = (float)sd_sched_sigma_to_t(work[i], log_train, T);
  }
  for (int i = 0; i < n; i++)
    sigmas[i] = (float)work[i];
  sigmas[n] = 0.0f;
  free(train);
  free(work);
  return 0;
}

float sd_sched_sigma_init_noise(const sd_scheduler *s, float max_sigma) {
  if (s->cfg.timestep_spacing == SD_SPACING_LINSPACE ||
      s->cfg.timestep_spacing == SD_SPACING_TRAILING)
    return max_sigma;
  return sqrtf(max_sigma * max_sigma + 1.0f);
}

int sd_sched_sigma_setup(sd_scheduler *s) {
  int n = s->steps;
  float *ts = malloc((size_t)n * sizeof *ts);
  s->sigmas = malloc((size_t)(n + 1) * sizeof *s->sigmas);
  s->timesteps = malloc((size_t)n * sizeof *s->timesteps);
  if (!ts || !s->sigmas || !s->timesteps) {
    free(ts);
    return SD_ERROR("out of memory for %d timesteps", n);
  }
  if (sd_sched_sigma_schedule(s, ts, s->sigmas) < 0) {
    free(ts);
    return -1;
  }
  float max_sigma = 0.0f;
  for (int i = 0; i <= n; i++) {
    if (i < n)
      s->timesteps[i] = ts[i];
    if (s->sigmas[i] > max_sigma)
      max_sigma = s->sigmas[i];
  }
  free(ts);
  s->count = n;
  s->init_noise_sigma = sd_sched_sigma_init_noise(s, max_sigma);
  s->scales_input = true;
  return 0;
}
