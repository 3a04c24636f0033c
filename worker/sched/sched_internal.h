/* Internals shared by the scheduler files: the scheduler object, the schedule arithmetic of
 * diffusers' __init__ / set_timesteps (schedule.c), the per-class config defaults
 * (scheduler_config.c) and one setup + step pair per scheduler class (ddim.c, pndm.c, ...).
 *
 * Numerics: the scalars diffusers computes as float32 tensors (alphas_cumprod, sigmas and all
 * step coefficients derived from them) are computed in float with the same operations; numpy's
 * float64 schedule arithmetic is done in double. The tensor arithmetic follows diffusers'
 * expressions term by term: sd_op_lincomb rounds each product and each sum in float32 as a torch
 * expression `a * x + b * y` does, so each step equals diffusers' chain of float32 ops except
 * that a division by a scalar becomes a multiplication by its reciprocal (within an ulp). The
 * expressions are kept rather than folded into fewer ops because several of them cancel (e.g.
 * (sample - pred_original_sample) / sigma), where folding would change the rounding. */
#ifndef SD_SCHED_INTERNAL_H
#define SD_SCHED_INTERNAL_H

#include "scheduler.h"

/* History tensors a scheduler may keep (PNDM: 4 ets + current sample + PRK accumulator). */
#define SD_SCHED_MAX_HISTORY 6

typedef int (*sd_sched_step_fn)(sd_scheduler *s, sd_backend *be, int i, const sd_tensor *model_out,
                                sd_tensor *latents, sd_noise_fill_fn noise_fill, void *noise_ctx);

struct sd_scheduler {
  sd_scheduler_kind kind;
  sd_scheduler_config cfg; /* as this class sees it: stated fields, else its class defaults */
  bool karras;             /* use_karras_sigmas in effect */
  int steps;               /* num_inference_steps asked for */
  int count;               /* model calls */
  double *timesteps;       /* (count) the UNet's timestep per call */
  float *sigmas;           /* sigma schedulers: (count + 1) float32 sigmas, last 0; else NULL */
  float *alphas_cumprod;   /* (num_train_timesteps) float32 as torch.cumprod gives them */
  float final_alpha_cumprod;
  float init_noise_sigma;
  bool scales_input; /* scale_model_input divides by sqrt(sigma^2 + 1) */
  sd_sched_step_fn step;
  int next_step; /* steps must come in order: multistep state depends on it */
  int begin;     /* the first call (img2img / inpainting start mid-schedule), else 0 */

  /* Persistent backend tensors of the latents' shape, allocated on the first step. */
  sd_backend *history_be;
  sd_tensor history[SD_SCHED_MAX_HISTORY];

  /* Per-class state. */
  int counter;          /* pndm: diffusers' self.counter */
  int ets_count;        /* pndm: len(self.ets) */
  int prk_count;        /* pndm: len(self.prk_timesteps) */
  int *prk_timesteps;   /* pndm PRK: (prk_count) */
  int lower_order_nums; /* dpmpp_2m */
  int dpm_newest;       /* dpmpp_2m: history slot of model_outputs[-1] */
  int derivative_count; /* lms: len(self.derivatives) */
  float heun_dt;        /* heun: self.dt of the first-order half */
  bool heun_second;     /* heun: the next call is the second-order half */
};

/* ---- schedule.c: diffusers' schedule arithmetic ---- */

/* betas (beta_schedule) -> alphas -> torch.cumprod, float32, (num_train_timesteps) values. */
int sd_sched_alphas_cumprod(const sd_scheduler_config *cfg, float *out);
/* np.linspace(start, stop, num) in float64 (endpoint included). */
void sd_sched_linspace(double start, double stop, int num, double *out);
/* Length of np.arange(start, stop, step) and its values (numpy's fill arithmetic). */
int sd_sched_arange_len(double start, double stop, double step);
void sd_sched_arange(double start, double stop, double step, double *out);
/* np.interp(x, arange(n), fp) for x in [0, n - 1]. */
double sd_sched_interp(double x, const float *fp, int n);
/* The training sigmas ((1 - a) / a) ** 0.5 in float32, (n) values, and their float32 logs. */
void sd_sched_train_sigmas(const float *alphas_cumprod, int n, float *sigmas, float *log_sigmas);
/* _convert_to_karras: rho-7 ramp from sigma_max to sigma_min, (steps) float64 values. */
void sd_sched_karras(double sigma_min, double sigma_max, int steps, double *out);
/* _sigma_to_t: fractional training timestep of sigma from the float32 log sigmas. */
double sd_sched_sigma_to_t(double sigma, const float *log_sigmas, int n);
/* Common set_timesteps of LMS, Euler, Euler a and Heun: float32 timesteps (steps) and float32
 * sigmas (steps + 1, last 0), Karras when s->karras. */
int sd_sched_sigma_schedule(const sd_scheduler *s, float *timesteps, float *sigmas);
/* init_noise_sigma of the sigma schedulers from the max sigma. */
float sd_sched_sigma_init_noise(const sd_scheduler *s, float max_sigma);
/* The whole set_timesteps of LMS, Euler and Euler a: timesteps, sigmas, count, init noise
 * sigma, input scaling (the caller sets the step function). */
int sd_sched_sigma_setup(sd_scheduler *s);

/* ---- scheduler_config.c ---- */

/* The config a scheduler of `kind` built with diffusers' from_config sees: fields the model's
 * config stated keep their values, the others take that class's __init__ defaults. */
void sd_sched_resolve_config(sd_scheduler_kind kind, const sd_scheduler_config *stated,
                             sd_scheduler_config *out);

/* ---- scheduler.c: helpers for the step functions ---- */

/* History slot `slot` (latents' shape), allocated persistently on first use. */
int sd_sched_history(sd_scheduler *s, sd_backend *be, const sd_tensor *like, int slot,
                     sd_tensor **out);
/* A scratch tensor (backend arena) of like's shape and dtype. */
int sd_sched_scratch(sd_backend *be, const sd_tensor *like, sd_tensor *out);
/* out = a * x + b * y in float32 (torch's `a * x + b * y`); out may alias x or y. */
int sd_sched_axpby(sd_backend *be, float a, const sd_tensor *x, float b, const sd_tensor *y,
                   sd_tensor *out);
/* pred_original_sample of diffusers' sigma schedulers for prediction_type, sigma_input the
 * float32 sigma they use; out may alias neither input. */
int sd_sched_sigma_pred_original(const sd_scheduler *s, sd_backend *be, float sigma_input,
                                 const sd_tensor *sample, const sd_tensor *model_out,
                                 sd_tensor *out);
/* derivative = (sample - pred_original) / sigma; out may alias pred_original. */
int sd_sched_sigma_derivative(sd_backend *be, float sigma, const sd_tensor *sample,
                              const sd_tensor *pred_original, sd_tensor *out);

/* ---- per-class setup (timesteps, sigmas, init noise, step function) ---- */
int sd_sched_ddim_setup(sd_scheduler *s);
int sd_sched_pndm_setup(sd_scheduler *s);
int sd_sched_lms_setup(sd_scheduler *s);
int sd_sched_euler_setup(sd_scheduler *s);
int sd_sched_euler_ancestral_setup(sd_scheduler *s);
int sd_sched_heun_setup(sd_scheduler *s);
int sd_sched_dpmpp_2m_setup(sd_scheduler *s);

/* Discrete-timestep spacing shared by DDIM and PNDM: set_timesteps' integer timesteps in
 * descending order, (steps) values; -1 with an error when a timestep leaves [0, T). */
int sd_sched_discrete_timesteps(const sd_scheduler *s, int *out);

#endif
