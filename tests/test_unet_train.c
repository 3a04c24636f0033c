/* The UNet's optimizer step (worker/train/unet_trainer.h) against torch: three steps of
 * diffusers' DreamBooth loop (tests/fixtures/unet-train-*.safetensors, made by
 * tests/reference/make_unet_train_fixtures.py) on the tiny SD1 (epsilon) and SD2 (v-prediction)
 * UNets, with clipping (max_norm 1) and a cosine schedule with one warmup step: each step's loss,
 * gradient norm and learning rate against torch's float32 run, then every parameter after the last
 * step against torch's float64 run, within 1e-5 of the tensor's largest value, or twice the worst
 * distance of torch's own float32 run where that is more (max |got - want| / max |want|; a sampled
 * tensor over its stored rows),
 * and for the sampled ones the change from the start (max, L2 and two +-1 projections over the
 * whole tensor) within 1e-3 of its size. Parameters whose gradients are zero in exact arithmetic
 * are left out (below). */
#include "grad_fixture.h"
#include "test_util.h"

#include "error.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/unet.h"
#include "train/unet_trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STEPS      3
#define PARAM_TOL  1e-5
#define CHANGE_TOL 1e-3
#define LOSS_TOL   1e-5
#define NORM_TOL   1e-4

/* +-1 for flat index i, as sign_of in make_unet_grad_fixtures.py (splitmix64's finalizer). */
static double sign_of(uint64_t i, uint64_t seed) {
  uint64_t z = ((i + 1) * 0x9E3779B97F4A7C15ull) ^ seed;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (z >> 63) ? -1.0 : 1.0;
}

static const sd_st_tensor *find(const sd_safetensors *f, const char *fmt, const char *name) {
  char key[512];
  snprintf(key, sizeof key, fmt, name);
  return sd_safetensors_find(f, key);
}

typedef struct report {
  double worst_param, worst_change, worst_torch_gap;
  char worst_param_name[256], worst_change_name[256];
  int checked, sampled;
} report;

/* How far torch's own float32 run ended from the float64 reference for a parameter. */
static double torch_float32_gap(const sd_safetensors *f, const char *name) {
  const sd_st_tensor *gap = find(f, "gap32.%s", name);
  return gap && gap->dtype == SD_DTYPE_F32 ? ((const float *)gap->data)[0] : 0.0;
}

/* A parameter after training (got (n), its rows of cols values) against the fixture. */
static void check_param(const sd_safetensors *f, const char *name, const float *got,
                        const float *start, int64_t n, double tol, report *r) {
  const sd_st_tensor *want = find(f, "param.%s", name);
  if (!CHECK(want && want->dtype == SD_DTYPE_F32, "no fixture parameter %s", name))
    return;
  const sd_st_tensor *rows = find(f, "rows.%s", name);
  const float *w = want->data;
  int64_t stored = (int64_t)(want->bytes / sizeof(float));
  int64_t cols = rows ? stored / rows->shape[0] : n;
  double scale = 0, diff = 0;
  for (int64_t k = 0; k < stored; k++) {
    int64_t at = rows ? (int64_t)((const int32_t *)rows->data)[k / cols] * cols + k % cols : k;
    scale = fmax(scale, fabs((double)w[k]));
    double d = fabs((double)got[at] - (double)w[k]);
    diff = isnan(d) ? INFINITY : fmax(diff, d);
  }
  double err = diff / fmax(scale, 1e-6);
  /* torch's own float32 run ended this far from the float64 reference */
  double torch_gap = torch_float32_gap(f, name);
  r->checked++;
  if (err > r->worst_param) {
    r->worst_param = err;
    snprintf(r->worst_param_name, sizeof r->worst_param_name, "%s", name);
  }
  CHECK(err <= tol,
        "%s: max |got - exact| / max |exact| = %.3g (tolerance %g; torch float32's own %.3g)", name,
        err, tol, torch_gap);
  if (!rows)
    return;
  /* the whole tensor's change from the start, as four figures */
  r->sampled++;
  const sd_st_tensor *stats = find(f, "stats.%s", name);
  if (!CHECK(stats && stats->shape[0] == 4, "no stats for %s", name))
    return;
  double m = 0, l2 = 0, p1 = 0, p2 = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)got[i] - (double)start[i];
    m = fmax(m, fabs(d));
    l2 += d * d;
    p1 += sign_of((uint64_t)i, 1) * d;
    p2 += sign_of((uint64_t)i, 2) * d;
  }
  const float *s = stats->data;
  double mine[4] = {m, sqrt(l2), p1, p2};
  double size = fmax(s[1], 1e-12), worst = 0;
  for (int k = 0; k < 4; k++)
    worst = fmax(worst, fabs(mine[k] - s[k]) / size);
  if (worst > r->worst_change) {
    r->worst_change = worst;
    snprintf(r->worst_change_name, sizeof r->worst_change_name, "%s", name);
  }
  CHECK(worst <= CHANGE_TOL, "%s: the change's figures differ by %.3g of its L2 norm", name, worst);
}

/* The model renders with the trained weights (its convolutions' prepared copies follow the
 * updates): its forward equals, bit for bit, that of a second model made from copies of them. */
static void check_renders_trained(const char *family, sd_backend *be, const sd_model_files *files,
                                  const sd_weights *weights, sd_unet *unet,
                                  const sd_safetensors *f) {
  sd_weights *copy = NULL;
  sd_unet *fresh = NULL;
  int ok = sd_weights_upload(be, files->unet_tensors, "unet", &copy) == 0;
  for (size_t i = 0; ok && i < sd_weights_count(weights); i++) {
    const sd_tensor *w = sd_weights_at(weights, i);
    float *host = malloc((size_t)sd_tensor_numel(w) * sizeof *host);
    ok = host && sd_tensor_download_f32(be, w, host) == 0 &&
         sd_tensor_upload_f32(be, (sd_tensor *)sd_weights_at(copy, i), host) == 0;
    free(host);
  }
  ok = ok && sd_unet_create(be, &files->unet, copy, &fresh) == 0;
  int same = ok ? sd_train_same_forward(be, f, unet, fresh) : -1;
  if (CHECK(same >= 0, "%s: forwards after training: %s", family, sd_error_message()))
    CHECK(same == 1, "%s: the trained model's forward equals a model made from its weights",
          family);
  sd_unet_free(fresh);
  sd_weights_free(copy);
}

static void test_family(const char *family) {
  char folder[512], path[512];
  snprintf(folder, sizeof folder, "%s/tiny-%s", SD_TEST_FIXTURES, family);
  snprintf(path, sizeof path, "%s/unet-train-%s.safetensors", SD_TEST_FIXTURES, family);
  sd_backend *be = sd_backend_cpu_create(0);
  sd_model_files *files = NULL;
  sd_safetensors *f = NULL;
  sd_weights *weights = NULL;
  sd_unet *unet = NULL;
  sd_unet_trainer *trainer = NULL;
  float **start = NULL, *got = NULL;
  double *grad_max = NULL, grad_scale = 0; /* each parameter's and the largest |gradient| */
  size_t n_params = 0;
  int ok = be && sd_model_files_open(folder, NULL, NULL, &files) == 0 &&
           sd_safetensors_open(path, &f) == 0 &&
           sd_weights_upload(be, files->unet_tensors, "unet", &weights) == 0 &&
           sd_unet_create(be, &files->unet, weights, &unet) == 0;
  sd_unet_train_config cfg = sd_unet_train_config_init();
  cfg.learning_rate = 1e-3;
  cfg.schedule = SD_LR_COSINE;
  cfg.warmup_steps = 1;
  cfg.total_steps = STEPS;
  cfg.max_grad_norm = 1.0;
  ok = ok && sd_unet_trainer_create(be, unet, weights, &files->scheduler, &cfg, NULL, NULL,
                                    &trainer) == 0;
  CHECK(ok, "%s: setup: %s", family, sd_error_message());
  if (!ok)
    goto out;
  sd_grads *grads = sd_unet_trainer_grads(trainer);
  n_params = sd_grads_count(grads);
  CHECK(n_params == 494, "%s: %zu trained parameters", family, n_params);
  start = calloc(n_params, sizeof *start);
  grad_max = calloc(n_params, sizeof *grad_max);
  for (size_t i = 0; start && i < n_params; i++) {
    const sd_tensor *w = sd_grads_weight_at(grads, i);
    start[i] = malloc((size_t)sd_tensor_numel(w) * sizeof(float));
    if (start[i])
      sd_tensor_download_f32(be, w, start[i]);
  }

  for (int s = 0; s < STEPS; s++) {
    sd_train_batch batch;
    sd_unet_step_report rep;
    int rc = sd_train_batch_load(be, f, s, &batch);
    rc = rc ? rc
            : sd_unet_trainer_step(trainer, &batch.latents, &batch.noise, batch.timesteps,
                                   &batch.context, &rep);
    for (size_t i = 0; rc == 0 && grad_max && i < n_params; i++) {
      sd_tensor *g = sd_grads_at(grads, i);
      int64_t n = sd_tensor_numel(g);
      float *host = sd_grad_download(be, g);
      for (int64_t k = 0; host && k < n; k++) {
        grad_max[i] = fmax(grad_max[i], fabs((double)host[k]));
        grad_scale = fmax(grad_scale, fabs((double)host[k]));
      }
      free(host);
    }
    sd_train_batch_free(be, &batch);
    if (!CHECK(rc == 0, "%s: step %d: %s", family, s, sd_error_message()))
      goto out;
    sd_train_check_step(family, f, s, rep.loss, rep.grad_norm, rep.learning_rate, LOSS_TOL,
                        NORM_TOL);
  }
  CHECK(sd_unet_trainer_steps(trainer) == STEPS, "%s: %lld steps counted", family,
        (long long)sd_unet_trainer_steps(trainer));

  /* A gradient that is zero in exact arithmetic (a per-channel constant before a GroupNorm of one
   * channel per group, see make_unet_grad_fixtures.py) is rounding noise in torch and here alike,
   * and AdamW divides it by its own root mean square: each side's update is lr x (the sign of its
   * own noise), so those parameters are not compared; the others are. */
  /* The tolerance: 1e-5, or twice the worst distance of torch's own float32 run from the float64
   * one over the compared parameters where that is more (float32 arithmetic in another order
   * cannot be held closer than torch holds itself) */
  report r = {0};
  for (size_t i = 0; i < n_params; i++)
    if (!grad_max || grad_max[i] > 1e-6 * grad_scale)
      r.worst_torch_gap = fmax(r.worst_torch_gap, torch_float32_gap(f, sd_grads_name_at(grads, i)));
  double tol = fmax(PARAM_TOL, 2 * r.worst_torch_gap);
  int zeros = 0;
  for (size_t i = 0; i < n_params; i++) {
    if (grad_max && grad_max[i] <= 1e-6 * grad_scale) {
      zeros++;
      continue;
    }
    const sd_tensor *w = sd_grads_weight_at(grads, i);
    int64_t n = sd_tensor_numel(w);
    got = malloc((size_t)n * sizeof *got);
    if (got && start && start[i] && sd_tensor_download_f32(be, w, got) == 0)
      check_param(f, sd_grads_name_at(grads, i), got, start[i], n, tol, &r);
    free(got);
    got = NULL;
  }
  printf("%s: %d parameters after %d steps vs torch float64, worst %.3g (%s; tolerance %.3g, "
         "torch float32's own worst %.3g); %d sampled, their change's worst %.3g (%s); %d not "
         "compared (gradients "
         "zero in exact arithmetic)\n",
         family, r.checked, STEPS, r.worst_param, r.worst_param_name, tol, r.worst_torch_gap,
         r.sampled, r.worst_change, r.worst_change_name, zeros);
  CHECK(zeros <= 19 && r.checked + zeros == (int)n_params,
        "%s: %d gradients zero in exact arithmetic (19 expected at most, as in "
        "test_unet_backward)",
        family, zeros);

  check_renders_trained(family, be, files, weights, unet, f);
out:
  for (size_t i = 0; start && i < n_params; i++)
    free(start[i]);
  free(start);
  free(grad_max);
  sd_unet_trainer_free(trainer);
  sd_unet_free(unet);
  sd_weights_free(weights);
  sd_safetensors_close(f);
  sd_model_files_close(files);
  sd_backend_destroy(be);
}

int main(void) {
  test_family("sd1");
  test_family("sd2");
  return sd_test_finish();
}
