/* The LDM-style YAML config of an original checkpoint (v1-inference.yaml, v2-inference-v.yaml,
 * x4-upscaling.yaml): the fields sdbatch reads, each marked unset when the file doesn't state it.
 * Structural fields are checked against what the checkpoint's shapes say; the others (heads,
 * parameterization, scale factor, image size, betas) are taken as given. */
#ifndef SD_LDM_YAML_H
#define SD_LDM_YAML_H

#include "../model/config.h"

#include <stdbool.h>
#include <stddef.h>

/* Unset markers: -1 for ints (LDM itself uses -1 for an unset num_heads / num_head_channels),
 * NAN for floats, count -1 for lists. */
typedef struct sd_ldm_yaml {
  char path[4096];
  /* model.params */
  int parameterization; /* sd_prediction_type: "eps", "v", "x0" */
  float scale_factor;
  int image_size; /* latent size (64 for 512 px) */
  float linear_start, linear_end;
  int timesteps;
  /* model.params.low_scale_config.params (the x4 upscaler's ImageConcatWithNoiseAugmentation):
   * noise_schedule_config's betas (LDM's "linear" schedule, diffusers' scaled_linear) and steps,
   * and the highest noise level */
  struct {
    float linear_start, linear_end;
    int timesteps;
    int max_noise_level;
  } low_scale;
  /* model.params.unet_config.params */
  struct {
    int in_channels, out_channels, model_channels, num_res_blocks;
    int num_heads, num_head_channels, context_dim;
    int use_linear_in_transformer; /* -1 unset, 0, 1 */
    int channel_mult[SD_MAX_LEVELS];
    int n_channel_mult;
    int attention_resolutions[8]; /* downsampling factors with attention (1, 2, 4, ...) */
    int n_attention_resolutions;
    int transformer_depth[SD_MAX_LEVELS]; /* an int in the file fills every level */
    int n_transformer_depth;
    int num_classes; /* class-embedding rows (the x4 upscaler's noise levels: 1000) */
    /* per level: attn1 attends to the context (diffusers' only_cross_attention) */
    bool disable_self_attentions[SD_MAX_LEVELS];
    int n_disable_self_attentions;
    int disable_middle_self_attn; /* -1 unset, 0, 1 (1 is refused: diffusers has no such mid block)
                                   */
  } unet;
  /* model.params.first_stage_config.params.ddconfig */
  struct {
    int ch, num_res_blocks, z_channels, in_channels, out_ch;
    int ch_mult[SD_MAX_LEVELS];
    int n_ch_mult;
    /* sdbatch extension, not in LDM's files (whose Normalize always has 32 groups): the group
     * count of small test models whose VAE is narrower than 32 channels */
    int norm_num_groups;
  } vae;
  /* model.params.cond_stage_config.params */
  struct {
    int penultimate; /* layer: "penultimate" (1) or "last" (0); -1 unset */
    /* sdbatch extension, not in LDM's files: the text encoder's heads, for small test models
     * whose head size is not CLIP's 64 */
    int num_attention_heads;
  } text;
} sd_ldm_yaml;

/* Largest channel_mult / ch_mult entry accepted (SD uses 1, 2, 4, 4). */
#define SD_LDM_MAX_MULT 64

/* Reads path (a regular file of at most SD_FILE_MAX_YAML bytes); errors name the file, the line
 * and the key. Sizes outside the limits of config_check.h are refused. */
int sd_ldm_yaml_read(const char *path, sd_ldm_yaml *out);
/* The same for the file's text in memory, named name in errors. */
int sd_ldm_yaml_parse(const char *text, size_t len, const char *name, sd_ldm_yaml *out);

#endif
