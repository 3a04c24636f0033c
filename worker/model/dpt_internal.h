/* Private parts of the DPT model shared by dpt.c (ViT, neck, head) and dpt_bit.c (the BiT
 * backbone of DPT-hybrid). */
#ifndef SD_DPT_INTERNAL_H
#define SD_DPT_INTERNAL_H

#include "dpt.h"

/* BiT bottleneck layer (BitBottleneckLayer, non-pre-activation): 1x1, 3x3 (stride), 1x1 weight-
 * standardized convs, each followed by GroupNorm (+ ReLU but the last), the shortcut (a strided
 * 1x1 conv + GroupNorm in a stage's first layer), ReLU of the sum. Weights standardized. */
typedef struct bit_layer {
  int in, mid, out, stride;
  const sd_tensor *conv1_w, *norm1_w, *norm1_b;        /* (mid, in, 1, 1), (mid) */
  const sd_tensor *conv2_w, *norm2_w, *norm2_b;        /* (mid, mid, 3, 3), (mid) */
  const sd_tensor *conv3_w, *norm3_w, *norm3_b;        /* (out, mid, 1, 1), (out) */
  const sd_tensor *down_w, *down_norm_w, *down_norm_b; /* (out, in, 1, 1), (out); first only */
} bit_layer;

typedef struct bit_backbone {
  const sd_tensor *stem_w;                    /* (E, C, 7, 7), standardized */
  const sd_tensor *stem_norm_w, *stem_norm_b; /* (E) */
  bit_layer *layers[SD_DPT_BIT_STAGES];       /* (bit_depths[s]) */
} bit_backbone;

int sd_dpt_bit_create(const sd_dpt_config *cfg, const sd_weights *w, bit_backbone *bit);
void sd_dpt_bit_free(bit_backbone *bit);

/* x (1, C, H, W) -> features[s] (1, bit_hidden_sizes[s], H / 4 / 2^s, ..) for s = 0..2, arena
 * tensors allocated here (sides rounded up as "same" padding gives). `hook` sees "bit.stem" and
 * "bit.stage<s>". */
int sd_dpt_bit_forward(sd_backend *be, const sd_dpt_config *cfg, const bit_backbone *bit,
                       const sd_tensor *x, sd_tensor features[SD_DPT_BIT_STAGES],
                       sd_dpt_stage_fn hook, void *hook_ctx);

/* An arena tensor of the backend's activation dtype; data NULL (with error) on failure. */
int sd_dpt_scratch(sd_backend *be, int ndim, const int64_t *shape, sd_tensor *t);

#endif
