/* The engine's state, shared by the pipeline files (not a public header). */
#ifndef SD_ENGINE_INTERNAL_H
#define SD_ENGINE_INTERNAL_H

#include "../model/clip_text.h"
#include "../model/unet.h"
#include "../model/vae.h"
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
};

#endif
