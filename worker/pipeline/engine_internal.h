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
};

/* Merges params' LoRAs and adds its embeddings to engine->files and engine->tokenizer (adapters.c),
 * before the weights are uploaded. */
int sd_engine_apply_adapters(sd_engine *engine, const sd_engine_params *params);
void sd_engine_free_adapters(sd_engine *engine);

#endif
