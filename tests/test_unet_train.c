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
#include "train_fixture.h"

#include "error.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/grads.h"
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
  float **start = NULL;
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
  start = sd_train_snapshot(be, grads);
  grad_max = calloc(n_params, sizeof *grad_max);

  for (int s = 0; s < STEPS; s++) {
    sd_train_batch batch;
    sd_unet_step_report rep;
    int rc = sd_train_batch_load(be, f, s, &batch);
    rc = rc ? rc
            : sd_unet_trainer_step(trainer, &batch.latents, &batch.noise, batch.timesteps,
                                   &batch.context, &rep);
    if (rc == 0 && grad_max)
      sd_train_note_gradients(be, grads, grad_max, &grad_scale);
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
  sd_train_report r;
  sd_train_check_params(be, f, "", grads, start, grad_max, grad_scale, PARAM_TOL, CHANGE_TOL, &r);
  int zeros = r.zeros;
  double tol = r.tol;
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
  sd_grad_free_all(start, n_params);
  free(grad_max);
  sd_unet_trainer_free(trainer);
  sd_unet_free(unet);
  sd_weights_free(weights);
  sd_safetensors_close(f);
  sd_model_files_close(files);
  sd_backend_destroy(be);
}

/* All gradients of the store, downloaded into one host array of *total values. */
static float *all_grads(sd_backend *be, sd_grads *grads, size_t *total) {
  size_t n = 0;
  for (size_t i = 0; i < sd_grads_count(grads); i++)
    n += (size_t)sd_tensor_numel(sd_grads_at(grads, i));
  float *out = malloc((n ? n : 1) * sizeof *out);
  for (size_t i = 0, at = 0; out && i < sd_grads_count(grads); i++) {
    const sd_tensor *g = sd_grads_at(grads, i);
    if (sd_tensor_download_f32(be, g, out + at) < 0) {
      free(out);
      return NULL;
    }
    at += (size_t)sd_tensor_numel(g);
  }
  *total = n;
  return out;
}

/* sd_unet_loss_backward_weighted (prior preservation's loss): weights 1 / N on every item give
 * sd_unet_loss_backward's loss and gradients; weights (a, b) give a x item 0's loss and gradients
 * at weight 1 plus b x item 1's (the per-item runs); a negative weight is refused. */
static void test_weighted(void) {
  char folder[512], path[512];
  snprintf(folder, sizeof folder, "%s/tiny-sd1", SD_TEST_FIXTURES);
  snprintf(path, sizeof path, "%s/unet-train-sd1.safetensors", SD_TEST_FIXTURES);
  sd_backend *be = sd_backend_cpu_create(0);
  sd_model_files *files = NULL;
  sd_safetensors *f = NULL;
  sd_weights *weights = NULL;
  sd_unet *unet = NULL;
  sd_grads *grads = NULL;
  sd_train_batch batch = {0};
  bool loaded = false;
  float *plain = NULL, *uniform = NULL, *mixed = NULL, *item[2] = {NULL, NULL};
  int ok = be && sd_model_files_open(folder, NULL, NULL, &files) == 0 &&
           sd_safetensors_open(path, &f) == 0 &&
           sd_weights_upload(be, files->unet_tensors, "unet", &weights) == 0 &&
           sd_unet_create(be, &files->unet, weights, &unet) == 0 &&
           sd_grads_create(be, weights, NULL, NULL, &grads) == 0 &&
           sd_train_batch_load(be, f, 0, &batch) == 0;
  loaded = ok;
  if (!CHECK(ok, "weighted: setup: %s", sd_error_message()))
    goto out;
  int64_t items = batch.latents.shape[0], n_total = sd_tensor_numel(&batch.latents);
  int64_t per = n_total / items;
  if (!CHECK(items >= 2, "weighted: the fixture's batch has %lld items", (long long)items))
    goto out;
  sd_tensor lat = sd_tensor_slice0(&batch.latents, 0, 2),
            noise = sd_tensor_slice0(&batch.noise, 0, 2);
  sd_tensor ctx = sd_tensor_slice0(&batch.context, 0, 2);
  const sd_scheduler_config *sc = &files->scheduler;
  size_t total = 0;
  float loss_plain = 0, loss_uniform = 0, loss_mixed = 0, loss_item[2] = {0, 0};
  double w_uniform[2] = {1.0 / (double)(2 * per), 1.0 / (double)(2 * per)};
  const double a = 0.3 / (double)per, b = 1.7 / (double)per;
  double w_mixed[2] = {a, b};
  ok = sd_unet_loss_backward(be, unet, sc, SD_UNET_TAPE_FULL, grads, &lat, &noise, batch.timesteps,
                             &ctx, 0, &loss_plain) == 0 &&
       (plain = all_grads(be, grads, &total)) != NULL &&
       sd_unet_loss_backward_weighted(be, unet, sc, SD_UNET_TAPE_FULL, grads, &lat, &noise,
                                      batch.timesteps, &ctx, w_uniform, 0, &loss_uniform) == 0 &&
       (uniform = all_grads(be, grads, &total)) != NULL &&
       sd_unet_loss_backward_weighted(be, unet, sc, SD_UNET_TAPE_FULL, grads, &lat, &noise,
                                      batch.timesteps, &ctx, w_mixed, 0, &loss_mixed) == 0 &&
       (mixed = all_grads(be, grads, &total)) != NULL;
  for (int k = 0; ok && k < 2; k++) {
    double unit[2] = {k == 0 ? 1.0 : 0.0, k == 1 ? 1.0 : 0.0};
    ok = sd_unet_loss_backward_weighted(be, unet, sc, SD_UNET_TAPE_FULL, grads, &lat, &noise,
                                        batch.timesteps, &ctx, unit, 0, &loss_item[k]) == 0 &&
         (item[k] = all_grads(be, grads, &total)) != NULL;
  }
  if (!CHECK(ok, "weighted: backward: %s", sd_error_message()))
    goto out;
  size_t same = 0;
  double worst_mixed = 0, scale = 0;
  for (size_t i = 0; i < total; i++) {
    same += plain[i] == uniform[i];
    double want = a * (double)item[0][i] + b * (double)item[1][i];
    double d = fabs((double)mixed[i] - want);
    worst_mixed = d > worst_mixed ? d : worst_mixed;
    scale = fabs(want) > scale ? fabs(want) : scale;
  }
  double want_loss = a * (double)loss_item[0] + b * (double)loss_item[1];
  printf("weighted: uniform weights: loss %.9g vs %.9g, %zu of %zu gradient values equal; weights "
         "(0.3, 1.7) / elements: loss %.9g vs %.9g, gradients' worst |difference| %.3g of %.3g\n",
         (double)loss_uniform, (double)loss_plain, same, total, (double)loss_mixed, want_loss,
         worst_mixed, scale);
  CHECK(fabs((double)loss_uniform - (double)loss_plain) <= 1e-7 * fabs((double)loss_plain),
        "weighted: uniform weights give the batch mean's loss");
  CHECK(same == total, "weighted: uniform weights give the batch mean's gradients, bit for bit");
  CHECK(fabs((double)loss_mixed - want_loss) <= 1e-6 * fabs(want_loss),
        "weighted: (a, b) weigh the items' losses");
  CHECK(worst_mixed <= 1e-5 * scale, "weighted: (a, b) weigh the items' gradients");
  double bad[2] = {-1.0, 1.0};
  float loss_bad = 0;
  CHECK(sd_unet_loss_backward_weighted(be, unet, sc, SD_UNET_TAPE_FULL, grads, &lat, &noise,
                                       batch.timesteps, &ctx, bad, 0, &loss_bad) < 0 &&
            strstr(sd_error_message(), "loss weight"),
        "weighted: a negative weight is refused: %s", sd_error_message());
out:
  free(plain);
  free(uniform);
  free(mixed);
  free(item[0]);
  free(item[1]);
  if (loaded)
    sd_train_batch_free(be, &batch);
  sd_grads_free(grads);
  sd_unet_free(unet);
  sd_weights_free(weights);
  sd_safetensors_close(f);
  sd_model_files_close(files);
  sd_backend_destroy(be);
}

/* sd_unet_trainer_step_dcontext's dcontext, the gradient of the step's loss with respect to the
 * text embeddings (what trains a text encoder with the UNet; a trainer at learning rate 0 keeps
 * the weights): item by item, each item's slice of a 2-item batch is half the item's own (1-item
 * batch) dcontext, the batch mean being over twice the elements (within 1e-6 of the largest);
 * and its slopes along itself and along a +-1 pattern (unit directions) against central
 * differences of sd_unet_loss_backward's float32 loss (step 0.1), within 0.5 % of |dcontext|. */
static void test_dcontext(void) {
  char folder[512], path[512];
  snprintf(folder, sizeof folder, "%s/tiny-sd1", SD_TEST_FIXTURES);
  snprintf(path, sizeof path, "%s/unet-train-sd1.safetensors", SD_TEST_FIXTURES);
  sd_backend *be = sd_backend_cpu_create(0);
  sd_model_files *files = NULL;
  sd_safetensors *f = NULL;
  sd_weights *weights = NULL;
  sd_unet *unet = NULL;
  sd_grads *grads = NULL;
  sd_unet_trainer *trainer = NULL;
  sd_train_batch batch = {0};
  sd_tensor dctx = {0}, single = {0}, probe = {0};
  float *host = NULL, *got = NULL, *one = NULL;
  bool loaded = false;
  int ok = be && sd_model_files_open(folder, NULL, NULL, &files) == 0 &&
           sd_safetensors_open(path, &f) == 0 &&
           sd_weights_upload(be, files->unet_tensors, "unet", &weights) == 0 &&
           sd_unet_create(be, &files->unet, weights, &unet) == 0 &&
           sd_grads_create(be, weights, NULL, NULL, &grads) == 0 &&
           sd_train_batch_load(be, f, 0, &batch) == 0;
  loaded = ok;
  if (!CHECK(ok, "dcontext: setup: %s", sd_error_message()) ||
      !CHECK(batch.latents.shape[0] >= 2, "dcontext: the fixture's batch has 2 items"))
    goto out;
  sd_tensor lat = sd_tensor_slice0(&batch.latents, 0, 2),
            noise = sd_tensor_slice0(&batch.noise, 0, 2);
  sd_tensor ctx = sd_tensor_slice0(&batch.context, 0, 2);
  const sd_scheduler_config *sc = &files->scheduler;
  int64_t n = sd_tensor_numel(&ctx), per = n / 2;
  dctx = sd_tensor_make(be->ops->act_dtype, ctx.ndim, ctx.shape);
  probe = dctx;
  single = sd_tensor_slice0(&dctx, 0, 1);
  single.data = NULL;
  dctx.data = probe.data = NULL;
  host = malloc((size_t)n * sizeof *host);
  got = malloc((size_t)n * sizeof *got);
  one = malloc((size_t)per * sizeof *one);
  sd_unet_train_config cfg = sd_unet_train_config_init();
  cfg.learning_rate = 0.0;
  sd_unet_step_report rep;
  ok = host && got && one && sd_tensor_alloc_persistent(be, &dctx) == 0 &&
       sd_tensor_alloc_persistent(be, &probe) == 0 &&
       sd_tensor_alloc_persistent(be, &single) == 0 &&
       sd_tensor_download_f32(be, &ctx, host) == 0 &&
       sd_unet_trainer_create(be, unet, weights, sc, &cfg, NULL, NULL, &trainer) == 0 &&
       sd_unet_trainer_step_dcontext(trainer, &lat, &noise, batch.timesteps, &ctx, &dctx, &rep) ==
           0 &&
       sd_tensor_download_f32(be, &dctx, got) == 0;
  if (!CHECK(ok, "dcontext: the batch's step: %s", sd_error_message()))
    goto out;
  double scale = 0, worst_item = 0;
  for (int64_t i = 0; i < n; i++)
    scale = fabs(got[i]) > scale ? fabs(got[i]) : scale;
  for (int b = 0; ok && b < 2; b++) {
    sd_tensor l1 = sd_tensor_slice0(&lat, b, 1), e1 = sd_tensor_slice0(&noise, b, 1);
    sd_tensor c1 = sd_tensor_slice0(&ctx, b, 1);
    ok = sd_unet_trainer_step_dcontext(trainer, &l1, &e1, batch.timesteps + b, &c1, &single,
                                       &rep) == 0 &&
         sd_tensor_download_f32(be, &single, one) == 0;
    for (int64_t i = 0; ok && i < per; i++) {
      double d = fabs((double)got[b * per + i] - 0.5 * (double)one[i]);
      worst_item = d > worst_item ? d : worst_item;
    }
  }
  if (!CHECK(ok, "dcontext: the items' steps: %s", sd_error_message()))
    goto out;
  printf("dcontext: largest value %.4g; items alone vs in the batch: worst |difference| %.3g\n",
         scale, worst_item);
  CHECK(scale > 0, "dcontext: the gradient is not zero");
  CHECK(worst_item <= 1e-6 * scale, "dcontext: each item's slice is its own gradient");
  /* directional derivatives: along dcontext itself and along a fixed +-1 pattern, both unit */
  double norm = 0;
  for (int64_t i = 0; i < n; i++)
    norm += (double)got[i] * got[i];
  norm = sqrt(norm);
  const double step = 0.1;
  for (int dir = 0; ok && dir < 2; dir++) {
    double want_slope = 0;
    float loss[2] = {0, 0};
    for (int s = 0; ok && s < 2; s++) {
      float *moved = malloc((size_t)n * sizeof *moved);
      ok = moved != NULL;
      uint32_t pattern = 12345u;
      for (int64_t i = 0; ok && i < n; i++) {
        pattern = pattern * 1664525u + 1013904223u;
        double d = dir == 0 ? got[i] / norm : ((pattern >> 31) ? 1.0 : -1.0) / sqrt((double)n);
        if (s == 0)
          want_slope += d * got[i];
        moved[i] = (float)(host[i] + (s == 0 ? step : -step) * d);
      }
      ok = ok && sd_tensor_upload_f32(be, &probe, moved) == 0 &&
           sd_unet_loss_backward(be, unet, sc, SD_UNET_TAPE_FULL, grads, &lat, &noise,
                                 batch.timesteps, &probe, 0, &loss[s]) == 0;
      free(moved);
    }
    double slope = ((double)loss[0] - (double)loss[1]) / (2.0 * step);
    printf("dcontext: along %s: gradient %.6g, central difference of the loss %.6g\n",
           dir == 0 ? "itself" : "a +-1 pattern", want_slope, slope);
    CHECK(
        fabs(slope - want_slope) <= 0.005 * norm,
        "dcontext: the slope along %s, %.6g, is the loss's central difference %.6g (within 0.5 %% "
        "of |dcontext| %.4g)",
        dir == 0 ? "itself" : "a +-1 pattern", want_slope, slope, norm);
  }
  CHECK(ok, "dcontext: differences: %s", sd_error_message());
out:
  free(host);
  free(got);
  free(one);
  if (dctx.data)
    sd_tensor_free(be, &dctx);
  if (probe.data)
    sd_tensor_free(be, &probe);
  if (single.data)
    sd_tensor_free(be, &single);
  if (loaded)
    sd_train_batch_free(be, &batch);
  sd_unet_trainer_free(trainer);
  sd_grads_free(grads);
  sd_unet_free(unet);
  sd_weights_free(weights);
  sd_safetensors_close(f);
  sd_model_files_close(files);
  sd_backend_destroy(be);
}

int main(void) {
  test_dcontext();
  test_weighted();
  test_family("sd1");
  test_family("sd2");
  return sd_test_finish();
}
