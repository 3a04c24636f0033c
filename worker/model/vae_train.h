/* Training of the VAE (docs/training.md): forwards of the decoder and the encoder that record a
 * tape of the activations their backwards need, and the backwards giving the input's gradient and
 * adding every weight's. Written once against ops.h; runs where the backend has the backward ops
 * (the CPU backend).
 *
 * Memory: a tape lives on the backend arena, from where the arena stood when its forward began;
 * sd_vae_tape_free releases the arena back to that point (stack discipline: anything allocated
 * on the arena after the forward goes with it, so free an encoder's tape after the decoder's
 * tape recorded above it). The backward's own scratch is released before it returns. */
#ifndef SD_VAE_TRAIN_H
#define SD_VAE_TRAIN_H

#include "grads.h"
#include "vae.h"

typedef struct sd_vae_tape sd_vae_tape;

/* sd_vae_decode for training: z (B, latent_channels, h, w) -> image (B, out_channels, factor h,
 * factor w), equal bit for bit to sd_vae_decode's, and *tape for sd_vae_decode_backward. z is
 * borrowed by the tape (keep it alive and unchanged until sd_vae_tape_free); image is the tape's
 * last value (the caller's memory, read by nothing). */
int sd_vae_decode_forward_train(sd_vae *model, const sd_tensor *z, sd_tensor *image,
                                sd_vae_tape **tape);
/* Backpropagates dimage (the gradient of the loss with respect to image): dz (B, latent_channels,
 * h, w) is overwritten (NULL: not wanted); every decoder weight's gradient in grads
 * (post_quant_conv and decoder.*; NULL: none) is ADDED to. The tape is left as it was. */
int sd_vae_decode_backward(sd_vae_tape *tape, const sd_tensor *dimage, sd_grads *grads,
                           sd_tensor *dz);

/* sd_vae_encode for training: image (B, in_channels, H, W) -> moments (B, 2 latent_channels,
 * H / factor, W / factor), equal bit for bit to sd_vae_encode's; image borrowed as z above. */
int sd_vae_encode_forward_train(sd_vae *model, const sd_tensor *image, sd_tensor *moments,
                                sd_vae_tape **tape);
/* Backpropagates dmoments: dimage overwritten (NULL: not wanted); every encoder weight's gradient
 * (encoder.* and quant_conv) ADDED to. */
int sd_vae_encode_backward(sd_vae_tape *tape, const sd_tensor *dmoments, sd_grads *grads,
                           sd_tensor *dimage);

/* Arena bytes the tape holds. */
size_t sd_vae_tape_bytes(const sd_vae_tape *tape);
/* Releases the tape's arena memory (see above) and the tape; NULL is a no-op. */
void sd_vae_tape_free(sd_vae_tape *tape);

#endif
