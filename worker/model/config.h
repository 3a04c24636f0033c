/* Model configurations, as diffusers' config.json files state them (field names kept). Filled by
 * worker/io from a diffusers folder's configs or inferred from a single-file checkpoint; read by
 * worker/model. Sizes always come from here, never from constants in the model code. */
#ifndef SD_MODEL_CONFIG_H
#define SD_MODEL_CONFIG_H

#include "../../kernels/ops.h"

#include <stdbool.h>

#define SD_MAX_LEVELS 6

/* transformers CLIPTextConfig */
typedef struct sd_clip_config {
  int vocab_size;              /* 49408 */
  int hidden_size;             /* 768 (SD 1.x), 1024 (SD 2.x) */
  int intermediate_size;       /* 3072, 4096 */
  int num_hidden_layers;       /* 12, 23 (SD 2.x uses the penultimate OpenCLIP layer) */
  int num_attention_heads;     /* 12, 16 */
  int max_position_embeddings; /* 77 */
  sd_activation hidden_act;    /* quick_gelu (SD 1.x), gelu (SD 2.x) */
  float layer_norm_eps;        /* 1e-5 */
  int bos_token_id;            /* 49406 */
  int eos_token_id;            /* 49407 */
} sd_clip_config;

/* diffusers UNet2DConditionModel */
typedef struct sd_unet_config {
  int in_channels;  /* 4 (txt2img), 5 (depth), 9 (inpaint) */
  int out_channels; /* 4 */
  int num_levels;   /* len(block_out_channels) */
  int block_out_channels[SD_MAX_LEVELS];
  bool down_block_has_attention[SD_MAX_LEVELS]; /* CrossAttnDownBlock2D vs DownBlock2D */
  bool up_block_has_attention[SD_MAX_LEVELS];   /* CrossAttnUpBlock2D vs UpBlock2D, in up order */
  int layers_per_block;
  int transformer_layers_per_block[SD_MAX_LEVELS];
  /* heads per level: diffusers' attention_head_dim (int or list) unless num_attention_heads is
   * given; head dim = channels / heads */
  int num_attention_heads[SD_MAX_LEVELS];
  int cross_attention_dim; /* 768, 1024 */
  int norm_num_groups;     /* 32 */
  float norm_eps;          /* 1e-5 */
  bool use_linear_projection;
  bool upcast_attention;
  bool flip_sin_to_cos; /* true */
  float freq_shift;     /* 0 */
  int sample_size;      /* latent size the model was trained at (64, 96) */
  /* class labels (the x4 upscaler's noise level) embedded by a table of this many rows and added
   * to the time embedding; 0 when the model has none (class_embed_type null either way) */
  int num_class_embeds;
  /* per down level (the up blocks take it reversed, as diffusers does): the transformer blocks'
   * attn1 attends to the text context instead of the image (the x4 upscaler) */
  bool only_cross_attention[SD_MAX_LEVELS];
} sd_unet_config;

/* diffusers AutoencoderKL (decoder side is what txt2img needs) */
typedef struct sd_vae_config {
  int in_channels;     /* 3 */
  int out_channels;    /* 3 */
  int latent_channels; /* 4 */
  int num_levels;
  int block_out_channels[SD_MAX_LEVELS]; /* 128, 256, 512, 512 */
  int layers_per_block;                  /* 2 (decoder blocks have layers_per_block + 1) */
  int norm_num_groups;                   /* 32 */
  float scaling_factor;                  /* 0.18215 */
  int sample_size;
  bool mid_block_add_attention; /* true */
} sd_vae_config;

typedef enum sd_beta_schedule {
  SD_BETA_LINEAR = 0,
  SD_BETA_SCALED_LINEAR,
  SD_BETA_SQUAREDCOS_CAP_V2,
} sd_beta_schedule;

typedef enum sd_prediction_type {
  SD_PREDICT_EPSILON = 0,
  SD_PREDICT_V,
  SD_PREDICT_SAMPLE,
} sd_prediction_type;

typedef enum sd_timestep_spacing {
  SD_SPACING_LEADING = 0,
  SD_SPACING_LINSPACE,
  SD_SPACING_TRAILING,
} sd_timestep_spacing;

/* Bits of sd_scheduler_config.fields_set: which fields the model's config.json stated. A
 * scheduler of another class built from the config (diffusers' from_config) takes its own class
 * defaults for the fields not stated. */
enum {
  SD_SCHED_FIELD_NUM_TRAIN_TIMESTEPS = 1 << 0,
  SD_SCHED_FIELD_BETA_START = 1 << 1,
  SD_SCHED_FIELD_BETA_END = 1 << 2,
  SD_SCHED_FIELD_BETA_SCHEDULE = 1 << 3,
  SD_SCHED_FIELD_PREDICTION_TYPE = 1 << 4,
  SD_SCHED_FIELD_TIMESTEP_SPACING = 1 << 5,
  SD_SCHED_FIELD_STEPS_OFFSET = 1 << 6,
  SD_SCHED_FIELD_SET_ALPHA_TO_ONE = 1 << 7,
  SD_SCHED_FIELD_CLIP_SAMPLE = 1 << 8,
  SD_SCHED_FIELD_CLIP_SAMPLE_RANGE = 1 << 9,
  SD_SCHED_FIELD_SKIP_PRK_STEPS = 1 << 10,
  SD_SCHED_FIELD_USE_KARRAS_SIGMAS = 1 << 11,
};

/* The union of the diffusers scheduler configs' fields that SD models ship. */
typedef struct sd_scheduler_config {
  unsigned fields_set; /* SD_SCHED_FIELD_* bits of the fields the config stated */
  char class_name[64]; /* "_class_name", e.g. "PNDMScheduler"; names the default scheduler */
  int num_train_timesteps;
  float beta_start;
  float beta_end;
  sd_beta_schedule beta_schedule;
  sd_prediction_type prediction_type;
  sd_timestep_spacing timestep_spacing;
  int steps_offset;
  bool set_alpha_to_one;
  bool clip_sample;
  float clip_sample_range;
  bool skip_prk_steps;
  bool use_karras_sigmas;
} sd_scheduler_config;

/* Zero fields_set and diffusers' common defaults (num_train_timesteps 1000, linear 0.0001..0.02,
 * epsilon, leading, ...); the loader then sets the fields the config states and their bits. */
void sd_scheduler_config_defaults(sd_scheduler_config *cfg);

#endif
