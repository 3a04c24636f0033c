/* Training of the CLIP text encoder (docs/training.md): a forward that records a tape of the
 * activations the backward needs, and the backward giving the gradient of every weight (token
 * and position embeddings included) from the gradient of last_hidden_state. Written once against
 * ops.h; runs where the backend has the backward ops (the CPU backend).
 *
 * Memory: the tape lives on the backend arena, from where the arena stood when
 * sd_clip_text_forward_train began; sd_clip_text_tape_free releases the arena back to that point
 * (anything the caller allocated on the arena after the forward goes with it). The backward's own
 * scratch is released before it returns. */
#ifndef SD_CLIP_TEXT_TRAIN_H
#define SD_CLIP_TEXT_TRAIN_H

#include "clip_text.h"
#include "grads.h"

typedef struct sd_clip_text_tape sd_clip_text_tape;

/* sd_clip_text_forward for training: ids (B, L) int32 host memory (copied into the tape) ->
 * hidden (B, L, hidden_size), last_hidden_state after final_layer_norm, equal bit for bit to
 * sd_clip_text_forward's, and *tape for sd_clip_text_backward. hidden is the caller's:
 * persistent, or arena memory allocated before this call (the tape frees the arena back to where
 * it stood at this call). */
int sd_clip_text_forward_train(sd_clip_text *model, const int32_t *ids, int batch,
                               sd_tensor *hidden, sd_clip_text_tape **tape);

/* Backpropagates dhidden (B, L, hidden_size), the gradient of the loss with respect to hidden:
 * every weight's gradient in grads (NULL: none; a frozen weight has none) is ADDED to, so calls
 * add up (micro-batches). The ids are constants (no input gradient). The tape is left as it
 * was: it may be backpropagated again. */
int sd_clip_text_backward(sd_clip_text_tape *tape, const sd_tensor *dhidden, sd_grads *grads);

/* Arena bytes the tape holds. */
size_t sd_clip_text_tape_bytes(const sd_clip_text_tape *tape);
/* Releases the tape's arena memory (see above) and the tape. */
void sd_clip_text_tape_free(sd_clip_text_tape *tape);

#endif
