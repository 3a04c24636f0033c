/* Job files (YAML, schema v1; docs/jobs.md): loading with validation and line-numbered errors,
 * and expansion into items computed from their index, so a job of any size costs no per-item
 * memory.
 *
 * Items are the Cartesian product of the LoRA scale sets, schedulers, steps, strengths, noise
 * levels, input images, prompts, seeds and guidance scales of the job, indexed in that order (the
 * last varies fastest):
 *   index = ((((((((lora_set_i * n_schedulers + scheduler_i) * n_steps + steps_i) * n_strengths
 *           + strength_i) * n_noise_levels + noise_level_i) * max(n_images, 1) + image_i)
 *           * n_prompts + prompt_i) * n_seeds + seed_i) * n_guidance + guidance_i
 * (a job without LoRAs, images, strengths or noise levels has one of each, so its indices are
 * those of schema v1 before they existed) so that consecutive items share steps, scheduler and
 * input (and so batch together) and the items of one prompt are contiguous. The order does not
 * change. */
#ifndef SD_JOB_H
#define SD_JOB_H

#include "../worker/rng/rng.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Item and job scheduler value meaning "the model's default scheduler" (scheduler omitted or
 * "default"); other values are sd_scheduler_kind (worker/sched/scheduler.h). */
#define SD_JOB_SCHEDULER_DEFAULT (-1)

/* Limits of schema v1. */
#define SD_JOB_MIN_SIZE            64
#define SD_JOB_MAX_SIZE            4096
#define SD_JOB_MAX_STEPS           1000
#define SD_JOB_MAX_BATCH_SIZE      1024
#define SD_JOB_MAX_RANKS_PER_IMAGE 1024
/* Most input images of one job (`images`, after a folder or list file is expanded). */
#define SD_JOB_MAX_INPUTS 1000000
/* Highest noise_level a job may give (a model's own max_noise_level, 350 for the x4 upscaler, is
 * checked when the job runs). */
#define SD_JOB_MAX_NOISE_LEVEL 1000
/* strength and noise_level values meaning "the pipeline's default" (strength 0.8 for
 * image-to-image and depth-to-image, 1 for inpainting; noise level 20 for the x4 upscaler). */
#define SD_JOB_STRENGTH_DEFAULT    (-1.0)
#define SD_JOB_NOISE_LEVEL_DEFAULT (-1)

typedef enum sd_job_device {
  SD_JOB_DEVICE_AUTO = 0, /* cuda where a GPU is present, else cpu */
  SD_JOB_DEVICE_CUDA,
  SD_JOB_DEVICE_CPU,
} sd_job_device;

/* Key `dpt_preprocess`: how a depth model's estimator preprocesses its input, as transformers'
 * DPTImageProcessor computes it without torchvision (its PIL backend) or with it. */
typedef enum sd_job_dpt_preprocess {
  SD_JOB_DPT_PREPROCESS_PIL = 0, /* the default */
  SD_JOB_DPT_PREPROCESS_TORCHVISION,
} sd_job_dpt_preprocess;

typedef struct sd_job sd_job;

/* A LoRA of the job (key `loras`): its file and the scales swept (docs/adapters.md). */
typedef struct sd_job_lora {
  const char *file;         /* resolved */
  const char *file_written; /* as in the job file */
  int n_scales;
  const double *scales; /* (n_scales) */
} sd_job_lora;

/* A textual-inversion embedding of the job (key `embeddings`). */
typedef struct sd_job_embedding {
  const char *file; /* resolved */
  const char *file_written;
  const char *token; /* NULL: the file's own */
} sd_job_embedding;

/* A job's settings. Strings and arrays belong to the job (valid until sd_job_free). Paths are
 * resolved: relative ones in the file are taken relative to the job file's folder. */
typedef struct sd_job_info {
  const char *path;            /* the job file, as given to sd_job_load */
  const char *model;           /* diffusers folder or single-file checkpoint */
  const char *model_config;    /* LDM YAML for single files; NULL when not given */
  const char *depth_estimator; /* depth model: an estimator given apart (a diffusers depth model
                                  folder or a transformers DPT folder); NULL when not given */
  const char *output;          /* output file */
  const char *prompts_file;    /* NULL when the prompts are inline */
  const char *negative_prompt; /* "" when not given */
  int width, height;           /* pixels; 0: the model's default (unet sample_size * 8) */
  bool karras;
  sd_rng_kind rng;
  int batch_size; /* images per worker batch */
  bool save_latents;
  sd_job_device device;
  sd_job_dpt_preprocess dpt_preprocess;
  bool dpt_preprocess_given; /* the key is in the file (refused where no estimator runs) */
  /* Ranks that render each image together (docs/spatial.md): spatial row bands, and with
   * cfg_parallel the two CFG halves on two halves of the group (ranks_per_image is then even).
   * How to render, not what: not in the hash. */
  int ranks_per_image;
  bool cfg_parallel;
  int64_t n_prompts;
  int64_t n_seeds;
  int n_steps; /* sweep lengths (1 for a scalar) */
  int n_guidance;
  int n_schedulers;
  const int *steps;              /* (n_steps) */
  const double *guidance_scales; /* (n_guidance) */
  const int *schedulers;         /* (n_schedulers) sd_scheduler_kind or SD_JOB_SCHEDULER_DEFAULT */
  int n_loras;
  const sd_job_lora *loras; /* (n_loras) */
  int n_embeddings;
  const sd_job_embedding *embeddings; /* (n_embeddings) */
  int64_t n_lora_sets;                /* product of the LoRAs' n_scales (1 without LoRAs) */
  /* Image-conditioned jobs (docs/jobs.md, "Inputs"): n_images input images (0: text-to-image),
   * each with a mask and a depth map when n_masks / n_depth_maps is n_images, the same one for
   * all when 1, none when 0 (sd_job_input). */
  int64_t n_images;
  int64_t n_masks;
  int64_t n_depth_maps;
  int n_strengths; /* sweep lengths (1 for a scalar or the default) */
  int n_noise_levels;
  const double *strengths; /* (n_strengths) in [0, 1], or SD_JOB_STRENGTH_DEFAULT */
  const int *noise_levels; /* (n_noise_levels) or SD_JOB_NOISE_LEVEL_DEFAULT */
  /* n_lora_sets * n_schedulers * n_steps * n_strengths * n_noise_levels * max(n_images, 1) *
   * n_prompts * n_seeds * n_guidance */
  int64_t n_items;
  char hash[65]; /* SHA-256 (hex) of the content that defines "the same job" (docs/jobs.md) */
} sd_job_info;

/* One item: a single image to render. Strings are borrowed from the job. */
typedef struct sd_job_item {
  int64_t index;
  int64_t lora_set_index; /* which combination of the LoRAs' scales (sd_job_lora_set) */
  int scheduler_index;    /* position in each list of the job (see the order above) */
  int steps_index;
  int64_t prompt_index;
  int64_t seed_index;
  int guidance_index;
  int strength_index;
  int noise_level_index;
  int64_t image_index; /* the input (sd_job_input), -1 in a job without images */
  const char *prompt;  /* UTF-8 */
  const char *negative_prompt;
  uint64_t seed;
  int width, height; /* 0: the model's default */
  int steps;
  double guidance_scale; /* as in diffusers, <= 1 turns classifier-free guidance off */
  int scheduler;         /* sd_scheduler_kind or SD_JOB_SCHEDULER_DEFAULT */
  bool karras;
  sd_rng_kind rng;
  double strength; /* SD_JOB_STRENGTH_DEFAULT: the pipeline's */
  int noise_level; /* SD_JOB_NOISE_LEVEL_DEFAULT: the pipeline's */
} sd_job_item;

/* The files of input i: paths resolved (for reading) and as the job gives them (relative to the
 * job file's folder, for the output file); mask and depth_map NULL when the job has none. */
typedef struct sd_job_input {
  const char *image, *mask, *depth_map;
  const char *image_written, *mask_written, *depth_map_written;
} sd_job_input;

/* Reads and validates the whole job (prompts_file included) before any work. On failure returns
 * -1 with one message "<file>:<line>:<col>: <key>: <problem>" (file and position of the first
 * problem; a prompts_file's own problems name that file). The job owns its memory. */
int sd_job_load(const char *path, sd_job **out);
void sd_job_free(sd_job *job);

const sd_job_info *sd_job_get_info(const sd_job *job);
/* The job file's bytes as read (for the output file's attributes); *len gets the length. The
 * text is NUL-terminated. */
const char *sd_job_yaml_text(const sd_job *job, size_t *len);
/* Prompt i in [0, n_prompts): UTF-8, NUL-terminated; NULL (with error) when out of range. */
const char *sd_job_prompt(const sd_job *job, int64_t i);
/* Seed i in [0, n_seeds); -1 (with error) when out of range. */
int sd_job_seed(const sd_job *job, int64_t i, uint64_t *seed);

int64_t sd_job_item_count(const sd_job *job);
/* The item at index in [0, sd_job_item_count) in O(1); -1 (with error) when out of range. */
int sd_job_item_get(const sd_job *job, int64_t index, sd_job_item *out);
/* The scales of LoRA set `set` in [0, n_lora_sets): scales[k] for loras[k], the last LoRA's
 * scale varying fastest. */
int sd_job_lora_set(const sd_job *job, int64_t set, double *scales);
/* Input i in [0, n_images); -1 (with error) when out of range. */
int sd_job_input_get(const sd_job *job, int64_t i, sd_job_input *out);
/* Whether two items of one job can render in one batch: same LoRA set, width, height, steps,
 * scheduler, karras, input image, strength and noise level (prompts, seeds and guidance scales
 * may differ within a batch). */
bool sd_job_items_batchable(const sd_job_item *a, const sd_job_item *b);

/* Checks that the model (and model_config) exist and that the output's folder exists, with
 * errors at the key's position in the job file. sd_job_load does not touch these paths, so a job
 * can be read where its model is absent; call this before starting the work. */
int sd_job_check_paths(const sd_job *job);

#ifdef __cplusplus
}
#endif

#endif
