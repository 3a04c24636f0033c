/* The VAE's backwards (vae_train.h): the tape's steps (vae_tape.h) walked back from the output's
 * gradient to the input's, each step's parameter gradients added into the store. The running
 * gradient alternates between two arena buffers of the largest value. */
#include "vae_tape.h"

#include "../../kernels/error.h"

/* Of attention_forward_rec (vae_forward_train.c): dy (B, C, H, W) -> dx (B, C, H, W). */
static int attention_backward(sd_backend *be, const vae_attention *a, int groups,
                              const sd_tensor *x, const vae_attention_rec *rec, const sd_tensor *dy,
                              sd_tensor *dx, sd_grads *g) {
  const int64_t b = x->shape[0], c = a->channels, hw = x->shape[2] * x->shape[3];
  const int64_t chw_shape[3] = {b, c, hw};
  sd_tensor dout = rec->tokens;    /* (B, HW, C) gradient of to_out's output */
  sd_tensor dtokens = rec->tokens; /* (B, HW, C) */
  sd_tensor dnormed = *x;          /* (B, C, H, W) */
  sd_tensor dy_chw, dnormed_chw;   /* (B, C, HW) views */
  SD_TRY(sd_tensor_alloc(be, &dout));
  SD_TRY(sd_tensor_alloc(be, &dtokens));
  SD_TRY(sd_tensor_alloc(be, &dnormed));
  SD_TRY(sd_tensor_reshape(dy, 3, chw_shape, &dy_chw));
  SD_TRY(sd_tensor_reshape(&dnormed, 3, chw_shape, &dnormed_chw));

  SD_TRY(sd_op_transpose_backward(be, &dy_chw, &dout));
  SD_TRY(sd_unet_attention_backward(be, &a->proj, &rec->tokens, &rec->tokens,
                                    sd_vae_attention_scale(a), &rec->proj, &dout, &dtokens, NULL,
                                    g));
  SD_TRY(sd_op_transpose_backward(be, &dtokens, &dnormed_chw));
  SD_TRY(sd_op_group_norm_backward(be, x, a->norm_w, a->norm_b, &dnormed, groups, VAE_NORM_EPS,
                                   false, dx, sd_grads_of(g, a->norm_w),
                                   sd_grads_of(g, a->norm_b)));
  return sd_op_add(be, dx, dy, dx);
}

/* dy of step s's output -> dx of its input x (NULL: not wanted), scratch released. */
static int step_backward(sd_vae_tape *tp, const vae_step *s, const sd_tensor *x,
                         const sd_tensor *dy, sd_tensor *dx, sd_grads *g) {
  sd_backend *be = tp->be;
  const int groups = tp->m->cfg.norm_num_groups;
  if (s->kind == VAE_STEP_CONV)
    return sd_op_conv2d_backward(be, x, s->w, dy, s->stride, s->pad, dx, sd_grads_of(g, s->w),
                                 sd_grads_of(g, s->b));
  const sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor unwanted = *x; /* (B, C, H, W) where the caller wants no dx */
  int rc = 0;
  if (!dx) {
    rc = sd_tensor_alloc(be, &unwanted);
    dx = &unwanted;
  }
  if (rc == 0) {
    switch (s->kind) {
    case VAE_STEP_PAD:
      rc = sd_op_pad2d_backward(be, dy, 0, 0, dx);
      break;
    case VAE_STEP_UPSAMPLE:
      rc = sd_op_upsample_nearest_backward(be, dy, dx);
      break;
    case VAE_STEP_NORM_SILU:
      rc = sd_op_group_norm_backward(be, x, s->w, s->b, dy, groups, VAE_NORM_EPS, true, dx,
                                     sd_grads_of(g, s->w), sd_grads_of(g, s->b));
      break;
    case VAE_STEP_RESNET:
      rc = sd_unet_resnet_backward(be, s->resnet, x, NULL, &s->rec.resnet, dy, dx, NULL, g);
      break;
    case VAE_STEP_ATTENTION:
      rc = attention_backward(be, s->attn, groups, x, &s->rec.attention, dy, dx, g);
      break;
    default:
      rc = SD_ERROR("vae tape: step kind %d", (int)s->kind);
    }
  }
  sd_arena_release(be, mark);
  return rc;
}

/* A (B, C, H, W) header like `shape` on memory `data`. */
static sd_tensor on(const sd_tensor *shape, void *data) {
  sd_tensor t = *shape;
  t.data = data;
  return t;
}

static int backward(sd_vae_tape *tp, const sd_tensor *dout, sd_grads *g, sd_tensor *din) {
  sd_backend *be = tp->be;
  int64_t cap = 0;
  for (int i = 1; i < tp->num_steps; i++)
    if (sd_tensor_numel(&tp->values[i]) > cap)
      cap = sd_tensor_numel(&tp->values[i]);
  sd_tensor buf[2] = {sd_tensor_1d(be->ops->act_dtype, cap), sd_tensor_1d(be->ops->act_dtype, cap)};
  SD_TRY(sd_tensor_alloc(be, &buf[0]));
  SD_TRY(sd_tensor_alloc(be, &buf[1]));
  sd_tensor dy = *dout, dx;
  for (int i = tp->num_steps - 1; i >= 0; i--) {
    const vae_step *s = &tp->steps[i];
    const sd_tensor *x = &tp->values[i];
    dx = i ? on(x, buf[i & 1].data) : (din ? *din : (sd_tensor){0});
    if (step_backward(tp, s, x, &dy, i || din ? &dx : NULL, g) < 0)
      return sd_error_context("%s (backward)", s->name);
    dy = dx;
  }
  return 0;
}

static int check_and_run(sd_vae_tape *tp, bool encoder, const sd_tensor *dout, sd_grads *grads,
                         sd_tensor *din) {
  const char *what = encoder ? "vae encode backward" : "vae decode backward";
  if (tp->encoder != encoder)
    return SD_ERROR("%s: the tape was recorded by the %s", what,
                    tp->encoder ? "encoder" : "decoder");
  const sd_tensor *out = &tp->values[tp->num_steps], *in = &tp->values[0];
  char a[96], b[96];
  if (!sd_tensor_same_shape(dout, out))
    return SD_ERROR("%s: the output's gradient is %s, the output %s", what,
                    sd_tensor_shape_str(dout, a, sizeof a), sd_tensor_shape_str(out, b, sizeof b));
  if (din && !sd_tensor_same_shape(din, in))
    return SD_ERROR("%s: the input's gradient is %s, the input %s", what,
                    sd_tensor_shape_str(din, a, sizeof a), sd_tensor_shape_str(in, b, sizeof b));
  const sd_arena_mark mark = sd_arena_get_mark(tp->be);
  int rc = backward(tp, dout, grads, din);
  sd_arena_release(tp->be, mark);
  return rc < 0 ? sd_error_context("%s", what) : 0;
}

int sd_vae_decode_backward(sd_vae_tape *tape, const sd_tensor *dimage, sd_grads *grads,
                           sd_tensor *dz) {
  return check_and_run(tape, false, dimage, grads, dz);
}

int sd_vae_encode_backward(sd_vae_tape *tape, const sd_tensor *dmoments, sd_grads *grads,
                           sd_tensor *dimage) {
  return check_and_run(tape, true, dmoments, grads, dimage);
}
