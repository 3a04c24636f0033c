/* The CLIP text encoder's backward: walks the tape (clip_text_tape.h) from final_layer_norm back
 * through the encoder layers to the embeddings. The running gradient g (B, L, C) of the residual
 * stream gets each branch's input gradient added (the residual adds pass it through unchanged);
 * weight gradients go to the sd_grads store, accumulated by the ops. */
#include "clip_text_tape.h"

#include "../../kernels/error.h"

/* Scratch of one backward, (B, L, C) unless noted. */
typedef struct clip_backward_buf {
  sd_tensor g;          /* d(residual stream) at the point being walked */
  sd_tensor dn;         /* d(layer_norm output) */
  sd_tensor dbranch;    /* d(layer_norm input) from its branch; also d(k or v projection input) */
  sd_tensor dq, dk, dv; /* d(q), d(k), d(v) */
  sd_tensor d_o;        /* d(attention output) */
  sd_tensor df;         /* (B, L, I) d(fc2 input), then d(fc1 output) */
} clip_backward_buf;

static int alloc_buf(sd_backend *be, const sd_tensor *like, int64_t inner, clip_backward_buf *b) {
  sd_tensor *seq[] = {&b->g, &b->dn, &b->dbranch, &b->dq, &b->dk, &b->dv, &b->d_o};
  for (size_t i = 0; i < sizeof seq / sizeof *seq; i++) {
    *seq[i] = sd_tensor_make(be->ops->act_dtype, like->ndim, like->shape);
    SD_TRY(sd_tensor_alloc(be, seq[i]));
  }
  b->df = sd_tensor_3d(be->ops->act_dtype, like->shape[0], like->shape[1], inner);
  return sd_tensor_alloc(be, &b->df);
}

static int linear_backward(sd_backend *be, sd_grads *grads, const sd_tensor *x, const sd_tensor *w,
                           const sd_tensor *b, const sd_tensor *dy, sd_tensor *dx) {
  return sd_op_linear_backward(be, x, w, dy, dx, sd_grads_of(grads, w), sd_grads_of(grads, b));
}

static int layer_norm_backward(sd_backend *be, sd_grads *grads, const sd_tensor *x,
                               const sd_tensor *w, const sd_tensor *b, float eps,
                               const sd_tensor *dy, sd_tensor *dx) {
  return sd_op_layer_norm_backward(be, x, w, dy, eps, dx, sd_grads_of(grads, w),
                                   sd_grads_of(grads, b));
}

/* buf->g: d(layer output) on entry, d(layer input x_in) on return. */
static int layer_backward(sd_clip_text_tape *tp, const clip_layer *w, const clip_layer_rec *r,
                          sd_grads *grads, clip_backward_buf *buf) {
  sd_backend *be = tp->be;
  const sd_clip_config *cfg = &tp->m->cfg;
  const float eps = cfg->layer_norm_eps;

  /* MLP branch: out = x_mid + fc2(act(fc1(layer_norm2(x_mid)))) */
  SD_TRY(linear_backward(be, grads, &r->f_act, w->fc2_w, w->fc2_b, &buf->g, &buf->df));
  SD_TRY(sd_op_activation_backward(be, &r->f_pre, &buf->df, cfg->hidden_act, &buf->df));
  SD_TRY(linear_backward(be, grads, &r->n2, w->fc1_w, w->fc1_b, &buf->df, &buf->dn));
  SD_TRY(
      layer_norm_backward(be, grads, &r->x_mid, w->ln2_w, w->ln2_b, eps, &buf->dn, &buf->dbranch));
  SD_TRY(sd_op_add(be, &buf->g, &buf->dbranch, &buf->g));

  /* Attention branch: x_mid = x_in + out_proj(attention(q, k, v)), q, k, v of layer_norm1(x_in) */
  SD_TRY(linear_backward(be, grads, &r->o, w->out_w, w->out_b, &buf->g, &buf->d_o));
  SD_TRY(sd_op_attention_backward(be, &r->q, &r->k, &r->v, &buf->d_o, cfg->num_attention_heads,
                                  sd_clip_text_attention_scale(tp->m), true, &buf->dq, &buf->dk,
                                  &buf->dv));
  SD_TRY(linear_backward(be, grads, &r->n1, w->q_w, w->q_b, &buf->dq, &buf->dn));
  SD_TRY(linear_backward(be, grads, &r->n1, w->k_w, w->k_b, &buf->dk, &buf->dbranch));
  SD_TRY(sd_op_add(be, &buf->dn, &buf->dbranch, &buf->dn));
  SD_TRY(linear_backward(be, grads, &r->n1, w->v_w, w->v_b, &buf->dv, &buf->dbranch));
  SD_TRY(sd_op_add(be, &buf->dn, &buf->dbranch, &buf->dn));
  SD_TRY(
      layer_norm_backward(be, grads, &r->x_in, w->ln1_w, w->ln1_b, eps, &buf->dn, &buf->dbranch));
  return sd_op_add(be, &buf->g, &buf->dbranch, &buf->g);
}

/* The embeddings: token_embedding[ids] + position_embedding[0 .. L) per batch row. */
static int embeddings_backward(sd_clip_text_tape *tp, const sd_tensor *g, sd_grads *grads) {
  sd_backend *be = tp->be;
  const int64_t len = g->shape[1];
  sd_tensor *dtoken = sd_grads_of(grads, tp->m->token_embedding);
  sd_tensor *dpos = sd_grads_of(grads, tp->m->position_embedding);
  if (dtoken)
    SD_TRY(sd_op_embedding_backward(be, tp->ids, tp->batch * len, g, dtoken));
  for (int b = 0; dpos && b < tp->batch; b++) {
    const sd_tensor row = sd_tensor_slice0(g, b, 1); /* (1, L, C) */
    SD_TRY(sd_op_embedding_backward(be, tp->m->position_ids, len, &row, dpos));
  }
  return 0;
}

static int walk_back(sd_clip_text_tape *tp, const sd_tensor *dhidden, sd_grads *grads) {
  sd_backend *be = tp->be;
  const sd_clip_config *cfg = &tp->m->cfg;
  clip_backward_buf buf;
  SD_TRY(alloc_buf(be, dhidden, cfg->intermediate_size, &buf));
  if (layer_norm_backward(be, grads, &tp->x_final, tp->m->final_ln_w, tp->m->final_ln_b,
                          cfg->layer_norm_eps, dhidden, &buf.g) < 0)
    return sd_error_context("text encoder: final_layer_norm backward");
  for (int i = cfg->num_hidden_layers - 1; i >= 0; i--) {
    if (layer_backward(tp, &tp->m->layers[i], &tp->rec[i], grads, &buf) < 0)
      return sd_error_context("text encoder: layer %d backward", i);
  }
  if (embeddings_backward(tp, &buf.g, grads) < 0)
    return sd_error_context("text encoder: embeddings backward");
  return 0;
}

int sd_clip_text_backward(sd_clip_text_tape *tp, const sd_tensor *dhidden, sd_grads *grads) {
  if (sd_clip_text_check_hidden(tp->m, tp->batch, dhidden) < 0)
    return sd_error_context("text encoder backward: dhidden, the gradient of hidden");
  const sd_arena_mark mark = sd_arena_get_mark(tp->be);
  int rc = walk_back(tp, dhidden, grads);
  sd_arena_release(tp->be, mark);
  return rc;
}
