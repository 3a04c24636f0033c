/* Scheduler configs: the common defaults a loader starts from, and diffusers' from_config
 * semantics when a scheduler class is built from a model's config: a field the config stated
 * keeps its value, any other field takes the new class's own __init__ default (e.g. DDIM's
 * clip_sample=True, Heun's beta range 0.00085..0.012, leading spacing for DDIM/PNDM but
 * linspace for the sigma schedulers). */
#include "sched_internal.h"

#include <string.h>

void sd_scheduler_config_defaults(sd_scheduler_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->fields_set = 0;
  cfg->num_train_timesteps = 1000;
  cfg->beta_start = 0.0001f;
  cfg->beta_end = 0.02f;
  cfg->beta_schedule = SD_BETA_LINEAR;
  cfg->prediction_type = SD_PREDICT_EPSILON;
  cfg->timestep_spacing = SD_SPACING_LEADING;
  cfg->steps_offset = 0;
  cfg->set_alpha_to_one = false;
  cfg->clip_sample = false;
  cfg->clip_sample_range = 1.0f;
  cfg->skip_prk_steps = false;
  cfg->use_karras_sigmas = false;
}

/* The __init__ defaults of each diffusers class (fields a class lacks are left as they are and
 * never read by it). */
static void class_defaults(sd_scheduler_kind kind, sd_scheduler_config *cfg) {
  sd_scheduler_config_defaults(cfg);
  switch (kind) {
  case SD_SCHED_DDIM: /* DDIMScheduler */
    cfg->timestep_spacing = SD_SPACING_LEADING;
    cfg->set_alpha_to_one = true;
    cfg->clip_sample = true;
    break;
  case SD_SCHED_PNDM: /* PNDMScheduler */
    cfg->timestep_spacing = SD_SPACING_LEADING;
    cfg->set_alpha_to_one = false;
    cfg->skip_prk_steps = false;
    break;
  case SD_SCHED_LMS:      /* LMSDiscreteScheduler */
  case SD_SCHED_EULER:    /* EulerDiscreteScheduler */
  case SD_SCHED_EULER_A:  /* EulerAncestralDiscreteScheduler */
  case SD_SCHED_DPMPP_2M: /* DPMSolverMultistepScheduler */
    cfg->timestep_spacing = SD_SPACING_LINSPACE;
    break;
  case SD_SCHED_HEUN: /* HeunDiscreteScheduler */
    cfg->beta_start = 0.00085f;
    cfg->beta_end = 0.012f;
    cfg->timestep_spacing = SD_SPACING_LINSPACE;
    cfg->clip_sample = false;
    break;
  }
}

void sd_sched_resolve_config(sd_scheduler_kind kind, const sd_scheduler_config *stated,
                             sd_scheduler_config *out) {
  class_defaults(kind, out);
  unsigned set = stated->fields_set;
  out->fields_set = set;
  memcpy(out->class_name, stated->class_name, sizeof out->class_name);
  if (set & SD_SCHED_FIELD_NUM_TRAIN_TIMESTEPS)
    out->num_train_timesteps = stated->num_train_timesteps;
  if (set & SD_SCHED_FIELD_BETA_START)
    out->beta_start = stated->beta_start;
  if (set & SD_SCHED_FIELD_BETA_END)
    out->beta_end = stated->beta_end;
  if (set & SD_SCHED_FIELD_BETA_SCHEDULE)
    out->beta_schedule = stated->beta_schedule;
  if (set & SD_SCHED_FIELD_PREDICTION_TYPE)
    out->prediction_type = stated->prediction_type;
  if (set & SD_SCHED_FIELD_TIMESTEP_SPACING)
    out->timestep_spacing = stated->timestep_spacing;
  if (set & SD_SCHED_FIELD_STEPS_OFFSET)
    out->steps_offset = stated->steps_offset;
  if (set & SD_SCHED_FIELD_SET_ALPHA_TO_ONE)
    out->set_alpha_to_one = stated->set_alpha_to_one;
  if (set & SD_SCHED_FIELD_CLIP_SAMPLE)
    out->clip_sample = stated->clip_sample;
  if (set & SD_SCHED_FIELD_CLIP_SAMPLE_RANGE)
    out->clip_sample_range = stated->clip_sample_range;
  if (set & SD_SCHED_FIELD_SKIP_PRK_STEPS)
    out->skip_prk_steps = stated->skip_prk_steps;
  if (set & SD_SCHED_FIELD_USE_KARRAS_SIGMAS)
    out->use_karras_sigmas = stated->use_karras_sigmas;
}
