/* diffusers AutoencoderKL decoder: post_quant_conv, conv_in, mid block (resnets + attention),
 * up blocks, GroupNorm + SiLU, conv_out. The caller divides latents by scaling_factor. */
#ifndef SD_VAE_H
#define SD_VAE_H

#include "config.h"
#include "../io/weights.h"

typedef struct sd_vae sd_vae;

int sd_vae_create(sd_backend *be, const sd_vae_config *cfg, const sd_weights *weights,
                  sd_vae **out);
void sd_vae_free(sd_vae *model);

/* z (B, latent_channels, h, w), already divided by scaling_factor ->
 * image (B, out_channels, 8h, 8w) in about [-1, 1] (not clamped). */
int sd_vae_decode(sd_vae *model, const sd_tensor *z, sd_tensor *image);

#endif
