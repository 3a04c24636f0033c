/* Internal to the UNet: the model's structure (levels of blocks, the time embedding's weights),
 * shared by the inference forward (unet.c) and the training forward and backward
 * (unet_forward_train.c, unet_backward.c). */
#ifndef SD_UNET_INTERNAL_H
#define SD_UNET_INTERNAL_H

#include "unet.h"
#include "unet_blocks.h"

/* max_period of diffusers' Timesteps projection (get_timestep_embedding's default). */
#define SD_UNET_MAX_PERIOD 10000.0

typedef struct unet_down_level {
  int channels;                    /* C of this level */
  sd_unet_resnet *resnets;         /* layers_per_block */
  sd_unet_transformer *attentions; /* layers_per_block, or NULL (DownBlock2D) */
  bool has_downsample;             /* all levels but the last */
  sd_unet_sampler downsample;      /* (C, C, 3, 3), stride 2 */
} unet_down_level;

typedef struct unet_up_level {
  int channels;                    /* C of the matching down level */
  sd_unet_resnet *resnets;         /* layers_per_block + 1, input = cat(h, skip) */
  sd_unet_transformer *attentions; /* layers_per_block + 1, or NULL (UpBlock2D) */
  bool has_upsample;               /* all up levels but the last */
  sd_unet_sampler upsample;        /* (C, C, 3, 3) after nearest 2x */
} unet_up_level;

struct sd_unet {
  sd_backend *be;
  sd_unet_config cfg;
  int time_channels;          /* T0 = block_out_channels[0], the sinusoidal projection width */
  int temb_channels;          /* T = 4 * T0 */
  const sd_tensor *conv_in_w; /* (C0, in_channels, 3, 3) */
  const sd_tensor *conv_in_b; /* (C0) */
  const sd_tensor *time_linear_1_w;         /* (T, T0) */
  const sd_tensor *time_linear_1_b;         /* (T) */
  const sd_tensor *time_linear_2_w;         /* (T, T) */
  const sd_tensor *time_linear_2_b;         /* (T) */
  const sd_tensor *class_embedding;         /* (num_class_embeds, T); NULL without */
  unet_down_level down[SD_MAX_LEVELS];      /* level 0 (full resolution) first */
  sd_unet_resnet mid_resnets[2];            /* (B, Cm, h, w) -> (B, Cm, h, w) */
  sd_unet_transformer mid_attention;        /* Cm = block_out_channels[last] */
  unet_up_level up[SD_MAX_LEVELS];          /* in diffusers up_blocks order */
  const sd_tensor *norm_out_w, *norm_out_b; /* (C0) */
  const sd_tensor *conv_out_w;              /* (out_channels, C0, 3, 3) */
  const sd_tensor *conv_out_b;              /* (out_channels) */
};

/* The shapes sd_unet_forward takes: sample (B, in_channels, h, w), context (B, L,
 * cross_attention_dim), out (B, out_channels, h, w); -1 with an error naming the wrong one. */
int sd_unet_check_shapes(const sd_unet *m, const sd_tensor *sample, const sd_tensor *context,
                         const sd_tensor *out);

#endif
