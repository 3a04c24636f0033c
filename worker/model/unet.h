/* diffusers UNet2DConditionModel for SD 1.x / 2.x: time embedding, resnets, transformer blocks
 * (self-attention, cross-attention, GEGLU), down/up sampling with skips, mid block. */
#ifndef SD_UNET_H
#define SD_UNET_H

#include "config.h"
#include "../io/weights.h"
#include "../spatial/spatial.h"

typedef struct sd_unet sd_unet;

/* Resolves and shape-checks every weight the config implies; the model borrows `weights` (keep
 * them alive until sd_unet_free) and `be`. */
int sd_unet_create(sd_backend *be, const sd_unet_config *cfg, const sd_weights *weights,
                   sd_unet **out);
void sd_unet_free(sd_unet *model);

/* diffusers' Timesteps projection of one timestep on the host: out (block_out_channels[0]) =
 * sinusoids (cos first when flip_sin_to_cos) with frequencies exp(-ln(10000) i / (half -
 * freq_shift)), computed in float32 as diffusers does. The same math
 * (kernels/timestep_embedding.h) as sd_op_timestep_embedding, which sd_unet_forward uses. */
int sd_unet_time_proj(const sd_unet_config *cfg, double timestep, float *out);

/* sample (B, in_channels, h, w), timestep (a float, as diffusers passes it; the same for the whole
 * batch), context (B, L, cross_attention_dim) -> out (B, out_channels, h, w); any h, w >= 1
 * (sides that are not multiples of 2^(num_levels - 1) are handled as diffusers does). Scratch
 * memory comes from the backend arena and is released before return. */
int sd_unet_forward(sd_unet *model, const sd_tensor *sample, double timestep,
                    const sd_tensor *context, sd_tensor *out);
/* sd_unet_forward on this rank's band of one image split over a group (docs/spatial.md): sp is a
 * decomposition of the latent (h, w) with num_levels levels (NULL: the whole image); sample and
 * out are this rank's bands (B, C, rows, w); every rank of the group calls it together. The
 * result is the band of what sd_unet_forward gives for the whole latent. class_labels: as
 * sd_unet_forward_labels (NULL for models without a class embedding). */
int sd_unet_forward_spatial(sd_unet *model, const sd_spatial *sp, const sd_tensor *sample,
                            double timestep, const int32_t *class_labels, const sd_tensor *context,
                            sd_tensor *out);

/* sd_unet_forward with class labels (B host ids < num_class_embeds, checked), embedded and added
 * to the time embedding as diffusers' class_embedding (class_embed_type null): the x4 upscaler's
 * noise level. Required exactly when the model has num_class_embeds. */
int sd_unet_forward_labels(sd_unet *model, const sd_tensor *sample, double timestep,
                           const int32_t *class_labels, const sd_tensor *context, sd_tensor *out);

#endif
