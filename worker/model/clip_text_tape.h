/* Internal to the CLIP text encoder's training: the tape sd_clip_text_forward_train records
 * (clip_text_forward_train.c) and sd_clip_text_backward walks back (clip_text_backward.c).
 * Every tensor is (B, L, C) unless noted, on the arena; nothing the ops recompute themselves
 * (LayerNorm statistics, softmax probabilities) is kept. */
#ifndef SD_CLIP_TEXT_TAPE_H
#define SD_CLIP_TEXT_TAPE_H

#include "clip_text_internal.h"
#include "clip_text_train.h"

/* One encoder layer: x_in -> x_mid = x_in + out_proj(attention(layer_norm1(x_in)))
 *                          -> x_out = x_mid + fc2(act(fc1(layer_norm2(x_mid)))). */
typedef struct clip_layer_rec {
  sd_tensor x_in; /* the residual stream entering the layer (layer_norm1's input) */
  sd_tensor n1;   /* layer_norm1(x_in): q, k, v projections' input */
  sd_tensor q, k, v;
  sd_tensor o;     /* attention output: out_proj's input */
  sd_tensor x_mid; /* layer_norm2's input */
  sd_tensor n2;    /* layer_norm2(x_mid): fc1's input */
  sd_tensor f_pre; /* (B, L, I) fc1(n2), the activation's input */
  sd_tensor f_act; /* (B, L, I) act(f_pre), fc2's input */
} clip_layer_rec;

struct sd_clip_text_tape {
  sd_clip_text *m;
  sd_backend *be;
  sd_arena_mark base;
  int batch;
  int32_t *ids;        /* (B, L) host copy */
  clip_layer_rec *rec; /* (num_hidden_layers) */
  sd_tensor x_final;   /* the last layer's output: final_layer_norm's input */
};

#endif
