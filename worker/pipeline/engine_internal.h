/* The engine's state, shared by the pipeline files (not a public header). */
#ifndef SD_ENGINE_INTERNAL_H
#define SD_ENGINE_INTERNAL_H

#include "../model/clip_text.h"
#include "../model/unet.h"
#include "../model/vae.h"
#include "../io/patched_tensors.h"
#include "../text/clip_tokenizer.h"
#include "engine.h"

struct sd_engine {
  sd_model_files *files;
  sd_tokenizer *tokenizer;
  sd_backend *be;
  sd_weights *clip_weights, *unet_weights, *vae_weights;
  sd_clip_text *clip;
  sd_unet *unet;
  sd_vae *vae;
  sd_scheduler_kind default_scheduler;
  sd_vae_tiling vae_tiling;
  sd_patched *patched; /* weights changed by adapters (the model's maps point at them) */
  /* multi-vector textual-inversion tokens, expanded in prompts (sd_engine_expand_prompt) */
  struct sd_multi_vector {
    char *token;
    int vectors;
    int32_t first_id;
  } * multi_vectors;
  int multi_vector_count;
  sd_dtype precision; /* what the networks compute in (sd_engine_precision) */
  /* a depth model's depth_estimator/ and feature_extractor/ (NULL: none, or not a depth model) */
  struct sd_depth_estimator *depth;
};

/* Merges params' LoRAs and adds its embeddings to engine->files and engine->tokenizer (adapters.c),
 * before the weights are uploaded. */
int sd_engine_apply_adapters(sd_engine *engine, const sd_engine_params *params);
void sd_engine_free_adapters(sd_engine *engine);

/* ---- image_cond.c: img2img / inpainting state of one batch ---- */

typedef struct sd_cond_state {
  sd_pipeline_kind kind;
  bool blend;              /* 4-channel inpainting: blend after every step */
  int begin;               /* the first scheduler call */
  sd_tensor image_latents; /* (n, C, h, w) the init image's latents x scaling factor (blend) */
  sd_tensor noise;         /* (n, C, h, w) the noise of the initial add_noise (blend) */
  sd_tensor mask;          /* (n, 1, h, w) the mask at latent size (blend) */
  /* (rows, 1 + C, h, w) [mask, masked image latents] (9-channel UNet), (rows, 1, h, w) the
   * depth conditioning (depth2img), or (rows, 3, h, w) the noised low-res image (upscale):
   * concatenated after the latents as the UNet's input */
  sd_tensor extra;
  int32_t *labels; /* (rows) the UNet's class labels (upscale: the noise level), or NULL */
} sd_cond_state;

/* Preprocesses each item's init image (and mask), encodes them, draws each item's numbers in
 * diffusers' order from rngs, sets the scheduler's first call and writes the initial latents
 * (n, C, h, w). rows: the UNet batch (2n with classifier-free guidance). */
int sd_cond_prepare(sd_engine *engine, const sd_txt2img_batch *batch, const sd_image_params *image,
                    int n, int rows, sd_rng *rngs, sd_scheduler *scheduler, sd_tensor *latents,
                    sd_cond_state *state);
/* After scheduler call `call`: 4-channel inpainting puts the re-noised init latents back
 * outside the mask (diffusers' per-step blending); nothing otherwise. */
int sd_cond_after_step(sd_engine *engine, sd_cond_state *state, sd_scheduler *scheduler, int call,
                       sd_tensor *latents);
void sd_cond_free(sd_backend *be, sd_cond_state *state);
/* Replaces the state's whole-latent tensors (image_latents, noise, mask, extra: (.., h, w)) by
 * this rank's bands of them (sd_spatial_cut), for rendering over spatial bands; nothing when sp
 * is NULL. Everything the state does after a step is element-wise, so bands need nothing more. */
struct sd_spatial;
int sd_cond_cut_to_band(sd_backend *be, const struct sd_spatial *sp, sd_cond_state *state);

#endif
