/* The VAE's optimizer step (worker/train/vae_trainer.h) against torch: three steps of the LDM
 * autoencoder loss without discriminator and LPIPS (tests/fixtures/vae-train-sd1.safetensors, made
 * by tests/reference/make_vae_train_fixtures.py) on the tiny SD1 VAE, batch 2 of 32 x 40 images
 * with given posterior noise, L1, MSE and saturation-weighted L1 (weight 3) reconstruction,
 * kl_weight 1e-2, clipping at 1, AdamW (0.5, 0.9, weight decay 1e-2) with a cosine schedule and
 * one warmup step: each step's loss, its two terms, gradient norm and learning rate against
 * torch's float32 run, then every parameter after the last step against torch's float64 run
 * (train_fixture.h: within 1e-5, or twice torch float32's own worst distance where that is more;
 * parameters whose gradients are 0 in exact arithmetic left out). Also: eps drawn from a generator
 * equals eps given from the same stream, and a step with neither is refused. */
#include "grad_fixture.h"
#include "test_util.h"
#include "train_fixture.h"

#include "error.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/vae.h"
#include "rng/rng.h"
#include "train/vae_trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STEPS      3
#define PARAM_TOL  1e-5
#define CHANGE_TOL 1e-3
#define LOSS_TOL   2e-6
#define NORM_TOL   1e-4

static const sd_st_tensor *find(const sd_safetensors *f, const char *c, const char *what) {
  char key[128];
  snprintf(key, sizeof key, "%s.%s", c, what);
  const sd_st_tensor *t = sd_safetensors_find(f, key);
  return t && t->dtype == SD_DTYPE_F32 ? t : NULL;
}

static int upload(sd_backend *be, const sd_st_tensor *st, sd_tensor *t) {
  *t = sd_tensor_make(be->ops->act_dtype, st->ndim, st->shape);
  SD_TRY(sd_tensor_alloc_persistent(be, t));
  return sd_tensor_upload_f32(be, t, st->data);
}

typedef struct model {
  sd_backend *be;
  sd_model_files *files;
  sd_weights *weights;
  sd_vae *vae;
  sd_vae_trainer *trainer;
} model;

static void model_close(model *m) {
  sd_vae_trainer_free(m->trainer);
  sd_vae_free(m->vae);
  sd_weights_free(m->weights);
  sd_model_files_close(m->files);
  sd_backend_destroy(m->be);
}

static sd_vae_train_config test_config(sd_vae_rec_loss rec) {
  sd_vae_train_config cfg = sd_vae_train_config_init();
  cfg.adamw.weight_decay = 1e-2;
  cfg.learning_rate = 1e-3;
  cfg.schedule = SD_LR_COSINE;
  cfg.warmup_steps = 1;
  cfg.total_steps = STEPS;
  cfg.max_grad_norm = 1.0;
  cfg.rec_loss = rec;
  cfg.kl_weight = 1e-2;
  return cfg;
}

static int model_open(model *m, const sd_vae_train_config *cfg) {
  *m = (model){.be = sd_backend_cpu_create(0)};
  if (!m->be)
    return SD_ERROR("no CPU backend");
  SD_TRY(sd_model_files_open(SD_TEST_FIXTURES "/tiny-sd1", NULL, NULL, &m->files));
  SD_TRY(sd_weights_upload(m->be, m->files->vae_tensors, "vae", &m->weights));
  SD_TRY(sd_vae_create(m->be, &m->files->vae, m->weights, &m->vae));
  return sd_vae_trainer_create(m->be, m->vae, m->weights, cfg, NULL, NULL, &m->trainer);
}

/* The worst relative error of the loss terms and of the gradient norms, over a case's steps. */
static double worst_loss, worst_norm;

static void check_figure(const char *c, int s, const char *what, double got,
                         const sd_st_tensor *want, double tol) {
  double w = ((const float *)want->data)[s];
  double err = fabs(got - w) / fmax(fabs(w), 1e-12);
  double *worst = tol == NORM_TOL ? &worst_norm : &worst_loss;
  *worst = fmax(*worst, err);
  CHECK(err <= tol, "%s step %d: %s %.8g vs torch %.8g (relative %.2g > %g)", c, s, what, got, w,
        err, tol);
}

static void test_case(const sd_safetensors *f, const char *c, sd_vae_rec_loss rec,
                      double saturation_weight) {
  sd_vae_train_config cfg = test_config(rec);
  cfg.saturation_weight = saturation_weight;
  model m;
  float **start = NULL;
  double *grad_max = NULL, grad_scale = 0;
  size_t n_params = 0;
  int ok = model_open(&m, &cfg) == 0;
  worst_loss = worst_norm = 0;
  const sd_st_tensor *want[5] = {find(f, c, "loss"), find(f, c, "rec"), find(f, c, "kl"),
                                 find(f, c, "grad_norm"), find(f, c, "lr")};
  for (int k = 0; k < 5; k++)
    ok = ok && want[k];
  CHECK(ok, "%s: setup: %s", c, sd_error_message());
  if (!ok)
    goto out;
  sd_grads *grads = sd_vae_trainer_grads(m.trainer);
  n_params = sd_grads_count(grads);
  CHECK(n_params == 180, "%s: %zu trained parameters", c, n_params);
  start = sd_train_snapshot(m.be, grads);
  grad_max = calloc(n_params, sizeof *grad_max);
  for (int s = 0; s < STEPS; s++) {
    char key[32];
    snprintf(key, sizeof key, "images.%d", s);
    const sd_st_tensor *images_st = find(f, c, key);
    snprintf(key, sizeof key, "eps.%d", s);
    const sd_st_tensor *eps = find(f, c, key);
    sd_tensor images = {0};
    sd_vae_step_report rep;
    int rc = images_st && eps ? upload(m.be, images_st, &images) : SD_ERROR("no inputs");
    rc = rc ? rc : sd_vae_trainer_step(m.trainer, &images, eps->data, NULL, &rep);
    if (rc == 0 && grad_max)
      sd_train_note_gradients(m.be, grads, grad_max, &grad_scale);
    sd_tensor_free(m.be, &images);
    if (!CHECK(rc == 0, "%s step %d: %s", c, s, sd_error_message()))
      goto out;
    printf("%s step %d: loss %.7f (torch %.7f), rec %.7f (torch %.7f), kl %.6f (torch %.6f), "
           "grad norm %.6f (torch %.6f), lr %g (torch %g)\n",
           c, s, rep.loss, ((const float *)want[0]->data)[s], rep.rec_loss,
           ((const float *)want[1]->data)[s], rep.kl_loss, ((const float *)want[2]->data)[s],
           rep.grad_norm, ((const float *)want[3]->data)[s], rep.learning_rate,
           ((const float *)want[4]->data)[s]);
    check_figure(c, s, "loss", rep.loss, want[0], LOSS_TOL);
    check_figure(c, s, "rec", rep.rec_loss, want[1], LOSS_TOL);
    check_figure(c, s, "kl", rep.kl_loss, want[2], LOSS_TOL);
    check_figure(c, s, "gradient norm", rep.grad_norm, want[3], NORM_TOL);
    CHECK(fabs(rep.learning_rate - ((const float *)want[4]->data)[s]) <= 1e-9,
          "%s step %d: learning rate %g", c, s, rep.learning_rate);
  }
  printf("%s: loss, rec and kl within %.1e of torch float32 (relative, tolerance %g), gradient "
         "norms within %.1e (tolerance %g)\n",
         c, worst_loss, LOSS_TOL, worst_norm, NORM_TOL);
  CHECK(sd_vae_trainer_steps(m.trainer) == STEPS, "%s: %lld steps counted", c,
        (long long)sd_vae_trainer_steps(m.trainer));
  char prefix[16];
  snprintf(prefix, sizeof prefix, "%s.", c);
  sd_train_report r;
  sd_train_check_params(m.be, f, prefix, grads, start, grad_max, grad_scale, PARAM_TOL, CHANGE_TOL,
                        &r);
  printf("%s: %d parameters after %d steps vs torch float64, worst %.3g (%s; tolerance %.3g, "
         "torch float32's own worst %.3g); %d sampled, their change's worst %.3g (%s); %d not "
         "compared (gradients zero in exact arithmetic)\n",
         c, r.checked, STEPS, r.worst_param, r.worst_param_name, r.tol, r.worst_torch_gap,
         r.sampled, r.worst_change, r.worst_change_name, r.zeros);
  CHECK(r.zeros <= 11 && r.checked + r.zeros == (int)n_params,
        "%s: %d gradients zero in exact arithmetic (11 expected at most, as in test_vae_backward)",
        c, r.zeros);
out:
  sd_grad_free_all(start, n_params);
  free(grad_max);
  model_close(&m);
}

/* eps from a generator is one torch.randn call of the latent shape: a step drawing it equals, bit
 * for bit, a step given the same numbers; a step with neither is refused. */
static void test_generator(const sd_safetensors *f) {
  sd_vae_train_config cfg = test_config(SD_VAE_REC_L1);
  model a, b;
  sd_tensor images_a = {0}, images_b = {0};
  const sd_st_tensor *images_st = find(f, "l1", "images.0");
  float eps[2 * 4 * 4 * 5];
  sd_rng rng;
  sd_rng_init(&rng, SD_RNG_CPU, 1234);
  int ok = model_open(&a, &cfg) == 0 && model_open(&b, &cfg) == 0 && images_st &&
           upload(a.be, images_st, &images_a) == 0 && upload(b.be, images_st, &images_b) == 0 &&
           sd_rng_randn(&rng, eps, sizeof eps / sizeof *eps) == 0;
  sd_vae_step_report ra, rb;
  sd_rng_init(&rng, SD_RNG_CPU, 1234);
  ok = ok && sd_vae_trainer_step(a.trainer, &images_a, eps, NULL, &ra) == 0 &&
       sd_vae_trainer_step(b.trainer, &images_b, NULL, &rng, &rb) == 0;
  CHECK(ok, "generator steps: %s", sd_error_message());
  if (ok) {
    CHECK(ra.loss == rb.loss && ra.grad_norm == rb.grad_norm,
          "eps drawn by the trainer differs from eps given: loss %.9g vs %.9g", rb.loss, ra.loss);
    sd_error_clear();
    CHECK(sd_vae_trainer_step(a.trainer, &images_a, NULL, NULL, &ra) < 0 &&
              strstr(sd_error_message(), "neither eps nor a generator"),
          "a step without eps or generator not refused clearly: %s", sd_error_message());
  }
  if (a.be)
    sd_tensor_free(a.be, &images_a);
  if (b.be)
    sd_tensor_free(b.be, &images_b);
  model_close(&a);
  model_close(&b);
}

int main(void) {
  sd_safetensors *f = NULL;
  if (!CHECK(sd_safetensors_open(SD_TEST_FIXTURES "/vae-train-sd1.safetensors", &f) == 0,
             "fixture: %s", sd_error_message()))
    return sd_test_finish();
  test_case(f, "l1", SD_VAE_REC_L1, 0.0);
  test_case(f, "mse", SD_VAE_REC_MSE, 0.0);
  test_case(f, "l1_sat", SD_VAE_REC_L1, 3.0); /* the demo recipe's weighting */
  test_generator(f);
  sd_safetensors_close(f);
  return sd_test_finish();
}
