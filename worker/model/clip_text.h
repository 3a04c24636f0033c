/* CLIP text encoder (transformers CLIPTextModel): token + position embeddings, pre-LN
 * transformer with causal self-attention, final LayerNorm; last_hidden_state is SD's
 * conditioning. */
#ifndef SD_CLIP_TEXT_H
#define SD_CLIP_TEXT_H

#include "config.h"
#include "../io/weights.h"

typedef struct sd_clip_text sd_clip_text;

/* Resolves and shape-checks every weight (names "text_model...." as transformers 4.x and the Hub's
 * checkpoints have them, or the same without "text_model." as transformers 5.x saves them) at
 * create time. The model borrows `weights` (keep them alive until sd_clip_text_free) and `be`. */
int sd_clip_text_create(sd_backend *be, const sd_clip_config *cfg, const sd_weights *weights,
                        sd_clip_text **out);
void sd_clip_text_free(sd_clip_text *model);

/* ids (B, L) int32 host memory -> hidden (B, L, hidden_size), L = max_position_embeddings
 * (last_hidden_state, after final_layer_norm). Scratch memory comes from the backend arena and is
 * released before return. */
int sd_clip_text_forward(sd_clip_text *model, const int32_t *ids, int batch, sd_tensor *hidden);

#endif
