/* diffusers AutoencoderKL decoder: post_quant_conv, conv_in, mid block (resnets + attention),
 * up blocks, GroupNorm + SiLU, conv_out. The caller divides latents by scaling_factor. */
#ifndef SD_VAE_H
#define SD_VAE_H

#include "config.h"
#include "../io/weights.h"

typedef struct sd_vae sd_vae;

/* Resolves and shape-checks post_quant_conv and every decoder weight the config implies (diffusers
 * names: decoder.mid_block.attentions.0.to_q.weight (C, C), ...). The model borrows `weights`
 * (keep them alive until sd_vae_free) and `be`. */
int sd_vae_create(sd_backend *be, const sd_vae_config *cfg, const sd_weights *weights,
                  sd_vae **out);
void sd_vae_free(sd_vae *model);

/* z (B, latent_channels, h, w), already divided by scaling_factor ->
 * image (B, out_channels, 8h, 8w) in about [-1, 1] (not clamped); the factor is
 * 2^(num_levels - 1), 8 for SD. Scratch memory (two buffers of the largest activation plus one
 * resnet's temporaries) comes from the backend arena and is released before return. */
int sd_vae_decode(sd_vae *model, const sd_tensor *z, sd_tensor *image);

#endif
