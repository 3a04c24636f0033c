/* sdbatch train's behaviour (docs/training.md, "sdbatch train"): the tiny SD1 model (random
 * weights) fine-tuned on three 64 x 64 pictures of one object (a large red star on white, drawn
 * by the shapes generator at three positions) with the instance prompt, then the prompt rendered
 * before and after with the same seeds. The renders must move toward the instance pictures.
 *
 * The measure is in latent space: the mean squared distance of each render's final latents
 * (before the VAE decodes them) to the mean of the instance pictures' latents (the VAE
 * posterior's mean x scaling factor, what training targets). With random weights the VAE is no
 * autoencoder (decode(encode(x)) is far from x), so pixel distances to the pictures say little:
 * the training can only move what the UNet denoises toward, the instance latents, and that is
 * what is measured. The pixel distance to the mean picture is printed too (not asserted).
 * Asserted: the latent distance falls by LATENT_FACTOR or more over the seeds' mean (measured
 * about 10x; diffusers' pipeline on the same output folder measures 76 -> 7.3), and the training
 * loss of the last 5 steps is below LOSS_FACTOR of the first 5 steps'. */
#include "test_util.h"

#include "error.h"
#include "finetune/dreambooth.h"
#include "image/image.h"
#include "io/png_image.h"
#include "data/shapes.h"
#include "model/vae.h"
#include "pipeline/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIDE          64
#define IMAGES        3
#define SEEDS         4
#define STEPS         40
#define LATENT_FACTOR 4.0
#define LOSS_FACTOR   0.6

static const char *prompt = "a photo of sks star";

/* The three instance pictures, also averaged into mean (3 x SIDE x SIDE values, HWC). */
static int write_instances(const char *dir, double *mean) {
  static const float centres[IMAGES][2] = {{0.5f, 0.5f}, {0.42f, 0.56f}, {0.58f, 0.44f}};
  uint8_t rgb[SIDE * SIDE * 3];
  memset(mean, 0, sizeof(double) * SIDE * SIDE * 3);
  for (int i = 0; i < IMAGES; i++) {
    sd_shape_item item;
    sd_shapes_item(0, 0, &item);
    item.kind = SD_SHAPE_STAR;
    item.color = SD_COLOR_RED;
    item.size = SD_SIZE_LARGE;
    item.background[0] = item.background[1] = 0; /* white */
    item.cx = centres[i][0];
    item.cy = centres[i][1];
    item.radius = 0.3f;
    sd_shapes_draw(&item, SIDE, rgb);
    char path[512];
    snprintf(path, sizeof path, "%s/star%d.png", dir, i);
    SD_TRY(sd_png_write_rgb(path, rgb, SIDE, SIDE, NULL, 0));
    for (int k = 0; k < SIDE * SIDE * 3; k++)
      mean[k] += rgb[k] / (double)IMAGES;
  }
  return 0;
}

/* The mean of the instance pictures' latents (posterior mean x scaling factor), (C, h, w). */
static int instance_latents(sd_engine *engine, const char *dir, float *out, int64_t n) {
  sd_backend *be = sd_engine_backend(engine);
  sd_engine_networks nets;
  sd_engine_get_networks(engine, &nets);
  const sd_vae_config *cfg = sd_vae_get_config(nets.vae);
  int h = SIDE / 8, c = cfg->latent_channels;
  memset(out, 0, (size_t)n * sizeof(float));
  float pixels[3 * SIDE * SIDE], moments[2 * 4 * 8 * 8];
  for (int i = 0; i < IMAGES; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/star%d.png", dir, i);
    sd_image img;
    SD_TRY(sd_image_read_rgb(path, &img));
    for (int y = 0; y < SIDE * SIDE; y++)
      for (int ch = 0; ch < 3; ch++)
        pixels[ch * SIDE * SIDE + y] = ((float)img.data[y * 3 + ch] / 255.0f - 0.5f) / 0.5f;
    sd_image_free(&img);
    sd_tensor x = sd_tensor_4d(be->ops->act_dtype, 1, 3, SIDE, SIDE);
    sd_tensor m = sd_tensor_4d(be->ops->act_dtype, 1, 2 * c, h, h);
    SD_TRY(sd_tensor_alloc_persistent(be, &x));
    SD_TRY(sd_tensor_alloc_persistent(be, &m));
    int rc = sd_tensor_upload_f32(be, &x, pixels);
    rc = rc ? rc : sd_vae_encode(nets.vae, &x, &m);
    rc = rc ? rc : sd_tensor_download_f32(be, &m, moments);
    sd_tensor_free(be, &x);
    sd_tensor_free(be, &m);
    SD_TRY(rc);
    for (int64_t k = 0; k < n; k++)
      out[k] += moments[k] * cfg->scaling_factor / IMAGES;
  }
  return 0;
}

typedef struct measure {
  double latent, pixel; /* means over the seeds */
} measure;

static int render_measure(const char *model, const char *dir, const double *mean_rgb, float *target,
                          measure *out) {
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.model_path = model;
  params.device = "cpu";
  params.threads = 1;
  params.precision = SD_DTYPE_F32;
  sd_engine *engine;
  SD_TRY(sd_engine_open(&params, &engine));
  int64_t n = 4 * (SIDE / 8) * (SIDE / 8);
  int rc = target ? instance_latents(engine, dir, target, n) : 0;
  sd_txt2img_batch batch = {.width = SIDE,
                            .height = SIDE,
                            .steps = 10,
                            .scheduler = sd_engine_default_scheduler(engine),
                            .rng = SD_RNG_CPU};
  sd_txt2img_item items[SEEDS];
  sd_txt2img_result results[SEEDS];
  memset(results, 0, sizeof results);
  for (int s = 0; s < SEEDS; s++)
    items[s] = (sd_txt2img_item){
        .prompt = prompt, .negative_prompt = "", .seed = (uint64_t)s, .guidance_scale = 7.5f};
  rc = rc ? rc : sd_txt2img(engine, &batch, items, SEEDS, NULL, NULL, results);
  *out = (measure){0, 0};
  for (int s = 0; rc == 0 && s < SEEDS; s++) {
    double dl = 0, dp = 0;
    for (int64_t k = 0; k < n; k++)
      dl += (results[s].latents[k] - target[k]) * (double)(results[s].latents[k] - target[k]);
    for (int k = 0; k < SIDE * SIDE * 3; k++)
      dp += (results[s].rgb[k] - mean_rgb[k]) * (results[s].rgb[k] - mean_rgb[k]);
    printf("  %s seed %d: latent distance %.3f, pixel distance %.1f\n", model, s, dl / (double)n,
           dp / (SIDE * SIDE * 3));
    out->latent += dl / (double)n / SEEDS;
    out->pixel += dp / (SIDE * SIDE * 3) / SEEDS;
  }
  for (int s = 0; s < SEEDS; s++)
    sd_txt2img_result_free(&results[s]);
  sd_engine_close(engine);
  return rc;
}

/* Means of the first and last five losses of loss.csv. */
static int read_losses(const char *path, double *first, double *last) {
  FILE *f = fopen(path, "r");
  if (!f)
    return SD_ERROR("%s: cannot open", path);
  char line[256];
  double loss[STEPS];
  int n = 0;
  while (fgets(line, sizeof line, f) && n < STEPS) {
    long step, epoch;
    double l;
    if (sscanf(line, "%ld,%ld,%lf", &step, &epoch, &l) == 3)
      loss[n++] = l;
  }
  fclose(f);
  if (n != STEPS)
    return SD_ERROR("%s: %d losses, expected %d", path, n, STEPS);
  *first = *last = 0;
  for (int i = 0; i < 5; i++) {
    *first += loss[i] / 5;
    *last += loss[STEPS - 5 + i] / 5;
  }
  return 0;
}

int main(void) {
  char dir[] = "/tmp/sdbatch-train-behaviour.XXXXXX";
  if (!CHECK(mkdtemp(dir), "mkdtemp"))
    return sd_test_finish();
  char images[600], out[600], cfg_path[600], cmd[2000];
  snprintf(images, sizeof images, "%s/instance", dir);
  snprintf(out, sizeof out, "%s/out", dir);
  snprintf(cfg_path, sizeof cfg_path, "%s/train.yaml", dir);
  static double mean_rgb[SIDE * SIDE * 3];
  int ok =
      CHECK(mkdir(images, 0777) == 0, "mkdir %s", images) &&
      CHECK(write_instances(images, mean_rgb) == 0, "instance pictures: %s", sd_error_message());
  FILE *f = ok ? fopen(cfg_path, "w") : NULL;
  if (f) {
    fprintf(f,
            "pretrained_model: %s/tiny-sd1\ninstance_data_dir: instance\ninstance_prompt: %s\n"
            "output_dir: out\nresolution: %d\ntrain_batch_size: %d\nmax_train_steps: %d\n"
            "learning_rate: 1.0e-3\nlr_warmup_steps: 0\ncheckpointing_steps: 1000\nseed: 0\n",
            SD_TEST_FIXTURES, prompt, SIDE, IMAGES, STEPS);
    fclose(f);
  }
  sd_dreambooth_config cfg;
  sd_dreambooth_options opt = {.threads = 1};
  sd_dreambooth_result result;
  ok =
      ok && CHECK(sd_dreambooth_config_load(cfg_path, &cfg) == 0, "config: %s", sd_error_message());
  if (ok) {
    ok = CHECK(sd_dreambooth_train(&cfg, &opt, &result) == 0, "train: %s", sd_error_message());
    printf("trained %lld steps of %d pictures in %.2f s (%.3f s/step)\n", (long long)result.steps,
           result.images, result.seconds, result.seconds / (double)STEPS);
    sd_dreambooth_config_free(&cfg);
  }
  char model[600], log[700];
  snprintf(model, sizeof model, "%s/tiny-sd1", SD_TEST_FIXTURES);
  snprintf(log, sizeof log, "%s/loss.csv", out);
  double first = 0, last = 0;
  ok = ok && CHECK(read_losses(log, &first, &last) == 0, "%s", sd_error_message());
  if (ok)
    printf("loss: mean of the first 5 steps %.4f, of the last 5 %.4f\n", first, last);
  if (ok)
    CHECK(last < LOSS_FACTOR * first,
          "loss: first 5 steps %.4f, last 5 %.4f (must fall below %.1fx)", first, last,
          LOSS_FACTOR);
  static float target[4 * 8 * 8];
  measure before, after;
  ok = ok && CHECK(render_measure(model, images, mean_rgb, target, &before) == 0,
                   "render before: %s", sd_error_message());
  ok = ok && CHECK(render_measure(out, images, mean_rgb, target, &after) == 0, "render after: %s",
                   sd_error_message());
  if (ok) {
    printf("latent distance to the instance latents: before %.3f, after %.3f (%.1fx lower)\n",
           before.latent, after.latent, before.latent / after.latent);
    printf("pixel distance to the mean instance picture: before %.1f, after %.1f (not asserted)\n",
           before.pixel, after.pixel);
    CHECK(after.latent * LATENT_FACTOR < before.latent,
          "renders moved toward the instance latents by %.1fx (at least %.0fx expected)",
          before.latent / after.latent, LATENT_FACTOR);
  }
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    printf("could not remove %s\n", dir);
  return sd_test_finish();
}
