/* The CLIP text encoder's recording forward: clip_text.c's ops in its order, each intermediate
 * kept in the tape (clip_text_tape.h). Where the inference forward fuses fc1's activation and
 * updates the residual stream and final_layer_norm in place, this one runs linear(NONE) +
 * activation and writes new tensors (the backward needs the pre-activation and the norms'
 * inputs); the same float operations, so the same bits. */
#include "clip_text_tape.h"

#include "../../kernels/error.h"

#include <stdlib.h>
#include <string.h>

static int alloc_like(sd_backend *be, sd_tensor *t, const sd_tensor *shape) {
  *t = sd_tensor_make(be->ops->act_dtype, shape->ndim, shape->shape);
  return sd_tensor_alloc(be, t);
}

static int alloc_layer_rec(sd_backend *be, const sd_tensor *x, int64_t inner, clip_layer_rec *r) {
  const sd_tensor f = sd_tensor_3d(be->ops->act_dtype, x->shape[0], x->shape[1], inner);
  sd_tensor *seq[] = {&r->n1, &r->q, &r->k, &r->v, &r->o, &r->x_mid, &r->n2};
  for (size_t i = 0; i < sizeof seq / sizeof *seq; i++)
    SD_TRY(alloc_like(be, seq[i], x));
  SD_TRY(alloc_like(be, &r->f_pre, &f));
  return alloc_like(be, &r->f_act, &f);
}

/* r->x_in (set) -> out, recording r; out is the next layer's x_in (or x_final). */
static int layer_forward(sd_clip_text_tape *tp, const clip_layer *w, clip_layer_rec *r,
                         sd_tensor *out) {
  sd_backend *be = tp->be;
  const sd_clip_config *cfg = &tp->m->cfg;
  const float eps = cfg->layer_norm_eps;
  SD_TRY(alloc_layer_rec(be, &r->x_in, cfg->intermediate_size, r));

  /* x_mid = x_in + out_proj(attention(layer_norm1(x_in))); out serves as out_proj's output. */
  SD_TRY(sd_op_layer_norm(be, &r->x_in, w->ln1_w, w->ln1_b, eps, &r->n1));
  SD_TRY(sd_op_linear(be, &r->n1, w->q_w, w->q_b, SD_ACT_NONE, &r->q));
  SD_TRY(sd_op_linear(be, &r->n1, w->k_w, w->k_b, SD_ACT_NONE, &r->k));
  SD_TRY(sd_op_linear(be, &r->n1, w->v_w, w->v_b, SD_ACT_NONE, &r->v));
  SD_TRY(sd_op_attention(be, &r->q, &r->k, &r->v, cfg->num_attention_heads,
                         sd_clip_text_attention_scale(tp->m), true, &r->o));
  SD_TRY(sd_op_linear(be, &r->o, w->out_w, w->out_b, SD_ACT_NONE, out));
  SD_TRY(sd_op_add(be, &r->x_in, out, &r->x_mid));

  /* out = x_mid + fc2(act(fc1(layer_norm2(x_mid)))) */
  SD_TRY(sd_op_layer_norm(be, &r->x_mid, w->ln2_w, w->ln2_b, eps, &r->n2));
  SD_TRY(sd_op_linear(be, &r->n2, w->fc1_w, w->fc1_b, SD_ACT_NONE, &r->f_pre));
  SD_TRY(sd_op_activation(be, &r->f_pre, cfg->hidden_act, &r->f_act));
  SD_TRY(sd_op_linear(be, &r->f_act, w->fc2_w, w->fc2_b, SD_ACT_NONE, out));
  return sd_op_add(be, &r->x_mid, out, out);
}

static int record(sd_clip_text_tape *tp, const int32_t *ids, sd_tensor *hidden) {
  sd_backend *be = tp->be;
  const sd_clip_config *cfg = &tp->m->cfg;
  const int layers = cfg->num_hidden_layers;
  SD_TRY(alloc_like(be, &tp->rec[0].x_in, hidden));
  SD_TRY(sd_clip_text_embed(tp->m, ids, tp->batch, &tp->rec[0].x_in));
  for (int i = 0; i < layers; i++) {
    sd_tensor *out = i + 1 < layers ? &tp->rec[i + 1].x_in : &tp->x_final;
    SD_TRY(alloc_like(be, out, hidden));
    if (layer_forward(tp, &tp->m->layers[i], &tp->rec[i], out) < 0)
      return sd_error_context("text encoder: layer %d", i);
  }
  if (sd_op_layer_norm(be, &tp->x_final, tp->m->final_ln_w, tp->m->final_ln_b, cfg->layer_norm_eps,
                       hidden) < 0)
    return sd_error_context("text encoder: final_layer_norm");
  return 0;
}

int sd_clip_text_forward_train(sd_clip_text *model, const int32_t *ids, int batch,
                               sd_tensor *hidden, sd_clip_text_tape **tape) {
  *tape = NULL;
  SD_TRY(sd_clip_text_check_hidden(model, batch, hidden));
  const size_t n_ids = (size_t)batch * (size_t)model->cfg.max_position_embeddings;
  sd_clip_text_tape *tp = calloc(1, sizeof *tp);
  if (!tp)
    return SD_ERROR("text encoder: out of host memory for the tape");
  *tp = (sd_clip_text_tape){.m = model,
                            .be = model->be,
                            .base = sd_arena_get_mark(model->be),
                            .batch = batch,
                            .ids = malloc(n_ids * sizeof(int32_t)),
                            .rec = calloc((size_t)model->cfg.num_hidden_layers, sizeof *tp->rec)};
  if (!tp->ids || !tp->rec) {
    sd_clip_text_tape_free(tp);
    return SD_ERROR("text encoder: out of host memory for the tape");
  }
  memcpy(tp->ids, ids, n_ids * sizeof(int32_t));
  if (record(tp, tp->ids, hidden) < 0) {
    sd_clip_text_tape_free(tp);
    return sd_error_context("text encoder: training forward");
  }
  *tape = tp;
  return 0;
}

size_t sd_clip_text_tape_bytes(const sd_clip_text_tape *tp) {
  return tp->be->arena.used_bytes - tp->base.used_bytes;
}

void sd_clip_text_tape_free(sd_clip_text_tape *tp) {
  if (!tp)
    return;
  sd_arena_release(tp->be, tp->base);
  free(tp->ids);
  free(tp->rec);
  free(tp);
}
