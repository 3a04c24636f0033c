/* Training of the UNet (docs/training.md): a forward that records a tape of the activations the
 * backward needs, and the backward giving d(sample), d(context) and the gradient of every weight.
 * Written once against ops.h; runs where the backend has the backward ops (the CPU backend).
 *
 * Memory: the tape lives on the backend arena, from where the arena stood when
 * sd_unet_forward_train began; sd_unet_tape_free releases the arena back to that point (anything
 * the caller allocated on the arena after the forward goes with it). The backward's own scratch
 * is released before it returns. */
#ifndef SD_UNET_TRAIN_H
#define SD_UNET_TRAIN_H

#include "grads.h"
#include "unet.h"

typedef struct sd_unet_tape sd_unet_tape;

typedef enum sd_unet_tape_mode {
  /* Every block keeps its internal activations (LayerNorm inputs, q/k/v, GEGLU input, ...):
   * the most memory, no recomputation. */
  SD_UNET_TAPE_FULL = 0,
  /* Gradient checkpointing: only the blocks' inputs and outputs are kept; the backward runs each
   * block's forward again just before its backward (one more forward of compute). */
  SD_UNET_TAPE_CHECKPOINT,
} sd_unet_tape_mode;

/* sd_unet_forward for training: sample (B, in_channels, h, w) with h and w multiples of
 * 2^(num_levels - 1) (the upsamplers' backward is exactly 2x), one timestep (a constant: no
 * gradient reaches it), context (B, L, cross_attention_dim) -> out (B, out_channels, h, w), equal
 * bit for bit to sd_unet_forward's, and *tape for sd_unet_backward. sample and context are
 * borrowed by the tape: keep them alive and unchanged until sd_unet_tape_free. Models with class
 * labels (the x4 upscaler) or only_cross_attention, and spatial bands, are refused. */
int sd_unet_forward_train(sd_unet *model, const sd_tensor *sample, double timestep,
                          const sd_tensor *context, sd_unet_tape_mode mode, sd_tensor *out,
                          sd_unet_tape **tape);

/* Backpropagates dout (B, out_channels, h, w), the gradient of the loss with respect to out:
 * dsample (B, in_channels, h, w) and dcontext (B, L, cross_attention_dim) are overwritten (each
 * NULL when not wanted); every weight's gradient in grads (NULL: none) is ADDED to, so calls add
 * up (micro-batches). The tape is left as it was: it may be backpropagated again. */
int sd_unet_backward(sd_unet_tape *tape, const sd_tensor *dout, sd_grads *grads, sd_tensor *dsample,
                     sd_tensor *dcontext);

/* Arena bytes the tape holds. */
size_t sd_unet_tape_bytes(const sd_unet_tape *tape);
/* Releases the tape's arena memory (see above) and the tape. */
void sd_unet_tape_free(sd_unet_tape *tape);

#endif
