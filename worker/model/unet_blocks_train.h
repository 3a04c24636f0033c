/* Internal to the UNet's training (unet_tape.h): each block's forward that records what its
 * backward needs, and the backward. A record's tensors come from the backend arena, allocated by
 * the recording forward after the caller's output; the caller releases them with its own mark
 * (after the backward, or at once to recompute them later: gradient checkpointing). The forwards
 * run the ops of the inference forwards (unet_blocks.c, unet_transformer.c) in the same order on
 * the same values, so their outputs are equal bit for bit. Backwards follow ops.h: input
 * gradients are overwritten, parameter gradients (looked up in grads, NULL for none) and the
 * gradients of shared inputs (time embedding, context) are ADDED to. */
#ifndef SD_UNET_BLOCKS_TRAIN_H
#define SD_UNET_BLOCKS_TRAIN_H

#include "grads.h"
#include "unet_blocks.h"

/* ResnetBlock2D's activations beyond its input x. */
typedef struct sd_unet_resnet_rec {
  sd_tensor normed1; /* (B, Cin, H, W) silu(norm1(x)) */
  sd_tensor hidden;  /* (B, Cout, H, W) conv1(normed1) + time_emb_proj(temb_act) */
  sd_tensor normed2; /* (B, Cout, H, W) silu(norm2(hidden)) */
} sd_unet_resnet_rec;

/* x (B, Cin, H, W), temb_act (B, T) -> y (B, Cout, H, W), as sd_unet_resnet_forward. A resnet
 * without time_emb_proj (the VAE's) takes temb_act NULL (and dtemb_act NULL below). */
int sd_unet_resnet_forward_rec(sd_backend *be, const sd_unet_resnet *r, const sd_tensor *x,
                               const sd_tensor *temb_act, sd_tensor *y, sd_unet_resnet_rec *rec);
/* dy (B, Cout, H, W) -> dx (B, Cin, H, W); dtemb_act (B, T) += the time embedding's gradient. */
int sd_unet_resnet_backward(sd_backend *be, const sd_unet_resnet *r, const sd_tensor *x,
                            const sd_tensor *temb_act, const sd_unet_resnet_rec *rec,
                            const sd_tensor *dy, sd_tensor *dx, sd_tensor *dtemb_act,
                            sd_grads *grads);

/* Downsample2D: x (B, C, H, W) -> y (B, C, H / 2, W / 2); nothing recorded. */
int sd_unet_downsample_backward(sd_backend *be, const sd_unet_sampler *s, const sd_tensor *x,
                                const sd_tensor *dy, sd_tensor *dx, sd_grads *grads);
/* Upsample2D at exactly 2x: up (B, C, 2H, 2W) = nearest(x) is recorded (allocated here). */
int sd_unet_upsample_forward_rec(sd_backend *be, const sd_unet_sampler *s, const sd_tensor *x,
                                 sd_tensor *y, sd_tensor *up);
int sd_unet_upsample_backward(sd_backend *be, const sd_unet_sampler *s, const sd_tensor *up,
                              const sd_tensor *dy, sd_tensor *dx, sd_grads *grads);

/* One attention of a BasicTransformerBlock: out = to_out(attention(q, k, v)). */
typedef struct sd_unet_attention_rec {
  sd_tensor q; /* (B, Lq, C) to_q(x) */
  sd_tensor k; /* (B, Lk, C) to_k(kv) */
  sd_tensor v; /* (B, Lk, C) to_v(kv) */
  sd_tensor o; /* (B, Lq, C) attention(q, k, v), the input of to_out */
} sd_unet_attention_rec;

/* rec's tensors on the arena for queries x (B, Lq, C) and keys kv (B, Lk, *). */
int sd_unet_attention_rec_alloc(sd_backend *be, int64_t b, int64_t lq, int64_t lk, int64_t c,
                                sd_unet_attention_rec *rec);
/* out (B, Lq, C) = to_out(attention(to_q(x) + to_q_b, to_k(kv) + to_k_b, to_v(kv) + to_v_b))
 * for x (B, Lq, C) and kv (B, Lk, Ckv) (kv == x: self-attention) with the softmax scale given,
 * into rec (allocated by sd_unet_attention_rec_alloc). */
int sd_unet_attention_forward_rec(sd_backend *be, const sd_unet_attention *a, const sd_tensor *x,
                                  const sd_tensor *kv, float scale, sd_unet_attention_rec *rec,
                                  sd_tensor *out);
/* dout (B, Lq, C) -> dx (B, Lq, C) of x, overwritten; with kv == x (self-attention) the k and v
 * paths add to dx, else to dkv (B, Lk, Ckv) when not NULL. Scratch released before return. */
int sd_unet_attention_backward(sd_backend *be, const sd_unet_attention *a, const sd_tensor *x,
                               const sd_tensor *kv, float scale, const sd_unet_attention_rec *rec,
                               const sd_tensor *dout, sd_tensor *dx, sd_tensor *dkv,
                               sd_grads *grads);

/* A BasicTransformerBlock on h (B, N, C): h1 = h0 + attn1(n1), h2 = h1 + attn2(n2, context),
 * h3 = h2 + ff(n3). h0 is the block's input (not recorded here), h3 its output. */
typedef struct sd_unet_block_rec {
  sd_tensor n1, h1, n2, h2, n3, h3; /* (B, N, C) n_i = norm_i(h_{i-1}) */
  sd_unet_attention_rec attn1, attn2;
  sd_tensor ff_in;     /* (B, N, 2F) ff.net.0.proj(n3) */
  sd_tensor ff_hidden; /* (B, N, F) geglu(ff_in) */
} sd_unet_block_rec;

/* Transformer2DModel's activations beyond its input x. */
typedef struct sd_unet_transformer_rec {
  int num_layers;
  sd_tensor normed;          /* (B, C, H, W) norm(x) */
  sd_tensor proj_in_in;      /* linear projection: (B, HW, C) normed transposed; else unused */
  sd_tensor h0;              /* (B, HW, C) proj_in's output, the first block's input */
  sd_unet_block_rec *blocks; /* (num_layers), malloc'd: sd_unet_transformer_rec_free */
  sd_tensor proj_out_in;     /* conv projection: (B, C, H, W) the last h3 transposed; else unused */
} sd_unet_transformer_rec;

/* x (B, C, H, W), context (B, L, Ckv) -> y (B, C, H, W), as sd_unet_transformer_forward on the
 * whole image. Models with only_cross_attention are refused. */
int sd_unet_transformer_forward_rec(sd_backend *be, const sd_unet_transformer *t,
                                    const sd_tensor *x, const sd_tensor *context, sd_tensor *y,
                                    sd_unet_transformer_rec *rec);
/* Frees rec->blocks (the tensors belong to the arena). */
void sd_unet_transformer_rec_free(sd_unet_transformer_rec *rec);
/* dy (B, C, H, W) -> dx (B, C, H, W); dcontext (B, L, Ckv) += the context's gradient when not
 * NULL. */
int sd_unet_transformer_backward(sd_backend *be, const sd_unet_transformer *t, const sd_tensor *x,
                                 const sd_tensor *context, const sd_unet_transformer_rec *rec,
                                 const sd_tensor *dy, sd_tensor *dx, sd_tensor *dcontext,
                                 sd_grads *grads);

#endif
