/* The demo model's training recipe (demo_train.h). */
#include "demo_train.h"

#include "train_state.h"

#include "../data/shapes.h"
#include "../io/file_util.h"
#include "../io/model_files.h"
#include "../io/safetensors.h"
#include "../io/weights.h"
#include "../model/clip_text.h"
#include "../model/grads.h"
#include "../model/unet.h"
#include "../model/vae.h"
#include "../pipeline/demo_model.h"
#include "../pipeline/engine.h"
#include "../rng/rng.h"
#include "../text/clip_tokenizer.h"
#include "../train/unet_trainer.h"
#include "../train/clip_trainer.h"
#include "../train/vae_trainer.h"

#include "../../kernels/error.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SIDE         64 /* the pictures' side */
#define STATE_FORMAT "sdbatch-demo-1"
#define PATH_LEN     4200

/* Dataset items of each use, far apart: the VAE's steps, the UNet's steps, the scale pictures. */
#define VAE_ITEMS   INT64_C(0)
#define UNET_ITEMS  (INT64_C(1) << 40)
#define SCALE_ITEMS (INT64_C(2) << 40)

typedef enum phase { PHASE_VAE = 1, PHASE_UNET = 2, PHASE_SCALE = 3 } phase;

sd_demo_recipe sd_demo_recipe_default(void) {
  return (sd_demo_recipe){
      .seed = 1,
      .vae_steps = 4500,
      .vae_batch = 8,
      .vae_learning_rate = 4e-4,
      .vae_warmup = 100,
      .vae_kl_weight = 1e-6,
      .vae_saturation_weight = 10.0,
      .scale_images = 512,
      .unet_steps = 30000,
      .unet_batch = 8,
      .unet_learning_rate = 5e-4,
      .unet_warmup = 300,
      .caption_dropout = 0.1,
      .checkpoint_every = 250,
      .text_encoder_learning_rate = 1e-4,
      .caption_templates = SD_SHAPE_TEMPLATES,
  };
}

sd_demo_recipe sd_demo_recipe_quick(void) {
  sd_demo_recipe r = sd_demo_recipe_default();
  r.vae_steps = 40;
  r.vae_batch = 4;
  r.vae_learning_rate = 1e-3;
  r.vae_warmup = 5;
  /* Plain L1: a weighted loss's value swings with how much of each 4-picture batch is shape, and
   * 40 steps are too few for its fall to show through that (test_train_demo checks the fall). */
  r.vae_saturation_weight = 0.0;
  r.scale_images = 16;
  r.unet_steps = 40;
  r.unet_batch = 4;
  r.unet_learning_rate = 1e-3;
  r.unet_warmup = 5;
  r.checkpoint_every = 5;
  r.text_encoder_learning_rate = 1e-3;
  return r;
}

void sd_demo_recipe_json(const sd_demo_recipe *r, char *out, size_t size) {
  char text_encoder[128] = "";
  if (r->text_encoder_learning_rate != 0 || r->caption_templates != SD_SHAPE_TEMPLATES_V1)
    snprintf(text_encoder, sizeof text_encoder,
             ", \"text_encoder_learning_rate\": %.9g, \"caption_templates\": %d",
             r->text_encoder_learning_rate, r->caption_templates);
  snprintf(out, size,
           "{\"format\": \"%s\", \"seed\": %" PRIu64 ", \"vae_steps\": %" PRId64
           ", \"vae_batch\": %d, \"vae_learning_rate\": %.9g, \"vae_warmup\": %" PRId64
           ", \"vae_kl_weight\": %.9g, \"vae_saturation_weight\": %.9g, \"scale_images\": %d, "
           "\"unet_steps\": %" PRId64
           ", \"unet_batch\": %d, \"unet_learning_rate\": %.9g, \"unet_warmup\": %" PRId64
           ", \"caption_dropout\": %.9g, \"checkpoint_every\": %" PRId64 "%s}",
           STATE_FORMAT, r->seed, r->vae_steps, r->vae_batch, r->vae_learning_rate, r->vae_warmup,
           r->vae_kl_weight, r->vae_saturation_weight, r->scale_images, r->unet_steps,
           r->unet_batch, r->unet_learning_rate, r->unet_warmup, r->caption_dropout,
           r->checkpoint_every, text_encoder);
}

/* ---- the run ---- */

typedef struct run {
  const char *dir;
  const sd_demo_recipe *recipe;
  const sd_demo_train_options *opt;
  char train_dir[PATH_LEN], init_dir[PATH_LEN];
  sd_backend *be;
  sd_model_files *files;
  sd_weights *clip_weights, *unet_weights, *vae_weights;
  sd_clip_text *clip;
  sd_unet *unet;
  sd_vae *vae;
  sd_tokenizer *tokenizer;
  sd_vae_trainer *vae_trainer;
  sd_unet_trainer *unet_trainer;
  sd_clip_trainer *clip_trainer; /* NULL: the text encoder stays frozen */
  int latent_channels, latent_side;
  int64_t per_item; /* latent values of one picture */
  float scaling_factor;
  uint8_t *rgb;                 /* (SIDE, SIDE, 3) */
  float *pixels;                /* (max batch, 3, SIDE, SIDE) */
  float *moments;               /* (max batch, 2 C, side, side) */
  float *eps, *latents, *noise; /* (max batch, C, side, side) */
  float *context;               /* (max batch, L, D) */
  int32_t *ids;                 /* (max batch, L) */
  int64_t *drawn;               /* (max batch) */
  int32_t *timesteps;
  sd_tensor images_t, latents_t, noise_t, context_t; /* persistent, at the largest batch */
  sd_tensor dcontext_t; /* persistent, (unet batch, L, D), when the text encoder trains */
  double t0;
} run;

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t mix64(uint64_t x) { /* splitmix64's finaliser */
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/* The generator of one step of one phase. */
static void step_rng(const run *r, phase p, int64_t step, sd_rng *rng) {
  uint64_t seed = mix64(mix64(r->recipe->seed) ^ ((uint64_t)p << 56) ^ (uint64_t)step);
  sd_rng_init(rng, SD_RNG_CPU, seed & 0x7fffffffu);
}

/* Whether dataset item `index`'s caption is dropped (the empty prompt) in the UNet phase. */
static bool caption_dropped(const run *r, int64_t index) {
  uint64_t h = mix64(mix64(r->recipe->seed ^ 0xC0FFEEull) ^ (uint64_t)index);
  return (double)(h >> 11) * 0x1.0p-53 < r->recipe->caption_dropout;
}

/* Dataset item index drawn into pixels (3, SIDE, SIDE) in [-1, 1]; its caption into caption. */
static void draw_item(run *r, int64_t index, float *pixels, char *caption) {
  sd_shape_item item;
  sd_shapes_item_from(r->recipe->seed, index, r->recipe->caption_templates, &item);
  sd_shapes_draw(&item, SIDE, r->rgb);
  const int64_t hw = (int64_t)SIDE * SIDE;
  for (int64_t p = 0; p < hw; p++)
    for (int c = 0; c < 3; c++)
      pixels[c * hw + p] = (float)r->rgb[3 * p + c] / 127.5f - 1.0f;
  if (caption)
    snprintf(caption, SD_SHAPE_CAPTION_LEN, "%s", item.caption);
}

static int folder_state(const char *path, bool *exists, bool *empty) {
  *exists = false;
  *empty = true;
  DIR *d = opendir(path);
  if (!d) {
    if (errno == ENOENT)
      return 0;
    return SD_ERROR("%s: cannot read: %s", path, strerror(errno));
  }
  *exists = true;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      *empty = false;
  closedir(d);
  return 0;
}

static int read_small_file(const char *path, char *buf, size_t size, bool *found) {
  FILE *f = fopen(path, "rb");
  *found = f != NULL;
  buf[0] = 0;
  if (!f)
    return errno == ENOENT ? 0 : SD_ERROR("%s: cannot open: %s", path, strerror(errno));
  size_t n = fread(buf, 1, size - 1, f);
  buf[n] = 0;
  fclose(f);
  return 0;
}

static int write_small_file(const char *path, const char *text) {
  char tmp[PATH_LEN + 8];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f)
    return SD_ERROR("%s: cannot create: %s", tmp, strerror(errno));
  bool ok = fputs(text, f) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
  ok = fclose(f) == 0 && ok;
  if (!ok || rename(tmp, path) < 0)
    return SD_ERROR("%s: write failed: %s", path, strerror(errno));
  return 0;
}

/* dir, dir/train, the untrained model and recipe.json: made fresh, or checked on resume. */
static int prepare_folders(run *r) {
  bool exists, empty;
  SD_TRY(folder_state(r->dir, &exists, &empty));
  if (exists && !empty && !r->opt->resume)
    return SD_ERROR("%s already holds files; continue its run with --resume, or choose another "
                    "folder",
                    r->dir);
  SD_TRY(sd_make_folder(r->dir));
  snprintf(r->train_dir, sizeof r->train_dir, "%s/train", r->dir);
  snprintf(r->init_dir, sizeof r->init_dir, "%s/train/init", r->dir);
  SD_TRY(sd_make_folder(r->train_dir));
  /* what a killed run's writes left: state files', recipe.json's and the untrained model's
   * temporaries */
  SD_TRY(sd_remove_entries_containing(r->train_dir, ".tmp"));
  char path[PATH_LEN], want[1024], have[1024];
  sd_demo_recipe_json(r->recipe, want, sizeof want - 1);
  strcat(want, "\n");
  snprintf(path, sizeof path, "%s/recipe.json", r->train_dir);
  bool found;
  SD_TRY(read_small_file(path, have, sizeof have, &found));
  if (found && strcmp(have, want) != 0)
    return SD_ERROR("%s: this run was started with another recipe; an exact resume needs the "
                    "same options (it has %s)",
                    path, have);
  if (!found)
    SD_TRY(write_small_file(path, want));
  SD_TRY(folder_state(r->init_dir, &exists, &empty));
  if (!exists || empty) {
    sd_demo_model_params params = {
        .seed = r->recipe->seed, .bpe_gz = r->opt->bpe_gz, .shapes = true};
    if (sd_demo_model_write(r->init_dir, &params) < 0)
      return sd_error_context("writing the untrained model");
  }
  return 0;
}

static int load_model(run *r) {
  r->be = sd_backend_cpu_create(r->opt->threads);
  if (!r->be)
    return sd_error_context("creating the CPU backend");
  SD_TRY(sd_model_files_open(r->init_dir, NULL, NULL, &r->files));
  const sd_model_files *f = r->files;
  SD_TRY(sd_weights_upload(r->be, f->clip_tensors, "text_encoder", &r->clip_weights));
  SD_TRY(sd_weights_upload(r->be, f->unet_tensors, "unet", &r->unet_weights));
  SD_TRY(sd_weights_upload(r->be, f->vae_tensors, "vae", &r->vae_weights));
  SD_TRY(sd_clip_text_create(r->be, &f->clip, r->clip_weights, &r->clip));
  SD_TRY(sd_unet_create(r->be, &f->unet, r->unet_weights, &r->unet));
  SD_TRY(sd_vae_create(r->be, &f->vae, r->vae_weights, &r->vae));
  SD_TRY(sd_tokenizer_open_for_model(&f->tokenizer, &r->tokenizer));
  int factor = 1 << (f->vae.num_levels - 1);
  r->latent_channels = f->vae.latent_channels;
  r->latent_side = SIDE / factor;
  r->per_item = (int64_t)r->latent_channels * r->latent_side * r->latent_side;

  const sd_demo_recipe *rc = r->recipe;
  size_t batch = (size_t)(rc->vae_batch > rc->unet_batch ? rc->vae_batch : rc->unet_batch);
  size_t per = (size_t)r->per_item, length = (size_t)sd_tokenizer_max_length(r->tokenizer);
  size_t width = (size_t)f->clip.hidden_size;
  r->rgb = malloc(3 * SIDE * SIDE);
  r->pixels = malloc(batch * 3 * SIDE * SIDE * sizeof(float));
  r->moments = malloc(batch * 2 * per * sizeof(float));
  r->eps = malloc(batch * per * sizeof(float));
  r->latents = malloc(batch * per * sizeof(float));
  r->noise = malloc(batch * per * sizeof(float));
  r->context = malloc(batch * length * width * sizeof(float));
  r->ids = malloc(batch * length * sizeof(int32_t));
  r->drawn = malloc(batch * sizeof(int64_t));
  r->timesteps = malloc(batch * sizeof(int32_t));
  if (!r->rgb || !r->pixels || !r->moments || !r->eps || !r->latents || !r->noise || !r->context ||
      !r->ids || !r->drawn || !r->timesteps)
    return SD_ERROR("out of memory");
  sd_dtype dt = r->be->ops->act_dtype;
  int b = (int)batch, s = r->latent_side;
  r->images_t = sd_tensor_4d(dt, b, 3, SIDE, SIDE);
  r->latents_t = sd_tensor_4d(dt, b, r->latent_channels, s, s);
  r->noise_t = r->latents_t;
  r->context_t = sd_tensor_3d(dt, b, (int64_t)length, (int64_t)width);
  SD_TRY(sd_tensor_alloc_persistent(r->be, &r->images_t));
  SD_TRY(sd_tensor_alloc_persistent(r->be, &r->latents_t));
  SD_TRY(sd_tensor_alloc_persistent(r->be, &r->noise_t));
  SD_TRY(sd_tensor_alloc_persistent(r->be, &r->context_t));
  if (rc->text_encoder_learning_rate > 0) {
    r->dcontext_t = sd_tensor_3d(dt, rc->unet_batch, (int64_t)length, (int64_t)width);
    SD_TRY(sd_tensor_alloc_persistent(r->be, &r->dcontext_t));
  }
  return 0;
}

static void run_free(run *r) {
  if (r->be) {
    sd_tensor_free(r->be, &r->images_t);
    sd_tensor_free(r->be, &r->latents_t);
    sd_tensor_free(r->be, &r->noise_t);
    sd_tensor_free(r->be, &r->context_t);
    if (r->dcontext_t.data)
      sd_tensor_free(r->be, &r->dcontext_t);
  }
  sd_clip_trainer_free(r->clip_trainer);
  sd_unet_trainer_free(r->unet_trainer);
  sd_vae_trainer_free(r->vae_trainer);
  sd_tokenizer_free(r->tokenizer);
  sd_vae_free(r->vae);
  sd_unet_free(r->unet);
  sd_clip_text_free(r->clip);
  sd_weights_free(r->vae_weights);
  sd_weights_free(r->unet_weights);
  sd_weights_free(r->clip_weights);
  sd_model_files_close(r->files);
  if (r->be)
    sd_backend_destroy(r->be);
  free(r->rgb);
  free(r->pixels);
  free(r->moments);
  free(r->eps);
  free(r->latents);
  free(r->noise);
  free(r->context);
  free(r->ids);
  free(r->drawn);
  free(r->timesteps);
}

/* ---- loss logs and state files ---- */

typedef struct phase_log {
  FILE *file;
  char path[PATH_LEN];
} phase_log;

static int log_open(run *r, const char *name, const char *header, int64_t bytes, phase_log *log) {
  snprintf(log->path, sizeof log->path, "%s/%s", r->train_dir, name);
  if (bytes == 0) {
    log->file = fopen(log->path, "w");
    if (log->file && fputs(header, log->file) < 0)
      return SD_ERROR("%s: write failed: %s", log->path, strerror(errno));
  } else {
    if (truncate(log->path, (off_t)bytes) < 0)
      return SD_ERROR("%s: cannot cut back to the state file's %" PRId64 " bytes: %s", log->path,
                      bytes, strerror(errno));
    log->file = fopen(log->path, "a");
  }
  if (!log->file)
    return SD_ERROR("%s: cannot open: %s", log->path, strerror(errno));
  return 0;
}

static void log_close(phase_log *log) {
  if (log->file)
    fclose(log->file);
  log->file = NULL;
}

/* The means of a phase's loss (the log's second column) over its first and last 10 % of `total`
 * steps (at least one step each), read back from the log, which holds every step of the phase
 * however many processes ran it. */
static int log_means(const phase_log *log, int64_t total, float *first, float *last) {
  FILE *f = fopen(log->path, "r");
  if (!f)
    return SD_ERROR("%s: cannot open: %s", log->path, strerror(errno));
  int64_t window = total / 10 > 0 ? total / 10 : 1, first_n = 0, last_n = 0;
  double first_sum = 0, last_sum = 0;
  char line[256];
  int number = 0;
  while (fgets(line, sizeof line, f)) {
    long long step;
    double loss;
    if (++number == 1)
      continue; /* the header */
    if (sscanf(line, "%lld,%lf", &step, &loss) != 2) {
      fclose(f);
      return SD_ERROR("%s:%d: not a 'step,loss,...' line", log->path, number);
    }
    if (step <= window) {
      first_sum += loss;
      first_n++;
    }
    if (step > total - window) {
      last_sum += loss;
      last_n++;
    }
  }
  fclose(f);
  *first = first_n ? (float)(first_sum / (double)first_n) : 0.0f;
  *last = last_n ? (float)(last_sum / (double)last_n) : 0.0f;
  return 0;
}

static int state_path(const run *r, phase p, char *out, size_t size) {
  snprintf(out, size, "%s/%s-state.safetensors", r->train_dir, p == PHASE_VAE ? "vae" : "unet");
  return 0;
}

static int state_at_vae(void *t, size_t i, float **w, float **m, float **v) {
  return sd_vae_trainer_state_at(t, i, w, m, v);
}

static int state_at_unet(void *t, size_t i, float **w, float **m, float **v) {
  return sd_unet_trainer_state_at(t, i, w, m, v);
}

static int state_at_clip(void *t, size_t i, float **w, float **m, float **v) {
  return sd_clip_trainer_state_at(t, i, w, m, v);
}

/* The trainers whose state a phase's file holds: the VAE's; the UNet's, and the text encoder's
 * when it trains (its names after "text_encoder."). */
static size_t state_views(run *r, phase p, sd_train_state_view views[2]) {
  if (p == PHASE_VAE) {
    views[0] = (sd_train_state_view){sd_vae_trainer_grads(r->vae_trainer), state_at_vae,
                                     r->vae_trainer, NULL};
    return 1;
  }
  views[0] = (sd_train_state_view){sd_unet_trainer_grads(r->unet_trainer), state_at_unet,
                                   r->unet_trainer, NULL};
  if (!r->clip_trainer)
    return 1;
  views[1] = (sd_train_state_view){sd_clip_trainer_grads(r->clip_trainer), state_at_clip,
                                   r->clip_trainer, "text_encoder."};
  return 2;
}

/* The phase's state after `step` steps, with the loss log's length. */
static int state_write(run *r, phase p, int64_t step, phase_log *log) {
  if (fflush(log->file) != 0 || fsync(fileno(log->file)) != 0)
    return SD_ERROR("%s: write failed: %s", log->path, strerror(errno));
  char path[PATH_LEN], step_text[32], bytes_text[32], recipe[1024];
  state_path(r, p, path, sizeof path);
  snprintf(step_text, sizeof step_text, "%" PRId64, step);
  snprintf(bytes_text, sizeof bytes_text, "%ld", ftell(log->file));
  sd_demo_recipe_json(r->recipe, recipe, sizeof recipe);
  const char *keys[4] = {"format", "step", "log_bytes", "recipe"};
  const char *values[4] = {STATE_FORMAT, step_text, bytes_text, recipe};
  sd_train_state_view views[2];
  size_t n = state_views(r, p, views);
  return sd_train_state_write_views(path, views, n, keys, values, 4);
}

/* Reads the phase's state file when there is one: *step its steps (0: none), *log_bytes. */
static int state_read(run *r, phase p, int64_t *step, int64_t *log_bytes) {
  *step = *log_bytes = 0;
  char path[PATH_LEN];
  state_path(r, p, path, sizeof path);
  struct stat st;
  if (stat(path, &st) < 0)
    return errno == ENOENT ? 0 : SD_ERROR("%s: %s", path, strerror(errno));
  sd_train_state_view views[2];
  size_t n = state_views(r, p, views);
  sd_safetensors *f;
  SD_TRY(sd_train_state_read_views(path, STATE_FORMAT, views, n, &f));
  int rc = sd_train_state_meta_int(f, "step", step);
  if (rc == 0)
    rc = sd_train_state_meta_int(f, "log_bytes", log_bytes);
  sd_safetensors_close(f);
  if (rc == 0)
    rc = p == PHASE_VAE ? sd_vae_trainer_restore(r->vae_trainer, *step)
                        : sd_unet_trainer_restore(r->unet_trainer, *step);
  if (rc == 0 && p == PHASE_UNET && r->clip_trainer)
    rc = sd_clip_trainer_restore(r->clip_trainer, *step);
  return rc < 0 ? sd_error_context("resuming from %s", path) : 0;
}

static void format_duration(double s, char *buf, size_t size) {
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, size, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else
    snprintf(buf, size, "%ldm%02lds", t / 60, t % 60);
}

static void progress(run *r, const char *name, int64_t step, int64_t total, int64_t done_here,
                     double start, double *last_print, const char *losses) {
  double t = now_seconds();
  if (!r->opt->progress || (t - *last_print < 5.0 && step != total && done_here != 1))
    return;
  *last_print = t;
  double rate = (double)done_here / (t - start);
  char eta[32];
  format_duration((double)(total - step) / rate, eta, sizeof eta);
  fprintf(stderr, "sdbatch train-demo: %s step %" PRId64 "/%" PRId64 ", %s, %.2f steps/s, ETA %s\n",
          name, step, total, losses, rate, eta);
}

/* ---- phase 1: the VAE ---- */

static int vae_phase(run *r, phase_log *log) {
  const sd_demo_recipe *rc = r->recipe;
  sd_vae_train_config cfg = sd_vae_train_config_init();
  cfg.learning_rate = rc->vae_learning_rate;
  cfg.schedule = SD_LR_COSINE;
  cfg.warmup_steps = rc->vae_warmup;
  cfg.total_steps = rc->vae_steps;
  cfg.max_grad_norm = 1.0;
  cfg.rec_loss = SD_VAE_REC_L1;
  cfg.kl_weight = rc->vae_kl_weight;
  cfg.saturation_weight = rc->vae_saturation_weight;
  SD_TRY(sd_vae_trainer_create(r->be, r->vae, r->vae_weights, &cfg, NULL, NULL, &r->vae_trainer));
  int64_t step, bytes;
  SD_TRY(state_read(r, PHASE_VAE, &step, &bytes));
  if (step > 0 && r->opt->progress)
    fprintf(stderr, "sdbatch train-demo: the VAE resumes at step %" PRId64 "\n", step);
  SD_TRY(log_open(r, "loss-vae.csv", "step,loss,rec_loss,kl_loss,grad_norm,learning_rate\n", bytes,
                  log));
  const int b = rc->vae_batch;
  sd_tensor images = sd_tensor_slice0(&r->images_t, 0, b);
  double start = now_seconds(), last_print = 0;
  int64_t first = step;
  while (step < rc->vae_steps) {
    for (int j = 0; j < b; j++)
      draw_item(r, VAE_ITEMS + step * b + j, r->pixels + (size_t)j * 3 * SIDE * SIDE, NULL);
    sd_rng rng;
    step_rng(r, PHASE_VAE, step, &rng);
    sd_vae_step_report rep;
    SD_TRY(sd_tensor_upload_f32(r->be, &images, r->pixels));
    if (sd_vae_trainer_step(r->vae_trainer, &images, NULL, &rng, &rep) < 0)
      return sd_error_context("the VAE's step %" PRId64, step + 1);
    step++;
    if (fprintf(log->file, "%" PRId64 ",%.9g,%.9g,%.9g,%.9g,%.9g\n", step, (double)rep.loss,
                (double)rep.rec_loss, (double)rep.kl_loss, (double)rep.grad_norm,
                rep.learning_rate) < 0)
      return SD_ERROR("%s: write failed: %s", log->path, strerror(errno));
    if (step % rc->checkpoint_every == 0 || step == rc->vae_steps)
      SD_TRY(state_write(r, PHASE_VAE, step, log));
    char losses[128];
    snprintf(losses, sizeof losses, "loss %.4f (L1 %.4f, KL %.1f)", (double)rep.loss,
             (double)rep.rec_loss, (double)rep.kl_loss);
    progress(r, "VAE", step, rc->vae_steps, step - first, start, &last_print, losses);
  }
  return 0;
}

/* ---- phase 2: the scaling factor ---- */

/* The VAE's moments of batch pictures already in r->pixels, into r->moments. */
static int encode_pixels(run *r, int batch) {
  sd_tensor images = sd_tensor_slice0(&r->images_t, 0, batch);
  sd_tensor moments = sd_tensor_4d(r->be->ops->act_dtype, batch, 2 * r->latent_channels,
                                   r->latent_side, r->latent_side);
  SD_TRY(sd_tensor_upload_f32(r->be, &images, r->pixels));
  sd_arena_mark mark = sd_arena_get_mark(r->be);
  int rc = sd_tensor_alloc(r->be, &moments);
  if (rc == 0)
    rc = sd_vae_encode(r->vae, &images, &moments);
  if (rc == 0)
    rc = sd_tensor_download_f32(r->be, &moments, r->moments);
  sd_arena_release(r->be, mark);
  return rc;
}

/* 1 / std of the latents (posterior samples) of scale_images pictures, as the LDM recipe sets
 * a model's scale factor. */
static int measure_scaling(run *r) {
  const sd_demo_recipe *rc = r->recipe;
  int chunk = rc->vae_batch > rc->unet_batch ? rc->vae_batch : rc->unet_batch;
  sd_rng rng;
  step_rng(r, PHASE_SCALE, 0, &rng);
  double sum = 0, sum_sq = 0;
  int64_t count = 0;
  size_t per = (size_t)r->per_item;
  for (int first = 0; first < rc->scale_images; first += chunk) {
    int n = rc->scale_images - first < chunk ? rc->scale_images - first : chunk;
    for (int j = 0; j < n; j++)
      draw_item(r, SCALE_ITEMS + first + j, r->pixels + (size_t)j * 3 * SIDE * SIDE, NULL);
    SD_TRY(encode_pixels(r, n));
    SD_TRY(sd_rng_randn(&rng, r->eps, (size_t)n * per));
    for (int j = 0; j < n; j++) {
      sd_vae_latent_sample(r->moments + (size_t)j * 2 * per, r->eps + (size_t)j * per,
                           r->latent_channels, (int64_t)r->latent_side * r->latent_side, 1.0f,
                           r->latents);
      for (size_t k = 0; k < per; k++) {
        sum += r->latents[k];
        sum_sq += (double)r->latents[k] * r->latents[k];
      }
      count += (int64_t)per;
    }
  }
  double mean = sum / (double)count;
  double var = (sum_sq - (double)count * mean * mean) / (double)(count - 1);
  if (!(var > 0))
    return SD_ERROR("the VAE's latents have no spread (variance %g): the VAE did not train", var);
  r->scaling_factor = (float)(1.0 / sqrt(var));
  if (r->opt->progress)
    fprintf(stderr,
            "sdbatch train-demo: latents of %d pictures: mean %.4f, std %.4f -> scaling factor "
            "%.6f\n",
            rc->scale_images, mean, sqrt(var), (double)r->scaling_factor);
  return 0;
}

/* ---- phase 3: the UNet ---- */

/* Step `step`'s latents, noise, timesteps and text embeddings, uploaded. */
static int unet_batch(run *r, int64_t step) {
  const int b = r->recipe->unet_batch;
  const size_t per = (size_t)r->per_item;
  const int length = sd_tokenizer_max_length(r->tokenizer);
  char caption[SD_SHAPE_CAPTION_LEN];
  for (int j = 0; j < b; j++) {
    int64_t index = UNET_ITEMS + step * b + j;
    draw_item(r, index, r->pixels + (size_t)j * 3 * SIDE * SIDE, caption);
    if (caption_dropped(r, index))
      caption[0] = 0;
    SD_TRY(sd_tokenizer_encode(r->tokenizer, caption, r->ids + (size_t)j * (size_t)length));
  }
  SD_TRY(encode_pixels(r, b));
  sd_rng rng;
  step_rng(r, PHASE_UNET, step, &rng);
  SD_TRY(sd_rng_randn(&rng, r->eps, (size_t)b * per));
  for (int j = 0; j < b; j++)
    sd_vae_latent_sample(r->moments + (size_t)j * 2 * per, r->eps + (size_t)j * per,
                         r->latent_channels, (int64_t)r->latent_side * r->latent_side,
                         r->scaling_factor, r->latents + (size_t)j * per);
  SD_TRY(sd_rng_randn(&rng, r->noise, (size_t)b * per));
  SD_TRY(sd_rng_randint(&rng, 0, r->files->scheduler.num_train_timesteps, r->drawn, (size_t)b));
  for (int j = 0; j < b; j++)
    r->timesteps[j] = (int32_t)r->drawn[j];

  sd_tensor context = sd_tensor_slice0(&r->context_t, 0, b);
  sd_tensor latents = sd_tensor_slice0(&r->latents_t, 0, b);
  sd_tensor noise = sd_tensor_slice0(&r->noise_t, 0, b);
  SD_TRY(sd_tensor_upload_f32(r->be, &latents, r->latents));
  SD_TRY(sd_tensor_upload_f32(r->be, &noise, r->noise));
  if (r->clip_trainer) /* last: its tape holds the arena until the step */
    return sd_clip_trainer_forward(r->clip_trainer, r->ids, b, &context);
  sd_arena_mark mark = sd_arena_get_mark(r->be);
  sd_tensor hidden = context;
  int rc = sd_tensor_alloc(r->be, &hidden);
  if (rc == 0)
    rc = sd_clip_text_forward(r->clip, r->ids, b, &hidden);
  if (rc == 0)
    rc = sd_tensor_download_f32(r->be, &hidden, r->context);
  sd_arena_release(r->be, mark);
  SD_TRY(rc);
  return sd_tensor_upload_f32(r->be, &context, r->context);
}

static int unet_phase(run *r, phase_log *log) {
  const sd_demo_recipe *rc = r->recipe;
  sd_unet_train_config cfg = sd_unet_train_config_init();
  cfg.learning_rate = rc->unet_learning_rate;
  cfg.schedule = SD_LR_COSINE;
  cfg.warmup_steps = rc->unet_warmup;
  cfg.total_steps = rc->unet_steps;
  cfg.max_grad_norm = 1.0;
  SD_TRY(sd_unet_trainer_create(r->be, r->unet, r->unet_weights, &r->files->scheduler, &cfg, NULL,
                                NULL, &r->unet_trainer));
  if (rc->text_encoder_learning_rate > 0) {
    sd_clip_train_config te = {.adamw = cfg.adamw,
                               .learning_rate = rc->text_encoder_learning_rate,
                               .schedule = cfg.schedule,
                               .warmup_steps = cfg.warmup_steps,
                               .total_steps = cfg.total_steps,
                               .max_grad_norm = cfg.max_grad_norm};
    SD_TRY(
        sd_clip_trainer_create(r->be, r->clip, r->clip_weights, &te, NULL, NULL, &r->clip_trainer));
  }
  int64_t step, bytes;
  SD_TRY(state_read(r, PHASE_UNET, &step, &bytes));
  if (step > 0 && r->opt->progress)
    fprintf(stderr, "sdbatch train-demo: the UNet resumes at step %" PRId64 "\n", step);
  SD_TRY(log_open(r, "loss-unet.csv",
                  r->clip_trainer ? "step,loss,grad_norm,learning_rate,text_encoder_grad_norm\n"
                                  : "step,loss,grad_norm,learning_rate\n",
                  bytes, log));
  const int b = rc->unet_batch;
  sd_tensor latents = sd_tensor_slice0(&r->latents_t, 0, b);
  sd_tensor noise = sd_tensor_slice0(&r->noise_t, 0, b);
  sd_tensor context = sd_tensor_slice0(&r->context_t, 0, b);
  double start = now_seconds(), last_print = 0;
  int64_t first = step;
  while (step < rc->unet_steps) {
    sd_unet_step_report rep;
    sd_clip_step_report te_rep = {0};
    sd_tensor dcontext = r->clip_trainer ? sd_tensor_slice0(&r->dcontext_t, 0, b) : context;
    if (unet_batch(r, step) < 0 ||
        sd_unet_trainer_step_dcontext(r->unet_trainer, &latents, &noise, r->timesteps, &context,
                                      r->clip_trainer ? &dcontext : NULL, &rep) < 0 ||
        (r->clip_trainer && sd_clip_trainer_step(r->clip_trainer, &dcontext, &te_rep) < 0)) {
      sd_clip_trainer_drop(r->clip_trainer);
      return sd_error_context("the UNet's step %" PRId64, step + 1);
    }
    step++;
    char extra[32] = "";
    if (r->clip_trainer)
      snprintf(extra, sizeof extra, ",%.9g", (double)te_rep.grad_norm);
    if (fprintf(log->file, "%" PRId64 ",%.9g,%.9g,%.9g%s\n", step, (double)rep.loss,
                (double)rep.grad_norm, rep.learning_rate, extra) < 0)
      return SD_ERROR("%s: write failed: %s", log->path, strerror(errno));
    if (step % rc->checkpoint_every == 0 || step == rc->unet_steps)
      SD_TRY(state_write(r, PHASE_UNET, step, log));
    char losses[64];
    snprintf(losses, sizeof losses, "loss %.4f", (double)rep.loss);
    progress(r, "UNet", step, rc->unet_steps, step - first, start, &last_print, losses);
  }
  return 0;
}

/* ---- the trained model ---- */

/* The trained weights of a phase as fp16 safetensors (torch's .half(): round to nearest even). */
static int write_fp16(const sd_train_state_view *view, const char *path) {
  size_t n = sd_grads_count(view->grads);
  sd_st_tensor *tensors = calloc(n, sizeof *tensors);
  uint16_t **halves = calloc(n, sizeof *halves);
  int rc = tensors && halves ? 0 : SD_ERROR("out of memory");
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const sd_tensor *w = sd_grads_weight_at(view->grads, i);
    size_t numel = (size_t)sd_tensor_numel(w);
    float *master, *m, *v;
    rc = view->state_at(view->trainer, i, &master, &m, &v);
    halves[i] = rc == 0 ? malloc(numel * sizeof(uint16_t)) : NULL;
    if (rc == 0 && !halves[i])
      rc = SD_ERROR("out of memory");
    for (size_t k = 0; rc == 0 && k < numel; k++)
      halves[i][k] = sd_f32_to_f16(master[k]);
    tensors[i] = (sd_st_tensor){.name = sd_grads_name_at(view->grads, i),
                                .dtype = SD_DTYPE_F16,
                                .ndim = w->ndim,
                                .data = halves[i],
                                .bytes = numel * sizeof(uint16_t)};
    memcpy(tensors[i].shape, w->shape, sizeof tensors[i].shape);
  }
  const char *keys[1] = {"format"}, *values[1] = {"pt"};
  if (rc == 0)
    rc = sd_safetensors_write(path, tensors, n, keys, values, 1);
  for (size_t i = 0; halves && i < n; i++)
    free(halves[i]);
  free(halves);
  free(tensors);
  return rc;
}

/* dst: the JSON file src after edit(json, ctx), printed by cJSON with a final newline. */
static int rewrite_json(const char *src, const char *dst, void (*edit)(cJSON *json, void *ctx),
                        void *ctx) {
  char *text = malloc(1 << 16);
  if (!text)
    return SD_ERROR("out of memory");
  bool found;
  int rc = read_small_file(src, text, 1 << 16, &found);
  cJSON *json = rc == 0 && found ? cJSON_Parse(text) : NULL;
  free(text);
  if (!json)
    return rc < 0 ? rc : SD_ERROR("%s: cannot read as JSON", src);
  edit(json, ctx);
  char *out = cJSON_Print(json);
  cJSON_Delete(json);
  if (!out)
    return SD_ERROR("out of memory");
  size_t len = strlen(out);
  char *with_newline = malloc(len + 2);
  if (!with_newline) {
    free(out);
    return SD_ERROR("out of memory");
  }
  memcpy(with_newline, out, len);
  memcpy(with_newline + len, "\n", 2);
  free(out);
  rc = write_small_file(dst, with_newline);
  free(with_newline);
  return rc;
}

/* vae/config.json of the untrained model with the measured scaling factor. */
static void set_scaling_factor(cJSON *json, void *ctx) {
  const run *r = ctx;
  cJSON_ReplaceItemInObject(json, "scaling_factor", cJSON_CreateNumber((double)r->scaling_factor));
}

/* The recipe with the trained text encoder names DDIM as the model's scheduler (PNDM's multistep
 * extrapolation overshoots this model's guided steps at guidance 7.5: docs/demo-model.md). */
static void set_ddim_scheduler(cJSON *json, void *ctx) {
  (void)ctx;
  cJSON_ReplaceItemInObject(json, "_class_name", cJSON_CreateString("DDIMScheduler"));
  cJSON_DeleteItemFromObject(json, "skip_prk_steps");
}

static void set_ddim_in_index(cJSON *json, void *ctx) {
  (void)ctx;
  cJSON *pair = cJSON_CreateArray();
  cJSON_AddItemToArray(pair, cJSON_CreateString("diffusers"));
  cJSON_AddItemToArray(pair, cJSON_CreateString("DDIMScheduler"));
  cJSON_ReplaceItemInObject(json, "scheduler", pair);
}

#define MODEL_README_HEAD                                                                          \
  "# sdbatch's shapes demo model\n"                                                                \
  "\n"                                                                                             \
  "A small text-to-image latent diffusion model trained from scratch by `sdbatch train-demo`\n"    \
  "on the CPU, on the synthetic shapes dataset (`sdbatch make-shapes`, docs/shapes.md):\n"         \
  "64x64 pictures of a circle, square, triangle, diamond or star in one of eight colours,\n"       \
  "three sizes and five places, on gray backgrounds. Prompts such as \"a red circle on a\n"        \
  "white background\" or \"a small blue star in the top left corner\".\n"                          \
  "\n"                                                                                             \
  "Architecture: Stable Diffusion 1.x's (diffusers StableDiffusionPipeline): a factor-4\n"         \
  "AutoencoderKL (32, 64, 64 channels), a 2-level UNet2DConditionModel (64, 128 channels),\n"      \
  "and a 2-layer CLIP text encoder 64 wide "

static const char *const model_readme =
    MODEL_README_HEAD "whose weights are random and frozen. Recipe, seed\n"
                      "and the SHA-256 of these files: docs/demo-model.md.\n";
static const char *const model_readme_trained =
    MODEL_README_HEAD "trained with the UNet from random weights. Recipe,\n"
                      "seed and the SHA-256 of these files: docs/demo-model.md.\n"
                      "\n"
                      "Its scheduler is DDIM (scheduler/scheduler_config.json): PNDM's multistep\n"
                      "extrapolation overshoots its guided steps at guidance 7.5. Guidance 2.5\n"
                      "to 7.5 work; what test_demo_semantic measured: docs/demo-model.md.\n";

/* dir/model, assembled in dir/.model.tmp and renamed into place. A resumed run whose model was
 * written already (killed just after) leaves it as it is: the same recipe wrote it. */
static int write_model(run *r) {
  char final[PATH_LEN], tmp[PATH_LEN], src[PATH_LEN], dst[PATH_LEN];
  snprintf(final, sizeof final, "%s/model", r->dir);
  snprintf(tmp, sizeof tmp, "%s/.model.tmp", r->dir);
  bool exists, empty;
  SD_TRY(folder_state(final, &exists, &empty));
  if (exists && !empty)
    return 0;
  SD_TRY(sd_remove_tree(tmp));
  static const char *const folders[] = {"",           "/unet",     "/vae", "/text_encoder",
                                        "/tokenizer", "/scheduler"};
  static const char *const copied[] = {"model_index.json",
                                       "unet/config.json",
                                       "text_encoder/config.json",
                                       "tokenizer/vocab.json",
                                       "tokenizer/merges.txt",
                                       "tokenizer/tokenizer_config.json",
                                       "scheduler/scheduler_config.json"};
  char cmd_path[PATH_LEN];
  for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++) {
    snprintf(cmd_path, sizeof cmd_path, "%s%s", tmp, folders[i]);
    SD_TRY(sd_make_folder(cmd_path));
  }
  for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
    snprintf(src, sizeof src, "%s/%s", r->init_dir, copied[i]);
    snprintf(dst, sizeof dst, "%s/%s", tmp, copied[i]);
    SD_TRY(sd_copy_file(src, dst));
  }
  if (!r->clip_trainer) { /* the frozen encoder: the untrained model's file */
    snprintf(src, sizeof src, "%s/text_encoder/model.safetensors", r->init_dir);
    snprintf(dst, sizeof dst, "%s/text_encoder/model.safetensors", tmp);
    SD_TRY(sd_copy_file(src, dst));
  }
  snprintf(src, sizeof src, "%s/vae/config.json", r->init_dir);
  snprintf(dst, sizeof dst, "%s/vae/config.json", tmp);
  SD_TRY(rewrite_json(src, dst, set_scaling_factor, r));
  if (r->clip_trainer) {
    snprintf(src, sizeof src, "%s/scheduler/scheduler_config.json", r->init_dir);
    snprintf(dst, sizeof dst, "%s/scheduler/scheduler_config.json", tmp);
    SD_TRY(rewrite_json(src, dst, set_ddim_scheduler, NULL));
    snprintf(src, sizeof src, "%s/model_index.json", r->init_dir);
    snprintf(dst, sizeof dst, "%s/model_index.json", tmp);
    SD_TRY(rewrite_json(src, dst, set_ddim_in_index, NULL));
  }
  sd_train_state_view views[2];
  snprintf(dst, sizeof dst, "%s/vae/diffusion_pytorch_model.safetensors", tmp);
  state_views(r, PHASE_VAE, views);
  SD_TRY(write_fp16(&views[0], dst));
  snprintf(dst, sizeof dst, "%s/unet/diffusion_pytorch_model.safetensors", tmp);
  size_t n = state_views(r, PHASE_UNET, views);
  SD_TRY(write_fp16(&views[0], dst));
  snprintf(dst, sizeof dst, "%s/text_encoder/model.safetensors", tmp);
  if (n == 2)
    SD_TRY(write_fp16(&views[1], dst));
  snprintf(dst, sizeof dst, "%s/README.md", tmp);
  SD_TRY(write_small_file(dst, r->clip_trainer ? model_readme_trained : model_readme));
  for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++) {
    snprintf(cmd_path, sizeof cmd_path, "%s%s", tmp, folders[i]);
    SD_TRY(sd_train_state_fsync(cmd_path));
  }
  if (rename(tmp, final) < 0)
    return SD_ERROR("cannot rename %s to %s: %s", tmp, final, strerror(errno));
  return sd_train_state_fsync(r->dir);
}

static int check_recipe(const sd_demo_recipe *rc) {
  if (rc->vae_steps < 1 || rc->unet_steps < 1 || rc->vae_batch < 1 || rc->unet_batch < 1 ||
      rc->vae_batch > 256 || rc->unet_batch > 256 || rc->scale_images < 2 ||
      rc->checkpoint_every < 1 || !(rc->vae_learning_rate > 0) || !(rc->unet_learning_rate > 0) ||
      rc->vae_warmup < 0 || rc->unet_warmup < 0 ||
      !(rc->caption_dropout >= 0 && rc->caption_dropout <= 1) || !(rc->vae_kl_weight >= 0) ||
      !(rc->text_encoder_learning_rate >= 0) || rc->caption_templates < 1 ||
      rc->caption_templates > SD_SHAPE_TEMPLATES)
    return SD_ERROR("train-demo: the recipe's values are out of range (steps, batches (1..256), "
                    "scale_images (>= 2) and checkpoint_every positive, learning rates > 0 (the "
                    "text encoder's >= 0), caption_dropout in [0, 1], caption templates 1..%d)",
                    SD_SHAPE_TEMPLATES);
  return 0;
}

int sd_demo_train(const char *dir, const sd_demo_recipe *recipe,
                  const sd_demo_train_options *options, sd_demo_train_result *result) {
  memset(result, 0, sizeof *result);
  SD_TRY(check_recipe(recipe));
  run r = {.dir = dir, .recipe = recipe, .opt = options, .t0 = now_seconds()};
  phase_log vae_log = {0}, unet_log = {0};
  int rc = prepare_folders(&r);
  if (rc == 0)
    rc = load_model(&r);
  if (rc == 0)
    rc = vae_phase(&r, &vae_log);
  if (rc == 0)
    rc = measure_scaling(&r);
  if (rc == 0)
    rc = unet_phase(&r, &unet_log);
  if (rc == 0)
    rc = write_model(&r);
  log_close(&vae_log);
  log_close(&unet_log);
  if (rc == 0)
    rc = log_means(&vae_log, recipe->vae_steps, &result->vae_first_loss, &result->vae_last_loss);
  if (rc == 0)
    rc =
        log_means(&unet_log, recipe->unet_steps, &result->unet_first_loss, &result->unet_last_loss);
  if (rc == 0)
    result->scaling_factor = r.scaling_factor;
  result->seconds = now_seconds() - r.t0;
  run_free(&r);
  return rc < 0 ? sd_error_context("train-demo %s", dir) : 0;
}
