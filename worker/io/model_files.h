/* Opening a model: a diffusers folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
 * scheduler/) or a single-file original checkpoint (.safetensors with model.diffusion_model.,
 * first_stage_model., cond_stage_model.transformer. (SD 1.x) or cond_stage_model.model. (SD 2.x)
 * keys). Either way the result is the same: configs and per-component tensor maps with diffusers
 * names. */
#ifndef SD_MODEL_FILES_H
#define SD_MODEL_FILES_H

#include "../model/config.h"
#include "tensor_map.h"

/* Decided by the text encoder, never by sizes: a folder's hidden_act gelu (OpenCLIP) is SD 2.x,
 * quick_gelu SD 1.x; a single file's cond_stage_model.model. keys SD 2.x,
 * cond_stage_model.transformer. SD 1.x. */
typedef enum sd_model_family {
  SD_FAMILY_SD1 = 1, /* CLIP ViT-L/14 text encoder, 768-d context */
  SD_FAMILY_SD2 = 2, /* OpenCLIP ViT-H/14 text encoder, 1024-d context */
} sd_model_family;

typedef struct sd_tokenizer_files {
  /* Either vocab_json + merges_txt, or tokenizer_json, or bpe_gz (OpenAI's
   * bpe_simple_vocab_16e6.txt.gz, for single-file checkpoints). Empty strings when absent. */
  char vocab_json[4096];
  char merges_txt[4096];
  char tokenizer_json[4096];
  char bpe_gz[4096];
  char pad_token[64];   /* "<|endoftext|>" (SD 1.x) or "!" (SD 2.x) */
  int model_max_length; /* 77 */
} sd_tokenizer_files;

/* The x4 upscaler's (StableDiffusionUpscalePipeline) own settings. A model is one when its UNet
 * takes the latents and an image (latent + image channels) and embeds class labels (the noise
 * level). A folder gives them as low_res_scheduler/scheduler_config.json and model_index.json's
 * max_noise_level (350 when absent, diffusers' default); a single file as its YAML's
 * low_scale_config, else the real model's x4-upscaling.yaml values. */
typedef struct sd_upscaler_config {
  bool present;                /* false: not an upscaler, the rest unset */
  sd_scheduler_config low_res; /* the DDPM scheduler that noises the low-res image */
  int max_noise_level;         /* at most low_res timesteps - 1 and num_class_embeds - 1 */
} sd_upscaler_config;

typedef struct sd_model_files {
  char path[4096];
  sd_model_family family;
  sd_clip_config clip;
  sd_unet_config unet;
  sd_vae_config vae;
  sd_scheduler_config scheduler;
  sd_tokenizer_files tokenizer;
  sd_upscaler_config upscaler;
  sd_tensor_map *clip_tensors; /* transformers CLIPTextModel names: text_model.... */
  sd_tensor_map *unet_tensors; /* diffusers UNet2DConditionModel names */
  sd_tensor_map *vae_tensors;  /* diffusers AutoencoderKL names */
  void *internal;              /* open files and owned buffers */
} sd_model_files;

/* path: a diffusers folder or a .safetensors single file. config_yaml: an optional LDM-style
 * YAML (v1-inference.yaml / v2-inference-v.yaml) for single files: its structural fields are
 * checked against the shapes, the rest (heads, parameterization, scale factor, image size, betas)
 * taken as given; NULL for none, and an error with a folder. bpe_gz_fallback: the CLIP BPE file
 * for single-file checkpoints (checked readable; NULL leaves tokenizer.bpe_gz empty). What a
 * single file's shapes cannot tell and the defaults without a YAML are listed in model_files.c.
 * Errors name the file and the field or tensor. */
int sd_model_files_open(const char *path, const char *config_yaml, const char *bpe_gz_fallback,
                        sd_model_files **out);
void sd_model_files_close(sd_model_files *model);

#endif
