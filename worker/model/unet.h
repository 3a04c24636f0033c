/* diffusers UNet2DConditionModel for SD 1.x / 2.x: time embedding, resnets, transformer blocks
 * (self-attention, cross-attention, GEGLU), down/up sampling with skips, mid block. */
#ifndef SD_UNET_H
#define SD_UNET_H

#include "config.h"
#include "../io/weights.h"

typedef struct sd_unet sd_unet;

int sd_unet_create(sd_backend *be, const sd_unet_config *cfg, const sd_weights *weights,
                   sd_unet **out);
void sd_unet_free(sd_unet *model);

/* sample (B, in_channels, h, w), timestep (a float, as diffusers passes it; the same for the whole
 * batch), context (B, L, cross_attention_dim) -> out (B, out_channels, h, w). Scratch memory
 * comes from the backend arena and is released before return. */
int sd_unet_forward(sd_unet *model, const sd_tensor *sample, double timestep,
                    const sd_tensor *context, sd_tensor *out);

#endif
