/* The schedulers against diffusers: every case of tests/fixtures/schedulers/cases.json (made by
 * tests/reference/make_scheduler_fixtures.py) runs the pipeline loop with the same fake model on
 * the CPU backend and compares the call count, timesteps, sigmas, init_noise_sigma and the
 * latents after every step; alphas_cumprod of each beta schedule must match bit for bit (white
 * box, through sched_internal.h). Also: names, from_config class mapping, Karras support and
 * argument errors. */
#include "test_util.h"

#include "kernels/error.h"
#include "kernels/ops.h"
#include "rng/rng.h"
#include "sched/sched_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Latents after each step: |got - want| <= ATOL + RTOL |want| + STOL scale, where scale is the
 * largest |latent| of this step and the one before. A step combines terms of that size that
 * cancel (e.g. sample + derivative * dt at sigma 14.6 leaving values near 0.3), so an ulp of
 * difference in a term (our reciprocal multiply for diffusers' division) shows at that size;
 * STOL is about 8 float32 ulps of it. */
#define LATENT_ATOL 2e-6
#define LATENT_RTOL 1e-5
#define LATENT_STOL 1e-6
/* Fractional (Karras / linspace) timesteps; integer ones must match exactly. */
#define TIMESTEP_ATOL 1e-4
#define SIGMA_RTOL    1e-6

/* base64 of little-endian float32 -> n floats; returns the count decoded. */
static size_t decode_f32(const char *text, float *out, size_t capacity) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  unsigned char *bytes = (unsigned char *)out;
  size_t nbytes = 0, max_bytes = capacity * sizeof(float);
  uint32_t acc = 0;
  int bits = 0;
  for (const char *c = text; *c && *c != '='; c++) {
    const char *pos = strchr(alphabet, *c);
    if (!pos)
      return 0;
    acc = (acc << 6) | (uint32_t)(pos - alphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (nbytes >= max_bytes)
        return 0;
      bytes[nbytes++] = (unsigned char)(acc >> bits);
    }
  }
  return nbytes / sizeof(float);
}

static int parse_enum(const char *value, const char *const *names, int count) {
  for (int i = 0; i < count; i++)
    if (strcmp(value, names[i]) == 0)
      return i;
  return -1;
}

/* A model's config.json fields -> sd_scheduler_config with fields_set, as the loader does. */
static int config_from_json(const cJSON *json, sd_scheduler_config *cfg) {
  static const char *const schedules[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
  static const char *const predictions[] = {"epsilon", "v_prediction", "sample"};
  static const char *const spacings[] = {"leading", "linspace", "trailing"};
  sd_scheduler_config_defaults(cfg);
  const cJSON *item;
  cJSON_ArrayForEach(item, json) {
    const char *key = item->string;
    if (strcmp(key, "_class_name") == 0) {
      snprintf(cfg->class_name, sizeof cfg->class_name, "%s", item->valuestring);
    } else if (strcmp(key, "num_train_timesteps") == 0) {
      cfg->num_train_timesteps = item->valueint;
      cfg->fields_set |= SD_SCHED_FIELD_NUM_TRAIN_TIMESTEPS;
    } else if (strcmp(key, "beta_start") == 0) {
      cfg->beta_start = (float)item->valuedouble;
      cfg->fields_set |= SD_SCHED_FIELD_BETA_START;
    } else if (strcmp(key, "beta_end") == 0) {
      cfg->beta_end = (float)item->valuedouble;
      cfg->fields_set |= SD_SCHED_FIELD_BETA_END;
    } else if (strcmp(key, "beta_schedule") == 0) {
      int v = parse_enum(item->valuestring, schedules, 3);
      if (v < 0)
        return -1;
      cfg->beta_schedule = (sd_beta_schedule)v;
      cfg->fields_set |= SD_SCHED_FIELD_BETA_SCHEDULE;
    } else if (strcmp(key, "prediction_type") == 0) {
      int v = parse_enum(item->valuestring, predictions, 3);
      if (v < 0)
        return -1;
      cfg->prediction_type = (sd_prediction_type)v;
      cfg->fields_set |= SD_SCHED_FIELD_PREDICTION_TYPE;
    } else if (strcmp(key, "timestep_spacing") == 0) {
      int v = parse_enum(item->valuestring, spacings, 3);
      if (v < 0)
        return -1;
      cfg->timestep_spacing = (sd_timestep_spacing)v;
      cfg->fields_set |= SD_SCHED_FIELD_TIMESTEP_SPACING;
    } else if (strcmp(key, "steps_offset") == 0) {
      cfg->steps_offset = item->valueint;
      cfg->fields_set |= SD_SCHED_FIELD_STEPS_OFFSET;
    } else if (strcmp(key, "set_alpha_to_one") == 0) {
      cfg->set_alpha_to_one = cJSON_IsTrue(item);
      cfg->fields_set |= SD_SCHED_FIELD_SET_ALPHA_TO_ONE;
    } else if (strcmp(key, "clip_sample") == 0) {
      cfg->clip_sample = cJSON_IsTrue(item);
      cfg->fields_set |= SD_SCHED_FIELD_CLIP_SAMPLE;
    } else if (strcmp(key, "clip_sample_range") == 0) {
      cfg->clip_sample_range = (float)item->valuedouble;
      cfg->fields_set |= SD_SCHED_FIELD_CLIP_SAMPLE_RANGE;
    } else if (strcmp(key, "skip_prk_steps") == 0) {
      cfg->skip_prk_steps = cJSON_IsTrue(item);
      cfg->fields_set |= SD_SCHED_FIELD_SKIP_PRK_STEPS;
    } else if (strcmp(key, "use_karras_sigmas") == 0) {
      cfg->use_karras_sigmas = cJSON_IsTrue(item);
      cfg->fields_set |= SD_SCHED_FIELD_USE_KARRAS_SIGMAS;
    }
  }
  return 0;
}

/* euler_a's noise: the cpu generator seeded 1, one randn of the latent's size per step. */
typedef struct noise_source {
  sd_rng rng;
  float *host;
} noise_source;

static int fill_noise(void *ctx, sd_backend *be, sd_tensor *noise) {
  noise_source *src = ctx;
  size_t n = (size_t)sd_tensor_numel(noise);
  SD_TRY(sd_rng_randn(&src->rng, src->host, n));
  return sd_tensor_upload_f32(be, noise, src->host);
}

typedef struct case_result {
  double max_abs, max_rel;
  double prev_scale; /* largest |latent| before this step */
  int bad_step;      /* first step out of tolerance, -1 if none */
  size_t bad_idx;    /* its worst element */
  float bad_got, bad_want;
} case_result;

static void compare_step(case_result *r, int step, const float *got, const float *want, size_t n) {
  double step_scale = 0.0, step_err = 0.0;
  for (size_t k = 0; k < n; k++) {
    step_scale = fmax(step_scale, fabs((double)want[k]));
    step_err = fmax(step_err, fabs((double)got[k] - (double)want[k]));
  }
  double scale = fmax(step_scale, r->prev_scale);
  r->prev_scale = step_scale;
  if (getenv("SD_TEST_VERBOSE"))
    fprintf(stderr, "     step %2d: max abs err %.3g, scale %.3g\n", step, step_err, scale);
  for (size_t k = 0; k < n; k++) {
    double diff = fabs((double)got[k] - (double)want[k]);
    double rel = diff / fmax(fabs((double)want[k]), 1e-30);
    if (!isfinite(got[k]))
      diff = rel = INFINITY;
    if (diff > r->max_abs)
      r->max_abs = diff;
    if (rel > r->max_rel && fabs((double)want[k]) > 1e-3)
      r->max_rel = rel;
    double allowed = LATENT_ATOL + LATENT_RTOL * fabs((double)want[k]) + LATENT_STOL * scale;
    if (!(diff <= allowed) && r->bad_step < 0) {
      r->bad_step = step;
      r->bad_idx = k;
      r->bad_got = got[k];
      r->bad_want = want[k];
    }
  }
}

/* One fixture case: the same loop as the fixture script, on the CPU backend. */
static void run_case(sd_backend *be, const cJSON *c, const float *noise, const float *pattern,
                     size_t numel, const int64_t *shape, double *worst_abs, double *worst_rel) {
  const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
  const char *kind_name = cJSON_GetObjectItem(c, "kind")->valuestring;
  bool karras = cJSON_IsTrue(cJSON_GetObjectItem(c, "karras"));
  int steps = cJSON_GetObjectItem(c, "steps")->valueint;
  const cJSON *want_ts = cJSON_GetObjectItem(c, "timesteps");
  const cJSON *want_latents = cJSON_GetObjectItem(c, "latents");
  double want_sigma = cJSON_GetObjectItem(c, "init_noise_sigma")->valuedouble;

  sd_scheduler_config cfg;
  sd_scheduler_kind kind;
  sd_scheduler *s = NULL;
  bool made = config_from_json(cJSON_GetObjectItem(c, "config"), &cfg) == 0 &&
              sd_scheduler_kind_parse(kind_name, &kind) == 0 &&
              sd_scheduler_create(kind, &cfg, karras, steps, &s) == 0;
  CHECK(made, "%s: create: %s", name, sd_error_message());
  if (!made)
    return;

  int count = sd_scheduler_count(s);
  CHECK(count == cJSON_GetArraySize(want_ts), "%s: %d model calls, diffusers %d", name, count,
        cJSON_GetArraySize(want_ts));
  if (count != cJSON_GetArraySize(want_ts)) {
    sd_scheduler_free(s);
    return;
  }
  for (int i = 0; i < count; i++) {
    double want = cJSON_GetArrayItem(want_ts, i)->valuedouble;
    double got = sd_scheduler_timestep(s, i);
    bool integral = want == floor(want);
    CHECK(integral ? got == want : fabs(got - want) <= TIMESTEP_ATOL,
          "%s: timestep %d is %.9g, diffusers %.9g", name, i, got, want);
  }
  const cJSON *want_sigmas = cJSON_GetObjectItem(c, "sigmas");
  if (cJSON_IsArray(want_sigmas)) {
    int n = cJSON_GetArraySize(want_sigmas);
    CHECK(s->sigmas && n == count + 1, "%s: %d sigmas, diffusers %d", name, count + 1, n);
    for (int i = 0; s->sigmas && i < n && i <= count; i++) {
      double want = cJSON_GetArrayItem(want_sigmas, i)->valuedouble;
      CHECK(fabs(s->sigmas[i] - want) <= SIGMA_RTOL * want, "%s: sigma %d is %.9g, diffusers %.9g",
            name, i, (double)s->sigmas[i], want);
    }
  }
  float init_sigma = sd_scheduler_init_noise_sigma(s);
  CHECK(fabs(init_sigma - want_sigma) <= SIGMA_RTOL * want_sigma,
        "%s: init_noise_sigma %.9g, diffusers %.9g", name, (double)init_sigma, want_sigma);

  sd_tensor latents = sd_tensor_make(SD_DTYPE_F32, 4, shape);
  sd_tensor x = latents, model_out = latents, pat = latents;
  float *got = malloc(numel * sizeof *got), *want = malloc(numel * sizeof *want);
  noise_source src = {.host = malloc(numel * sizeof(float))};
  sd_rng_init(&src.rng, SD_RNG_CPU, 1);
  int ok =
      sd_tensor_alloc_persistent(be, &latents) == 0 && sd_tensor_alloc_persistent(be, &x) == 0 &&
      sd_tensor_alloc_persistent(be, &model_out) == 0 &&
      sd_tensor_alloc_persistent(be, &pat) == 0 && sd_tensor_upload_f32(be, &pat, pattern) == 0 &&
      sd_tensor_upload_f32(be, &latents, noise) == 0 &&
      sd_op_scale(be, &latents, init_sigma, &latents) == 0;
  CHECK(ok, "%s: setup: %s", name, sd_error_message());

  case_result r = {.bad_step = -1};
  for (size_t k = 0; k < numel; k++)
    r.prev_scale = fmax(r.prev_scale, fabs((double)noise[k] * init_sigma));
  for (int i = 0; ok && i < count; i++) {
    double t = sd_scheduler_timestep(s, i);
    const float coeffs[2] = {(float)(0.9 - 0.2 * cos(t / 300.0)), (float)(0.1 * sin(t / 150.0))};
    const sd_tensor *xs[2] = {&x, &pat};
    ok = sd_scheduler_scale_model_input(s, be, i, &latents, &x) == 0 &&
         sd_op_lincomb(be, 2, coeffs, xs, &model_out) == 0 &&
         sd_scheduler_step(s, be, i, &model_out, &latents, fill_noise, &src) == 0 &&
         sd_tensor_download_f32(be, &latents, got) == 0;
    CHECK(ok, "%s: step %d: %s", name, i, sd_error_message());
    const cJSON *step_latents = cJSON_GetArrayItem(want_latents, i);
    bool have = step_latents && decode_f32(step_latents->valuestring, want, numel) == numel;
    CHECK(have, "%s: fixture latents of step %d", name, i);
    if (ok && have)
      compare_step(&r, i, got, want, numel);
  }
  CHECK(r.bad_step < 0,
        "%s: step %d element %zu is %.9g, diffusers %.9g (atol %g, rtol %g, stol %g; max abs "
        "err %.3g)",
        name, r.bad_step, r.bad_idx, (double)r.bad_got, (double)r.bad_want, LATENT_ATOL,
        LATENT_RTOL, LATENT_STOL, r.max_abs);
  if (r.bad_step < 0)
    fprintf(stderr, "ok   %-30s %2d calls, max abs err %.2e, max rel err %.2e\n", name, count,
            r.max_abs, r.max_rel);
  *worst_abs = fmax(*worst_abs, r.max_abs);
  *worst_rel = fmax(*worst_rel, r.max_rel);

  sd_tensor_free(be, &latents);
  sd_tensor_free(be, &x);
  sd_tensor_free(be, &model_out);
  sd_tensor_free(be, &pat);
  free(got);
  free(want);
  free(src.host);
  sd_scheduler_free(s);
}

/* betas -> alphas -> cumprod exactly as torch on the CPU (float32 linspace with FMA, cumprod
 * accumulated in double). */
static void test_alphas_cumprod(const cJSON *root) {
  static const char *const schedules[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
  const cJSON *c;
  cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "alphas_cumprod")) {
    sd_scheduler_config cfg;
    sd_scheduler_config_defaults(&cfg);
    const char *schedule = cJSON_GetObjectItem(c, "beta_schedule")->valuestring;
    cfg.beta_schedule = (sd_beta_schedule)parse_enum(schedule, schedules, 3);
    cfg.beta_start = (float)cJSON_GetObjectItem(c, "beta_start")->valuedouble;
    cfg.beta_end = (float)cJSON_GetObjectItem(c, "beta_end")->valuedouble;
    float got[1000], want[1000];
    CHECK(decode_f32(cJSON_GetObjectItem(c, "alphas_cumprod")->valuestring, want, 1000) == 1000,
          "fixture alphas_cumprod");
    CHECK(sd_sched_alphas_cumprod(&cfg, got) == 0, "alphas_cumprod: %s", sd_error_message());
    char what[96];
    snprintf(what, sizeof what, "alphas_cumprod %s %g..%g (bit for bit)", schedule,
             (double)cfg.beta_start, (double)cfg.beta_end);
    sd_test_compare_f32(what, got, want, 1000, 0.0f, 0.0f);
  }
}

static void test_fixture_cases(sd_backend *be) {
  const char *path = SD_TEST_FIXTURES "/schedulers/cases.json";
  char *text = sd_test_read_file(path, NULL);
  cJSON *root = text ? cJSON_Parse(text) : NULL;
  CHECK(root != NULL, "read %s", path);
  if (!root) {
    free(text);
    return;
  }
  int64_t shape[4];
  size_t numel = 1;
  for (int d = 0; d < 4; d++) {
    shape[d] = (int64_t)cJSON_GetArrayItem(cJSON_GetObjectItem(root, "shape"), d)->valuedouble;
    numel *= (size_t)shape[d];
  }
  test_alphas_cumprod(root);
  float *noise = malloc(numel * sizeof *noise), *pattern = malloc(numel * sizeof *pattern);
  CHECK(decode_f32(cJSON_GetObjectItem(root, "noise")->valuestring, noise, numel) == numel,
        "fixture noise");
  for (size_t k = 0; k < numel; k++)
    pattern[k] = (float)sin(0.37 * (double)k + 0.1);
  double worst_abs = 0.0, worst_rel = 0.0;
  const cJSON *c;
  int cases = 0;
  cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
    run_case(be, c, noise, pattern, numel, shape, &worst_abs, &worst_rel);
    cases++;
  }
  fprintf(stderr, "%d cases: worst max abs err %.2e, worst max rel err %.2e\n", cases, worst_abs,
          worst_rel);
  free(noise);
  free(pattern);
  cJSON_Delete(root);
  free(text);
}

static void test_names(void) {
  static const char *const names[] = {"ddim",    "pndm", "lms",     "euler",
                                      "euler_a", "heun", "dpmpp_2m"};
  static const char *const classes[] = {"DDIMScheduler",
                                        "PNDMScheduler",
                                        "LMSDiscreteScheduler",
                                        "EulerDiscreteScheduler",
                                        "EulerAncestralDiscreteScheduler",
                                        "HeunDiscreteScheduler",
                                        "DPMSolverMultistepScheduler"};
  static const bool karras[] = {false, false, true, true, false, true, true};
  for (int i = 0; i < 7; i++) {
    sd_scheduler_kind kind;
    CHECK(sd_scheduler_kind_parse(names[i], &kind) == 0 &&
              strcmp(sd_scheduler_kind_name(kind), names[i]) == 0,
          "name %s round trip", names[i]);
    sd_scheduler_config cfg;
    sd_scheduler_config_defaults(&cfg);
    snprintf(cfg.class_name, sizeof cfg.class_name, "%s", classes[i]);
    sd_scheduler_kind from_cfg;
    CHECK(sd_scheduler_kind_from_config(&cfg, &from_cfg) == 0 && from_cfg == kind, "%s -> %s",
          classes[i], names[i]);
    CHECK(sd_scheduler_supports_karras(kind) == karras[i], "%s karras support", names[i]);
  }
  sd_scheduler_kind kind;
  CHECK(sd_scheduler_kind_parse("ddpm", &kind) < 0 && strstr(sd_error_message(), "dpmpp_2m"),
        "unknown name lists the names: %s", sd_error_message());
  sd_scheduler_config cfg;
  sd_scheduler_config_defaults(&cfg);
  CHECK(cfg.fields_set == 0 && cfg.num_train_timesteps == 1000 &&
            cfg.timestep_spacing == SD_SPACING_LEADING,
        "config defaults");
  snprintf(cfg.class_name, sizeof cfg.class_name, "UniPCMultistepScheduler");
  CHECK(sd_scheduler_kind_from_config(&cfg, &kind) < 0 &&
            strstr(sd_error_message(), "UniPCMultistepScheduler"),
        "unsupported class: %s", sd_error_message());
}

static void test_errors(sd_backend *be) {
  sd_scheduler_config cfg;
  sd_scheduler_config_defaults(&cfg);
  sd_scheduler *s = NULL;
  CHECK(sd_scheduler_create(SD_SCHED_DDIM, &cfg, true, 10, &s) < 0 && !s &&
            strstr(sd_error_message(), "Karras"),
        "karras refused for ddim: %s", sd_error_message());
  CHECK(sd_scheduler_create(SD_SCHED_EULER_A, &cfg, true, 10, &s) < 0,
        "karras refused for euler_a");
  CHECK(sd_scheduler_create(SD_SCHED_EULER, &cfg, false, 0, &s) < 0, "0 steps refused");
  CHECK(sd_scheduler_create(SD_SCHED_PNDM, &cfg, false, 3, &s) < 0 &&
            strstr(sd_error_message(), "skip_prk_steps"),
        "pndm PRK with 3 steps refused: %s", sd_error_message());
  cfg.prediction_type = SD_PREDICT_SAMPLE;
  cfg.fields_set |= SD_SCHED_FIELD_PREDICTION_TYPE;
  CHECK(sd_scheduler_create(SD_SCHED_PNDM, &cfg, false, 10, &s) < 0,
        "pndm refuses prediction_type sample");
  sd_scheduler_config_defaults(&cfg);
  cfg.steps_offset = 1;
  cfg.fields_set |= SD_SCHED_FIELD_STEPS_OFFSET;
  CHECK(sd_scheduler_create(SD_SCHED_DDIM, &cfg, false, 1000, &s) < 0,
        "leading timestep 1000 refused");

  /* Steps run once and in order; euler_a needs its noise source. */
  sd_scheduler_config_defaults(&cfg);
  CHECK(sd_scheduler_create(SD_SCHED_EULER_A, &cfg, false, 4, &s) == 0, "create euler_a");
  sd_tensor a = sd_tensor_4d(SD_DTYPE_F32, 1, 4, 2, 2), b = a;
  float zeros[16] = {0};
  CHECK(sd_tensor_alloc_persistent(be, &a) == 0 && sd_tensor_alloc_persistent(be, &b) == 0 &&
            sd_tensor_upload_f32(be, &a, zeros) == 0 && sd_tensor_upload_f32(be, &b, zeros) == 0,
        "tensors");
  CHECK(sd_scheduler_step(s, be, 1, &b, &a, NULL, NULL) < 0, "step 1 before step 0 refused");
  CHECK(sd_scheduler_step(s, be, 0, &b, &a, NULL, NULL) < 0 && strstr(sd_error_message(), "noise"),
        "euler_a without noise refused: %s", sd_error_message());
  sd_scheduler_free(s);
  sd_tensor_free(be, &a);
  sd_tensor_free(be, &b);
}

int main(void) {
  sd_backend *be = sd_backend_cpu_create(1);
  CHECK(be != NULL, "cpu backend: %s", sd_error_message());
  if (!be)
    return sd_test_finish();
  test_names();
  test_errors(be);
  test_fixture_cases(be);
  sd_backend_destroy(be);
  return sd_test_finish();
}
