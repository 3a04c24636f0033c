/* The UNet's attention blocks: diffusers Transformer2DModel (continuous input) and its
 * BasicTransformerBlocks — self-attention, cross-attention on the text context, GEGLU
 * feed-forward, each pre-LayerNorm with a residual (diffusers transformer_2d.py, attention.py,
 * attention_processor.py). */
#include "unet_blocks.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* LayerNorm eps of BasicTransformerBlock and GroupNorm eps of Transformer2DModel. */
#define SD_TRANSFORMER_LN_EPS 1e-5f
#define SD_TRANSFORMER_GN_EPS 1e-6f

static int attention_init(sd_unet_attention *a, const sd_weights *w, const char *prefix,
                          int channels, int kv_channels, int heads) {
  int64_t c = channels, ckv = kv_channels;
  a->heads = heads;
  SD_TRY(sd_unet_weight(w, &a->to_q, prefix, "to_q.weight", 2, c, c, 0, 0));
  SD_TRY(sd_unet_weight(w, &a->to_k, prefix, "to_k.weight", 2, c, ckv, 0, 0));
  SD_TRY(sd_unet_weight(w, &a->to_v, prefix, "to_v.weight", 2, c, ckv, 0, 0));
  SD_TRY(sd_unet_weight(w, &a->to_out_w, prefix, "to_out.0.weight", 2, c, c, 0, 0));
  return sd_unet_weight(w, &a->to_out_b, prefix, "to_out.0.bias", 1, c, 0, 0, 0);
}

static int block_init(sd_unet_transformer_block *blk, const sd_weights *w, const char *prefix,
                      int channels, int context_channels, int heads, bool only_cross_attention) {
  int64_t c = channels, f = 4 * (int64_t)channels;
  char sub[192];
  SD_TRY(sd_unet_weight(w, &blk->norm1_w, prefix, "norm1.weight", 1, c, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &blk->norm1_b, prefix, "norm1.bias", 1, c, 0, 0, 0));
  snprintf(sub, sizeof sub, "%sattn1.", prefix);
  SD_TRY(attention_init(&blk->attn1, w, sub, channels,
                        only_cross_attention ? context_channels : channels, heads));
  SD_TRY(sd_unet_weight(w, &blk->norm2_w, prefix, "norm2.weight", 1, c, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &blk->norm2_b, prefix, "norm2.bias", 1, c, 0, 0, 0));
  snprintf(sub, sizeof sub, "%sattn2.", prefix);
  SD_TRY(attention_init(&blk->attn2, w, sub, channels, context_channels, heads));
  SD_TRY(sd_unet_weight(w, &blk->norm3_w, prefix, "norm3.weight", 1, c, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &blk->norm3_b, prefix, "norm3.bias", 1, c, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &blk->ff_proj_w, prefix, "ff.net.0.proj.weight", 2, 2 * f, c, 0, 0));
  SD_TRY(sd_unet_weight(w, &blk->ff_proj_b, prefix, "ff.net.0.proj.bias", 1, 2 * f, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &blk->ff_out_w, prefix, "ff.net.2.weight", 2, c, f, 0, 0));
  return sd_unet_weight(w, &blk->ff_out_b, prefix, "ff.net.2.bias", 1, c, 0, 0, 0);
}

int sd_unet_transformer_init(sd_unet_transformer *t, const sd_weights *w, const char *prefix,
                             int channels, int heads, int num_layers, int context_channels,
                             int groups, bool use_linear_projection, bool upcast_attention,
                             bool only_cross_attention) {
  int64_t c = channels;
  *t = (sd_unet_transformer){.channels = channels,
                             .heads = heads,
                             .groups = groups,
                             .num_layers = num_layers,
                             .use_linear_projection = use_linear_projection,
                             .upcast_attention = upcast_attention,
                             .only_cross_attention = only_cross_attention};
  if (heads < 1 || channels % heads)
    return SD_ERROR("%s: %d channels do not split into %d attention heads", prefix, channels,
                    heads);
  if (num_layers < 1)
    return SD_ERROR("%s: %d transformer layers", prefix, num_layers);
  SD_TRY(sd_unet_weight(w, &t->norm_w, prefix, "norm.weight", 1, c, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &t->norm_b, prefix, "norm.bias", 1, c, 0, 0, 0));
  int proj_ndim = use_linear_projection ? 2 : 4;
  SD_TRY(sd_unet_weight(w, &t->proj_in_w, prefix, "proj_in.weight", proj_ndim, c, c, 1, 1));
  SD_TRY(sd_unet_weight(w, &t->proj_in_b, prefix, "proj_in.bias", 1, c, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &t->proj_out_w, prefix, "proj_out.weight", proj_ndim, c, c, 1, 1));
  SD_TRY(sd_unet_weight(w, &t->proj_out_b, prefix, "proj_out.bias", 1, c, 0, 0, 0));
  t->blocks = calloc((size_t)num_layers, sizeof *t->blocks);
  if (!t->blocks)
    return SD_ERROR("%s: out of memory for %d transformer blocks", prefix, num_layers);
  for (int i = 0; i < num_layers; i++) {
    char sub[192];
    snprintf(sub, sizeof sub, "%stransformer_blocks.%d.", prefix, i);
    SD_TRY(
        block_init(&t->blocks[i], w, sub, channels, context_channels, heads, only_cross_attention));
  }
  return 0;
}

void sd_unet_transformer_free(sd_unet_transformer *t) {
  free(t->blocks);
  t->blocks = NULL;
}

/* out (B, Lq, C) = to_out(attention(to_q(x), to_k(kv), to_v(kv))) for x (B, Lq, C) and
 * kv (B, Lk, Ckv); scratch is released by the caller's mark. With sp, the self-attention of a
 * band of `width` tokens per row: k and v are gathered from every band (spatial.h). */
static int attention_forward(sd_backend *be, const sd_spatial *sp, int64_t width,
                             const sd_unet_attention *a, const sd_tensor *x, const sd_tensor *kv,
                             sd_tensor *out) {
  sd_dtype dt = be->ops->act_dtype;
  int64_t b = x->shape[0], lq = x->shape[1], lk = kv->shape[1], c = x->shape[2];
  sd_tensor q = sd_tensor_3d(dt, b, lq, c); /* (B, Lq, C) */
  sd_tensor o = sd_tensor_3d(dt, b, lq, c); /* (B, Lq, C) */
  sd_tensor k = sd_tensor_3d(dt, b, lk, c); /* (B, Lk, C) */
  sd_tensor v = sd_tensor_3d(dt, b, lk, c); /* (B, Lk, C) */
  SD_TRY(sd_tensor_alloc(be, &q));
  SD_TRY(sd_tensor_alloc(be, &o));
  SD_TRY(sd_tensor_alloc(be, &k));
  SD_TRY(sd_tensor_alloc(be, &v));
  SD_TRY(sd_op_linear(be, x, a->to_q, NULL, SD_ACT_NONE, &q));
  SD_TRY(sd_op_linear(be, kv, a->to_k, NULL, SD_ACT_NONE, &k));
  SD_TRY(sd_op_linear(be, kv, a->to_v, NULL, SD_ACT_NONE, &v));
  float scale = (float)(1.0 / sqrt((double)(c / a->heads)));
  SD_TRY(sd_spatial_attention(be, sp, &q, &k, &v, width, a->heads, scale, &o));
  return sd_op_linear(be, &o, a->to_out_w, a->to_out_b, SD_ACT_NONE, out);
}

/* h (B, N, C) += attn1(norm1(h)) (its k/v from the context when only_cross_attention);
 * += attn2(norm2(h), context); += ff(norm3(h)). */
static int block_compute(sd_backend *be, const sd_spatial *sp, int64_t width,
                         const sd_unet_transformer_block *blk, sd_tensor *h,
                         const sd_tensor *context, bool only_cross_attention) {
  sd_dtype dt = be->ops->act_dtype;
  int64_t b = h->shape[0], n = h->shape[1], c = h->shape[2];
  sd_tensor normed = sd_tensor_3d(dt, b, n, c);        /* (B, N, C) */
  sd_tensor delta = sd_tensor_3d(dt, b, n, c);         /* (B, N, C) */
  sd_tensor ff_in = sd_tensor_3d(dt, b, n, 8 * c);     /* (B, N, 2F) */
  sd_tensor ff_hidden = sd_tensor_3d(dt, b, n, 4 * c); /* (B, N, F) */
  SD_TRY(sd_tensor_alloc(be, &normed));
  SD_TRY(sd_tensor_alloc(be, &delta));

  sd_arena_mark mark = sd_arena_get_mark(be);
  SD_TRY(sd_op_layer_norm(be, h, blk->norm1_w, blk->norm1_b, SD_TRANSFORMER_LN_EPS, &normed));
  SD_TRY(attention_forward(be, only_cross_attention ? NULL : sp, width, &blk->attn1, &normed,
                           only_cross_attention ? context : &normed, &delta));
  SD_TRY(sd_op_add(be, &delta, h, h));
  sd_arena_release(be, mark);

  SD_TRY(sd_op_layer_norm(be, h, blk->norm2_w, blk->norm2_b, SD_TRANSFORMER_LN_EPS, &normed));
  SD_TRY(attention_forward(be, NULL, 0, &blk->attn2, &normed, context, &delta));
  SD_TRY(sd_op_add(be, &delta, h, h));
  sd_arena_release(be, mark);

  SD_TRY(sd_op_layer_norm(be, h, blk->norm3_w, blk->norm3_b, SD_TRANSFORMER_LN_EPS, &normed));
  SD_TRY(sd_tensor_alloc(be, &ff_in));
  SD_TRY(sd_tensor_alloc(be, &ff_hidden));
  SD_TRY(sd_op_linear(be, &normed, blk->ff_proj_w, blk->ff_proj_b, SD_ACT_NONE, &ff_in));
  SD_TRY(sd_op_geglu(be, &ff_in, &ff_hidden));
  SD_TRY(sd_op_linear(be, &ff_hidden, blk->ff_out_w, blk->ff_out_b, SD_ACT_NONE, &delta));
  return sd_op_add(be, &delta, h, h);
}

/* y (B, C, H, W) = proj_out(blocks(proj_in(norm(x)))) + x, with the blocks on (B, HW, C). */
static int transformer_compute(sd_backend *be, const sd_spatial *sp, const sd_unet_transformer *t,
                               const sd_tensor *x, const sd_tensor *context, sd_tensor *y) {
  sd_dtype dt = be->ops->act_dtype;
  int64_t b = x->shape[0], c = x->shape[1], hw = x->shape[2] * x->shape[3];
  const int64_t chw_shape[3] = {b, c, hw};
  sd_tensor normed = *x;                      /* (B, C, H, W) */
  sd_tensor seq = sd_tensor_3d(dt, b, hw, c); /* (B, HW, C) */
  sd_tensor seq2 = seq;                       /* (B, HW, C) */
  sd_tensor normed_chw, y_chw;                /* (B, C, HW) views */
  SD_TRY(sd_tensor_alloc(be, &normed));
  SD_TRY(sd_tensor_alloc(be, &seq));
  SD_TRY(sd_tensor_alloc(be, &seq2));
  SD_TRY(sd_tensor_reshape(&normed, 3, chw_shape, &normed_chw));
  SD_TRY(sd_tensor_reshape(y, 3, chw_shape, &y_chw));

  SD_TRY(sd_spatial_group_norm(be, sp, x, t->norm_w, t->norm_b, t->groups, SD_TRANSFORMER_GN_EPS,
                               false, &normed));
  if (t->use_linear_projection) {
    SD_TRY(sd_op_transpose(be, &normed_chw, &seq2));
    SD_TRY(sd_op_linear(be, &seq2, t->proj_in_w, t->proj_in_b, SD_ACT_NONE, &seq));
  } else {
    SD_TRY(sd_op_conv2d(be, &normed, t->proj_in_w, t->proj_in_b, 1, 0, y));
    SD_TRY(sd_op_transpose(be, &y_chw, &seq));
  }

  for (int i = 0; i < t->num_layers; i++) {
    sd_arena_mark mark = sd_arena_get_mark(be);
    int rc =
        block_compute(be, sp, x->shape[3], &t->blocks[i], &seq, context, t->only_cross_attention);
    sd_arena_release(be, mark);
    if (rc < 0)
      return sd_error_context("transformer_blocks.%d", i);
  }

  if (t->use_linear_projection) {
    SD_TRY(sd_op_linear(be, &seq, t->proj_out_w, t->proj_out_b, SD_ACT_NONE, &seq2));
    SD_TRY(sd_op_transpose(be, &seq2, &y_chw));
  } else {
    SD_TRY(sd_op_transpose(be, &seq, &normed_chw));
    SD_TRY(sd_op_conv2d(be, &normed, t->proj_out_w, t->proj_out_b, 1, 0, y));
  }
  return sd_op_add(be, y, x, y);
}

int sd_unet_transformer_forward(sd_backend *be, const sd_spatial *sp, const sd_unet_transformer *t,
                                const sd_tensor *x, const sd_tensor *context, sd_tensor *y) {
  if (x->ndim != 4 || x->shape[1] != t->channels)
    return SD_ERROR("transformer: input has %lld channels, expected %d", (long long)x->shape[1],
                    t->channels);
  sd_arena_mark mark = sd_arena_get_mark(be);
  int rc = transformer_compute(be, sp, t, x, context, y);
  sd_arena_release(be, mark);
  return rc;
}
