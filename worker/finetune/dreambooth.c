/* The DreamBooth training loop of `sdbatch train` (dreambooth.h). Per optimizer step, from two
 * torch-compatible cpu generators (docs/training.md, "Random streams"):
 *   order_rng (seed):     torch.randperm(items) at the start of every epoch (items: the instance
 *                         images, with prior preservation max(instance, class images))
 *   draw_rng (seed + 1):  per micro-batch, per item its RandomCrop offsets and flip draw (with
 *                         prior preservation the instance image's, then the class image's); then
 *                         latent_dist.sample()'s randn (the micro-batch's latent shape, all rows),
 *                         the noise randn of the same shape, torch.randint(0, T, (rows,))
 * An optimizer step takes gradient_accumulation_steps micro-batches of train_batch_size items
 * from the epoch's order (fewer at the epoch's end, as the script's dataloader and accelerate's
 * sync at the end of an epoch) and runs one sd_unet_trainer_step over all of them (in LoRA mode
 * one sd_lora_trainer_step, A initialised from a third generator, seed + 2; with
 * train_text_encoder the encoder's A from a fourth, seed + 3). */
#include "dreambooth.h"

#include "dreambooth_state.h"
#include "dreambooth_validation.h"
#include "instance_data.h"

#include "../model/clip_text.h"
#include "../model/grads.h"
#include "../model/unet.h"
#include "../model/vae.h"
#include "../io/png_image.h"
#include "../pipeline/engine.h"
#include "../text/clip_tokenizer.h"
#include "../train/clip_trainer.h"
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
  sd_instance_data cls;        /* prior preservation's class images (count 0 without) */
  bool prior;                  /* with_prior_preservation */
  int rows;                    /* rows per item: 2 with prior preservation (instance, class) */
  int64_t length;              /* the dataset: max(instance, class images), or instance images */
  sd_unet_trainer *trainer;    /* a full fine-tune's, or NULL */
  sd_lora_trainer *lora;       /* LoRA mode's, or NULL */
  sd_clip_trainer *encoder;    /* a full fine-tune's train_text_encoder, or NULL */
  bool single_file_in;         /* pretrained_model is a single file */
  sd_dreambooth_params params; /* the trained parameters, for checkpoints */
  int channels, side;          /* latent channels, latent side (resolution / 8) */
  int64_t per_item;            /* channels x side x side */
  int max_items;               /* train_batch_size x gradient_accumulation_steps */
  int64_t batches;             /* micro-batches per epoch: ceil(length / train_batch_size) */
  int64_t total_steps;         /* max_train_steps */
  float **moments;             /* (images x 2): (image, flipped)'s (2 C, side, side), or NULL */
  float **class_moments;       /* the same for the class images */
  sd_tensor context;           /* (rows x max_items, L, D) the prompts' embeddings */
  sd_tensor latents, noise;    /* (rows x max_items, C, side, side) */
  float *pixels;               /* (3, resolution, resolution) one item's */
  /* (rows x max_items, C, side, side): the step's instance rows first; with prior preservation
   * the class rows are drawn into class_latents, class_noise, class_timesteps and follow them */
  float *host_latents, *host_noise, *eps;
  float *class_latents, *class_noise;
  int32_t *timesteps, *class_timesteps; /* (rows x max_items), (max_items) */
  int64_t *drawn_timesteps;             /* (rows x train_batch_size) */
  float *moments_step; /* (rows x train_batch_size, 2 C, side, side) a micro-batch's moments */
  float *instance_embedding, *class_embedding; /* (L, D) each; class NULL without prior */
  float *host_context;                         /* (rows x max_items, L, D) */
  int64_t embedding_size;                      /* L x D */
  double *weights;                             /* (rows x max_items) the rows' loss weights */
  /* train_text_encoder: the prompts' token ids (2, L) (instance, class), each row's prompt
   * (rows x max_items: 0 instance, 1 class), the step's ids (rows x max_items, L), and the
   * gradient of the loss with respect to context */
  int32_t *prompt_ids;
  int *row_prompt;
  int32_t *step_ids;
  sd_tensor dcontext;
  sd_dreambooth_position pos;
  sd_dreambooth_fingerprint fp;
  FILE *log;
  char log_path[4200];
} run;

/* Data parallel (opt->ranks of more than one rank): every rank draws every random number of a
 * step as one rank would, computes its share of the step's items, and the trainer sums the
 * gradients and the loss over the ranks before clip + AdamW; rank 0 alone writes output_dir. */
static bool parallel(const run *r) {
  return r->opt->ranks && r->opt->ranks->size > 1;
}

static bool writer(const run *r) {
  return !parallel(r) || r->opt->ranks->rank == 0;
}

static int barrier(const run *r, const char *what) {
  if (parallel(r) && r->opt->ranks->barrier(r->opt->ranks->ctx) < 0)
    return sd_error_context("rank %d, waiting for the other ranks %s", r->opt->ranks->rank, what);
  return 0;
}

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
  if (S_ISDIR(st.st_mode) && cfg->pretrained_model_config)
    return SD_ERROR("%s: pretrained_model_config: only for a single-file pretrained_model (%s is "
                    "a diffusers folder, whose configs it has)",
                    cfg->path, cfg->pretrained_model);
  /* a single file: no diffusers folder can be written from it (the configs are inferred), so a
   * full fine-tune writes a single file only */
  if (!S_ISDIR(st.st_mode) && !cfg->lora && !cfg->single_file)
    return SD_ERROR("%s: pretrained_model %s is a single file: a full fine-tune of it is written "
                    "as a single file only; add single_file: NAME.safetensors (or train a LoRA "
                    "with lora: true)",
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

/* A prompt's embedding (L, D) by the frozen text encoder, malloc'ed into *out. */
static int encode_text(run *r, const char *prompt, float **out) {
  *out = NULL;
  int length = sd_tokenizer_max_length(r->nets.tokenizer);
  int32_t *ids = malloc((size_t)length * sizeof *ids);
  if (!ids)
    return SD_ERROR("out of memory");
  sd_arena_mark mark = sd_arena_get_mark(r->be);
  sd_tensor hidden = sd_tensor_3d(r->be->ops->act_dtype, 1, length, r->model->clip.hidden_size);
  int rc = sd_tokenizer_encode(r->nets.tokenizer, prompt, ids);
  if (rc == 0)
    rc = sd_tensor_alloc(r->be, &hidden);
  if (rc == 0)
    rc = sd_clip_text_forward(r->nets.clip, ids, 1, &hidden);
  int64_t row = rc == 0 ? sd_tensor_numel(&hidden) : 0;
  float *host = rc == 0 ? malloc((size_t)row * sizeof(float)) : NULL;
  if (rc == 0 && !host)
    rc = SD_ERROR("out of memory");
  if (rc == 0)
    rc = sd_tensor_download_f32(r->be, &hidden, host);
  if (rc == 0) {
    r->embedding_size = row;
    r->context = sd_tensor_3d(r->be->ops->act_dtype, r->rows * r->max_items, hidden.shape[1],
                              hidden.shape[2]);
  }
  sd_arena_release(r->be, mark);
  free(ids);
  if (rc < 0) {
    free(host);
    return rc;
  }
  *out = host;
  return 0;
}

/* The prompts' embeddings (the frozen text encoder, run once each); the context tensor holds the
 * instance prompt's max_items times (without prior preservation it stays so; with it every step
 * uploads its rows). */
static int encode_prompts(run *r) {
  if (encode_text(r, r->cfg->instance_prompt, &r->instance_embedding) < 0)
    return sd_error_context("encoding instance_prompt");
  if (r->prior && encode_text(r, r->cfg->class_prompt, &r->class_embedding) < 0)
    return sd_error_context("encoding class_prompt");
  size_t row = (size_t)r->embedding_size, rows = (size_t)(r->rows * r->max_items);
  r->host_context = malloc(rows * row * sizeof(float));
  if (!r->host_context)
    return SD_ERROR("out of memory");
  for (size_t i = 0; i < rows; i++)
    memcpy(r->host_context + i * row, r->instance_embedding, row * sizeof(float));
  SD_TRY(sd_tensor_alloc_persistent(r->be, &r->context));
  SD_TRY(sd_tensor_upload_f32(r->be, &r->context, r->host_context));
  r->row_prompt = calloc(rows, sizeof *r->row_prompt);
  if (!r->row_prompt)
    return SD_ERROR("out of memory");
  if (!r->cfg->train_text_encoder)
    return 0;
  /* train_text_encoder: the encoder runs on every step's rows */
  size_t length = (size_t)sd_tokenizer_max_length(r->nets.tokenizer);
  r->prompt_ids = calloc(2 * length, sizeof *r->prompt_ids);
  r->step_ids = malloc(rows * length * sizeof *r->step_ids);
  if (!r->prompt_ids || !r->step_ids)
    return SD_ERROR("out of memory");
  if (sd_tokenizer_encode(r->nets.tokenizer, r->cfg->instance_prompt, r->prompt_ids) < 0)
    return sd_error_context("encoding instance_prompt");
  if (r->prior &&
      sd_tokenizer_encode(r->nets.tokenizer, r->cfg->class_prompt, r->prompt_ids + length) < 0)
    return sd_error_context("encoding class_prompt");
  r->dcontext = r->context;
  r->dcontext.data = NULL;
  return sd_tensor_alloc_persistent(r->be, &r->dcontext);
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
    /* train_text_encoder: the encoder's LoRA too, its A from a fourth generator */
    if (rc == 0 && cfg->train_text_encoder)
      rc = sd_lora_trainer_add_text_encoder(r->lora, r->nets.clip, r->nets.clip_weights,
                                            cfg->seed + 3);
    if (rc == 0)
      rc = sd_dreambooth_params_lora(r->lora, &r->params);
  } else {
    rc = sd_unet_trainer_create(r->be, r->nets.unet, r->nets.unet_weights, &r->model->scheduler, tc,
                                NULL, NULL, &r->trainer);
    /* train_text_encoder: one optimizer over both models (the UNet trainer's config steps it) */
    const sd_clip_train_config cc = {.adamw = tc->adamw,
                                     .learning_rate = tc->learning_rate,
                                     .schedule = tc->schedule,
                                     .warmup_steps = tc->warmup_steps,
                                     .total_steps = tc->total_steps,
                                     .max_grad_norm = tc->max_grad_norm};
    if (rc == 0 && cfg->train_text_encoder)
      rc = sd_clip_trainer_create(r->be, r->nets.clip, r->nets.clip_weights, &cc, NULL, NULL,
                                  &r->encoder);
    if (rc == 0)
      rc = sd_dreambooth_params_unet(r->trainer, r->encoder, &r->params);
  }
  return rc < 0 ? sd_error_context("%s: pretrained_model %s", cfg->path, cfg->pretrained_model) : 0;
}

/* Class images are rendered at the model's default size (the UNet's sample_size x the VAE's
 * factor: the pipeline's default, as the script renders them) with the model's default
 * scheduler, 50 steps, guidance 7.5, no negative prompt, the cpu generator; image k's seed is
 * seed + CLASS_SEED_OFFSET + k. */
#define CLASS_STEPS       50
#define CLASS_GUIDANCE    7.5f
#define CLASS_SEED_OFFSET 1000000u

/* Removes what an interrupted class image write left (sd_png_write_rgb's "<name>.tmp.XXXXXX"
 * beside class-<k>.png) and counts the folder's images into *count. */
static int scan_class_dir(const char *dir, int *count) {
  *count = 0;
  DIR *d = opendir(dir);
  if (!d)
    return SD_ERROR("class_data_dir %s: cannot read the folder: %s", dir, strerror(errno));
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d)) != NULL) {
    if (sd_instance_data_is_image_name(e->d_name)) {
      (*count)++;
    } else if (!strncmp(e->d_name, "class-", 6) && strstr(e->d_name, ".png.tmp.")) {
      char path[PATH_MAX];
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      if (unlink(path) < 0 && errno != ENOENT)
        rc = SD_ERROR("class_data_dir: %s: cannot delete a leftover temporary file: %s", path,
                      strerror(errno));
    }
  }
  closedir(d);
  return rc;
}

/* train_dreambooth.py's class image generation: when class_data_dir (made if absent) holds fewer
 * than num_class_images images, the missing ones are rendered from class_prompt with the
 * pretrained model and written as class-<k>.png (k counting on from the images already there;
 * each written under a temporary name and renamed, so a killed run leaves whole images only and
 * a rerun renders the rest, with the same seeds). */
static int generate_class_images(run *r) {
  const sd_dreambooth_config *cfg = r->cfg;
  const char *dir = cfg->class_data_dir;
  if (mkdir(dir, 0777) < 0 && errno != EEXIST)
    return SD_ERROR("class_data_dir %s: cannot make the folder: %s", dir, strerror(errno));
  int have;
  SD_TRY(scan_class_dir(dir, &have));
  if (have >= cfg->num_class_images)
    return 0;
  int missing = cfg->num_class_images - have;
  int factor = sd_engine_vae_scale_factor(r->engine);
  int size = r->model->unet.sample_size * factor;
  sd_txt2img_batch batch = {.width = size,
                            .height = size,
                            .steps = CLASS_STEPS,
                            .scheduler = sd_engine_default_scheduler(r->engine),
                            .karras = false,
                            .rng = SD_RNG_CPU};
  if (sd_txt2img_check(r->engine, &batch) < 0)
    return sd_error_context("generating class images");
  if (r->opt->progress)
    fprintf(stderr,
            "sdbatch train: class_data_dir %s holds %d of num_class_images %d; rendering %d "
            "from class_prompt (%dx%d, %d steps)\n",
            dir, have, cfg->num_class_images, missing, size, size, CLASS_STEPS);
  int n_batch = cfg->sample_batch_size;
  sd_txt2img_item *items = calloc((size_t)n_batch, sizeof *items);
  sd_txt2img_result *results = calloc((size_t)n_batch, sizeof *results);
  int *index = calloc((size_t)n_batch, sizeof *index);
  int rc = items && results && index ? 0 : SD_ERROR("out of memory");
  int next = have; /* the next file number to try */
  for (int done = 0; rc == 0 && done < missing;) {
    int n = missing - done < n_batch ? missing - done : n_batch;
    for (int j = 0; j < n; j++) {
      struct stat st;
      char path[PATH_MAX];
      do /* skip numbers whose names are taken (by files that are not images, say) */
        snprintf(path, sizeof path, "%s/class-%06d.png", dir, next++);
      while (lstat(path, &st) == 0);
      index[j] = next - 1;
      items[j] = (sd_txt2img_item){.prompt = cfg->class_prompt,
                                   .negative_prompt = "",
                                   .seed = cfg->seed + CLASS_SEED_OFFSET + (uint64_t)index[j],
                                   .guidance_scale = CLASS_GUIDANCE};
    }
    rc = sd_txt2img(r->engine, &batch, items, n, NULL, NULL, results);
    if (rc < 0)
      rc = sd_error_context("rendering class images from class_prompt");
    for (int j = 0; j < n; j++) {
      char path[PATH_MAX];
      snprintf(path, sizeof path, "%s/class-%06d.png", dir, index[j]);
      if (rc == 0 && !results[j].finite)
        rc = SD_ERROR("class image %s: the render gave NaN or Inf", path);
      if (rc == 0 && sd_png_write_rgb(path, results[j].rgb, size, size, NULL, 0) < 0)
        rc = sd_error_context("class_data_dir");
      if (rc == 0)
        rc = sd_dreambooth_fsync_path(path);
      sd_txt2img_result_free(&results[j]);
    }
    done += n;
    if (rc == 0 && r->opt->progress)
      fprintf(stderr, "sdbatch train: class images %d/%d\n", done, missing);
  }
  if (rc == 0)
    rc = sd_dreambooth_fsync_path(dir);
  free(items);
  free(results);
  free(index);
  return rc;
}

/* Loads the model and the images and makes the trainer: everything before output_dir. */
static int prepare(run *r) {
  const sd_dreambooth_config *cfg = r->cfg;
  SD_TRY(check_paths(cfg, r->opt));
  struct stat st;
  r->single_file_in = stat(cfg->pretrained_model, &st) == 0 && !S_ISDIR(st.st_mode);
  SD_TRY(sd_instance_data_load(cfg->instance_data_dir, cfg->resolution, &r->data));
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.model_path = cfg->pretrained_model;
  params.model_yaml = cfg->pretrained_model_config;
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
  r->prior = cfg->with_prior_preservation;
  r->rows = r->prior ? 2 : 1;
  r->length = r->data.count;
  if (r->prior) {
    /* rank 0 renders the missing class images, the others wait for them */
    if ((writer(r) && generate_class_images(r) < 0) || barrier(r, "for the class images") < 0 ||
        sd_instance_data_load_as("class_data_dir", cfg->class_data_dir, cfg->resolution,
                                 cfg->num_class_images, &r->cls) < 0)
      return sd_error_context("%s", cfg->path);
    if (r->cls.count > r->length)
      r->length = r->cls.count;
  }
  r->max_items = cfg->train_batch_size * cfg->gradient_accumulation_steps;
  r->batches = (r->length + cfg->train_batch_size - 1) / cfg->train_batch_size;
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
  SD_TRY(encode_prompts(r));

  size_t items = (size_t)r->max_items, per = (size_t)r->per_item, rows = (size_t)r->rows;
  r->latents =
      sd_tensor_4d(r->be->ops->act_dtype, r->rows * r->max_items, r->channels, r->side, r->side);
  r->noise = r->latents;
  SD_TRY(sd_tensor_alloc_persistent(r->be, &r->latents));
  SD_TRY(sd_tensor_alloc_persistent(r->be, &r->noise));
  r->pixels = malloc(3 * (size_t)cfg->resolution * (size_t)cfg->resolution * sizeof(float));
  r->host_latents = malloc(rows * items * per * sizeof(float));
  r->host_noise = malloc(rows * items * per * sizeof(float));
  r->eps = malloc(rows * items * per * sizeof(float));
  r->class_latents = malloc(items * per * sizeof(float));
  r->class_noise = malloc(items * per * sizeof(float));
  r->timesteps = malloc(rows * items * sizeof(int32_t));
  r->class_timesteps = malloc(items * sizeof(int32_t));
  r->weights = malloc(rows * items * sizeof(double));
  r->drawn_timesteps = malloc(rows * (size_t)cfg->train_batch_size * sizeof(int64_t));
  r->moments_step = malloc(rows * (size_t)cfg->train_batch_size * 2 * per * sizeof(float));
  r->moments = calloc(2 * (size_t)r->data.count, sizeof *r->moments);
  r->class_moments = calloc(2 * (size_t)(r->cls.count ? r->cls.count : 1), sizeof(float *));
  r->pos.order = malloc((size_t)r->length * sizeof *r->pos.order);
  if (!r->pixels || !r->host_latents || !r->host_noise || !r->eps || !r->class_latents ||
      !r->class_noise || !r->timesteps || !r->class_timesteps || !r->weights ||
      !r->drawn_timesteps || !r->moments_step || !r->moments || !r->class_moments || !r->pos.order)
    return SD_ERROR("out of memory");
  r->pos.images = (int)r->length;
  r->fp = (sd_dreambooth_fingerprint){
      r->data.count, cfg->resolution, cfg->train_batch_size, cfg->gradient_accumulation_steps,
      cfg->seed,     r->cls.count};
  return 0;
}

static void run_free(run *r) {
  if (r->moments)
    for (int i = 0; i < 2 * r->data.count; i++)
      free(r->moments[i]);
  free(r->moments);
  if (r->class_moments)
    for (int i = 0; i < 2 * r->cls.count; i++)
      free(r->class_moments[i]);
  free(r->class_moments);
  free(r->class_latents);
  free(r->class_noise);
  free(r->class_timesteps);
  free(r->weights);
  free(r->instance_embedding);
  free(r->class_embedding);
  free(r->host_context);
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
    sd_tensor_free(r->be, &r->dcontext);
    sd_tensor_free(r->be, &r->latents);
    sd_tensor_free(r->be, &r->noise);
  }
  sd_dreambooth_params_free(&r->params);
  sd_unet_trainer_free(r->trainer);
  sd_clip_trainer_free(r->encoder);
  sd_lora_trainer_free(r->lora);
  free(r->prompt_ids);
  free(r->row_prompt);
  free(r->step_ids);
  sd_instance_data_free(&r->data);
  sd_instance_data_free(&r->cls);
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

/* One image's draw (crop, flip) from data into the VAE's moments m (2 C, side, side), encoded
 * once per (image, flip) where the crop is fixed (cache: (images x 2) entries). */
static int item_moments(run *r, const sd_instance_data *data, float **cache, int image, float *m) {
  const sd_dreambooth_config *cfg = r->cfg;
  size_t per = (size_t)r->per_item;
  sd_instance_view view;
  SD_TRY(sd_instance_data_pixels(data, image, cfg->center_crop, cfg->random_flip, &r->pos.draw_rng,
                                 r->pixels, &view));
  /* the same crop on every draw: the moments are the same bits, encoded once per flip */
  float **cached = sd_instance_data_fixed_crop(data, image, cfg->center_crop)
                       ? &cache[2 * image + (view.flipped ? 1 : 0)]
                       : NULL;
  if (cached && *cached) {
    memcpy(m, *cached, 2 * per * sizeof(float));
    return 0;
  }
  if (encode_pixels(r, m) < 0)
    return sd_error_context("encoding %s", data->paths[image]);
  if (cached) {
    *cached = malloc(2 * per * sizeof(float));
    if (!*cached)
      return SD_ERROR("out of memory");
    memcpy(*cached, m, 2 * per * sizeof(float));
  }
  return 0;
}

/* Micro-batch `batch` of the epoch's order: its items' latents, noise and timesteps at item
 * offset `first` of the step's buffers. Item i of the dataset is instance image i % instances
 * and, with prior preservation, class image i % classes (the script's DreamBoothDataset: the
 * instance image's crop and flip drawn first, then the class image's); the micro-batch's rows
 * are its instance items, then its class items (the script's collate_fn), and the latent
 * sample, noise and timestep draws cover all rows in that order. Returns the number of items,
 * or -1. */
static int draw_micro_batch(run *r, int64_t batch, int first) {
  const sd_dreambooth_config *cfg = r->cfg;
  int64_t begin = batch * cfg->train_batch_size;
  int n =
      (int)(r->length - begin < cfg->train_batch_size ? r->length - begin : cfg->train_batch_size);
  size_t per = (size_t)r->per_item;
  for (int j = 0; j < n; j++) {
    int64_t item = r->pos.order[begin + j];
    SD_TRY(item_moments(r, &r->data, r->moments, (int)(item % r->data.count),
                        r->moments_step + (size_t)j * 2 * per));
    if (r->prior)
      SD_TRY(item_moments(r, &r->cls, r->class_moments, (int)(item % r->cls.count),
                          r->moments_step + (size_t)(n + j) * 2 * per));
  }
  int rows = r->rows * n;
  /* row q's destination: instance rows at `first` of the instance buffers, class rows of the
   * class buffers */
#define ROW_DST(inst, cls, q, size)                                                                \
  ((q) < n ? (inst) + (size_t)(first + (q)) * (size) : (cls) + (size_t)(first + (q)-n) * (size))
  SD_TRY(sd_rng_randn(&r->pos.draw_rng, r->eps, (size_t)rows * per));
  for (int q = 0; q < rows; q++)
    sd_vae_latent_sample(r->moments_step + (size_t)q * 2 * per, r->eps + (size_t)q * per,
                         r->channels, (int64_t)r->side * r->side, r->model->vae.scaling_factor,
                         ROW_DST(r->host_latents, r->class_latents, q, per));
  SD_TRY(sd_rng_randn(&r->pos.draw_rng, r->eps, (size_t)rows * per));
  for (int q = 0; q < rows; q++)
    memcpy(ROW_DST(r->host_noise, r->class_noise, q, per), r->eps + (size_t)q * per,
           per * sizeof(float));
  SD_TRY(sd_rng_randint(&r->pos.draw_rng, 0, r->model->scheduler.num_train_timesteps,
                        r->drawn_timesteps, (size_t)rows));
  for (int q = 0; q < rows; q++)
    *ROW_DST(r->timesteps, r->class_timesteps, q, 1) = (int32_t)r->drawn_timesteps[q];
#undef ROW_DST
  return n;
}

/* With prior preservation: the step's class rows after its `items` instance rows, the rows'
 * prompts and loss weights (mse(instance rows) + prior_loss_weight x mse(class rows)). */
static int pack_prior_step(run *r, int items) {
  size_t per = (size_t)r->per_item, row = (size_t)r->embedding_size, n = (size_t)items;
  memcpy(r->host_latents + n * per, r->class_latents, n * per * sizeof(float));
  memcpy(r->host_noise + n * per, r->class_noise, n * per * sizeof(float));
  memcpy(r->timesteps + n, r->class_timesteps, n * sizeof(int32_t));
  double elements = (double)items * (double)r->per_item;
  for (size_t i = 0; i < 2 * n; i++) {
    memcpy(r->host_context + i * row, i < n ? r->instance_embedding : r->class_embedding,
           row * sizeof(float));
    r->weights[i] = i < n ? 1.0 / elements : r->cfg->prior_loss_weight / elements;
    r->row_prompt[i] = i < n ? 0 : 1;
  }
  sd_tensor context = sd_tensor_slice0(&r->context, 0, 2 * items);
  return sd_tensor_upload_f32(r->be, &context, r->host_context);
}

/* Data parallel: keeps this rank's share of the step's `items` items (the contiguous items
 * [items x rank / size, items x (rank + 1) / size), their instance rows then their class rows)
 * at the front of the step's buffers with the whole step's loss weights (the batch mean, or
 * prior preservation's), and uploads their prompts. Returns the rows kept. */
static int share_rows(run *r, int items) {
  int rank = r->opt->ranks->rank, size = r->opt->ranks->size;
  int lo = (int)((int64_t)items * rank / size), hi = (int)((int64_t)items * (rank + 1) / size);
  size_t per = (size_t)r->per_item, row = (size_t)r->embedding_size;
  if (!r->prior)
    for (int i = 0; i < items; i++)
      r->weights[i] = 1.0 / ((double)items * (double)r->per_item);
  size_t dst = 0;
  for (int part = 0; part < r->rows; part++)
    for (int i = lo; i < hi; i++, dst++) {
      size_t src = (size_t)part * (size_t)items + (size_t)i; /* >= dst */
      memmove(r->host_latents + dst * per, r->host_latents + src * per, per * sizeof(float));
      memmove(r->host_noise + dst * per, r->host_noise + src * per, per * sizeof(float));
      memmove(r->host_context + dst * row, r->host_context + src * row, row * sizeof(float));
      r->timesteps[dst] = r->timesteps[src];
      r->weights[dst] = r->weights[src];
      r->row_prompt[dst] = r->row_prompt[src];
    }
  if (dst > 0) {
    sd_tensor context = sd_tensor_slice0(&r->context, 0, (int64_t)dst);
    if (sd_tensor_upload_f32(r->be, &context, r->host_context) < 0)
      return -1;
  }
  return (int)dst;
}

/* train_text_encoder: the step's rows' prompts through the encoder being trained, into context
 * (rows, L, D), with the tape its step consumes. */
static int encode_rows(run *r, int rows, sd_tensor *context) {
  size_t length = (size_t)sd_tokenizer_max_length(r->nets.tokenizer);
  for (int q = 0; q < rows; q++)
    memcpy(r->step_ids + (size_t)q * length, r->prompt_ids + (size_t)r->row_prompt[q] * length,
           length * sizeof *r->step_ids);
  if ((r->lora ? sd_lora_trainer_encode(r->lora, r->step_ids, rows, context)
               : sd_clip_trainer_forward(r->encoder, r->step_ids, rows, context)) < 0)
    return sd_error_context("step %" PRId64, r->pos.step + 1);
  return 0;
}

static int new_epoch_order(run *r) {
  return sd_rng_randperm(&r->pos.order_rng, r->length, r->pos.order);
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
  if (!writer(r))
    return barrier(r, "for rank 0's checkpoint");
  if (fflush(r->log) != 0 || fsync(fileno(r->log)) != 0)
    return SD_ERROR("%s: write failed: %s", r->log_path, strerror(errno));
  r->pos.log_bytes = (int64_t)ftell(r->log);
  SD_TRY(sd_dreambooth_checkpoint_write(r->cfg->output_dir, &r->params, &r->pos, &r->fp,
                                        r->cfg->checkpoints_total_limit));
  return barrier(r, "after the checkpoint");
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
                 : sd_unet_trainer_restore(r->trainer, latest)) < 0 ||
        (r->encoder && sd_clip_trainer_restore(r->encoder, latest) < 0))
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
    if (r->prior)
      SD_TRY(pack_prior_step(r, items));
    int rows = r->rows * items;
    const double *weights = r->prior ? r->weights : NULL;
    if (parallel(r)) {
      rows = share_rows(r, items);
      if (rows < 0)
        return sd_error_context("step %" PRId64 ", rank %d", r->pos.step + 1, r->opt->ranks->rank);
      weights = r->weights;
    }
    sd_tensor latents = sd_tensor_slice0(&r->latents, 0, rows);
    sd_tensor noise = sd_tensor_slice0(&r->noise, 0, rows);
    sd_tensor context = sd_tensor_slice0(&r->context, 0, rows);
    SD_TRY(sd_tensor_upload_f32(r->be, &latents, r->host_latents));
    SD_TRY(sd_tensor_upload_f32(r->be, &noise, r->host_noise));
    if (cfg->train_text_encoder) {
      SD_TRY(encode_rows(r, rows, &context));
      sd_tensor dcontext = sd_tensor_slice0(&r->dcontext, 0, rows);
      SD_TRY(r->lora
                 ? sd_lora_trainer_step_joint(r->lora, &latents, &noise, r->timesteps, &context,
                                              weights, &dcontext, &report)
                 : sd_unet_trainer_step_joint(r->trainer, r->encoder, &latents, &noise,
                                              r->timesteps, &context, weights, &dcontext, &report));
    } else {
      SD_TRY(r->lora ? sd_lora_trainer_step_weighted(r->lora, &latents, &noise, r->timesteps,
                                                     &context, weights, &report)
                     : sd_unet_trainer_step_weighted(r->trainer, &latents, &noise, r->timesteps,
                                                     &context, weights, &report));
    }
    r->pos.step++;
    done_here++;
    int64_t epoch = r->pos.epoch;
    if (r->log &&
        (fprintf(r->log, "%" PRId64 ",%" PRId64 ",%.9g,%.9g,%.9g\n", r->pos.step, r->pos.epoch,
                 (double)report.loss, (double)report.grad_norm, report.learning_rate) < 0 ||
         fflush(r->log) != 0))
      return SD_ERROR("%s: write failed: %s", r->log_path, strerror(errno));
    if (r->pos.next_batch == r->batches) {
      r->pos.epoch++;
      r->pos.next_batch = 0;
      SD_TRY(new_epoch_order(r));
    }
    if (r->pos.step % cfg->checkpointing_steps == 0)
      SD_TRY(checkpoint(r));
    if (cfg->validation_prompt && r->pos.step % cfg->validation_steps == 0) {
      if (writer(r))
        SD_TRY(sd_dreambooth_validate(r->engine, cfg, r->pos.step, r->opt->progress));
      SD_TRY(barrier(r, "for rank 0's validation renders"));
    }
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
  if (rc == 0 && parallel(&r)) { /* every rank checked output_dir before any writes to it */
    if (r.lora)
      sd_lora_trainer_set_reduce(r.lora, opt->ranks);
    else
      sd_unet_trainer_set_reduce(r.trainer, opt->ranks);
    if (r.encoder)
      sd_clip_trainer_set_reduce(r.encoder, opt->ranks);
    rc = barrier(&r, "after loading");
  }
  if (rc == 0 && mkdir(cfg->output_dir, 0777) < 0 && errno != EEXIST)
    rc = SD_ERROR("output_dir %s: cannot make the folder: %s", cfg->output_dir, strerror(errno));
  if (rc == 0)
    rc = start_position(&r);
  if (rc == 0 && writer(&r))
    rc = open_log(&r);
  char classes[64] = "";
  if (r.prior)
    snprintf(classes, sizeof classes, ", %d class images (prior preservation)", r.cls.count);
  if (rc == 0 && opt->progress)
    fprintf(stderr,
            "sdbatch train: %d instance images%s, %" PRId64 " steps of %d x %d items at %d px, "
            "from step %" PRId64 "%s\n",
            r.data.count, classes, r.total_steps, cfg->gradient_accumulation_steps,
            cfg->train_batch_size, cfg->resolution, r.pos.step,
            cfg->lora   ? ", LoRA"
            : r.encoder ? ", with the text encoder"
                        : "");
  if (rc == 0)
    rc = train_steps(&r, result);
  if (rc == 0 && r.log && (fflush(r.log) != 0 || fsync(fileno(r.log)) != 0))
    rc = SD_ERROR("%s: write failed: %s", r.log_path, strerror(errno));
  if (rc == 0 && writer(&r))
    rc = r.lora ? sd_dreambooth_write_lora(cfg->output_dir, r.lora)
         : r.single_file_in
             ? sd_dreambooth_write_single_file(cfg->pretrained_model, cfg->pretrained_model_config,
                                               cfg->output_dir, cfg->single_file, r.trainer,
                                               r.encoder)
             : sd_dreambooth_write_model(cfg->pretrained_model, cfg->output_dir, r.trainer,
                                         r.encoder, cfg->single_file);
  if (rc == 0)
    rc = barrier(&r, "for rank 0's output");
  result->steps = r.pos.step;
  result->images = r.data.count;
  result->class_images = r.cls.count;
  run_free(&r);
  return rc;
}
