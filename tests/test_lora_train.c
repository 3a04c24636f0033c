/* LoRA fine-tuning of the UNet (worker/train/lora_trainer.h) against torch + peft: three steps of
 * diffusers' DreamBooth-LoRA loop (tests/fixtures/lora-train-*.safetensors, made by
 * tests/reference/make_lora_train_fixtures.py) on the tiny SD1 (epsilon; rank 4, alpha 4, B = 0
 * at the start) and SD2 (v-prediction; rank 2, alpha 5, B != 0 at the start) UNets, 88 adapted
 * layers each (to_q, to_k, to_v, to_out.0), clipping (max_norm 1), a linear schedule with one
 * warmup step at learning rate 5e-4:
 *  - each step's loss, gradient norm (of all A and B gradients) and learning rate against torch's
 *    float32 run (relative 1e-5, 1e-4, 1e-6);
 *  - the first step's gradients of every A and B against torch's float64 ones (max |got - want| /
 *    max |want| within 1e-4, test_unet_backward's tolerance; sd1's dA exactly 0, B being 0);
 *  - every A and B after the last step against torch's float64 run: max |got - want| / max |want|
 *    within max(1e-5, 3 x torch float32's own worst), and the change from the start, max |got -
 *    want| / max |want - start|, within max(1e-3, 3 x torch float32's own worst of that figure)
 *    (torch float32's own: the worst of its batched and its item-by-item run; 3, see GAP_FACTOR);
 *  - every weight that is not adapted unchanged, bit for bit, and every adapted one W' = W0 + s B
 * A;
 *  - the saved file (diffusers' names: lora.down/up for sd1, peft's lora_A/B for sd2; alpha
 *    metadata for sd2) merged by sd_lora_merge into a freshly loaded model gives the trainer's W'
 *    bit for bit, and that model's forward equals the trained model's, bit for bit;
 *  - the default init (A ~ N(0, 1/r^2), B = 0) and the kaiming one (A ~ U(+-1/sqrt(in)));
 *  - refusals: rank 0, alpha 0, an unknown target module, a target that is a convolution.
 * SD_TEST_KEEP_DIR=DIR keeps the saved files in DIR/sd1 and DIR/sd2, for
 * make_lora_train_fixtures.py --check (diffusers' load_lora_weights reads them). */
#include "grad_fixture.h"
#include "test_util.h"
#include "train_fixture.h"

#include "error.h"
#include "io/lora.h"
#include "io/model_files.h"
#include "io/patched_tensors.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/unet.h"
#include "train/lora_trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STEPS      3
#define LAYERS     88
#define PARAM_TOL  1e-5
#define CHANGE_TOL 1e-3
#define LOSS_TOL   1e-5
#define NORM_TOL   1e-4
#define GRAD_TOL   1e-4
/* A and B after training: within GAP_FACTOR x torch float32's own distance from float64. Our
 * step-0 gradients measure up to ~2x torch float32's own distance (the UNet backward's summation
 * order, see check_grads' output), and AdamW carries that into A and B, amplified where a
 * gradient element's steps nearly cancel (sd1, B from 0: one element of one tensor at 2.06x):
 * hence 3, not 2. */
#define GAP_FACTOR 3

static const sd_st_tensor *find(const sd_safetensors *f, const char *prefix, const char *module,
                                const char *part) {
  char key[600];
  snprintf(key, sizeof key, "%s%s.%s.weight", prefix, module, part);
  const sd_st_tensor *t = sd_safetensors_find(f, key);
  return t && t->dtype == SD_DTYPE_F32 ? t : NULL;
}

static float scalar(const sd_safetensors *f, const char *prefix, const char *module,
                    const char *part) {
  const sd_st_tensor *t = find(f, prefix, module, part);
  return t ? ((const float *)t->data)[0] : 0.0f;
}

/* Refusals of bad configurations, each with an error naming the problem. */
static void test_refusals(sd_backend *be, sd_unet *unet, const sd_weights *weights,
                          const sd_scheduler_config *noise) {
  struct {
    const char *what, *target, *expect;
    int rank;
    double alpha;
  } cases[] = {
      {"rank 0", NULL, "rank 0", 0, 4.0},
      {"alpha 0", NULL, "lora_alpha 0", 4, 0.0},
      {"unknown target", "to_x", "'to_x' matches no linear layer", 4, 4.0},
      {"convolution target", "conv1", "not a linear layer", 4, 4.0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sd_lora_train_config cfg = sd_lora_train_config_init();
    cfg.rank = cases[i].rank;
    cfg.alpha = cases[i].alpha;
    if (cases[i].target)
      cfg.targets[cfg.n_targets++] = cases[i].target;
    sd_lora_trainer *t = (sd_lora_trainer *)1;
    sd_error_clear();
    int rc = sd_lora_trainer_create(be, unet, weights, noise, &cfg, 0, &t);
    const char *msg = sd_error_message();
    CHECK(rc < 0 && t == NULL && msg && strstr(msg, cases[i].expect),
          "%s refused with an error saying \"%s\": rc %d, \"%s\"", cases[i].what, cases[i].expect,
          rc, msg ? msg : "");
    if (rc == 0)
      sd_lora_trainer_free(t);
    else
      printf("refused (%s): %s\n", cases[i].what, msg);
  }
}

/* Targets that name the same layers: each matches, the layers are adapted once. */
static void test_overlapping_targets(sd_backend *be, sd_unet *unet, const sd_weights *weights,
                                     const sd_scheduler_config *noise) {
  sd_lora_train_config cfg = sd_lora_train_config_init();
  cfg.targets[0] = "to_q";
  cfg.targets[1] = "attn1.to_q";
  cfg.n_targets = 2;
  sd_lora_trainer *t = NULL;
  int rc = sd_lora_trainer_create(be, unet, weights, noise, &cfg, 0, &t);
  CHECK(rc == 0 && sd_lora_trainer_layer_count(t) == 22,
        "targets to_q and attn1.to_q: %zu layers (22 expected): %s",
        t ? sd_lora_trainer_layer_count(t) : 0, rc ? sd_error_message() : "");
  sd_lora_trainer_free(t);
}

/* The inits from a seed: B = 0, A's spread as the distribution says. */
static void test_inits(sd_backend *be, sd_unet *unet, const sd_weights *weights,
                       const sd_scheduler_config *noise) {
  for (int kind = 0; kind < 2; kind++) {
    sd_lora_train_config cfg = sd_lora_train_config_init();
    cfg.init = kind ? SD_LORA_INIT_KAIMING : SD_LORA_INIT_GAUSSIAN;
    sd_lora_trainer *t = NULL;
    if (!CHECK(sd_lora_trainer_create(be, unet, weights, noise, &cfg, 7, &t) == 0, "init %d: %s",
               kind, sd_error_message()))
      continue;
    double worst_ratio = 0, b_max = 0, bound_excess = 0;
    for (size_t i = 0; i < sd_lora_trainer_layer_count(t); i++) {
      sd_lora_layer_info info;
      sd_lora_trainer_layer(t, i, &info);
      int64_t n = cfg.rank * info.in;
      double sq = 0, bound = 1.0 / sqrt((double)info.in);
      for (int64_t k = 0; k < n; k++) {
        sq += (double)info.a[k] * info.a[k];
        bound_excess = fmax(bound_excess, fabs(info.a[k]) - bound);
      }
      /* expected root mean square: 1/r (gaussian), bound/sqrt(3) (uniform) */
      double want = kind ? bound / sqrt(3.0) : 1.0 / cfg.rank;
      worst_ratio = fmax(worst_ratio, fabs(sqrt(sq / (double)n) / want - 1));
      for (int64_t k = 0; k < info.out * cfg.rank; k++)
        b_max = fmax(b_max, fabs(info.b[k]));
    }
    printf("init %s: A's rms within %.3f of its expected value per layer, B max %g\n",
           kind ? "kaiming" : "gaussian", worst_ratio, b_max);
    /* layers have 128 to 256 values of A: a 5-sigma band of the rms is about 30 % */
    CHECK(worst_ratio < 0.3 && b_max == 0, "init %d: A rms off by %.3f, B max %g", kind,
          worst_ratio, b_max);
    if (kind)
      CHECK(bound_excess <= 0, "kaiming init: |A| exceeds 1/sqrt(in) by %g", bound_excess);
    sd_lora_trainer_free(t);
  }
}

/* The saved file: names, dtype, metadata; merged into a freshly loaded model by sd_lora_merge it
 * gives the trainer's W' bit for bit, and that model's forward equals the trained one's. */
static void check_saved(const char *family, const char *folder, const char *path,
                        sd_lora_key_style style, sd_backend *be, sd_lora_trainer *t,
                        const sd_lora_train_config *cfg, sd_unet *trained,
                        const sd_weights *trained_weights, const sd_safetensors *f) {
  sd_safetensors *saved = NULL;
  if (!CHECK(sd_safetensors_open(path, &saved) == 0, "%s: reading the saved file: %s", family,
             sd_error_message()))
    return;
  size_t n = sd_lora_trainer_layer_count(t);
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    sd_lora_layer_info info;
    sd_lora_trainer_layer(t, i, &info);
    const char *down = style == SD_LORA_KEYS_PEFT ? "lora_A" : "lora.down";
    const char *up = style == SD_LORA_KEYS_PEFT ? "lora_B" : "lora.up";
    const sd_st_tensor *a = find(saved, "unet.", info.module, down);
    const sd_st_tensor *b = find(saved, "unet.", info.module, up);
    bad += !(a && b && a->shape[0] == cfg->rank && a->shape[1] == info.in &&
             b->shape[0] == info.out && b->shape[1] == cfg->rank &&
             memcmp(a->data, info.a, a->bytes) == 0 && memcmp(b->data, info.b, b->bytes) == 0);
  }
  const char *meta = sd_safetensors_metadata(saved, "lora_adapter_metadata");
  char want_alpha[64];
  snprintf(want_alpha, sizeof want_alpha, "\"unet.lora_alpha\":\t%g", cfg->alpha);
  CHECK(sd_safetensors_count(saved) == 2 * n && bad == 0,
        "%s: the saved file holds %zu tensors (%zu expected), %d layers wrong", family,
        sd_safetensors_count(saved), 2 * n, bad);
  const char *format = sd_safetensors_metadata(saved, "format");
  CHECK(format && strcmp(format, "pt") == 0, "%s: metadata format 'pt'", family);
  if (cfg->alpha != cfg->rank)
    CHECK(meta && strstr(meta, want_alpha) && strstr(meta, "\"unet.r\":"),
          "%s: lora_adapter_metadata gives alpha %g: %s", family, cfg->alpha, meta ? meta : "");
  else
    CHECK(!meta, "%s: no lora_adapter_metadata where alpha = rank", family);
  sd_safetensors_close(saved);

  sd_model_files *files = NULL;
  sd_patched *patched = NULL;
  sd_weights *weights = NULL;
  sd_unet *fresh = NULL;
  int ok = sd_model_files_open(folder, NULL, NULL, &files) == 0 &&
           sd_patched_create(&patched) == 0 &&
           sd_lora_merge(path, 1.0f, files->unet_tensors, files->clip_tensors, patched) == 0;
  if (!CHECK(ok, "%s: sd_lora_merge of the saved file: %s", family, sd_error_message()))
    goto out;
  int differ = 0;
  for (size_t i = 0; i < n; i++) {
    sd_lora_layer_info info;
    sd_lora_trainer_layer(t, i, &info);
    char name[600];
    snprintf(name, sizeof name, "%s.weight", info.module);
    const sd_st_tensor *merged = sd_tensor_map_get(files->unet_tensors, name);
    const sd_tensor *tw = sd_weights_find(trained_weights, name); /* the trainer's W' */
    float *mine = tw ? sd_grad_download(be, tw) : NULL;
    differ += !(merged && merged->dtype == SD_DTYPE_F32 && mine &&
                memcmp(merged->data, mine, merged->bytes) == 0);
    free(mine);
  }
  CHECK(differ == 0,
        "%s: the saved file merged by sd_lora_merge gives the trainer's W' bit for bit in every "
        "layer (%d differ)",
        family, differ);
  ok = sd_weights_upload(be, files->unet_tensors, "unet", &weights) == 0 &&
       sd_unet_create(be, &files->unet, weights, &fresh) == 0;
  int same = ok ? sd_train_same_forward(be, f, trained, fresh) : -1;
  if (CHECK(same >= 0, "%s: forwards of the trained and the merged model: %s", family,
            sd_error_message()))
    CHECK(same == 1,
          "%s: the model with the saved LoRA merged at load renders as the trained one, bit for "
          "bit",
          family);
out:
  sd_unet_free(fresh);
  sd_weights_free(weights);
  sd_patched_free(patched);
  sd_model_files_close(files);
}

/* The first step's gradients of every A and B against torch's float64 ones: max |got - want| /
 * max |want| within max(GRAD_TOL, 2 x torch float32's own); a gradient that is 0 in exact
 * arithmetic (sd1's A: B = 0) exactly 0. */
static void check_grads(const char *family, const sd_lora_trainer *t, const sd_safetensors *f,
                        int rank, int unclipped) {
  CHECK(unclipped, "%s: step 0 was clipped (the gradients are not comparable)", family);
  double gap = 0, worst = 0;
  size_t n_layers = sd_lora_trainer_layer_count(t);
  for (size_t i = 0; i < n_layers; i++) {
    sd_lora_layer_info info;
    sd_lora_trainer_layer(t, i, &info);
    for (int p = 0; p < 2; p++)
      gap = fmax(gap, scalar(f, "gradgap32.", info.module, p ? "lora_B" : "lora_A"));
  }
  double tol = fmax(GRAD_TOL, 2 * gap);
  char worst_name[600] = "";
  int bad = 0, zeros = 0;
  for (size_t i = 0; i < n_layers; i++) {
    sd_lora_layer_info info;
    sd_lora_trainer_layer(t, i, &info);
    for (int p = 0; p < 2; p++) {
      const char *part = p ? "lora_B" : "lora_A";
      const sd_st_tensor *want = find(f, "grad0.", info.module, part);
      const float *got = p ? info.grad_b : info.grad_a;
      int64_t n = p ? info.out * rank : rank * info.in;
      if (!want || want->bytes != (size_t)n * sizeof(float)) {
        bad++;
        continue;
      }
      const float *w = want->data;
      double size = 0, diff = 0;
      for (int64_t k = 0; k < n; k++) {
        size = fmax(size, fabs((double)w[k]));
        double d = fabs((double)got[k] - w[k]);
        diff = isnan(d) ? INFINITY : fmax(diff, d);
      }
      if (size == 0) { /* exactly 0 in exact arithmetic */
        zeros++;
        bad += diff != 0;
        continue;
      }
      double err = diff / size;
      bad += !(err <= tol);
      if (err > worst) {
        worst = err;
        snprintf(worst_name, sizeof worst_name, "%s.%s", info.module, part);
      }
    }
  }
  printf("%s: step 0's gradients of %zu A and B vs torch float64: worst %.3g (%s; tolerance %.3g, "
         "torch float32's own %.3g); %d exactly 0 as in torch\n",
         family, 2 * n_layers, worst, worst_name, tol, gap, zeros);
  CHECK(bad == 0, "%s: %d of %zu step-0 gradients out of tolerance (worst %.3g)", family, bad,
        2 * n_layers, worst);
}

/* Where the saved file goes: $SD_TEST_KEEP_DIR/<family>/ or a temporary folder. */
static int save_folder(const char *family, char *folder, size_t size, int *temporary) {
  const char *keep = getenv("SD_TEST_KEEP_DIR");
  *temporary = !keep || !keep[0];
  if (*temporary) {
    snprintf(folder, size, "/tmp/sd-lora-train-XXXXXX");
    return mkdtemp(folder) ? 0 : SD_ERROR("mkdtemp failed");
  }
  mkdir(keep, 0755);
  snprintf(folder, size, "%s/%s", keep, family);
  mkdir(folder, 0755);
  return 0;
}

/* The weights that are not adapted, as loaded, bit for bit; the adapted ones W0 + s B A (s B A in
 * double: within float32 rounding of W', relative 1e-6 of the weight's largest value). */
static void check_weights(const char *family, sd_backend *be, const sd_model_files *files,
                          const sd_weights *weights, const sd_lora_trainer *t, int rank,
                          double scale) {
  int changed = 0, frozen = 0, adapted = 0;
  double worst = 0;
  for (size_t i = 0; i < sd_weights_count(weights); i++) {
    const char *name = sd_weights_name_at(weights, i);
    const sd_tensor *w = sd_weights_at(weights, i);
    size_t len = strlen(name);
    char module[600];
    snprintf(module, sizeof module, "%.*s", (int)(len > 7 ? len - 7 : 0), name);
    int64_t layer =
        len > 7 && strcmp(name + len - 7, ".weight") == 0 ? sd_lora_trainer_find(t, module) : -1;
    int64_t n = sd_tensor_numel(w);
    float *got = sd_grad_download(be, w);
    if (layer < 0) {
      const sd_st_tensor *st = sd_tensor_map_get(files->unet_tensors, name);
      float *want = malloc((size_t)n * sizeof *want);
      if (st && want)
        sd_convert_to_f32(st->dtype, st->data, want, (size_t)n);
      changed += !(got && st && want && memcmp(got, want, (size_t)n * sizeof *got) == 0);
      frozen++;
      free(want);
    } else if (got) {
      sd_lora_layer_info info;
      sd_lora_trainer_layer(t, (size_t)layer, &info);
      double size = 0, diff = 0;
      for (int64_t o = 0; o < info.out; o++)
        for (int64_t k = 0; k < info.in; k++) {
          double want = info.base[o * info.in + k];
          for (int r = 0; r < rank; r++)
            want += scale * info.b[o * rank + r] * info.a[r * info.in + k];
          size = fmax(size, fabs(want));
          diff = fmax(diff, fabs(got[o * info.in + k] - want));
        }
      worst = fmax(worst, diff / size);
      adapted++;
    }
    free(got);
  }
  printf("%s: %d frozen weights unchanged bit for bit (%d changed); %d adapted W' = W0 + s B A "
         "within %.3g\n",
         family, frozen, changed, adapted, worst);
  CHECK(changed == 0 && frozen > 0, "%s: %d of %d frozen weights changed", family, changed, frozen);
  CHECK(adapted == LAYERS && worst <= 1e-6, "%s: %d adapted weights, W' vs W0 + s B A: %.3g",
        family, adapted, worst);
}

static void test_family(const char *family, sd_lora_key_style style) {
  char folder[512], path[512];
  snprintf(folder, sizeof folder, "%s/tiny-%s", SD_TEST_FIXTURES, family);
  snprintf(path, sizeof path, "%s/lora-train-%s.safetensors", SD_TEST_FIXTURES, family);
  sd_backend *be = sd_backend_cpu_create(0);
  sd_model_files *files = NULL;
  sd_safetensors *f = NULL;
  sd_weights *weights = NULL;
  sd_unet *unet = NULL;
  sd_lora_trainer *trainer = NULL;
  int ok = be && sd_model_files_open(folder, NULL, NULL, &files) == 0 &&
           sd_safetensors_open(path, &f) == 0 &&
           sd_weights_upload(be, files->unet_tensors, "unet", &weights) == 0 &&
           sd_unet_create(be, &files->unet, weights, &unet) == 0;
  const sd_st_tensor *rank_t = f ? sd_safetensors_find(f, "rank") : NULL;
  const sd_st_tensor *alpha_t = f ? sd_safetensors_find(f, "alpha") : NULL;
  ok = ok && rank_t && alpha_t;
  if (!CHECK(ok, "%s: setup: %s", family, sd_error_message()))
    goto out;
  if (strcmp(family, "sd1") == 0) {
    test_refusals(be, unet, weights, &files->scheduler);
    test_inits(be, unet, weights, &files->scheduler);
    test_overlapping_targets(be, unet, weights, &files->scheduler);
  }
  sd_lora_train_config cfg = sd_lora_train_config_init();
  cfg.rank = ((const int32_t *)rank_t->data)[0];
  cfg.alpha = ((const float *)alpha_t->data)[0];
  cfg.train.learning_rate = 5e-4;
  cfg.train.schedule = SD_LR_LINEAR;
  cfg.train.warmup_steps = 1;
  cfg.train.total_steps = STEPS;
  cfg.train.max_grad_norm = 1.0;
  if (!CHECK(sd_lora_trainer_create(be, unet, weights, &files->scheduler, &cfg, 1, &trainer) == 0,
             "%s: create: %s", family, sd_error_message()))
    goto out;
  size_t n_layers = sd_lora_trainer_layer_count(trainer);
  CHECK(n_layers == LAYERS, "%s: %zu adapted layers (%d expected)", family, n_layers, LAYERS);
  /* A and B from the fixture */
  int missing = 0;
  for (size_t i = 0; i < n_layers; i++) {
    sd_lora_layer_info info;
    sd_lora_trainer_layer(trainer, i, &info);
    const sd_st_tensor *a = find(f, "init.", info.module, "lora_A");
    const sd_st_tensor *b = find(f, "init.", info.module, "lora_B");
    if (a && b && a->bytes == (size_t)(cfg.rank * info.in) * sizeof(float) &&
        b->bytes == (size_t)(info.out * cfg.rank) * sizeof(float))
      missing += sd_lora_trainer_set_layer(trainer, i, a->data, b->data) < 0;
    else
      missing++;
  }
  if (!CHECK(missing == 0, "%s: %d layers without fitting A, B in the fixture", family, missing))
    goto out;

  for (int s = 0; s < STEPS; s++) {
    sd_train_batch batch;
    sd_unet_step_report rep;
    int rc = sd_train_batch_load(be, f, s, &batch);
    rc = rc ? rc
            : sd_lora_trainer_step(trainer, &batch.latents, &batch.noise, batch.timesteps,
                                   &batch.context, &rep);
    sd_train_batch_free(be, &batch);
    if (!CHECK(rc == 0, "%s: step %d: %s", family, s, sd_error_message()))
      goto out;
    sd_train_check_step(family, f, s, rep.loss, rep.grad_norm, rep.learning_rate, LOSS_TOL,
                        NORM_TOL);
    if (s == 0) /* the gradient norm is below max_norm: clipping multiplied them by 1 */
      check_grads(family, trainer, f, cfg.rank, rep.grad_norm < cfg.train.max_grad_norm);
  }
  CHECK(sd_lora_trainer_steps(trainer) == STEPS, "%s: %lld steps counted", family,
        (long long)sd_lora_trainer_steps(trainer));

  /* A and B after the last step vs torch float64 */
  double gap = 0, gap_change = 0;
  for (size_t i = 0; i < n_layers; i++) {
    sd_lora_layer_info info;
    sd_lora_trainer_layer(trainer, i, &info);
    for (int p = 0; p < 2; p++) {
      const char *part = p ? "lora_B" : "lora_A";
      gap = fmax(gap, scalar(f, "gap32.", info.module, part));
      gap_change = fmax(gap_change, scalar(f, "gapchange32.", info.module, part));
    }
  }
  double tol = fmax(PARAM_TOL, GAP_FACTOR * gap);
  double tol_change = fmax(CHANGE_TOL, GAP_FACTOR * gap_change);
  double worst = 0, worst_change = 0;
  char worst_name[600] = "", worst_change_name[600] = "";
  int bad = 0;
  for (size_t i = 0; i < n_layers; i++) {
    sd_lora_layer_info info;
    sd_lora_trainer_layer(trainer, i, &info);
    for (int p = 0; p < 2; p++) {
      const char *part = p ? "lora_B" : "lora_A";
      const sd_st_tensor *want = find(f, "final.", info.module, part);
      const sd_st_tensor *start = find(f, "init.", info.module, part);
      const float *got = p ? info.b : info.a;
      int64_t n = p ? info.out * cfg.rank : cfg.rank * info.in;
      if (!want || !start || want->bytes != (size_t)n * sizeof(float)) {
        bad++;
        continue;
      }
      const float *w = want->data, *w0 = start->data;
      double size = 0, change = 0, diff = 0;
      for (int64_t k = 0; k < n; k++) {
        size = fmax(size, fabs((double)w[k]));
        change = fmax(change, fabs((double)w[k] - w0[k]));
        double d = fabs((double)got[k] - w[k]);
        diff = isnan(d) ? INFINITY : fmax(diff, d);
      }
      double err = diff / fmax(size, 1e-30), err_change = diff / fmax(change, 1e-30);
      bad += !(err <= tol && err_change <= tol_change);
      if (err > worst) {
        worst = err;
        snprintf(worst_name, sizeof worst_name, "%s.%s", info.module, part);
      }
      if (err_change > worst_change) {
        worst_change = err_change;
        snprintf(worst_change_name, sizeof worst_change_name, "%s.%s", info.module, part);
      }
    }
  }
  printf("%s: %zu A and B after %d steps vs torch float64: worst %.3g of the value (%s; "
         "tolerance %.3g, torch float32's own %.3g), worst %.3g of the change (%s; tolerance "
         "%.3g, torch float32's own %.3g)\n",
         family, 2 * n_layers, STEPS, worst, worst_name, tol, gap, worst_change, worst_change_name,
         tol_change, gap_change);
  CHECK(bad == 0, "%s: %d of %zu A / B tensors out of tolerance (worst %.3g, %.3g of the change)",
        family, bad, 2 * n_layers, worst, worst_change);

  check_weights(family, be, files, weights, trainer, cfg.rank,
                (double)((float)cfg.alpha / (float)cfg.rank));

  char out_dir[512], saved[600];
  int temporary = 0;
  if (CHECK(save_folder(family, out_dir, sizeof out_dir, &temporary) == 0, "%s: %s", family,
            sd_error_message())) {
    snprintf(saved, sizeof saved, "%s/pytorch_lora_weights.safetensors", out_dir);
    if (CHECK(sd_lora_trainer_save(trainer, saved, style) == 0, "%s: save: %s", family,
              sd_error_message()))
      check_saved(family, folder, saved, style, be, trainer, &cfg, unet, weights, f);
    if (temporary) {
      unlink(saved);
      rmdir(out_dir);
    }
  }
out:
  sd_lora_trainer_free(trainer);
  sd_unet_free(unet);
  sd_weights_free(weights);
  sd_safetensors_close(f);
  sd_model_files_close(files);
  sd_backend_destroy(be);
}

int main(void) {
  test_family("sd1", SD_LORA_KEYS_DIFFUSERS);
  test_family("sd2", SD_LORA_KEYS_PEFT);
  return sd_test_finish();
}
