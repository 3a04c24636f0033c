/* The engine: one model loaded on one backend, rendering batches of txt2img items the way
 * diffusers' StableDiffusionPipeline does (same tokens, same random draws, same arithmetic).
 * A batch shares width, height, steps, scheduler and karras; prompts, negative prompts, seeds
 * and guidance scales may differ per item, and an item's image never depends on its neighbours
 * (each item has its own generator). */
#ifndef SD_ENGINE_H
#define SD_ENGINE_H

#include "../io/model_files.h"
#include "depth_estimate.h"
#include "../rng/rng.h"
#include "../sched/scheduler.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sd_engine sd_engine;

/* Tiled VAE decoding (sd_vae_decode_tiled, diffusers' vae.enable_tiling()) in tiles of the VAE
 * config's sample_size. AUTO tiles images wider or taller than 2 x sample_size (1024 px for SD
 * 1.x), where a whole decode needs many GiB; diffusers' pipeline decodes whole unless tiling is
 * enabled, so AUTO matches it up to that size and its enable_tiling() output beyond. */
typedef enum sd_vae_tiling {
  SD_VAE_TILING_AUTO = 0,
  SD_VAE_TILING_ON,
  SD_VAE_TILING_OFF,
} sd_vae_tiling;

/* "auto", "on", "off"; parse returns -1 with an error naming the choices for anything else. */
int sd_vae_tiling_parse(const char *name, sd_vae_tiling *out);
const char *sd_vae_tiling_name(sd_vae_tiling tiling);

/* A LoRA file and its strength (diffusers' set_adapters weight; 1 = as trained). */
typedef struct sd_lora_spec {
  const char *path;
  float scale;
} sd_lora_spec;

/* A textual-inversion embedding file and the token it is used by (NULL: the file's own). */
typedef struct sd_embedding_spec {
  const char *path;
  const char *token;
} sd_embedding_spec;

typedef struct sd_engine_params {
  const char *model_path;  /* diffusers folder or single-file .safetensors */
  const char *model_yaml;  /* optional LDM YAML for single files (NULL) */
  const char *clip_bpe_gz; /* CLIP BPE file for single files (NULL: the built-in path) */
  const char *device;      /* "cpu", "cuda" or "auto" */
  int device_index;        /* CUDA device for "cuda" and "auto" (default 0) */
  int threads;             /* CPU threads (0: all cores); also for "auto" falling back to cpu */
  sd_dtype precision;      /* CUDA activation (and weight) dtype: SD_DTYPE_F16 (default), BF16 or
                              F32; the CPU backend computes in F32, or with BF16 inputs to its
                              GEMMs and convolutions when BF16 is asked for (an error where the
                              CPU lacks AVX512_BF16 and AMX) */
  /* how sd_txt2img decodes (default AUTO) */
  sd_vae_tiling vae_tiling;
  /* Adapters applied at load, in order (docs/adapters.md): LoRAs merged into the UNet and
   * text-encoder weights, embeddings added to the tokenizer and the token embedding table. */
  const sd_lora_spec *loras;
  int lora_count;
  const sd_embedding_spec *embeddings;
  int embedding_count;
  /* A depth model's own depth estimator is not loaded (every render gives its depth map): saves
   * its memory (about 0.5 GB for SD 2 depth) and its load time. */
  bool no_depth_estimator;
  /* A depth estimator given apart from the model (sd_depth_estimator_open_given: a diffusers
   * depth model folder or a transformers DPT folder), used instead of the model's own; for a
   * single-file depth checkpoint, whose MiDaS weights sdbatch does not read. NULL: none. */
  const char *depth_estimator_path;
  /* How the depth estimator's input is preprocessed: transformers' DPTImageProcessor backend to
   * follow (default SD_DPT_BACKEND_PIL, 0). */
  sd_dpt_backend dpt_backend;
} sd_engine_params;

void sd_engine_params_init(sd_engine_params *params);

/* "fp16", "bf16", "fp32" <-> SD_DTYPE_F16, BF16, F32; parse returns -1 with an error naming the
 * choices for anything else. */
int sd_precision_parse(const char *name, sd_dtype *out);
const char *sd_precision_name(sd_dtype precision);

/* The tokenizer a model's files name (vocab.json + merges.txt, tokenizer.json or the CLIP BPE). */
struct sd_tokenizer;
int sd_tokenizer_open_for_model(const sd_tokenizer_files *files, struct sd_tokenizer **out);
int sd_engine_open(const sd_engine_params *params, sd_engine **out);
void sd_engine_close(sd_engine *engine);

const sd_model_files *sd_engine_model(const sd_engine *engine);
sd_backend *sd_engine_backend(const sd_engine *engine);
/* What the networks compute in: the CUDA activation dtype, or on the CPU F32 or BF16 (bfloat16
 * inputs to GEMMs and convolutions, float32 accumulation and activations). */
sd_dtype sd_engine_precision(const sd_engine *engine);
/* Whether the model is a depth model whose folder has its own depth estimator
 * (depth_estimator/ and feature_extractor/), loaded at open: depth-to-image then runs without a
 * given depth map, as diffusers does. */
bool sd_engine_has_depth_estimator(const sd_engine *engine);
/* The model's default scheduler (from its scheduler config). */
sd_scheduler_kind sd_engine_default_scheduler(const sd_engine *engine);

typedef struct sd_txt2img_item {
  const char *prompt;
  const char *negative_prompt; /* "" for none */
  uint64_t seed;
  float guidance_scale; /* <= 1: conditional branch only, as diffusers */
} sd_txt2img_item;

typedef struct sd_txt2img_batch {
  int width, height; /* multiples of 8 */
  int steps;
  sd_scheduler_kind scheduler;
  bool karras;
  sd_rng_kind rng;
} sd_txt2img_batch;

/* Called after every model call with (done, total). */
typedef void (*sd_progress_fn)(void *ctx, int done, int total);

typedef struct sd_txt2img_result {
  uint8_t *rgb;   /* (H, W, 3), malloc'ed, rounded as diffusers' image processor rounds */
  float *latents; /* (4, H/8, W/8) final latents before decoding, malloc'ed */
  bool finite;    /* false when the latents or image had NaN/Inf */
} sd_txt2img_result;

/* Checks a batch's settings against the model (multiples of 8, sizes, steps >= 1, karras
 * allowed); -1 with a user-facing error otherwise. */
int sd_txt2img_check(const sd_engine *engine, const sd_txt2img_batch *batch);
/* The same check from a model's files alone (no weights loaded), e.g. before a job starts. */
int sd_txt2img_check_model(const sd_model_files *model, const sd_txt2img_batch *batch);
/* sd_txt2img_check_model's batch checks; the UNet's width only when not image_conditioned (an
 * image pipeline's width is sd_pipeline_choose's to check). */
int sd_render_check_model(const sd_model_files *model, const sd_txt2img_batch *batch,
                          bool image_conditioned);

/* Renders n items (n >= 1) into results[0..n-1] (freed with sd_txt2img_result_free). */
int sd_txt2img(sd_engine *engine, const sd_txt2img_batch *batch, const sd_txt2img_item *items,
               int n, sd_progress_fn progress, void *progress_ctx, sd_txt2img_result *results);

/* Ranks rendering the same items together (docs/spatial.md); every rank of both communicators
 * calls sd_txt2img_group with the same arguments and gets the same results. */
typedef struct sd_image_group {
  /* Spatial parallelism: the latent (and, unless the VAE decodes in tiles, the image) split into
   * row bands over these ranks (NULL: none). */
  struct sd_comm *spatial;
  /* CFG parallelism: two ranks, rank 0 running the UNet on the unconditional half of the batch
   * and rank 1 on the conditional half, joined for the guidance step (NULL: none). */
  struct sd_comm *cfg;
  /* Filled on return: bytes this rank sent (in all, and in the denoising loop alone) and
   * seconds it spent in collectives. */
  uint64_t bytes_sent;
  uint64_t loop_bytes_sent;
  double comm_seconds;
} sd_image_group;

/* sd_txt2img over a group; group NULL is sd_txt2img. The images equal one rank's: CFG halves
 * exactly (each item's UNet result does not depend on the batch), spatial bands up to the
 * rounding of GroupNorm statistics summed in another grouping (docs/spatial.md). */
int sd_txt2img_group(sd_engine *engine, sd_image_group *group, const sd_txt2img_batch *batch,
                     const sd_txt2img_item *items, int n, sd_progress_fn progress,
                     void *progress_ctx, sd_txt2img_result *results);
void sd_txt2img_result_free(sd_txt2img_result *result);

/* Checks adapters against a model's files without loading weights: every LoRA merged (every key
 * found, every shape fitting) and every embedding read and its width checked; the errors
 * sd_engine_open would give. The merge uses the files' tensor maps, which are left pointing at
 * freed memory: close files right after. */
int sd_adapters_check(sd_model_files *files, const sd_lora_spec *loras, int lora_count,
                      const sd_embedding_spec *embeddings, int embedding_count);

/* The prompt diffusers' TextualInversionLoaderMixin.maybe_convert_prompt gives: each token of a
 * multi-vector embedding found in the prompt's tokens replaced, at every occurrence of its text,
 * by "token token_1 ... token_{N-1}". A new string in *out (free() it). */
int sd_engine_expand_prompt(const sd_engine *engine, const char *prompt, char **out);

/* ---- image-to-image and inpainting ---- */

struct sd_image;

/* Which diffusers pipeline renders. */
typedef enum sd_pipeline_kind {
  SD_PIPELINE_TXT2IMG = 0, /* StableDiffusionPipeline */
  SD_PIPELINE_IMG2IMG,     /* StableDiffusionImg2ImgPipeline */
  SD_PIPELINE_INPAINT,     /* StableDiffusionInpaintPipeline (9-channel UNet, or 4 with blending) */
  SD_PIPELINE_DEPTH,       /* StableDiffusionDepth2ImgPipeline (UNet of latent + 1 channels) */
  SD_PIPELINE_UPSCALE,     /* StableDiffusionUpscalePipeline (latent + 3 channels, class labels) */
} sd_pipeline_kind;

const char *sd_pipeline_kind_name(sd_pipeline_kind kind);

/* The pipeline for a model and the inputs given, as diffusers would be used: a 9-channel UNet
 * is an inpainting model and needs an init image and a mask; a 5-channel UNet is a depth model
 * and needs an init image and a depth map (depth_map: given, or the model has its estimator); a
 * UNet of latent + 3 channels with class embeddings is an x4 upscaler and needs the init image
 * (the low-resolution image) alone; a
 * 4-channel UNet runs txt2img without an init image, img2img with one, and inpainting (per-step
 * blending) with one and a mask; a mask without an init image, a depth map for a model that is
 * not a depth model, or a UNet of another width, is refused. -1 with a user-facing error for a
 * combination that makes no sense. */
int sd_pipeline_choose(const sd_model_files *model, bool init_image, bool mask, bool depth_map,
                       sd_pipeline_kind *out);

/* One item's inputs for img2img / inpainting (the images stay the caller's). */
typedef struct sd_image_cond {
  const struct sd_image *init_image; /* RGB, any size: resized to the batch size (PIL LANCZOS) */
  const struct sd_image *mask;       /* RGB mask image (white = repaint); NULL for img2img */
  /* depth2img: the depth map (depth_height, depth_width), any size (sd_depth_map_prepare resizes
   * it bicubically to the latent size and normalizes it to [-1, 1]); NULL: the model's depth
   * estimator's map of init_image (sd_engine_has_depth_estimator) */
  const float *depth;
  int depth_height, depth_width;
} sd_image_cond;

typedef struct sd_image_params {
  sd_pipeline_kind kind;      /* IMG2IMG, INPAINT, DEPTH or UPSCALE */
  float strength;             /* in [0, 1]: how much of the schedule runs, as diffusers' strength
                                 (UPSCALE: 1, the whole schedule) */
  const sd_image_cond *conds; /* (n): one per item */
  int noise_level;            /* UPSCALE: the low_res_scheduler timestep the image is noised at,
                                 in [0, max_noise_level] (diffusers' default 20) */
} sd_image_params;

/* An x4 upscaler's max_noise_level (model_index.json; 350 when absent, as diffusers), or 0 for
 * any other model. */
int sd_engine_max_noise_level(const sd_engine *engine);

/* Checks a batch for a pipeline (sd_txt2img_check's rules, the UNet width the pipeline needs,
 * strength in [0, 1] keeping at least one step). */
int sd_render_check(const sd_engine *engine, const sd_txt2img_batch *batch,
                    const sd_image_params *image);

/* sd_txt2img with image conditioning (image NULL: text-to-image). The batch's width and height
 * are the output size (each init image and mask is resized to it; for img2img diffusers renders
 * at the init image's size rounded down to a multiple of 8, sd_image_vae_size). Each item's
 * generator draws in diffusers' order: the init image's latent_dist.sample, the noise, (inpaint)
 * the masked image's latent_dist.sample, then the scheduler's noise. The x4 upscaler renders at
 * 4 x the low-resolution image (batch size = 4 x the init image's size rounded down to a
 * multiple of 4, the image resized to it with bicubic as diffusers does): the generator draws
 * the low-res image's noise, then the latents (at the low-res size). */
int sd_render(sd_engine *engine, const sd_txt2img_batch *batch, const sd_image_params *image,
              const sd_txt2img_item *items, int n, sd_progress_fn progress, void *progress_ctx,
              sd_txt2img_result *results);
/* sd_render over a group (sd_txt2img_group's rules). With image conditioning every rank of the
 * group preprocesses and encodes the inputs whole (the same numbers on every rank) and keeps its
 * band of the latents and the conditioning; the loop and the decode are text-to-image's. */
int sd_render_group(sd_engine *engine, sd_image_group *group, const sd_txt2img_batch *batch,
                    const sd_image_params *image, const sd_txt2img_item *items, int n,
                    sd_progress_fn progress, void *progress_ctx, sd_txt2img_result *results);

/* Latent size of an image side: side / vae_scale_factor. */
int sd_engine_vae_scale_factor(const sd_engine *engine);

/* The loaded networks, borrowed from the engine (valid until sd_engine_close), for fine-tuning:
 * a trainer updates the UNet's weights in place, and the engine then renders with them. */
struct sd_clip_text;
struct sd_unet;
struct sd_vae;
struct sd_weights;
typedef struct sd_engine_networks {
  struct sd_tokenizer *tokenizer;
  struct sd_clip_text *clip;
  const struct sd_weights *clip_weights;
  struct sd_unet *unet;
  const struct sd_weights *unet_weights;
  struct sd_vae *vae;
} sd_engine_networks;
void sd_engine_get_networks(sd_engine *engine, sd_engine_networks *out);

#endif
