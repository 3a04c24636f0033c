/* Internal to the VAE's training: the tape sd_vae_decode_forward_train and
 * sd_vae_encode_forward_train record (vae_forward_train.c) and the backwards walk back
 * (vae_backward.c).
 *
 * Both halves of the autoencoder are a chain of steps, each reading the previous step's output:
 * value 0 is the caller's input, value i + 1 the output of step i, the last one the caller's
 * output. Every value is kept (arena tensors), and each resnet and attention step keeps its
 * record: what its backward needs beyond its input. */
#ifndef SD_VAE_TAPE_H
#define SD_VAE_TAPE_H

#include "unet_blocks_train.h"
#include "vae_internal.h"
#include "vae_train.h"

typedef enum vae_step_kind {
  VAE_STEP_CONV,      /* conv2d(w, b, stride, pad) */
  VAE_STEP_PAD,       /* zero padding at the bottom and right (the downsampler's (0, 1, 0, 1)) */
  VAE_STEP_UPSAMPLE,  /* nearest 2x */
  VAE_STEP_NORM_SILU, /* GroupNorm (norm_num_groups, VAE_NORM_EPS) + SiLU (conv_norm_out) */
  VAE_STEP_RESNET,    /* ResnetBlock2D without time embedding */
  VAE_STEP_ATTENTION, /* the mid block's attention */
} vae_step_kind;

/* The attention block's activations beyond its input x (B, C, H, W). */
typedef struct vae_attention_rec {
  sd_tensor normed;           /* (B, C, H, W) GroupNorm(x) */
  sd_tensor tokens;           /* (B, HW, C) normed transposed */
  sd_unet_attention_rec proj; /* q, k, v, attention output */
} vae_attention_rec;

typedef struct vae_step {
  vae_step_kind kind;
  char name[64];             /* the weights' prefix, for errors: "decoder.up_blocks.1.resnets.0" */
  const vae_resnet *resnet;  /* RESNET */
  const vae_attention *attn; /* ATTENTION */
  const sd_tensor *w, *b;    /* CONV: (K, C, kh, kw), (K); NORM_SILU: gamma, beta (C) */
  int stride, pad;           /* CONV */
  union {
    sd_unet_resnet_rec resnet;
    vae_attention_rec attention;
  } rec;
} vae_step;

struct sd_vae_tape {
  sd_vae *m;
  sd_backend *be;
  sd_arena_mark base;
  bool encoder;      /* recorded by sd_vae_encode_forward_train */
  vae_step *steps;   /* (num_steps) */
  sd_tensor *values; /* (num_steps + 1): the input, each step's output */
  int num_steps, capacity;
};

#endif
