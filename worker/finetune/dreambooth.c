/* The DreamBooth training loop of `sdbatch train` (dreambooth.h). Per optimizer step, from two
 * torch-compatible cpu generators (docs/training.md, "Random streams"):
 *   order_rng (seed):     torch.randperm(images) at the start of every epoch
 *   draw_rng (seed + 1):  per micro-batch, per item its RandomCrop offsets and flip draw; then
 *                         latent_dist.sample()'s randn (the micro-batch's latent shape), the
 *                         noise randn of the same shape, torch.randint(0, T, (items,))
 * An optimizer step takes gradient_accumulation_steps micro-batches of train_batch_size items
 * from the epoch's order (fewer at the epoch's end, as the script's dataloader and accelerate's
 * sync at the end of an epoch) and runs one sd_unet_trainer_step over all of them (in LoRA mode
 * one sd_lora_trainer_step, A initialised from a third generator, seed + 2). */
#include "dreambooth.h"

#include "dreambooth_state.h"
#include "instance_data.h"

#include "../model/clip_text.h"
#include "../model/grads.h"
#include "../model/unet.h"
#include "../model/vae.h"
#include "../pipeline/engine.h"
#include "../text/clip_tokenizer.h"
#include "../train/lora_trainer.h"
#include "../train/unet_trainer.h"

#include "../../kernels/error.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct run {
  const sd_dreambooth_config *cfg;
  const sd_dreambooth_options *opt;
  sd_engine *engine;
  sd_backend *be;
  sd_engine_networks nets;
  const sd_model_files *model;
  sd_instance_data data;
  sd_unet_trainer *trainer;    /* a full fine-tune's, or NULL */
  sd_lora_trainer *lora;       /* LoRA mode's, or NULL */
  sd_dreambooth_params params; /* the trained parameters, for checkpoints */
  int channels, side;          /* latent channels, latent side (resolution / 8) */
  int64_t per_item;            /* channels x side x side */
  int max_items;               /* train_batch_size x gradient_accumulation_steps */
  int64_t batches;             /* micro-batches per epoch: ceil(images / train_batch_size) */
  int64_t total_steps;         /* max_train_steps */
  float **moments;             /* (images x 2): (image, flipped)'s (2 C, side, side), or NULL */
  sd_tensor context;           /* (max_items, L, D) the instance prompt's embedding, repeated */
  sd_tensor latents, noise;    /* (max_items, C, side, side) */
  float *pixels;               /* (3, resolution, resolution) one item's */
  float *host_latents, *host_noise, *eps; /* (max_items, C, side, side) */
  int32_t *timesteps;                     /* (max_items) */
  int64_t *drawn_timesteps;               /* (train_batch_size) */
  float *moments_step; /* (train_batch_size, 2 C, side, side) one micro-batch's moments */
  sd_dreambooth_position pos;
  sd_dreambooth_fingerprint fp;
  FILE *log;
  char log_path[4200];
} run;

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Whether path is absent or an empty folder. */
static int folder_empty(const char *path, bool *exists, bool *empty) {
  struct stat st;
  *exists = stat(path, &st) == 0;
  *empty = true;
  if (!*exists)
    return errno == ENOENT ? 0 : SD_ERROR("%s: %s", path, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return SD_ERROR("output_dir %s exists and is not a folder", path);
  DIR *d = opendir(path);
  if (!d)
    return SD_ERROR("output_dir %s: cannot read: %s", path, strerror(errno));
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      *empty = false;
  closedir(d);
  return 0;
}

/* Checks of the paths, before anything is loaded. */
static int check_paths(const sd_dreambooth_config *cfg, const sd_dreambooth_options *opt) {
  struct stat st;
  if (stat(cfg->pretrained_model, &st) < 0)
    return SD_ERROR("%s: pretrained_model %s: %s", cfg->path, cfg->pretrained_model,
                    strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return SD_ERROR("%s: pretrained_model %s is a single file; sdbatch train needs a diffusers "
                    "folder (single-file checkpoints are not supported yet: convert it with "
                    "diffusers' StableDiffusionPipeline.from_single_file(...).save_pretrained)",
                    cfg->path, cfg->pretrained_model);
  char a[PATH_MAX], b[PATH_MAX];
  if (realpath(cfg->pretrained_model, a) && realpath(cfg->output_dir, b) && !strcmp(a, b))
    return SD_ERROR("%s: output_dir is the pretrained model's folder; choose another", cfg->path);
  bool exists, empty;
  SD_TRY(folder_empty(cfg->output_dir, &exists, &empty));
  if (exists && !empty && !opt->resume)
    return SD_ERROR("%s: output_dir %s already holds files; continue its run with --resume, or "
                    "choose another folder",
                    cfg->path, cfg->output_dir);
  return 0;
}

/* The instance prompt's embedding (the frozen text encoder, run once) repeated max_items times. */
static int encode_prompt(run *r) {
  int length = sd_tokenizer_max_length(r->nets.tokenizer);
  int32_t *ids = malloc((size_t)length * sizeof *ids);
  if (!ids)
    return SD_ERROR("out of memory");
  sd_arena_mark mark = sd_arena_get_mark(r->be);
  sd_tensor hidden = sd_tensor_3d(r->be->ops->act_dtype, 1, length, r->model->clip.hidden_size);
  int rc = sd_tokenizer_encode(r->nets.tokenizer, r->cfg->instance_prompt, ids);
  if (rc == 0)
    rc = sd_tensor_alloc(r->be, &hidden);
  if (rc == 0)
    rc = sd_clip_text_forward(r->nets.clip, ids, 1, &hidden);
  int64_t row = rc == 0 ? sd_tensor_numel(&hidden) : 0;
  float *host = rc == 0 ? malloc((size_t)(row * r->max_items) * sizeof(float)) : NULL;
  if (rc == 0 && !host)
    rc = SD_ERROR("out of memory");
  if (rc == 0)
    rc = sd_tensor_download_f32(r->be, &hidden, host);
  if (rc == 0) {
    for (int i = 1; i < r->max_items; i++)
      memcpy(host + i * row, host, (size_t)row * sizeof(float));
    r->context =
        sd_tensor_3d(r->be->ops->act_dtype, r->max_items, hidden.shape[1], hidden.shape[2]);
  }
  sd_arena_release(r->be, mark);
  if (rc == 0)
    rc = sd_tensor_alloc_persistent(r->be, &r->context);
  if (rc == 0)
    rc = sd_tensor_upload_f32(r->be, &r->context, host);
  free(host);
  free(ids);
  return rc < 0 ? sd_error_context("encoding instance_prompt") : 0;
}

/* The trainer of the config's mode and its parameter list. LoRA mode: rank cfg->rank, alpha =
 * rank (train_dreambooth_lora.py), the script's targets and gaussian init, A from seed + 2. */
static int make_trainer(run *r, const sd_unet_train_config *tc) {
  const sd_dreambooth_config *cfg = r->cfg;
  int rc;
  if (cfg->lora) {
    sd_lora_train_config lc = sd_lora_train_config_init();
    lc.train = *tc;
    lc.rank = cfg->rank;
    lc.alpha = (double)cfg->rank;
    rc = sd_lora_trainer_create(r->be, r->nets.unet, r->nets.unet_weights, &r->model->scheduler,
                                &lc, cfg->seed + 2, &r->lora);
    if (rc == 0)
      rc = sd_dreambooth_params_lora(r->lora, &r->params);
  } else {
    rc = sd_unet_trainer_create(r->be, r->nets.unet, r->nets.unet_weights, &r->model->scheduler, tc,
                                NULL, NULL, &r->trainer);
    if (rc == 0)
      rc = sd_dreambooth_params_unet(r->trainer, &r->params);
  }
  return rc < 0 ? sd_error_context("%s: pretrained_model %s", cfg->path, cfg->pretrained_model) : 0;
}

/* Loads the model and the images and makes the trainer: everything before output_dir. */
static int prepare(run *r) {
  const sd_dreambooth_config *cfg = r->cfg;
  SD_TRY(check_paths(cfg, r->opt));
  SD_TRY(sd_instance_data_load(cfg->instance_data_dir, cfg->resolution, &r->data));
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.model_path = cfg->pretrained_model;
  params.device = "cpu";
  params.threads = r->opt->threads;
  params.precision = SD_DTYPE_F32;
  if (sd_engine_open(&params, &r->engine) < 0)
    return sd_error_context("pretrained_model %s", cfg->pretrained_model);
  r->be = sd_engine_backend(r->engine);
  r->model = sd_engine_model(r->engine);
  sd_engine_get_networks(r->engine, &r->nets);
  const sd_unet_config *unet = &r->model->unet;
  int factor = sd_engine_vae_scale_factor(r->engine);
  r->channels = r->model->vae.latent_channels;
  r->side = cfg->resolution / factor;
  r->per_item = (int64_t)r->channels * r->side * r->side;
  if (unet->in_channels != r->channels || unet->num_class_embeds > 0)
    return SD_ERROR("%s: pretrained_model %s: its UNet takes %d input channels%s; sdbatch train "
                    "fine-tunes text-to-image UNets (%d channels, no class labels)",
                    cfg->path, cfg->pretrained_model, unet->in_channels,
                    unet->num_class_embeds > 0 ? " and class labels" : "", r->channels);
  int multiple = factor << (unet->num_levels - 1);
  if (cfg->resolution % multiple != 0)
    return SD_ERROR("%s: resolution: %d is not a multiple of %d (the VAE's factor %d times the "
                    "UNet's %d downsamplings)",
                    cfg->path, cfg->resolution, multiple, factor, unet->num_levels - 1);
  r->max_items = cfg->train_batch_size * cfg->gradient_accumulation_steps;
  r->batches = (r->data.count + cfg->train_batch_size - 1) / cfg->train_batch_size;
  int64_t steps_per_epoch =
      (r->batches + cfg->gradient_accumulation_steps - 1) / cfg->gradient_accumulation_steps;
  r->total_steps = cfg->max_train_steps > 0 ? cfg->max_train_steps
                                            : (int64_t)cfg->num_train_epochs * steps_per_epoch;

  sd_unet_train_config tc = sd_unet_train_config_init();
  tc.adamw.beta1 = cfg->adam_beta1;
  tc.adamw.beta2 = cfg->adam_beta2;
  tc.adamw.eps = cfg->adam_epsilon;
  tc.adamw.weight_decay = cfg->adam_weight_decay;
  tc.learning_rate = cfg->learning_rate;
  if (cfg->scale_lr)
    tc.learning_rate *= (double)cfg->gradient_accumulation_steps * cfg->train_batch_size;
  tc.schedule = cfg->lr_scheduler;
  tc.warmup_steps = cfg->lr_warmup_steps;
  tc.total_steps = r->total_steps;
  tc.max_grad_norm = cfg->max_grad_norm;
  tc.tape = cfg->gradient_checkpointing ? SD_UNET_TAPE_CHECKPOINT : SD_UNET_TAPE_FULL;
  SD_TRY(make_trainer(r, &tc));
  SD_TRY(encode_prompt(r));

  size_t items = (size_t)r->max_items, per = (size_t)r->per_item;
  r->latents = sd_tensor_4d(r->be->ops->act_dtype, r->max_items, r->channels, r->side, r->side);
  r->noise = r->latents;
  SD_TRY(sd_tensor_alloc_persistent(r->be, &r->latents));
  SD_TRY(sd_tensor_alloc_persistent(r->be, &r->noise));
  r->pixels = malloc(3 * (size_t)cfg->resolution * (size_t)cfg->resolution * sizeof(float));
  r->host_latents = malloc(items * per * sizeof(float));
  r->host_noise = malloc(items * per * sizeof(float));
  r->eps = malloc(items * per * sizeof(float));
  r->timesteps = malloc(items * sizeof(int32_t));
  r->drawn_timesteps = malloc((size_t)cfg->train_batch_size * sizeof(int64_t));
  r->moments_step = malloc((size_t)cfg->train_batch_size * 2 * per * sizeof(float));
  r->moments = calloc(2 * (size_t)r->data.count, sizeof *r->moments);
  r->pos.order = malloc((size_t)r->data.count * sizeof *r->pos.order);
  if (!r->pixels || !r->host_latents || !r->host_noise || !r->eps || !r->timesteps ||
      !r->drawn_timesteps || !r->moments_step || !r->moments || !r->pos.order)
    return SD_ERROR("out of memory");
  r->pos.images = r->data.count;
  r->fp = (sd_dreambooth_fingerprint){r->data.count, cfg->resolution, cfg->train_batch_size,
                                      cfg->gradient_accumulation_steps, cfg->seed};
  return 0;
}

static void run_free(run *r) {
  if (r->moments)
    for (int i = 0; i < 2 * r->data.count; i++)
      free(r->moments[i]);
  free(r->moments);
  free(r->pixels);
  free(r->host_latents);
  free(r->host_noise);
  free(r->eps);
  free(r->timesteps);
  free(r->drawn_timesteps);
  free(r->moments_step);
  free(r->pos.order);
  if (r->log)
    fclose(r->log);
  if (r->be) {
    sd_tensor_free(r->be, &r->context);
    sd_tensor_free(r->be, &r->latents);
    sd_tensor_free(r->be, &r->noise);
  }
  sd_dreambooth_params_free(&r->params);
  sd_unet_trainer_free(r->trainer);
  sd_lora_trainer_free(r->lora);
  sd_instance_data_free(&r->data);
  sd_engine_close(r->engine);
}

/* The VAE's moments (2 C, side, side) of one item's pixels, into out. */
static int encode_pixels(run *r, float *out) {
  int res = r->cfg->resolution;
  sd_tensor x = sd_tensor_4d(r->be->ops->act_dtype, 1, 3, res, res);
  sd_tensor m = sd_tensor_4d(r->be->ops->act_dtype, 1, 2 * r->channels, r->side, r->side);
  sd_arena_mark mark = sd_arena_get_mark(r->be);
  int rc = sd_tensor_alloc(r->be, &x);
  if (rc == 0)
    rc = sd_tensor_alloc(r->be, &m);
  if (rc == 0)
    rc = sd_tensor_upload_f32(r->be, &x, r->pixels);
  if (rc == 0)
    rc = sd_vae_encode(r->nets.vae, &x, &m);
  if (rc == 0)
    rc = sd_tensor_download_f32(r->be, &m, out);
  sd_arena_release(r->be, mark);
  return rc;
}

/* Micro-batch `batch` of the epoch's order: its items' latents, noise and timesteps at item
 * offset `first` of the step's buffers. Returns the number of items, or -1. */
static int draw_micro_batch(run *r, int64_t batch, int first) {
  const sd_dreambooth_config *cfg = r->cfg;
  int64_t begin = batch * cfg->train_batch_size;
  int n = (int)(r->data.count - begin < cfg->train_batch_size ? r->data.count - begin
                                                              : cfg->train_batch_size);
  size_t per = (size_t)r->per_item;
  for (int j = 0; j < n; j++) {
    int image = (int)r->pos.order[begin + j];
    sd_instance_view view;
    float *m = r->moments_step + (size_t)j * 2 * per;
    SD_TRY(sd_instance_data_pixels(&r->data, image, cfg->center_crop, cfg->random_flip,
                                   &r->pos.draw_rng, r->pixels, &view));
    /* the same crop on every draw: the moments are the same bits, encoded once per flip */
    float **cached = sd_instance_data_fixed_crop(&r->data, image, cfg->center_crop)
                         ? &r->moments[2 * image + (view.flipped ? 1 : 0)]
                         : NULL;
    if (cached && *cached) {
      memcpy(m, *cached, 2 * per * sizeof(float));
      continue;
    }
    if (encode_pixels(r, m) < 0)
      return sd_error_context("encoding %s", r->data.paths[image]);
    if (cached) {
      *cached = malloc(2 * per * sizeof(float));
      if (!*cached)
        return SD_ERROR("out of memory");
      memcpy(*cached, m, 2 * per * sizeof(float));
    }
  }
  float *lat = r->host_latents + (size_t)first * per, *noise = r->host_noise + (size_t)first * per;
  SD_TRY(sd_rng_randn(&r->pos.draw_rng, r->eps, (size_t)n * per));
  for (int j = 0; j < n; j++)
    sd_vae_latent_sample(r->moments_step + (size_t)j * 2 * per, r->eps + (size_t)j * per,
                         r->channels, (int64_t)r->side * r->side, r->model->vae.scaling_factor,
                         lat + (size_t)j * per);
  SD_TRY(sd_rng_randn(&r->pos.draw_rng, noise, (size_t)n * per));
  SD_TRY(sd_rng_randint(&r->pos.draw_rng, 0, r->model->scheduler.num_train_timesteps,
                        r->drawn_timesteps, (size_t)n));
  for (int j = 0; j < n; j++)
    r->timesteps[first + j] = (int32_t)r->drawn_timesteps[j];
  return n;
}

static int new_epoch_order(run *r) {
  return sd_rng_randperm(&r->pos.order_rng, r->data.count, r->pos.order);
}

static void format_duration(double s, char *buf, size_t size) {
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, size, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else
    snprintf(buf, size, "%ldm%02lds", t / 60, t % 60);
}

static int open_log(run *r) {
  snprintf(r->log_path, sizeof r->log_path, "%s/loss.csv", r->cfg->output_dir);
  if (r->pos.step == 0) {
    r->log = fopen(r->log_path, "w");
    if (r->log && fprintf(r->log, "step,epoch,loss,grad_norm,learning_rate\n") < 0)
      return SD_ERROR("%s: write failed: %s", r->log_path, strerror(errno));
  } else {
    if (truncate(r->log_path, (off_t)r->pos.log_bytes) < 0)
      return SD_ERROR("%s: cannot cut back to the checkpoint's %" PRId64 " bytes: %s", r->log_path,
                      r->pos.log_bytes, strerror(errno));
    r->log = fopen(r->log_path, "a");
  }
  if (!r->log)
    return SD_ERROR("%s: cannot open: %s", r->log_path, strerror(errno));
  return fflush(r->log) == 0 ? 0 : SD_ERROR("%s: write failed", r->log_path);
}

static int checkpoint(run *r) {
  if (fflush(r->log) != 0 || fsync(fileno(r->log)) != 0)
    return SD_ERROR("%s: write failed: %s", r->log_path, strerror(errno));
  r->pos.log_bytes = (int64_t)ftell(r->log);
  return sd_dreambooth_checkpoint_write(r->cfg->output_dir, &r->params, &r->pos, &r->fp,
                                        r->cfg->checkpoints_total_limit);
}

/* Sets up the streams: fresh, or from the latest checkpoint with --resume. */
static int start_position(run *r) {
  sd_rng_init(&r->pos.order_rng, SD_RNG_CPU, r->cfg->seed);
  sd_rng_init(&r->pos.draw_rng, SD_RNG_CPU, r->cfg->seed + 1);
  int64_t latest = 0;
  if (r->opt->resume)
    SD_TRY(sd_dreambooth_checkpoint_latest(r->cfg->output_dir, &latest));
  if (latest > 0) {
    if (sd_dreambooth_checkpoint_read(r->cfg->output_dir, latest, &r->params, &r->pos, &r->fp) < 0)
      return sd_error_context("%s: --resume", r->cfg->path);
    if ((r->lora ? sd_lora_trainer_restore(r->lora, latest)
                 : sd_unet_trainer_restore(r->trainer, latest)) < 0)
      return sd_error_context("resuming from %s/checkpoint-%" PRId64, r->cfg->output_dir, latest);
    if (r->opt->progress)
      fprintf(stderr, "sdbatch train: resuming from %s/checkpoint-%" PRId64 "\n",
              r->cfg->output_dir, latest);
    return 0;
  }
  if (r->opt->resume && r->opt->progress)
    fprintf(stderr, "sdbatch train: no checkpoint in %s; starting at step 0\n", r->cfg->output_dir);
  r->pos.step = r->pos.epoch = r->pos.next_batch = 0;
  return new_epoch_order(r);
}

static int train_steps(run *r, sd_dreambooth_result *result) {
  const sd_dreambooth_config *cfg = r->cfg;
  result->first_step = r->pos.step;
  double t0 = now_seconds(), last_print = 0;
  int64_t done_here = 0;
  sd_unet_step_report report = {0};
  while (r->pos.step < r->total_steps) {
    int items = 0;
    for (int k = 0; k < cfg->gradient_accumulation_steps && r->pos.next_batch < r->batches; k++) {
      int n = draw_micro_batch(r, r->pos.next_batch, items);
      if (n < 0)
        return sd_error_context("step %" PRId64, r->pos.step + 1);
      items += n;
      r->pos.next_batch++;
    }
    sd_tensor latents = sd_tensor_slice0(&r->latents, 0, items);
    sd_tensor noise = sd_tensor_slice0(&r->noise, 0, items);
    sd_tensor context = sd_tensor_slice0(&r->context, 0, items);
    SD_TRY(sd_tensor_upload_f32(r->be, &latents, r->host_latents));
    SD_TRY(sd_tensor_upload_f32(r->be, &noise, r->host_noise));
    SD_TRY(
        r->lora
            ? sd_lora_trainer_step(r->lora, &latents, &noise, r->timesteps, &context, &report)
            : sd_unet_trainer_step(r->trainer, &latents, &noise, r->timesteps, &context, &report));
    r->pos.step++;
    done_here++;
    int64_t epoch = r->pos.epoch;
    if (fprintf(r->log, "%" PRId64 ",%" PRId64 ",%.9g,%.9g,%.9g\n", r->pos.step, r->pos.epoch,
                (double)report.loss, (double)report.grad_norm, report.learning_rate) < 0 ||
        fflush(r->log) != 0)
      return SD_ERROR("%s: write failed: %s", r->log_path, strerror(errno));
    if (r->pos.next_batch == r->batches) {
      r->pos.epoch++;
      r->pos.next_batch = 0;
      SD_TRY(new_epoch_order(r));
    }
    if (r->pos.step % cfg->checkpointing_steps == 0)
      SD_TRY(checkpoint(r));
    double t = now_seconds();
    if (r->opt->progress &&
        (t - last_print >= 2.0 || r->pos.step == r->total_steps || done_here == 1)) {
      last_print = t;
      double rate = (double)done_here / (t - t0);
      char eta[32];
      format_duration((double)(r->total_steps - r->pos.step) / rate, eta, sizeof eta);
      fprintf(stderr,
              "sdbatch train: step %" PRId64 "/%" PRId64 ", epoch %" PRId64
              ", loss %.4f, lr %.3g, %.2f steps/s, ETA %s\n",
              r->pos.step, r->total_steps, epoch, (double)report.loss, report.learning_rate, rate,
              eta);
    }
  }
  result->seconds = now_seconds() - t0;
  result->last_loss = report.loss;
  return 0;
}

int sd_dreambooth_train(const sd_dreambooth_config *cfg, const sd_dreambooth_options *opt,
                        sd_dreambooth_result *result) {
  memset(result, 0, sizeof *result);
  run r = {.cfg = cfg, .opt = opt};
  int rc = prepare(&r);
  if (rc == 0 && mkdir(cfg->output_dir, 0777) < 0 && errno != EEXIST)
    rc = SD_ERROR("output_dir %s: cannot make the folder: %s", cfg->output_dir, strerror(errno));
  if (rc == 0)
    rc = start_position(&r);
  if (rc == 0)
    rc = open_log(&r);
  if (rc == 0 && opt->progress)
    fprintf(stderr,
            "sdbatch train: %d instance images, %" PRId64 " steps of %d x %d items at %d px, "
            "from step %" PRId64 "%s\n",
            r.data.count, r.total_steps, cfg->gradient_accumulation_steps, cfg->train_batch_size,
            cfg->resolution, r.pos.step, cfg->lora ? ", LoRA" : "");
  if (rc == 0)
    rc = train_steps(&r, result);
  if (rc == 0 && r.log && (fflush(r.log) != 0 || fsync(fileno(r.log)) != 0))
    rc = SD_ERROR("%s: write failed: %s", r.log_path, strerror(errno));
  if (rc == 0)
    rc = r.lora ? sd_dreambooth_write_lora(cfg->output_dir, r.lora)
                : sd_dreambooth_write_model(cfg->pretrained_model, cfg->output_dir, r.trainer);
  result->steps = r.pos.step;
  result->images = r.data.count;
  run_free(&r);
  return rc;
}
