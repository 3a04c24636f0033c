/* Internal to the CLIP text encoder: the model's structure, shared by the inference forward
 * (clip_text.c) and the training forward and backward (clip_text_forward_train.c,
 * clip_text_backward.c). */
#ifndef SD_CLIP_TEXT_INTERNAL_H
#define SD_CLIP_TEXT_INTERNAL_H

#include "clip_text.h"

typedef struct clip_layer {
  const sd_tensor *ln1_w, *ln1_b; /* (C) */
  const sd_tensor *q_w, *q_b;     /* (C, C), (C) */
  const sd_tensor *k_w, *k_b;     /* (C, C), (C) */
  const sd_tensor *v_w, *v_b;     /* (C, C), (C) */
  const sd_tensor *out_w, *out_b; /* (C, C), (C) */
  const sd_tensor *ln2_w, *ln2_b; /* (C) */
  const sd_tensor *fc1_w, *fc1_b; /* (I, C), (I) */
  const sd_tensor *fc2_w, *fc2_b; /* (C, I), (C) */
} clip_layer;

struct sd_clip_text {
  sd_backend *be;
  sd_clip_config cfg;
  const sd_tensor *token_embedding;    /* (V, C) */
  const sd_tensor *position_embedding; /* (P, C) */
  clip_layer *layers;                  /* (num_hidden_layers) */
  const sd_tensor *final_ln_w;         /* (C) */
  const sd_tensor *final_ln_b;         /* (C) */
  int32_t *position_ids;               /* (P) host: 0 .. P-1 */
};

/* The softmax scale of the attention: 1 / sqrt(head dim). */
float sd_clip_text_attention_scale(const sd_clip_text *model);

/* Fails, naming the shapes, unless hidden is a (batch, P, C) tensor with data. */
int sd_clip_text_check_hidden(const sd_clip_text *model, int batch, const sd_tensor *hidden);

/* x (B, P, C) = token_embedding[ids] + position_embedding, ids (B, P) host; scratch from the
 * arena, released before return. */
int sd_clip_text_embed(sd_clip_text *model, const int32_t *ids, int batch, sd_tensor *x);

#endif
