/* Internal to the VAE: the model's structure, shared by the inference forward (vae.c) and the
 * training forward and backward (vae_forward_train.c, vae_backward.c). The resnets and the
 * attention's projections are the UNet's block types (unet_blocks.h), so that the training code
 * of those blocks (unet_blocks_train.h) serves both models. */
#ifndef SD_VAE_INTERNAL_H
#define SD_VAE_INTERNAL_H

#include "unet_blocks.h"
#include "vae.h"

/* diffusers builds the autoencoder's GroupNorms (resnets, attention, norm_out) with eps 1e-6. */
#define VAE_NORM_EPS 1e-6f

/* ResnetBlock2D without a time embedding: an sd_unet_resnet whose time_emb_proj_w and
 * time_emb_proj_b are NULL (groups norm_num_groups, eps VAE_NORM_EPS). */
typedef sd_unet_resnet vae_resnet;

/* Attention block over H*W tokens: GroupNorm, one head of dim C with biased q/k/v projections,
 * residual. */
typedef struct vae_attention {
  int channels;
  const sd_tensor *norm_w, *norm_b; /* (C) */
  sd_unet_attention proj;           /* heads 1; to_q, to_k, to_v, to_out (C, C) with biases (C) */
} vae_attention;

/* UNetMidBlock2D with one layer: resnets[0], attention (when present), resnets[1]. */
typedef struct vae_mid_block {
  vae_resnet resnets[2];
  bool has_attention;
  vae_attention attention;
} vae_mid_block;

/* UpDecoderBlock2D. */
typedef struct vae_up_block {
  int num_resnets;                          /* layers_per_block + 1 */
  vae_resnet *resnets;                      /* (num_resnets) */
  const sd_tensor *upsample_w, *upsample_b; /* (Cout, Cout, 3, 3), (Cout); NULL in the last */
} vae_up_block;

/* DownEncoderBlock2D. */
typedef struct vae_down_block {
  int num_resnets;                              /* layers_per_block */
  vae_resnet *resnets;                          /* (num_resnets) */
  const sd_tensor *downsample_w, *downsample_b; /* (Cout, Cout, 3, 3), (Cout); NULL in the last */
} vae_down_block;

typedef struct vae_encoder {
  const sd_tensor *conv_in_w, *conv_in_b;   /* (C0, in_channels, 3, 3), (C0) */
  vae_down_block down[SD_MAX_LEVELS];       /* channels block_out_channels */
  vae_mid_block mid;                        /* at Ctop */
  const sd_tensor *norm_out_w, *norm_out_b; /* (Ctop) */
  const sd_tensor *conv_out_w, *conv_out_b; /* (2 latent_channels, Ctop, 3, 3), (2 lc) */
} vae_encoder;

typedef struct vae_decoder {
  const sd_tensor *conv_in_w, *conv_in_b;   /* (Ctop, latent_channels, 3, 3), (Ctop) */
  vae_mid_block mid;                        /* at Ctop = block_out_channels[-1] */
  vae_up_block up[SD_MAX_LEVELS];           /* channels block_out_channels reversed */
  const sd_tensor *norm_out_w, *norm_out_b; /* (C0) */
  const sd_tensor *conv_out_w, *conv_out_b; /* (out_channels, C0, 3, 3), (out_channels) */
} vae_decoder;

struct sd_vae {
  sd_backend *be;
  sd_vae_config cfg;
  const sd_tensor *post_quant_conv_w; /* (latent_channels, latent_channels, 1, 1) */
  const sd_tensor *post_quant_conv_b; /* (latent_channels) */
  vae_decoder decoder;
  const sd_tensor *quant_conv_w; /* (2 latent_channels, 2 latent_channels, 1, 1) */
  const sd_tensor *quant_conv_b; /* (2 latent_channels) */
  vae_encoder encoder;
};

/* The shape checks of sd_vae_decode (z (B, latent_channels, h, w), image (B, out_channels,
 * factor h, factor w)) and sd_vae_encode (image (B, in_channels, H, W) with H, W multiples of the
 * factor, moments (B, 2 latent_channels, H / factor, W / factor)), with their messages. */
int sd_vae_check_decode_shapes(const sd_vae *model, const sd_tensor *z, const sd_tensor *image);
int sd_vae_check_encode_shapes(const sd_vae *model, const sd_tensor *image,
                               const sd_tensor *moments);

/* The attention's softmax scale, 1 / sqrt(C) in float as the inference forward computes it. */
float sd_vae_attention_scale(const vae_attention *a);

#endif
