/* The UNet's training forward (unet_train.h): runs the blocks of sd_unet_forward in its order
 * and records the tape (unet_tape.h) that sd_unet_backward (unet_backward.c) walks back. */
#include "unet_tape.h"

#include "../../kernels/error.h"

#include <stdlib.h>

/* Room for one more value and one more step. */
static int reserve(sd_unet_tape *tp) {
  if (tp->num_values == tp->values_capacity) {
    int next = tp->values_capacity ? 2 * tp->values_capacity : 64;
    tape_value *grown = realloc(tp->values, (size_t)next * sizeof *grown);
    if (!grown)
      return SD_ERROR("unet tape: out of memory for %d values", next);
    tp->values = grown;
    tp->values_capacity = next;
  }
  if (tp->num_steps == tp->steps_capacity) {
    int next = tp->steps_capacity ? 2 * tp->steps_capacity : 64;
    tape_step *grown = realloc(tp->steps, (size_t)next * sizeof *grown);
    if (!grown)
      return SD_ERROR("unet tape: out of memory for %d steps", next);
    tp->steps = grown;
    tp->steps_capacity = next;
  }
  return 0;
}

/* A new value (B, c, h, w): the caller's tensor when given, else an arena tensor. */
static int new_value(sd_unet_tape *tp, int64_t c, int64_t h, int64_t w, const sd_tensor *given,
                     int *id) {
  SD_TRY(reserve(tp));
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

int sd_unet_tape_step_forward(sd_unet_tape *tp, tape_step *s, sd_tensor *y) {
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

void sd_unet_tape_step_drop_record(tape_step *s) {
  if (s->kind == STEP_TRANSFORMER)
    sd_unet_transformer_rec_free(&s->rec.transformer);
  s->recorded = false;
}

bool sd_unet_tape_step_has_record(const tape_step *s) {
  return s->kind == STEP_RESNET || s->kind == STEP_TRANSFORMER || s->kind == STEP_UPSAMPLE ||
         s->kind == STEP_OUT;
}

/* Appends and runs a step reading in0 (and in1) into a new value of (c, h, w) (or `given`). */
static int add_step(sd_unet_tape *tp, step_kind kind, const void *block, int in0, int in1,
                    int64_t c, int64_t h, int64_t w, const sd_tensor *given, int *out) {
  SD_TRY(reserve(tp));
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
  int rc = sd_unet_tape_step_forward(tp, s, &tp->values[id].t);
  if (tp->mode == SD_UNET_TAPE_CHECKPOINT) {
    sd_arena_release(tp->be, mark);
    sd_unet_tape_step_drop_record(s);
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
  SD_TRY(sd_unet_check_shapes(m, sample, context, out));
  int64_t multiple = (int64_t)1 << (cfg->num_levels - 1);
  if (sample->shape[2] % multiple || sample->shape[3] % multiple)
    return SD_ERROR("unet training: latent %lld x %lld is not a multiple of %lld (the "
                    "upsamplers' backward is exactly 2x)",
                    (long long)sample->shape[2], (long long)sample->shape[3], (long long)multiple);
  return 0;
}

void sd_unet_tape_free(sd_unet_tape *tp) {
  if (!tp)
    return;
  for (int i = 0; i < tp->num_steps; i++)
    sd_unet_tape_step_drop_record(&tp->steps[i]);
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
