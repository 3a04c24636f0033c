/* The UNet's training forward and backward (unet_train.h).
 *
 * The forward runs the blocks of sd_unet_forward in its order and appends one step per block
 * (conv_in, resnet, transformer, downsample, concat, upsample, norm_out + conv_out) to the tape.
 * Each step reads one or two values and writes one; every value is a new arena tensor kept until
 * the tape is freed (value 0 is the caller's sample, the last one the caller's out). With
 * SD_UNET_TAPE_FULL a step also keeps its block's record (unet_blocks_train.h); with
 * SD_UNET_TAPE_CHECKPOINT the record is dropped and made again during the backward.
 *
 * The backward walks the steps in reverse. A value's gradient is complete when its producer is
 * reached (all its readers come later in the forward). Gradients of values read once, by the
 * very next step (most of them), alternate between two buffers; the others (the skips, read by
 * the next down block and by an up block's concat) get an arena slot when their first gradient
 * arrives and give it back at their producer. The UNet's skips nest, so the slots come and go in
 * stack order; the backward checks that and fails ("gradient slots out of order") otherwise. */
#include "unet_train.h"

#include "unet_blocks_train.h"
#include "unet_internal.h"

#include "../../kernels/error.h"

#include <stdlib.h>

typedef enum step_kind {
  STEP_CONV_IN,
  STEP_RESNET,
  STEP_TRANSFORMER,
  STEP_DOWNSAMPLE,
  STEP_CONCAT,
  STEP_UPSAMPLE,
  STEP_OUT,
} step_kind;

typedef struct tape_step {
  step_kind kind;
  const void *block; /* sd_unet_resnet, sd_unet_transformer or sd_unet_sampler; else NULL */
  int in[2];         /* values read; in[1] only for concat (the skip), else -1 */
  int out;           /* value written */
  bool recorded;     /* rec holds the block's activations */
  union {
    sd_unet_resnet_rec resnet;
    sd_unet_transformer_rec transformer;
    sd_tensor up;     /* upsample: (B, C, 2H, 2W) nearest(x) */
    sd_tensor normed; /* out: (B, C0, H, W) silu(norm_out(x)) */
  } rec;
} tape_step;

typedef struct tape_value {
  sd_tensor t;      /* (B, C, H, W) */
  int producer;     /* step index; -1 for the sample */
  int readers;      /* steps reading it */
  int first_reader; /* step index of the first */
} tape_value;

struct sd_unet_tape {
  sd_unet *m;
  sd_backend *be;
  sd_arena_mark base;
  sd_unet_tape_mode mode;
  int64_t batch;
  const sd_tensor *context; /* (B, L, Ckv), borrowed */
  sd_tensor proj;           /* (B, T0) time projection */
  sd_tensor t1, t1a, t2;    /* (B, T) linear_1, silu, linear_2 */
  sd_tensor temb_act;       /* (B, T) silu(t2), what every resnet takes */
  tape_step *steps;
  int num_steps, steps_capacity;
  tape_value *values;
  int num_values, values_capacity;
};

static int grow(void **items, int *capacity, int count, size_t size) {
  if (count < *capacity)
    return 0;
  int next = *capacity ? 2 * *capacity : 64;
  void *grown = realloc(*items, (size_t)next * size);
  if (!grown)
    return SD_ERROR("unet tape: out of memory for %d entries", next);
  *items = grown;
  *capacity = next;
  return 0;
}

/* A new value (B, c, h, w): the caller's tensor when given, else an arena tensor. */
static int new_value(sd_unet_tape *tp, int64_t c, int64_t h, int64_t w, const sd_tensor *given,
                     int *id) {
  SD_TRY(grow((void **)&tp->values, &tp->values_capacity, tp->num_values, sizeof *tp->values));
  tape_value *v = &tp->values[tp->num_values];
  *v = (tape_value){.producer = tp->num_steps, .first_reader = -1};
  if (given) {
    v->t = *given;
  } else {
    v->t = sd_tensor_4d(tp->be->ops->act_dtype, tp->batch, c, h, w);
    SD_TRY(sd_tensor_alloc(tp->be, &v->t));
  }
  *id = tp->num_values++;
  return 0;
}

static void note_reader(sd_unet_tape *tp, int id, int step) {
  tape_value *v = &tp->values[id];
  if (v->readers++ == 0)
    v->first_reader = step;
}

/* Runs step s into y (its output value, or a scratch tensor of that shape when recomputing),
 * filling s->rec; the record's tensors are allocated on the arena here. */
static int step_forward(sd_unet_tape *tp, tape_step *s, sd_tensor *y) {
  sd_backend *be = tp->be;
  sd_unet *m = tp->m;
  const sd_tensor *x = &tp->values[s->in[0]].t;
  switch (s->kind) {
  case STEP_CONV_IN:
    return sd_op_conv2d(be, x, m->conv_in_w, m->conv_in_b, 1, 1, y);
  case STEP_RESNET:
    return sd_unet_resnet_forward_rec(be, s->block, x, &tp->temb_act, y, &s->rec.resnet);
  case STEP_TRANSFORMER:
    return sd_unet_transformer_forward_rec(be, s->block, x, tp->context, y, &s->rec.transformer);
  case STEP_DOWNSAMPLE:
    return sd_unet_downsample_forward(be, NULL, s->block, x, y);
  case STEP_CONCAT:
    return sd_op_concat_channels(be, x, &tp->values[s->in[1]].t, y);
  case STEP_UPSAMPLE:
    return sd_unet_upsample_forward_rec(be, s->block, x, y, &s->rec.up);
  case STEP_OUT:
    s->rec.normed = *x;
    SD_TRY(sd_tensor_alloc(be, &s->rec.normed));
    SD_TRY(sd_op_group_norm(be, x, m->norm_out_w, m->norm_out_b, m->cfg.norm_num_groups,
                            m->cfg.norm_eps, true, &s->rec.normed));
    return sd_op_conv2d(be, &s->rec.normed, m->conv_out_w, m->conv_out_b, 1, 1, y);
  }
  return SD_ERROR("unet tape: step kind %d", (int)s->kind);
}

static void step_drop_record(tape_step *s) {
  if (s->kind == STEP_TRANSFORMER)
    sd_unet_transformer_rec_free(&s->rec.transformer);
  s->recorded = false;
}

static bool step_has_record(const tape_step *s) {
  return s->kind == STEP_RESNET || s->kind == STEP_TRANSFORMER || s->kind == STEP_UPSAMPLE ||
         s->kind == STEP_OUT;
}

/* Appends and runs a step reading in0 (and in1) into a new value of (c, h, w) (or `given`). */
static int add_step(sd_unet_tape *tp, step_kind kind, const void *block, int in0, int in1,
                    int64_t c, int64_t h, int64_t w, const sd_tensor *given, int *out) {
  SD_TRY(grow((void **)&tp->steps, &tp->steps_capacity, tp->num_steps, sizeof *tp->steps));
  int id;
  SD_TRY(new_value(tp, c, h, w, given, &id));
  tape_step *s = &tp->steps[tp->num_steps];
  *s = (tape_step){.kind = kind, .block = block, .in = {in0, in1}, .out = id};
  note_reader(tp, in0, tp->num_steps);
  if (in1 >= 0)
    note_reader(tp, in1, tp->num_steps);
  tp->num_steps++;
  sd_arena_mark mark = sd_arena_get_mark(tp->be);
  s->recorded = true;
  int rc = step_forward(tp, s, &tp->values[id].t);
  if (tp->mode == SD_UNET_TAPE_CHECKPOINT) {
    sd_arena_release(tp->be, mark);
    step_drop_record(s);
  }
  if (out)
    *out = id;
  return rc;
}

static int64_t channels_of(const sd_unet_tape *tp, int id) {
  return tp->values[id].t.shape[1];
}

/* resnet, then the transformer when there is one; *h becomes the output. */
static int resnet_attention(sd_unet_tape *tp, const sd_unet_resnet *res,
                            const sd_unet_transformer *attn, int *h) {
  const sd_tensor *x = &tp->values[*h].t;
  int64_t hh = x->shape[2], ww = x->shape[3];
  SD_TRY(add_step(tp, STEP_RESNET, res, *h, -1, res->out_channels, hh, ww, NULL, h));
  if (attn)
    SD_TRY(add_step(tp, STEP_TRANSFORMER, attn, *h, -1, attn->channels, hh, ww, NULL, h));
  return 0;
}

static int time_embedding(sd_unet_tape *tp, double timestep) {
  sd_unet *m = tp->m;
  sd_backend *be = tp->be;
  sd_dtype dt = be->ops->act_dtype;
  tp->proj = sd_tensor_2d(dt, tp->batch, m->time_channels);
  tp->t1 = sd_tensor_2d(dt, tp->batch, m->temb_channels);
  tp->t1a = tp->t2 = tp->temb_act = tp->t1;
  sd_tensor *all[5] = {&tp->proj, &tp->t1, &tp->t1a, &tp->t2, &tp->temb_act};
  for (int i = 0; i < 5; i++)
    SD_TRY(sd_tensor_alloc(be, all[i]));
  SD_TRY(sd_op_timestep_embedding(be, timestep, m->cfg.flip_sin_to_cos, m->cfg.freq_shift,
                                  SD_UNET_MAX_PERIOD, &tp->proj));
  SD_TRY(sd_op_linear(be, &tp->proj, m->time_linear_1_w, m->time_linear_1_b, SD_ACT_NONE, &tp->t1));
  SD_TRY(sd_op_activation(be, &tp->t1, SD_ACT_SILU, &tp->t1a));
  SD_TRY(sd_op_linear(be, &tp->t1a, m->time_linear_2_w, m->time_linear_2_b, SD_ACT_NONE, &tp->t2));
  return sd_op_activation(be, &tp->t2, SD_ACT_SILU, &tp->temb_act);
}

static int forward_steps(sd_unet_tape *tp, const sd_tensor *sample, sd_tensor *out) {
  sd_unet *m = tp->m;
  const sd_unet_config *cfg = &m->cfg;
  int levels = cfg->num_levels, n = cfg->layers_per_block;
  int num_skips = 0, h, rc = 0;
  int64_t hh = sample->shape[2], ww = sample->shape[3];
  SD_TRY(new_value(tp, 0, 0, 0, sample, &h)); /* value 0: the caller's sample, no producer */
  tp->values[h].producer = -1;
  int *skips = malloc((size_t)(1 + levels * (n + 1)) * sizeof *skips);
  if (!skips)
    return SD_ERROR("unet tape: out of memory");
#define STEP(call, ...)                                                                            \
  do {                                                                                             \
    if ((rc = (call)) < 0) {                                                                       \
      sd_error_context(__VA_ARGS__);                                                               \
      goto out;                                                                                    \
    }                                                                                              \
  } while (0)
  STEP(add_step(tp, STEP_CONV_IN, NULL, h, -1, cfg->block_out_channels[0], hh, ww, NULL, &h),
       "unet: conv_in");
  skips[num_skips++] = h;
  for (int l = 0; l < levels; l++) {
    const unet_down_level *d = &m->down[l];
    for (int j = 0; j < n; j++) {
      STEP(resnet_attention(tp, &d->resnets[j], d->attentions ? &d->attentions[j] : NULL, &h),
           "unet: down_blocks.%d", l);
      skips[num_skips++] = h;
    }
    if (d->has_downsample) {
      hh /= 2;
      ww /= 2;
      STEP(add_step(tp, STEP_DOWNSAMPLE, &d->downsample, h, -1, d->channels, hh, ww, NULL, &h),
           "unet: down_blocks.%d", l);
      skips[num_skips++] = h;
    }
  }
  STEP(resnet_attention(tp, &m->mid_resnets[0], &m->mid_attention, &h), "unet: mid_block");
  STEP(resnet_attention(tp, &m->mid_resnets[1], NULL, &h), "unet: mid_block");
  for (int i = 0; i < levels; i++) {
    const unet_up_level *u = &m->up[i];
    for (int j = 0; j < n + 1; j++) {
      int skip = skips[--num_skips];
      STEP(add_step(tp, STEP_CONCAT, NULL, h, skip, channels_of(tp, h) + channels_of(tp, skip), hh,
                    ww, NULL, &h),
           "unet: up_blocks.%d", i);
      STEP(resnet_attention(tp, &u->resnets[j], u->attentions ? &u->attentions[j] : NULL, &h),
           "unet: up_blocks.%d", i);
    }
    if (u->has_upsample) {
      hh *= 2;
      ww *= 2;
      STEP(add_step(tp, STEP_UPSAMPLE, &u->upsample, h, -1, u->channels, hh, ww, NULL, &h),
           "unet: up_blocks.%d", i);
    }
  }
  STEP(add_step(tp, STEP_OUT, NULL, h, -1, 0, 0, 0, out, NULL), "unet: conv_out");
#undef STEP
out:
  free(skips);
  return rc;
}

static int check_trainable(const sd_unet *m, const sd_tensor *sample, const sd_tensor *context,
                           const sd_tensor *out) {
  const sd_unet_config *cfg = &m->cfg;
  if (cfg->num_class_embeds > 0)
    return SD_ERROR("unet training: class labels (num_class_embeds %d, the x4 upscaler) are not "
                    "supported",
                    cfg->num_class_embeds);
  for (int l = 0; l < cfg->num_levels; l++)
    if (cfg->only_cross_attention[l])
      return SD_ERROR("unet training: only_cross_attention (level %d) is not supported", l);
  char a[96], b[96];
  if (sample->ndim != 4 || sample->shape[1] != cfg->in_channels)
    return SD_ERROR("unet: sample %s is not (B, %d, h, w)",
                    sd_tensor_shape_str(sample, a, sizeof a), cfg->in_channels);
  int64_t multiple = (int64_t)1 << (cfg->num_levels - 1);
  if (sample->shape[2] % multiple || sample->shape[3] % multiple)
    return SD_ERROR("unet training: latent %lld x %lld is not a multiple of %lld (the "
                    "upsamplers' backward is exactly 2x)",
                    (long long)sample->shape[2], (long long)sample->shape[3], (long long)multiple);
  if (context->ndim != 3 || context->shape[0] != sample->shape[0] ||
      context->shape[2] != cfg->cross_attention_dim)
    return SD_ERROR("unet: context %s is not (B, L, %d) for sample %s",
                    sd_tensor_shape_str(context, a, sizeof a), cfg->cross_attention_dim,
                    sd_tensor_shape_str(sample, b, sizeof b));
  if (out->ndim != 4 || out->shape[0] != sample->shape[0] || out->shape[1] != cfg->out_channels ||
      out->shape[2] != sample->shape[2] || out->shape[3] != sample->shape[3])
    return SD_ERROR("unet: out %s does not match sample %s (%d channels)",
                    sd_tensor_shape_str(out, a, sizeof a), sd_tensor_shape_str(sample, b, sizeof b),
                    cfg->out_channels);
  return 0;
}

void sd_unet_tape_free(sd_unet_tape *tp) {
  if (!tp)
    return;
  for (int i = 0; i < tp->num_steps; i++)
    step_drop_record(&tp->steps[i]);
  sd_arena_release(tp->be, tp->base);
  free(tp->steps);
  free(tp->values);
  free(tp);
}

size_t sd_unet_tape_bytes(const sd_unet_tape *tp) {
  return tp->be->arena.used_bytes - tp->base.used_bytes;
}

int sd_unet_forward_train(sd_unet *m, const sd_tensor *sample, double timestep,
                          const sd_tensor *context, sd_unet_tape_mode mode, sd_tensor *out,
                          sd_unet_tape **tape) {
  *tape = NULL;
  SD_TRY(check_trainable(m, sample, context, out));
  sd_unet_tape *tp = calloc(1, sizeof *tp);
  if (!tp)
    return SD_ERROR("unet tape: out of memory");
  *tp = (sd_unet_tape){.m = m,
                       .be = m->be,
                       .base = sd_arena_get_mark(m->be),
                       .mode = mode,
                       .batch = sample->shape[0],
                       .context = context};
  int rc = time_embedding(tp, timestep);
  if (rc < 0)
    sd_error_context("unet: time_embedding");
  else
    rc = forward_steps(tp, sample, out);
  if (rc < 0) {
    sd_unet_tape_free(tp);
    return -1;
  }
  *tape = tp;
  return 0;
}

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
  if (!s->recorded && step_has_record(s)) {
    sd_tensor y = tp->values[s->out].t; /* the output again, into scratch */
    rc = sd_tensor_alloc(be, &y);
    if (rc == 0)
      rc = step_forward(tp, s, &y);
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
