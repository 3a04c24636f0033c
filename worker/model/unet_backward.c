/* The UNet's backward (unet_train.h) over the tape of unet_forward_train.c (unet_tape.h).
 *
 * It walks the steps in reverse. A value's gradient is complete when its producer is reached (all
 * its readers come later in the forward). Gradients of values read once, by the very next step
 * (most of them), alternate between two buffers; the others (the skips, read by the next down
 * block and by an up block's concat) get an arena slot when their first gradient arrives and give
 * it back at their producer. The UNet's skips nest, so the slots come and go in stack order; the
 * backward checks that and fails ("gradient slots out of order") otherwise. A step without its
 * record (checkpointed tape) runs its forward again into scratch first. */
#include "unet_tape.h"

#include "../../kernels/error.h"

#include <stdlib.h>

/* The backward's gradient bookkeeping (see the file comment). */
typedef struct grad_state {
  sd_tensor *grad;           /* (num_values) */
  bool *has;                 /* (num_values) grad[v] holds v's gradient */
  int *slot_of;              /* (num_values) position in the stack of slots, or -1 */
  sd_arena_mark *slot_marks; /* (num_values) the arena mark below each slot, in stack order */
  int num_slots;
  void *chain[2];     /* the two buffers of once-read values */
  int chain_value[2]; /* value whose gradient each holds, -1 when free */
} grad_state;

/* Whether value v is read once, by the step right after its producer. */
static bool is_chain(const sd_unet_tape *tp, int v) {
  const tape_value *val = &tp->values[v];
  return val->producer >= 0 && val->readers == 1 && val->first_reader == val->producer + 1;
}

static int zero_tensor(sd_backend *be, sd_tensor *t) {
  size_t n = (size_t)sd_tensor_numel(t);
  float *zeros = calloc(n ? n : 1, sizeof *zeros);
  if (!zeros)
    return SD_ERROR("unet backward: out of memory for %zu zeros", n);
  int rc = sd_tensor_upload_f32(be, t, zeros);
  free(zeros);
  return rc;
}

/* Where a step writes the gradient of its input v: *target (a chain buffer or a new slot; the
 * caller's dsample for the sample), or *add when v already has a gradient and the step's result
 * (into scratch the caller allocates) must be added to it. */
static int input_target(sd_unet_tape *tp, grad_state *gs, int v, int dy_value, sd_tensor *dsample,
                        sd_tensor **target, bool *add) {
  *add = false;
  if (v == 0) { /* the sample */
    *target = dsample;
    return 0;
  }
  if (gs->has[v]) {
    *add = true;
    return 0;
  }
  if (is_chain(tp, v)) {
    int b = gs->chain_value[0] == dy_value ? 1 : 0;
    gs->chain_value[b] = v;
    gs->grad[v] = tp->values[v].t;
    gs->grad[v].data = gs->chain[b];
  } else {
    gs->slot_marks[gs->num_slots] = sd_arena_get_mark(tp->be);
    gs->grad[v] = tp->values[v].t;
    SD_TRY(sd_tensor_alloc(tp->be, &gs->grad[v]));
    gs->slot_of[v] = gs->num_slots++;
  }
  gs->has[v] = true;
  *target = &gs->grad[v];
  return 0;
}

/* Gives back the gradient of v once its producer is done. */
static int release_gradient(sd_unet_tape *tp, grad_state *gs, int v) {
  if (gs->slot_of[v] >= 0) {
    if (gs->slot_of[v] != gs->num_slots - 1)
      return SD_ERROR("unet backward: gradient slots out of order (value %d)", v);
    sd_arena_release(tp->be, gs->slot_marks[--gs->num_slots]);
    gs->slot_of[v] = -1;
  }
  for (int b = 0; b < 2; b++)
    if (gs->chain_value[b] == v)
      gs->chain_value[b] = -1;
  return 0;
}

static int step_backward(sd_unet_tape *tp, tape_step *s, const sd_tensor *dy, sd_tensor **dx,
                         sd_tensor *dtemb, sd_tensor *dcontext, sd_grads *g) {
  sd_backend *be = tp->be;
  sd_unet *m = tp->m;
  const sd_tensor *x = &tp->values[s->in[0]].t;
  switch (s->kind) {
  case STEP_CONV_IN:
    return sd_op_conv2d_backward(be, x, m->conv_in_w, dy, 1, 1, dx[0], sd_grads_of(g, m->conv_in_w),
                                 sd_grads_of(g, m->conv_in_b));
  case STEP_RESNET:
    return sd_unet_resnet_backward(be, s->block, x, &tp->temb_act, &s->rec.resnet, dy, dx[0], dtemb,
                                   g);
  case STEP_TRANSFORMER:
    return sd_unet_transformer_backward(be, s->block, x, tp->context, &s->rec.transformer, dy,
                                        dx[0], dcontext, g);
  case STEP_DOWNSAMPLE:
    return sd_unet_downsample_backward(be, s->block, x, dy, dx[0], g);
  case STEP_CONCAT:
    return sd_op_concat_channels_backward(be, dy, dx[0], dx[1]);
  case STEP_UPSAMPLE:
    return sd_unet_upsample_backward(be, s->block, &s->rec.up, dy, dx[0], g);
  case STEP_OUT: {
    sd_tensor dnormed = s->rec.normed; /* (B, C0, H, W) */
    SD_TRY(sd_tensor_alloc(be, &dnormed));
    SD_TRY(sd_op_conv2d_backward(be, &s->rec.normed, m->conv_out_w, dy, 1, 1, &dnormed,
                                 sd_grads_of(g, m->conv_out_w), sd_grads_of(g, m->conv_out_b)));
    return sd_op_group_norm_backward(be, x, m->norm_out_w, m->norm_out_b, &dnormed,
                                     m->cfg.norm_num_groups, m->cfg.norm_eps, true, dx[0],
                                     sd_grads_of(g, m->norm_out_w), sd_grads_of(g, m->norm_out_b));
  }
  }
  return SD_ERROR("unet tape: step kind %d", (int)s->kind);
}

/* Step s: its input gradients from dy = the gradient of its output. */
static int backward_step(sd_unet_tape *tp, grad_state *gs, int si, sd_tensor *dsample,
                         sd_tensor *dtemb, sd_tensor *dcontext, sd_grads *g) {
  sd_backend *be = tp->be;
  tape_step *s = &tp->steps[si];
  if (!gs->has[s->out])
    return SD_ERROR("unet backward: no gradient reached step %d's output", si);
  sd_tensor *dx[2] = {NULL, NULL};
  bool add[2] = {false, false};
  /* new slots first (the value produced earlier lower on the arena), scratch above them */
  int order[2] = {s->in[0], s->in[1]};
  if (order[1] >= 0 && order[1] < order[0]) {
    order[0] = s->in[1];
    order[1] = s->in[0];
  }
  for (int k = 0; k < 2; k++) {
    if (order[k] < 0)
      continue;
    int slot = order[k] == s->in[0] ? 0 : 1;
    SD_TRY(input_target(tp, gs, order[k], s->out, dsample, &dx[slot], &add[slot]));
  }
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor scratch[2];
  for (int k = 0; k < 2; k++)
    if (add[k]) {
      scratch[k] = tp->values[s->in[k]].t;
      SD_TRY(sd_tensor_alloc(be, &scratch[k]));
      dx[k] = &scratch[k];
    }
  int rc = 0;
  if (!s->recorded && sd_unet_tape_step_has_record(s)) {
    sd_tensor y = tp->values[s->out].t; /* the output again, into scratch */
    rc = sd_tensor_alloc(be, &y);
    if (rc == 0)
      rc = sd_unet_tape_step_forward(tp, s, &y);
  }
  if (rc == 0)
    rc = step_backward(tp, s, &gs->grad[s->out], dx, dtemb, dcontext, g);
  for (int k = 0; k < 2 && rc == 0; k++)
    if (add[k])
      rc = sd_op_add(be, &gs->grad[s->in[k]], dx[k], &gs->grad[s->in[k]]);
  if (!s->recorded && s->kind == STEP_TRANSFORMER)
    sd_unet_transformer_rec_free(&s->rec.transformer);
  sd_arena_release(be, mark);
  if (rc < 0)
    return rc;
  return release_gradient(tp, gs, s->out);
}

/* time embedding: temb_act = silu(linear_2(silu(linear_1(proj)))); proj is a constant. */
static int time_embedding_backward(sd_unet_tape *tp, const sd_tensor *dtemb, sd_grads *g) {
  sd_backend *be = tp->be;
  sd_unet *m = tp->m;
  sd_tensor d2 = tp->t2, d1a = tp->t1a; /* (B, T) */
  SD_TRY(sd_tensor_alloc(be, &d2));
  SD_TRY(sd_tensor_alloc(be, &d1a));
  SD_TRY(sd_op_activation_backward(be, &tp->t2, dtemb, SD_ACT_SILU, &d2));
  SD_TRY(sd_op_linear_backward(be, &tp->t1a, m->time_linear_2_w, &d2, &d1a,
                               sd_grads_of(g, m->time_linear_2_w),
                               sd_grads_of(g, m->time_linear_2_b)));
  SD_TRY(sd_op_activation_backward(be, &tp->t1, &d1a, SD_ACT_SILU, &d1a));
  return sd_op_linear_backward(be, &tp->proj, m->time_linear_1_w, &d1a, NULL,
                               sd_grads_of(g, m->time_linear_1_w),
                               sd_grads_of(g, m->time_linear_1_b));
}

static int backward(sd_unet_tape *tp, grad_state *gs, const sd_tensor *dout, sd_grads *g,
                    sd_tensor *dsample, sd_tensor *dcontext) {
  sd_backend *be = tp->be;
  /* the chain buffers: the largest once-read value */
  size_t chain_bytes = 0;
  for (int v = 0; v < tp->num_values; v++)
    if (is_chain(tp, v) && sd_tensor_bytes(&tp->values[v].t) > chain_bytes)
      chain_bytes = sd_tensor_bytes(&tp->values[v].t);
  for (int b = 0; b < 2; b++) {
    sd_tensor buf = sd_tensor_1d(be->ops->act_dtype, (int64_t)(chain_bytes / sizeof(float)) + 1);
    SD_TRY(sd_tensor_alloc(be, &buf));
    gs->chain[b] = buf.data;
    gs->chain_value[b] = -1;
  }
  sd_tensor dtemb = tp->temb_act; /* (B, T) accumulated over the resnets */
  SD_TRY(sd_tensor_alloc(be, &dtemb));
  SD_TRY(zero_tensor(be, &dtemb));
  if (dcontext)
    SD_TRY(zero_tensor(be, dcontext));

  int last = tp->steps[tp->num_steps - 1].out;
  gs->grad[last] = *dout;
  gs->has[last] = true;
  for (int si = tp->num_steps - 1; si >= 0; si--)
    SD_TRY(backward_step(tp, gs, si, dsample, &dtemb, dcontext, g));
  if (time_embedding_backward(tp, &dtemb, g) < 0)
    return sd_error_context("unet: time_embedding");
  return 0;
}

int sd_unet_backward(sd_unet_tape *tp, const sd_tensor *dout, sd_grads *grads, sd_tensor *dsample,
                     sd_tensor *dcontext) {
  const sd_tensor *out = &tp->values[tp->steps[tp->num_steps - 1].out].t;
  if (!sd_tensor_same_shape(dout, out))
    return SD_ERROR("unet backward: dout is not of the output's shape");
  if (dsample && !sd_tensor_same_shape(dsample, &tp->values[0].t))
    return SD_ERROR("unet backward: dsample is not of the sample's shape");
  if (dcontext && !sd_tensor_same_shape(dcontext, tp->context))
    return SD_ERROR("unet backward: dcontext is not of the context's shape");
  int n = tp->num_values;
  grad_state gs = {.grad = calloc((size_t)n, sizeof *gs.grad),
                   .has = calloc((size_t)n, sizeof *gs.has),
                   .slot_of = malloc((size_t)n * sizeof *gs.slot_of),
                   .slot_marks = malloc((size_t)n * sizeof *gs.slot_marks)};
  int rc;
  if (!gs.grad || !gs.has || !gs.slot_of || !gs.slot_marks) {
    rc = SD_ERROR("unet backward: out of memory for %d values", n);
  } else {
    for (int v = 0; v < n; v++)
      gs.slot_of[v] = -1;
    sd_arena_mark mark = sd_arena_get_mark(tp->be);
    rc = backward(tp, &gs, dout, grads, dsample, dcontext);
    sd_arena_release(tp->be, mark);
  }
  free(gs.grad);
  free(gs.has);
  free(gs.slot_of);
  free(gs.slot_marks);
  return rc;
}
