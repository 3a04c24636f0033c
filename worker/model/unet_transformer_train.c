/* Training forward and backward of the UNet's attention blocks: Transformer2DModel and its
 * BasicTransformerBlocks (the inference forward is unet_transformer.c, whose ops and order the
 * recording forward repeats; h is a new tensor after every residual add instead of updated in
 * place, the same values). */
#include "unet_blocks_train.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdlib.h>

/* As unet_transformer.c. */
#define SD_TRANSFORMER_LN_EPS 1e-5f
#define SD_TRANSFORMER_GN_EPS 1e-6f

static float attention_scale(const sd_unet_attention *a, int64_t channels) {
  return (float)(1.0 / sqrt((double)(channels / a->heads)));
}

int sd_unet_attention_rec_alloc(sd_backend *be, int64_t b, int64_t lq, int64_t lk, int64_t c,
                                sd_unet_attention_rec *rec) {
  sd_dtype dt = be->ops->act_dtype;
  rec->q = sd_tensor_3d(dt, b, lq, c);
  rec->k = sd_tensor_3d(dt, b, lk, c);
  rec->v = rec->k;
  rec->o = rec->q;
  SD_TRY(sd_tensor_alloc(be, &rec->q));
  SD_TRY(sd_tensor_alloc(be, &rec->k));
  SD_TRY(sd_tensor_alloc(be, &rec->v));
  return sd_tensor_alloc(be, &rec->o);
}

/* Every tensor of rec, for x (B, C, H, W) and a context of L tokens. */
static int alloc_rec(sd_backend *be, const sd_unet_transformer *t, const sd_tensor *x, int64_t l,
                     sd_unet_transformer_rec *rec) {
  sd_dtype dt = be->ops->act_dtype;
  int64_t b = x->shape[0], c = t->channels, n = x->shape[2] * x->shape[3];
  rec->normed = *x;
  rec->h0 = sd_tensor_3d(dt, b, n, c);
  rec->proj_in_in = rec->h0;
  rec->proj_out_in = *x;
  SD_TRY(sd_tensor_alloc(be, &rec->normed));
  SD_TRY(sd_tensor_alloc(be, &rec->h0));
  if (t->use_linear_projection)
    SD_TRY(sd_tensor_alloc(be, &rec->proj_in_in));
  else
    SD_TRY(sd_tensor_alloc(be, &rec->proj_out_in));
  for (int i = 0; i < t->num_layers; i++) {
    sd_unet_block_rec *blk = &rec->blocks[i];
    sd_tensor *seq[6] = {&blk->n1, &blk->h1, &blk->n2, &blk->h2, &blk->n3, &blk->h3};
    for (int j = 0; j < 6; j++) {
      *seq[j] = rec->h0;
      SD_TRY(sd_tensor_alloc(be, seq[j]));
    }
    SD_TRY(sd_unet_attention_rec_alloc(be, b, n, n, c, &blk->attn1));
    SD_TRY(sd_unet_attention_rec_alloc(be, b, n, l, c, &blk->attn2));
    blk->ff_in = sd_tensor_3d(dt, b, n, 8 * c);
    blk->ff_hidden = sd_tensor_3d(dt, b, n, 4 * c);
    SD_TRY(sd_tensor_alloc(be, &blk->ff_in));
    SD_TRY(sd_tensor_alloc(be, &blk->ff_hidden));
  }
  return 0;
}

/* out (B, Lq, C) = to_out(attention(to_q(x), to_k(kv), to_v(kv))), as attention_forward (and
 * the VAE's, with q/k/v biases); rec's tensors allocated by the caller. */
int sd_unet_attention_forward_rec(sd_backend *be, const sd_unet_attention *a, const sd_tensor *x,
                                  const sd_tensor *kv, float scale, sd_unet_attention_rec *rec,
                                  sd_tensor *out) {
  SD_TRY(sd_op_linear(be, x, a->to_q, a->to_q_b, SD_ACT_NONE, &rec->q));
  SD_TRY(sd_op_linear(be, kv, a->to_k, a->to_k_b, SD_ACT_NONE, &rec->k));
  SD_TRY(sd_op_linear(be, kv, a->to_v, a->to_v_b, SD_ACT_NONE, &rec->v));
  SD_TRY(sd_op_attention(be, &rec->q, &rec->k, &rec->v, a->heads, scale, false, &rec->o));
  return sd_op_linear(be, &rec->o, a->to_out_w, a->to_out_b, SD_ACT_NONE, out);
}

/* h0 (B, N, C) -> blk->h3, as block_compute; delta (B, N, C) scratch. */
static int block_forward_rec(sd_backend *be, const sd_unet_transformer_block *w,
                             const sd_tensor *h0, const sd_tensor *context, sd_unet_block_rec *blk,
                             sd_tensor *delta) {
  SD_TRY(sd_op_layer_norm(be, h0, w->norm1_w, w->norm1_b, SD_TRANSFORMER_LN_EPS, &blk->n1));
  SD_TRY(sd_unet_attention_forward_rec(be, &w->attn1, &blk->n1, &blk->n1,
                                       attention_scale(&w->attn1, h0->shape[2]), &blk->attn1,
                                       delta));
  SD_TRY(sd_op_add(be, delta, h0, &blk->h1));
  SD_TRY(sd_op_layer_norm(be, &blk->h1, w->norm2_w, w->norm2_b, SD_TRANSFORMER_LN_EPS, &blk->n2));
  SD_TRY(sd_unet_attention_forward_rec(be, &w->attn2, &blk->n2, context,
                                       attention_scale(&w->attn2, h0->shape[2]), &blk->attn2,
                                       delta));
  SD_TRY(sd_op_add(be, delta, &blk->h1, &blk->h2));
  SD_TRY(sd_op_layer_norm(be, &blk->h2, w->norm3_w, w->norm3_b, SD_TRANSFORMER_LN_EPS, &blk->n3));
  SD_TRY(sd_op_linear(be, &blk->n3, w->ff_proj_w, w->ff_proj_b, SD_ACT_NONE, &blk->ff_in));
  SD_TRY(sd_op_geglu(be, &blk->ff_in, &blk->ff_hidden));
  SD_TRY(sd_op_linear(be, &blk->ff_hidden, w->ff_out_w, w->ff_out_b, SD_ACT_NONE, delta));
  return sd_op_add(be, delta, &blk->h2, &blk->h3);
}

/* As transformer_compute; scratch (B, HW, C) and (B, C, H, W) views of one buffer. */
static int transformer_forward_rec(sd_backend *be, const sd_unet_transformer *t, const sd_tensor *x,
                                   const sd_tensor *context, sd_tensor *y,
                                   sd_unet_transformer_rec *rec) {
  int64_t b = x->shape[0], c = x->shape[1], hw = x->shape[2] * x->shape[3];
  const int64_t chw_shape[3] = {b, c, hw};
  sd_tensor seq = rec->h0;              /* (B, HW, C) scratch */
  sd_tensor normed_chw, y_chw, out_chw; /* (B, C, HW) views */
  SD_TRY(sd_tensor_alloc(be, &seq));
  SD_TRY(sd_tensor_reshape(&rec->normed, 3, chw_shape, &normed_chw));
  SD_TRY(sd_tensor_reshape(y, 3, chw_shape, &y_chw));

  SD_TRY(sd_op_group_norm(be, x, t->norm_w, t->norm_b, t->groups, SD_TRANSFORMER_GN_EPS, false,
                          &rec->normed));
  if (t->use_linear_projection) {
    SD_TRY(sd_op_transpose(be, &normed_chw, &rec->proj_in_in));
    SD_TRY(sd_op_linear(be, &rec->proj_in_in, t->proj_in_w, t->proj_in_b, SD_ACT_NONE, &rec->h0));
  } else {
    SD_TRY(sd_op_conv2d(be, &rec->normed, t->proj_in_w, t->proj_in_b, 1, 0, y));
    SD_TRY(sd_op_transpose(be, &y_chw, &rec->h0));
  }
  const sd_tensor *h = &rec->h0;
  for (int i = 0; i < t->num_layers; i++) {
    if (block_forward_rec(be, &t->blocks[i], h, context, &rec->blocks[i], &seq) < 0)
      return sd_error_context("transformer_blocks.%d", i);
    h = &rec->blocks[i].h3;
  }
  if (t->use_linear_projection) {
    SD_TRY(sd_op_linear(be, h, t->proj_out_w, t->proj_out_b, SD_ACT_NONE, &seq));
    SD_TRY(sd_op_transpose(be, &seq, &y_chw));
  } else {
    SD_TRY(sd_tensor_reshape(&rec->proj_out_in, 3, chw_shape, &out_chw));
    SD_TRY(sd_op_transpose(be, h, &out_chw));
    SD_TRY(sd_op_conv2d(be, &rec->proj_out_in, t->proj_out_w, t->proj_out_b, 1, 0, y));
  }
  return sd_op_add(be, y, x, y);
}

int sd_unet_transformer_forward_rec(sd_backend *be, const sd_unet_transformer *t,
                                    const sd_tensor *x, const sd_tensor *context, sd_tensor *y,
                                    sd_unet_transformer_rec *rec) {
  *rec = (sd_unet_transformer_rec){.num_layers = t->num_layers};
  if (x->ndim != 4 || x->shape[1] != t->channels)
    return SD_ERROR("transformer: input has %lld channels, expected %d", (long long)x->shape[1],
                    t->channels);
  if (t->only_cross_attention)
    return SD_ERROR("transformer: no backward for only_cross_attention");
  rec->blocks = calloc((size_t)t->num_layers, sizeof *rec->blocks);
  if (!rec->blocks)
    return SD_ERROR("transformer: out of memory for %d block records", t->num_layers);
  SD_TRY(alloc_rec(be, t, x, context->shape[1], rec));
  sd_arena_mark mark = sd_arena_get_mark(be);
  int rc = transformer_forward_rec(be, t, x, context, y, rec);
  sd_arena_release(be, mark);
  return rc;
}

void sd_unet_transformer_rec_free(sd_unet_transformer_rec *rec) {
  free(rec->blocks);
  rec->blocks = NULL;
}

/* dout (B, Lq, C) -> dx (B, Lq, C) of x; with kv == x (self-attention) the k and v paths add to
 * dx, else to dkv (B, Lk, Ckv) when not NULL. Scratch on the arena, left to the caller. */
static int attention_backward(sd_backend *be, const sd_unet_attention *a, const sd_tensor *x,
                              const sd_tensor *kv, float scale, const sd_unet_attention_rec *rec,
                              const sd_tensor *dout, sd_tensor *dx, sd_tensor *dkv, sd_grads *g) {
  bool self = kv == x;
  sd_tensor dq = rec->q, dk = rec->k, dv = rec->v, dout_o = rec->o;
  sd_tensor dkv_part = *kv; /* (B, Lk, Ckv) */
  SD_TRY(sd_tensor_alloc(be, &dq));
  SD_TRY(sd_tensor_alloc(be, &dk));
  SD_TRY(sd_tensor_alloc(be, &dv));
  SD_TRY(sd_tensor_alloc(be, &dout_o));
  SD_TRY(sd_tensor_alloc(be, &dkv_part));
  SD_TRY(sd_op_linear_backward(be, &rec->o, a->to_out_w, dout, &dout_o, sd_grads_of(g, a->to_out_w),
                               sd_grads_of(g, a->to_out_b)));
  SD_TRY(sd_op_attention_backward(be, &rec->q, &rec->k, &rec->v, &dout_o, a->heads, scale, false,
                                  &dq, &dk, &dv));
  SD_TRY(sd_op_linear_backward(be, x, a->to_q, &dq, dx, sd_grads_of(g, a->to_q),
                               sd_grads_of(g, a->to_q_b)));
  sd_tensor *kv_sum = self ? dx : dkv;
  sd_tensor *part = kv_sum ? &dkv_part : NULL;
  SD_TRY(sd_op_linear_backward(be, kv, a->to_k, &dk, part, sd_grads_of(g, a->to_k),
                               sd_grads_of(g, a->to_k_b)));
  if (kv_sum)
    SD_TRY(sd_op_add(be, kv_sum, part, kv_sum));
  SD_TRY(sd_op_linear_backward(be, kv, a->to_v, &dv, part, sd_grads_of(g, a->to_v),
                               sd_grads_of(g, a->to_v_b)));
  if (kv_sum)
    SD_TRY(sd_op_add(be, kv_sum, part, kv_sum));
  return 0;
}

int sd_unet_attention_backward(sd_backend *be, const sd_unet_attention *a, const sd_tensor *x,
                               const sd_tensor *kv, float scale, const sd_unet_attention_rec *rec,
                               const sd_tensor *dout, sd_tensor *dx, sd_tensor *dkv,
                               sd_grads *grads) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int rc = attention_backward(be, a, x, kv, scale, rec, dout, dx, dkv, grads);
  sd_arena_release(be, mark);
  return rc;
}

/* dh3 (B, N, C) -> dh0 (B, N, C) of the block's input h0. */
static int block_backward(sd_backend *be, const sd_unet_transformer_block *w, const sd_tensor *h0,
                          const sd_tensor *context, const sd_unet_block_rec *blk,
                          const sd_tensor *dh3, sd_tensor *dh0, sd_tensor *dcontext, sd_grads *g) {
  sd_tensor dff_hidden = blk->ff_hidden, dff_in = blk->ff_in;
  sd_tensor dn = blk->n1, dtmp = blk->n1, dh2 = blk->n1, dh1 = blk->n1; /* (B, N, C) */
  SD_TRY(sd_tensor_alloc(be, &dff_hidden));
  SD_TRY(sd_tensor_alloc(be, &dff_in));
  SD_TRY(sd_tensor_alloc(be, &dn));
  SD_TRY(sd_tensor_alloc(be, &dtmp));
  SD_TRY(sd_tensor_alloc(be, &dh2));
  SD_TRY(sd_tensor_alloc(be, &dh1));

  SD_TRY(sd_op_linear_backward(be, &blk->ff_hidden, w->ff_out_w, dh3, &dff_hidden,
                               sd_grads_of(g, w->ff_out_w), sd_grads_of(g, w->ff_out_b)));
  SD_TRY(sd_op_geglu_backward(be, &blk->ff_in, &dff_hidden, &dff_in));
  SD_TRY(sd_op_linear_backward(be, &blk->n3, w->ff_proj_w, &dff_in, &dn,
                               sd_grads_of(g, w->ff_proj_w), sd_grads_of(g, w->ff_proj_b)));
  SD_TRY(sd_op_layer_norm_backward(be, &blk->h2, w->norm3_w, &dn, SD_TRANSFORMER_LN_EPS, &dtmp,
                                   sd_grads_of(g, w->norm3_w), sd_grads_of(g, w->norm3_b)));
  SD_TRY(sd_op_add(be, dh3, &dtmp, &dh2));

  SD_TRY(attention_backward(be, &w->attn2, &blk->n2, context,
                            attention_scale(&w->attn2, h0->shape[2]), &blk->attn2, &dh2, &dn,
                            dcontext, g));
  SD_TRY(sd_op_layer_norm_backward(be, &blk->h1, w->norm2_w, &dn, SD_TRANSFORMER_LN_EPS, &dtmp,
                                   sd_grads_of(g, w->norm2_w), sd_grads_of(g, w->norm2_b)));
  SD_TRY(sd_op_add(be, &dh2, &dtmp, &dh1));

  SD_TRY(attention_backward(be, &w->attn1, &blk->n1, &blk->n1,
                            attention_scale(&w->attn1, h0->shape[2]), &blk->attn1, &dh1, &dn, NULL,
                            g));
  SD_TRY(sd_op_layer_norm_backward(be, h0, w->norm1_w, &dn, SD_TRANSFORMER_LN_EPS, &dtmp,
                                   sd_grads_of(g, w->norm1_w), sd_grads_of(g, w->norm1_b)));
  return sd_op_add(be, &dh1, &dtmp, dh0);
}

static int transformer_backward(sd_backend *be, const sd_unet_transformer *t, const sd_tensor *x,
                                const sd_tensor *context, const sd_unet_transformer_rec *rec,
                                const sd_tensor *dy, sd_tensor *dx, sd_tensor *dcontext,
                                sd_grads *g) {
  int64_t b = x->shape[0], c = x->shape[1], hw = x->shape[2] * x->shape[3];
  const int64_t chw_shape[3] = {b, c, hw};
  sd_tensor dh[2] = {rec->h0, rec->h0}; /* (B, HW, C) the running gradient, two buffers */
  sd_tensor dimg = *x;                  /* (B, C, H, W) */
  sd_tensor dy_chw, dimg_chw;           /* (B, C, HW) views */
  SD_TRY(sd_tensor_alloc(be, &dh[0]));
  SD_TRY(sd_tensor_alloc(be, &dh[1]));
  SD_TRY(sd_tensor_alloc(be, &dimg));
  SD_TRY(sd_tensor_reshape(dy, 3, chw_shape, &dy_chw));
  SD_TRY(sd_tensor_reshape(&dimg, 3, chw_shape, &dimg_chw));

  int cur = 0;
  const sd_tensor *h_last = t->num_layers ? &rec->blocks[t->num_layers - 1].h3 : &rec->h0;
  if (t->use_linear_projection) {
    SD_TRY(sd_op_transpose_backward(be, &dy_chw, &dh[1]));
    SD_TRY(sd_op_linear_backward(be, h_last, t->proj_out_w, &dh[1], &dh[cur],
                                 sd_grads_of(g, t->proj_out_w), sd_grads_of(g, t->proj_out_b)));
  } else {
    SD_TRY(sd_op_conv2d_backward(be, &rec->proj_out_in, t->proj_out_w, dy, 1, 0, &dimg,
                                 sd_grads_of(g, t->proj_out_w), sd_grads_of(g, t->proj_out_b)));
    SD_TRY(sd_op_transpose_backward(be, &dimg_chw, &dh[cur]));
  }
  for (int i = t->num_layers - 1; i >= 0; i--) {
    sd_arena_mark mark = sd_arena_get_mark(be);
    const sd_tensor *h0 = i ? &rec->blocks[i - 1].h3 : &rec->h0;
    int rc = block_backward(be, &t->blocks[i], h0, context, &rec->blocks[i], &dh[cur], &dh[1 - cur],
                            dcontext, g);
    sd_arena_release(be, mark);
    if (rc < 0)
      return sd_error_context("transformer_blocks.%d", i);
    cur = 1 - cur;
  }
  if (t->use_linear_projection) {
    SD_TRY(sd_op_linear_backward(be, &rec->proj_in_in, t->proj_in_w, &dh[cur], &dh[1 - cur],
                                 sd_grads_of(g, t->proj_in_w), sd_grads_of(g, t->proj_in_b)));
    SD_TRY(sd_op_transpose_backward(be, &dh[1 - cur], &dimg_chw));
  } else {
    sd_tensor dproj = *x; /* (B, C, H, W) */
    sd_tensor dproj_chw;
    SD_TRY(sd_tensor_alloc(be, &dproj));
    SD_TRY(sd_tensor_reshape(&dproj, 3, chw_shape, &dproj_chw));
    SD_TRY(sd_op_transpose_backward(be, &dh[cur], &dproj_chw));
    SD_TRY(sd_op_conv2d_backward(be, &rec->normed, t->proj_in_w, &dproj, 1, 0, &dimg,
                                 sd_grads_of(g, t->proj_in_w), sd_grads_of(g, t->proj_in_b)));
  }
  SD_TRY(sd_op_group_norm_backward(be, x, t->norm_w, t->norm_b, &dimg, t->groups,
                                   SD_TRANSFORMER_GN_EPS, false, dx, sd_grads_of(g, t->norm_w),
                                   sd_grads_of(g, t->norm_b)));
  return sd_op_add(be, dx, dy, dx);
}

int sd_unet_transformer_backward(sd_backend *be, const sd_unet_transformer *t, const sd_tensor *x,
                                 const sd_tensor *context, const sd_unet_transformer_rec *rec,
                                 const sd_tensor *dy, sd_tensor *dx, sd_tensor *dcontext,
                                 sd_grads *grads) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int rc = transformer_backward(be, t, x, context, rec, dy, dx, dcontext, grads);
  sd_arena_release(be, mark);
  return rc;
}
