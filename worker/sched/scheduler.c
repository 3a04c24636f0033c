/* The scheduler API (scheduler.h): names, creation from a model's config, dispatch of
 * scale_model_input and step to the class files, and the history tensors they keep. */
#include "sched_internal.h"
#include "scheduler_names.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct {
  sd_scheduler_kind kind;
  const char *name;       /* our name */
  const char *class_name; /* diffusers' _class_name */
  bool karras;            /* the class has use_karras_sigmas */
  int (*setup)(sd_scheduler *s);
} kinds[] = {
#define SD_SCHEDULER_KIND_ENTRY(kind, name, class_name, karras, setup)                             \
  {SD_SCHED_##kind, name, class_name, karras, sd_sched_##setup##_setup},
    SD_SCHEDULER_LIST(SD_SCHEDULER_KIND_ENTRY)
#undef SD_SCHEDULER_KIND_ENTRY
};
#define KIND_COUNT ((int)(sizeof kinds / sizeof kinds[0]))

static int kind_index(sd_scheduler_kind kind) {
  for (int i = 0; i < KIND_COUNT; i++)
    if (kinds[i].kind == kind)
      return i;
  return -1;
}

int sd_scheduler_kind_parse(const char *name, sd_scheduler_kind *out) {
  for (int i = 0; name && i < KIND_COUNT; i++) {
    if (strcmp(name, kinds[i].name) == 0) {
      *out = kinds[i].kind;
      return 0;
    }
  }
#define SD_SCHEDULER_NAME_TEXT(kind, name, class_name, karras, setup) " " name
  return SD_ERROR(
      "unknown scheduler '%s' (expected one of" SD_SCHEDULER_LIST(SD_SCHEDULER_NAME_TEXT) ")",
      name ? name : "(null)");
#undef SD_SCHEDULER_NAME_TEXT
}

const char *sd_scheduler_kind_name(sd_scheduler_kind kind) {
  int i = kind_index(kind);
  return i < 0 ? "unknown" : kinds[i].name;
}

int sd_scheduler_kind_from_config(const sd_scheduler_config *cfg, sd_scheduler_kind *out) {
  for (int i = 0; i < KIND_COUNT; i++) {
    if (strcmp(cfg->class_name, kinds[i].class_name) == 0) {
      *out = kinds[i].kind;
      return 0;
    }
  }
  return SD_ERROR("scheduler config: _class_name '%s' is not a supported scheduler (expected "
                  "DDIMScheduler, PNDMScheduler, LMSDiscreteScheduler, EulerDiscreteScheduler, "
                  "EulerAncestralDiscreteScheduler, HeunDiscreteScheduler or "
                  "DPMSolverMultistepScheduler)",
                  cfg->class_name);
}

bool sd_scheduler_supports_karras(sd_scheduler_kind kind) {
  int i = kind_index(kind);
  return i >= 0 && kinds[i].karras;
}

int sd_scheduler_create(sd_scheduler_kind kind, const sd_scheduler_config *cfg, bool karras,
                        int steps, sd_scheduler **out) {
  *out = NULL;
  int k = kind_index(kind);
  if (k < 0)
    return SD_ERROR("unknown scheduler kind %d", (int)kind);
  if (karras && !kinds[k].karras)
    return SD_ERROR("scheduler %s has no Karras sigmas (diffusers' %s lacks use_karras_sigmas)",
                    kinds[k].name, kinds[k].class_name);
  sd_scheduler_config resolved;
  sd_sched_resolve_config(kind, cfg, &resolved);
  if (resolved.num_train_timesteps < 2)
    return SD_ERROR("%s: num_train_timesteps %d (need at least 2)", kinds[k].name,
                    resolved.num_train_timesteps);
  if (steps < 1 || steps > resolved.num_train_timesteps)
    return SD_ERROR("%s: %d steps (1 to num_train_timesteps %d)", kinds[k].name, steps,
                    resolved.num_train_timesteps);

  sd_scheduler *s = calloc(1, sizeof *s);
  if (!s)
    return SD_ERROR("out of memory creating a scheduler");
  s->kind = kind;
  s->cfg = resolved;
  /* A config that states use_karras_sigmas keeps it, as from_config would. */
  s->karras = karras || (kinds[k].karras && resolved.use_karras_sigmas);
  s->steps = steps;
  s->init_noise_sigma = 1.0f;
  s->alphas_cumprod = malloc((size_t)resolved.num_train_timesteps * sizeof *s->alphas_cumprod);
  if (!s->alphas_cumprod) {
    free(s);
    return SD_ERROR("out of memory creating a scheduler");
  }
  if (sd_sched_alphas_cumprod(&s->cfg, s->alphas_cumprod) < 0 || kinds[k].setup(s) < 0) {
    sd_error_context("%s scheduler, %d steps", kinds[k].name, steps);
    sd_scheduler_free(s);
    return -1;
  }
  *out = s;
  return 0;
}

void sd_scheduler_free(sd_scheduler *s) {
  if (!s)
    return;
  for (int i = 0; i < SD_SCHED_MAX_HISTORY; i++)
    if (s->history[i].data)
      sd_tensor_free(s->history_be, &s->history[i]);
  free(s->timesteps);
  free(s->sigmas);
  free(s->alphas_cumprod);
  free(s->prk_timesteps);
  free(s);
}

int sd_scheduler_count(const sd_scheduler *s) {
  return s->count;
}

double sd_scheduler_timestep(const sd_scheduler *s, int i) {
  if (i < 0 || i >= s->count)
    return NAN;
  return s->timesteps[i];
}

float sd_scheduler_init_noise_sigma(const sd_scheduler *s) {
  return s->init_noise_sigma;
}

int sd_scheduler_scale_model_input(sd_scheduler *s, sd_backend *be, int i, const sd_tensor *latents,
                                   sd_tensor *x) {
  if (i < 0 || i >= s->count)
    return SD_ERROR("%s: scale_model_input at call %d of %d", sd_scheduler_kind_name(s->kind), i,
                    s->count);
  if (!s->scales_input)
    return latents->data == x->data ? 0 : sd_op_copy(be, latents, x);
  /* sample / ((sigma ** 2 + 1) ** 0.5), the divisor a float32 scalar. */
  float sigma = s->sigmas[i];
  float divisor = sqrtf(sigma * sigma + 1.0f);
  return sd_op_scale(be, latents, (float)(1.0 / (double)divisor), x);
}

int sd_scheduler_set_begin(sd_scheduler *s, int begin) {
  if (begin < 0 || begin >= s->count)
    return SD_ERROR("%s: the first call %d is outside 0..%d", sd_scheduler_kind_name(s->kind),
                    begin, s->count - 1);
  if (s->next_step != s->begin)
    return SD_ERROR("%s: the first call is set after a step ran", sd_scheduler_kind_name(s->kind));
  s->begin = begin;
  s->next_step = begin;
  return 0;
}

int sd_scheduler_begin_for_strength(const sd_scheduler *s, double strength) {
  int steps = s->steps;
  int init_timestep = (int)(steps * strength);
  if (init_timestep > steps)
    init_timestep = steps;
  int t_start = steps - init_timestep > 0 ? steps - init_timestep : 0;
  /* order 2 for Heun (its calls interleave), 1 for the others */
  int order = s->kind == SD_SCHED_HEUN ? 2 : 1;
  int begin = t_start * order;
  return begin < s->count ? begin : s->count;
}

int sd_scheduler_add_noise(const sd_scheduler *s, sd_backend *be, int i, const sd_tensor *original,
                           const sd_tensor *noise, sd_tensor *out) {
  if (i < 0 || i >= s->count)
    return SD_ERROR("%s: add_noise at call %d of %d", sd_scheduler_kind_name(s->kind), i, s->count);
  float a, b;
  if (!s->sigmas) {
    int t = (int)s->timesteps[i];
    if (t < 0 || t >= s->cfg.num_train_timesteps)
      return SD_ERROR("%s: add_noise at timestep %d", sd_scheduler_kind_name(s->kind), t);
    float alpha_prod = s->alphas_cumprod[t];
    a = sqrtf(alpha_prod);
    b = sqrtf(1.0f - alpha_prod);
  } else if (s->kind == SD_SCHED_DPMPP_2M) {
    float sigma = s->sigmas[i];
    a = 1.0f / sqrtf(sigma * sigma + 1.0f);
    b = sigma * a;
  } else {
    a = 1.0f;
    b = s->sigmas[i];
  }
  const float coeffs[2] = {a, b};
  const sd_tensor *xs[2] = {original, noise};
  return sd_op_lincomb(be, 2, coeffs, xs, out);
}

int sd_scheduler_step(sd_scheduler *s, sd_backend *be, int i, const sd_tensor *model_out,
                      sd_tensor *latents, sd_noise_fill_fn noise_fill, void *noise_ctx) {
  const char *name = sd_scheduler_kind_name(s->kind);
  if (i != s->next_step)
    return SD_ERROR("%s: step %d called when step %d is next (steps run once, in order)", name, i,
                    s->next_step);
  if (i >= s->count)
    return SD_ERROR("%s: step %d of %d", name, i, s->count);
  if (!sd_tensor_same_shape(model_out, latents)) {
    char a[64], b[64];
    return SD_ERROR("%s: model output %s and latents %s differ in shape", name,
                    sd_tensor_shape_str(model_out, a, sizeof a),
                    sd_tensor_shape_str(latents, b, sizeof b));
  }
  if (s->step(s, be, i, model_out, latents, noise_fill, noise_ctx) < 0)
    return sd_error_context("%s step %d of %d", name, i, s->count);
  s->next_step++;
  return 0;
}

int sd_sched_history(sd_scheduler *s, sd_backend *be, const sd_tensor *like, int slot,
                     sd_tensor **out) {
  sd_tensor *t = &s->history[slot];
  if (t->data) {
    if (be != s->history_be || !sd_tensor_same_shape(t, like)) {
      char a[64], b[64];
      return SD_ERROR("latents changed from %s to %s (or backend) between steps",
                      sd_tensor_shape_str(t, a, sizeof a), sd_tensor_shape_str(like, b, sizeof b));
    }
    *out = t;
    return 0;
  }
  if (s->history_be && s->history_be != be)
    return SD_ERROR("scheduler history lives on another backend");
  *t = sd_tensor_make(like->dtype, like->ndim, like->shape);
  if (sd_tensor_alloc_persistent(be, t) < 0) {
    t->data = NULL;
    return sd_error_context("scheduler history tensor");
  }
  s->history_be = be;
  *out = t;
  return 0;
}

int sd_sched_scratch(sd_backend *be, const sd_tensor *like, sd_tensor *out) {
  *out = sd_tensor_make(like->dtype, like->ndim, like->shape);
  return sd_tensor_alloc(be, out);
}

int sd_sched_axpby(sd_backend *be, float a, const sd_tensor *x, float b, const sd_tensor *y,
                   sd_tensor *out) {
  const float coeffs[2] = {a, b};
  const sd_tensor *xs[2] = {x, y};
  return sd_op_lincomb(be, 2, coeffs, xs, out);
}

int sd_sched_sigma_pred_original(const sd_scheduler *s, sd_backend *be, float sigma_input,
                                 const sd_tensor *sample, const sd_tensor *model_out,
                                 sd_tensor *out) {
  switch (s->cfg.prediction_type) {
  case SD_PREDICT_EPSILON: /* sample - sigma * model_output */
    return sd_sched_axpby(be, 1.0f, sample, -sigma_input, model_out, out);
  case SD_PREDICT_V: { /* model_output * (-sigma / (sigma^2 + 1) ** 0.5) + sample / (sigma^2 + 1) */
    float s2p1 = sigma_input * sigma_input + 1.0f;
    float c_model = -sigma_input / sqrtf(s2p1);
    return sd_sched_axpby(be, c_model, model_out, (float)(1.0 / (double)s2p1), sample, out);
  }
  case SD_PREDICT_SAMPLE:
    return sd_op_copy(be, model_out, out);
  }
  return SD_ERROR("unknown prediction_type %d", (int)s->cfg.prediction_type);
}

int sd_sched_sigma_derivative(sd_backend *be, float sigma, const sd_tensor *sample,
                              const sd_tensor *pred_original, sd_tensor *out) {
  SD_TRY(sd_sched_axpby(be, 1.0f, sample, -1.0f, pred_original, out));
  return sd_op_scale(be, out, (float)(1.0 / (double)sigma), out);
}
