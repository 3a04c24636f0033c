/* Internal to the UNet: the building blocks of diffusers' UNet2DConditionModel — ResnetBlock2D,
 * Transformer2DModel (with its BasicTransformerBlocks), Downsample2D and Upsample2D. Each block
 * resolves and shape-checks its weights at create time and runs on the op interface; a forward
 * writes into a caller-allocated output and releases its scratch before returning. */
#ifndef SD_UNET_BLOCKS_H
#define SD_UNET_BLOCKS_H

#include "../io/weights.h"
#include "../spatial/spatial.h"

#include <stdbool.h>

/* diffusers ResnetBlock2D (time_embedding_norm "default", output_scale_factor 1). */
typedef struct sd_unet_resnet {
  int in_channels, out_channels, groups;
  float eps;
  const sd_tensor *norm1_w, *norm1_b;       /* (Cin) */
  const sd_tensor *conv1_w;                 /* (Cout, Cin, 3, 3) */
  const sd_tensor *conv1_b;                 /* (Cout) */
  const sd_tensor *time_emb_proj_w;         /* (Cout, T) */
  const sd_tensor *time_emb_proj_b;         /* (Cout) */
  const sd_tensor *norm2_w, *norm2_b;       /* (Cout) */
  const sd_tensor *conv2_w;                 /* (Cout, Cout, 3, 3) */
  const sd_tensor *conv2_b;                 /* (Cout) */
  const sd_tensor *shortcut_w, *shortcut_b; /* (Cout, Cin, 1, 1), (Cout); NULL when Cin == Cout */
} sd_unet_resnet;

/* diffusers Attention: as BasicTransformerBlock uses it no q/k/v bias (NULL), biased output; the
 * VAE's (vae_internal.h) has q/k/v biases. */
typedef struct sd_unet_attention {
  int heads;
  const sd_tensor *to_q;                     /* (C, C) */
  const sd_tensor *to_k, *to_v;              /* (C, Ckv); Ckv = C (self) or the context width */
  const sd_tensor *to_out_w, *to_out_b;      /* (C, C), (C) */
  const sd_tensor *to_q_b, *to_k_b, *to_v_b; /* (C) each, or NULL */
} sd_unet_attention;

/* diffusers BasicTransformerBlock (layer_norm, self-attn, cross-attn, GEGLU feed-forward). */
typedef struct sd_unet_transformer_block {
  const sd_tensor *norm1_w, *norm1_b; /* (C) */
  sd_unet_attention attn1;            /* self, or on the context when only_cross_attention */
  const sd_tensor *norm2_w, *norm2_b; /* (C) */
  sd_unet_attention attn2;            /* cross, k/v from the context (B, L, Ckv) */
  const sd_tensor *norm3_w, *norm3_b; /* (C) */
  const sd_tensor *ff_proj_w;         /* (2F, C), F = 4C: GEGLU's value then gate halves */
  const sd_tensor *ff_proj_b;         /* (2F) */
  const sd_tensor *ff_out_w;          /* (C, F) */
  const sd_tensor *ff_out_b;          /* (C) */
} sd_unet_transformer_block;

/* diffusers Transformer2DModel with continuous input: GroupNorm (eps 1e-6), proj_in, blocks,
 * proj_out, + residual. */
typedef struct sd_unet_transformer {
  int channels, heads, groups, num_layers;
  bool use_linear_projection;       /* proj_in/out are linears on (B, HW, C), else 1x1 convs */
  bool upcast_attention;            /* softmax in fp32 on reduced-precision backends; CPU is fp32 */
  bool only_cross_attention;        /* attn1's k/v come from the context (B, L, Ckv) too */
  const sd_tensor *norm_w, *norm_b; /* (C) */
  const sd_tensor *proj_in_w, *proj_in_b;   /* (C, C) or (C, C, 1, 1), (C) */
  sd_unet_transformer_block *blocks;        /* num_layers */
  const sd_tensor *proj_out_w, *proj_out_b; /* (C, C) or (C, C, 1, 1), (C) */
} sd_unet_transformer;

/* Downsample2D (conv 3x3, stride 2, padding 1) or Upsample2D (nearest 2x, conv 3x3). */
typedef struct sd_unet_sampler {
  const sd_tensor *conv_w; /* (C, C, 3, 3) */
  const sd_tensor *conv_b; /* (C) */
} sd_unet_sampler;

/* Weights named "<prefix>norm1.weight" etc. */
int sd_unet_resnet_init(sd_unet_resnet *r, const sd_weights *w, const char *prefix, int in_channels,
                        int out_channels, int temb_channels, int groups, float eps);
/* x (B, Cin, H, W), temb_act (B, T) = silu(time embedding) -> y (B, Cout, H, W). y must not
 * alias x. Every forward below takes sp: NULL for the whole image, or a decomposition whose
 * bands x and y are (spatial.h). */
int sd_unet_resnet_forward(sd_backend *be, const sd_spatial *sp, const sd_unet_resnet *r,
                           const sd_tensor *x, const sd_tensor *temb_act, sd_tensor *y);

/* Weights named "<prefix>norm.weight", "<prefix>transformer_blocks.0.attn1.to_q.weight", ...
 * Allocates t->blocks; release with sd_unet_transformer_free. */
int sd_unet_transformer_init(sd_unet_transformer *t, const sd_weights *w, const char *prefix,
                             int channels, int heads, int num_layers, int context_channels,
                             int groups, bool use_linear_projection, bool upcast_attention,
                             bool only_cross_attention);
void sd_unet_transformer_free(sd_unet_transformer *t);
/* x (B, C, H, W), context (B, L, Ckv) -> y (B, C, H, W). y must not alias x. */
int sd_unet_transformer_forward(sd_backend *be, const sd_spatial *sp, const sd_unet_transformer *t,
                                const sd_tensor *x, const sd_tensor *context, sd_tensor *y);

/* Weights "<prefix>conv.weight", "<prefix>conv.bias". */
int sd_unet_sampler_init(sd_unet_sampler *s, const sd_weights *w, const char *prefix, int channels);
/* x (B, C, H, W) -> y (B, C, (H + 1) / 2, (W + 1) / 2) */
int sd_unet_downsample_forward(sd_backend *be, const sd_spatial *sp, const sd_unet_sampler *s,
                               const sd_tensor *x, sd_tensor *y);
/* x (B, C, H, W) -> y (B, C, Ho, Wo): nearest resize to y's size (2H, 2W, or the skip's size
 * for odd latent sides), then the 3x3 conv. */
int sd_unet_upsample_forward(sd_backend *be, const sd_spatial *sp, const sd_unet_sampler *s,
                             const sd_tensor *x, sd_tensor *y);

/* Shape-checked weight lookup "<prefix><suffix>" with up to 4 dims (unused dims ignored). */
int sd_unet_weight(const sd_weights *w, const sd_tensor **out, const char *prefix,
                   const char *suffix, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3);

#endif
