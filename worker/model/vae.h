/* diffusers AutoencoderKL: the decoder (post_quant_conv, conv_in, mid block (resnets +
 * attention), up blocks, GroupNorm + SiLU, conv_out; the caller divides latents by
 * scaling_factor) and the encoder with quant_conv and the latent distribution's sample. */
#ifndef SD_VAE_H
#define SD_VAE_H

#include "config.h"
#include "../io/weights.h"
#include "../spatial/spatial.h"

typedef struct sd_vae sd_vae;

/* Resolves and shape-checks post_quant_conv and every decoder weight the config implies (diffusers
 * names: decoder.mid_block.attentions.0.to_q.weight (C, C), ...). The model borrows `weights`
 * (keep them alive until sd_vae_free) and `be`. */
int sd_vae_create(sd_backend *be, const sd_vae_config *cfg, const sd_weights *weights,
                  sd_vae **out);
void sd_vae_free(sd_vae *model);

/* The config and backend the model was created with. */
const sd_vae_config *sd_vae_get_config(const sd_vae *model);
sd_backend *sd_vae_get_backend(const sd_vae *model);

/* z (B, latent_channels, h, w), already divided by scaling_factor ->
 * image (B, out_channels, 8h, 8w) in about [-1, 1] (not clamped); the factor is
 * 2^(num_levels - 1), 8 for SD. Scratch memory (two buffers of the largest activation plus one
 * resnet's temporaries) comes from the backend arena and is released before return. */
int sd_vae_decode(sd_vae *model, const sd_tensor *z, sd_tensor *image);
/* sd_vae_decode on this rank's band of one image split over a group (docs/spatial.md): sp is a
 * decomposition of the image (factor h, factor w) with num_levels levels (NULL: the whole
 * image); z and image are this rank's bands at the latent and image levels; every rank of the
 * group calls it together. The result is the band of what sd_vae_decode gives. */
int sd_vae_decode_spatial(sd_vae *model, const sd_spatial *sp, const sd_tensor *z,
                          sd_tensor *image);

/* sd_vae_decode in overlapping tiles, as diffusers' AutoencoderKL.decode after enable_tiling()
 * (tiled_decode): latent tiles of L = tile_sample_size / factor start every int(0.75 L) latent
 * pixels; each is decoded alone, its top and left int(0.25 tile_sample_size) pixels are
 * cross-faded with the tile above and the tile to the left (blend_v, blend_h), and its first
 * tile_sample_size - int(0.25 tile_sample_size) rows and columns go to the image. A latent no
 * larger than L either way is decoded whole, as diffusers does. tile_sample_size is diffusers'
 * tile_sample_min_size (the config's sample_size by default) and must make the kept part of a
 * tile exactly `factor` times the tile stride (true for multiples of 4 * factor, e.g. 512).
 * Scratch memory is one tile's decode plus the seams, whatever the image size; the result differs
 * from sd_vae_decode's (each tile sees only its own latents) as diffusers' tiled decode does. */
int sd_vae_decode_tiled(sd_vae *model, const sd_tensor *z, int tile_sample_size, sd_tensor *image);

/* The encoder: image (B, in_channels, H, W) in [-1, 1], H and W multiples of the factor ->
 * moments (B, 2 latent_channels, H / factor, W / factor): diffusers' AutoencoderKL encoder
 * (conv_in, down blocks of layers_per_block resnets with a zero-pad (0, 1, 0, 1) + stride-2
 * conv downsampler on all but the last, mid block, GroupNorm + SiLU, conv_out) and quant_conv,
 * i.e. the parameters of latent_dist (mean, then logvar). Scratch from the arena, released. */
int sd_vae_encode(sd_vae *model, const sd_tensor *image, sd_tensor *moments);

/* One image's latent_dist.sample(generator) times the config's scaling factor, on the host in
 * float32 as DiagonalGaussianDistribution computes it: logvar clamped to [-30, 20],
 * std = exp(0.5 logvar), sample = mean + std * noise, latents = scaling_factor * sample.
 * moments (2 latent_channels, hw), noise (latent_channels, hw): the generator's next randn of
 * the latent shape -> latents (latent_channels, hw). */
void sd_vae_latent_sample(const float *moments, const float *noise, int latent_channels, int64_t hw,
                          float scaling_factor, float *latents);

#endif
