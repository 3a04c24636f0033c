/* The VAE's training forwards (vae_train.h): the decoder's and the encoder's ops in the order of
 * sd_vae_decode and sd_vae_encode (vae.c), recorded as a chain of steps (vae_tape.h) that
 * vae_backward.c walks back. */
#include "vae_tape.h"

#include "../../kernels/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Room for one more step and its output value. */
static int reserve(sd_vae_tape *tp) {
  if (tp->num_steps < tp->capacity)
    return 0;
  int next = tp->capacity ? 2 * tp->capacity : 64;
  vae_step *steps = realloc(tp->steps, (size_t)next * sizeof *steps);
  if (!steps)
    return SD_ERROR("vae tape: out of memory for %d steps", next);
  tp->steps = steps;
  sd_tensor *values = realloc(tp->values, (size_t)(next + 1) * sizeof *values);
  if (!values)
    return SD_ERROR("vae tape: out of memory for %d values", next + 1);
  tp->values = values;
  tp->capacity = next;
  return 0;
}

/* y (B, C, H, W) = x + to_out(attention(q, k, v)) over the tokens of GroupNorm(x), as vae.c's
 * attention_forward; GroupNorm's output goes through y's memory (the backward needs only x and
 * the tokens). */
static int attention_forward_rec(sd_backend *be, const vae_attention *a, int groups,
                                 const sd_tensor *x, sd_tensor *y, vae_attention_rec *rec) {
  const int64_t b = x->shape[0], c = a->channels, hw = x->shape[2] * x->shape[3];
  const int64_t chw_shape[3] = {b, c, hw};
  rec->tokens = sd_tensor_3d(be->ops->act_dtype, b, hw, c); /* (B, HW, C) */
  SD_TRY(sd_tensor_alloc(be, &rec->tokens));
  SD_TRY(sd_unet_attention_rec_alloc(be, b, hw, hw, c, &rec->proj));
  sd_tensor y_chw; /* (B, C, HW) view of y */
  SD_TRY(sd_tensor_reshape(y, 3, chw_shape, &y_chw));

  const sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor out = rec->tokens; /* (B, HW, C) scratch: to_out's output */
  int rc = sd_tensor_alloc(be, &out);
  if (rc == 0)
    rc = sd_op_group_norm(be, x, a->norm_w, a->norm_b, groups, VAE_NORM_EPS, false, y);
  if (rc == 0)
    rc = sd_op_transpose(be, &y_chw, &rec->tokens);
  if (rc == 0)
    rc = sd_unet_attention_forward_rec(be, &a->proj, &rec->tokens, &rec->tokens,
                                       sd_vae_attention_scale(a), &rec->proj, &out);
  if (rc == 0)
    rc = sd_op_transpose(be, &out, &y_chw);
  if (rc == 0)
    rc = sd_op_add(be, y, x, y);
  sd_arena_release(be, mark);
  return rc;
}

/* Runs step s on x into y, filling its record. */
static int step_forward(sd_vae_tape *tp, vae_step *s, const sd_tensor *x, sd_tensor *y) {
  sd_backend *be = tp->be;
  const int groups = tp->m->cfg.norm_num_groups;
  switch (s->kind) {
  case VAE_STEP_CONV:
    return sd_op_conv2d(be, x, s->w, s->b, s->stride, s->pad, y);
  case VAE_STEP_PAD:
    return sd_op_pad2d(be, x, 0, 0, 0.0f, y);
  case VAE_STEP_UPSAMPLE:
    return sd_op_upsample_nearest(be, x, y);
  case VAE_STEP_NORM_SILU:
    return sd_op_group_norm(be, x, s->w, s->b, groups, VAE_NORM_EPS, true, y);
  case VAE_STEP_RESNET:
    return sd_unet_resnet_forward_rec(be, s->resnet, x, NULL, y, &s->rec.resnet);
  case VAE_STEP_ATTENTION:
    return attention_forward_rec(be, s->attn, groups, x, y, &s->rec.attention);
  }
  return SD_ERROR("vae tape: step kind %d", (int)s->kind);
}

/* Appends step *proto named by the format, runs it on the last value into a new value of
 * (C, H, W) (the caller's `given` tensor when not NULL). */
static int add_step(sd_vae_tape *tp, const vae_step *proto, int64_t c, int64_t h, int64_t w,
                    const sd_tensor *given, const char *fmt, ...) {
  SD_TRY(reserve(tp));
  vae_step *s = &tp->steps[tp->num_steps];
  *s = *proto;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->name, sizeof s->name, fmt, ap);
  va_end(ap);
  const sd_tensor *x = &tp->values[tp->num_steps];
  sd_tensor *y = &tp->values[tp->num_steps + 1];
  if (given) {
    *y = *given;
  } else {
    *y = sd_tensor_4d(tp->be->ops->act_dtype, x->shape[0], c, h, w);
    SD_TRY(sd_tensor_alloc(tp->be, y));
  }
  tp->num_steps++;
  if (step_forward(tp, s, x, y) < 0)
    return sd_error_context("%s", s->name);
  return 0;
}

static const sd_tensor *last_value(const sd_vae_tape *tp) {
  return &tp->values[tp->num_steps];
}

/* A convolution of the last value with w (K, C, kh, kw). */
static int add_conv(sd_vae_tape *tp, const sd_tensor *w, const sd_tensor *b, int stride, int pad,
                    const sd_tensor *given, const char *name) {
  const sd_tensor *x = last_value(tp);
  const int64_t kh = w->shape[2], kw = w->shape[3];
  const int64_t ho = (x->shape[2] + 2 * pad - kh) / stride + 1;
  const int64_t wo = (x->shape[3] + 2 * pad - kw) / stride + 1;
  const vae_step proto = {.kind = VAE_STEP_CONV, .w = w, .b = b, .stride = stride, .pad = pad};
  return add_step(tp, &proto, w->shape[0], ho, wo, given, "%s", name);
}

static int add_resnet(sd_vae_tape *tp, const vae_resnet *r, const char *prefix, int index) {
  const sd_tensor *x = last_value(tp);
  const vae_step proto = {.kind = VAE_STEP_RESNET, .resnet = r};
  return add_step(tp, &proto, r->out_channels, x->shape[2], x->shape[3], NULL, "%sresnets.%d",
                  prefix, index);
}

static int add_mid_block(sd_vae_tape *tp, const vae_mid_block *mid, const char *prefix) {
  SD_TRY(add_resnet(tp, &mid->resnets[0], prefix, 0));
  if (mid->has_attention) {
    const sd_tensor *x = last_value(tp);
    const vae_step proto = {.kind = VAE_STEP_ATTENTION, .attn = &mid->attention};
    SD_TRY(add_step(tp, &proto, x->shape[1], x->shape[2], x->shape[3], NULL, "%sattentions.0",
                    prefix));
  }
  return add_resnet(tp, &mid->resnets[1], prefix, 1);
}

static int add_norm_silu(sd_vae_tape *tp, const sd_tensor *gamma, const sd_tensor *beta,
                         const char *name) {
  const sd_tensor *x = last_value(tp);
  const vae_step proto = {.kind = VAE_STEP_NORM_SILU, .w = gamma, .b = beta};
  return add_step(tp, &proto, x->shape[1], x->shape[2], x->shape[3], NULL, "%s", name);
}

/* z -> post_quant_conv, conv_in, mid block, up blocks, conv_norm_out + SiLU, conv_out -> image */
static int decoder_steps(sd_vae_tape *tp, sd_tensor *image) {
  const sd_vae *m = tp->m;
  const vae_decoder *dec = &m->decoder;
  char prefix[64];
  SD_TRY(add_conv(tp, m->post_quant_conv_w, m->post_quant_conv_b, 1, 0, NULL, "post_quant_conv"));
  SD_TRY(add_conv(tp, dec->conv_in_w, dec->conv_in_b, 1, 1, NULL, "decoder.conv_in"));
  SD_TRY(add_mid_block(tp, &dec->mid, "decoder.mid_block."));
  for (int i = 0; i < m->cfg.num_levels; i++) {
    const vae_up_block *up = &dec->up[i];
    snprintf(prefix, sizeof prefix, "decoder.up_blocks.%d.", i);
    for (int j = 0; j < up->num_resnets; j++)
      SD_TRY(add_resnet(tp, &up->resnets[j], prefix, j));
    if (!up->upsample_w)
      continue;
    const sd_tensor *x = last_value(tp);
    const vae_step proto = {.kind = VAE_STEP_UPSAMPLE};
    SD_TRY(add_step(tp, &proto, x->shape[1], 2 * x->shape[2], 2 * x->shape[3], NULL,
                    "%supsamplers.0", prefix));
    snprintf(prefix, sizeof prefix, "decoder.up_blocks.%d.upsamplers.0.conv", i);
    SD_TRY(add_conv(tp, up->upsample_w, up->upsample_b, 1, 1, NULL, prefix));
  }
  SD_TRY(add_norm_silu(tp, dec->norm_out_w, dec->norm_out_b, "decoder.conv_norm_out"));
  return add_conv(tp, dec->conv_out_w, dec->conv_out_b, 1, 1, image, "decoder.conv_out");
}

/* image -> conv_in, down blocks (resnets, zero pad (0, 1, 0, 1) + conv stride 2), mid block,
 * conv_norm_out + SiLU, conv_out, quant_conv -> moments */
static int encoder_steps(sd_vae_tape *tp, sd_tensor *moments) {
  const sd_vae *m = tp->m;
  const vae_encoder *enc = &m->encoder;
  char prefix[64];
  SD_TRY(add_conv(tp, enc->conv_in_w, enc->conv_in_b, 1, 1, NULL, "encoder.conv_in"));
  for (int i = 0; i < m->cfg.num_levels; i++) {
    const vae_down_block *down = &enc->down[i];
    snprintf(prefix, sizeof prefix, "encoder.down_blocks.%d.", i);
    for (int j = 0; j < down->num_resnets; j++)
      SD_TRY(add_resnet(tp, &down->resnets[j], prefix, j));
    if (!down->downsample_w)
      continue;
    const sd_tensor *x = last_value(tp);
    const vae_step proto = {.kind = VAE_STEP_PAD};
    SD_TRY(add_step(tp, &proto, x->shape[1], x->shape[2] + 1, x->shape[3] + 1, NULL,
                    "%sdownsamplers.0", prefix));
    snprintf(prefix, sizeof prefix, "encoder.down_blocks.%d.downsamplers.0.conv", i);
    SD_TRY(add_conv(tp, down->downsample_w, down->downsample_b, 2, 0, NULL, prefix));
  }
  SD_TRY(add_mid_block(tp, &enc->mid, "encoder.mid_block."));
  SD_TRY(add_norm_silu(tp, enc->norm_out_w, enc->norm_out_b, "encoder.conv_norm_out"));
  SD_TRY(add_conv(tp, enc->conv_out_w, enc->conv_out_b, 1, 1, NULL, "encoder.conv_out"));
  return add_conv(tp, m->quant_conv_w, m->quant_conv_b, 1, 0, moments, "quant_conv");
}

void sd_vae_tape_free(sd_vae_tape *tp) {
  if (!tp)
    return;
  sd_arena_release(tp->be, tp->base);
  free(tp->steps);
  free(tp->values);
  free(tp);
}

size_t sd_vae_tape_bytes(const sd_vae_tape *tp) {
  return tp->be->arena.used_bytes - tp->base.used_bytes;
}

static int forward_train(sd_vae *m, bool encoder, const sd_tensor *in, sd_tensor *out,
                         sd_vae_tape **tape) {
  *tape = NULL;
  sd_vae_tape *tp = calloc(1, sizeof *tp);
  if (!tp)
    return SD_ERROR("vae tape: out of memory");
  *tp = (sd_vae_tape){.m = m, .be = m->be, .base = sd_arena_get_mark(m->be), .encoder = encoder};
  int rc = reserve(tp);
  if (rc == 0) {
    tp->values[0] = *in;
    rc = encoder ? encoder_steps(tp, out) : decoder_steps(tp, out);
  }
  if (rc < 0) {
    sd_vae_tape_free(tp);
    return -1;
  }
  *tape = tp;
  return 0;
}

int sd_vae_decode_forward_train(sd_vae *model, const sd_tensor *z, sd_tensor *image,
                                sd_vae_tape **tape) {
  *tape = NULL;
  char zs[96];
  if (sd_vae_check_decode_shapes(model, z, image) < 0 ||
      forward_train(model, false, z, image, tape) < 0)
    return sd_error_context("vae decode (training) %s", sd_tensor_shape_str(z, zs, sizeof zs));
  return 0;
}

int sd_vae_encode_forward_train(sd_vae *model, const sd_tensor *image, sd_tensor *moments,
                                sd_vae_tape **tape) {
  *tape = NULL;
  char is[96];
  if (sd_vae_check_encode_shapes(model, image, moments) < 0 ||
      forward_train(model, true, image, moments, tape) < 0)
    return sd_error_context("vae encode (training) %s", sd_tensor_shape_str(image, is, sizeof is));
  return 0;
}
