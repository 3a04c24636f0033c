/* Training forward and backward of the UNet's convolutional blocks: ResnetBlock2D and the
 * Downsample2D / Upsample2D samplers (the inference forwards are in unet_blocks.c). */
#include "unet_blocks_train.h"

#include "../../kernels/error.h"

/* The ops of resnet_compute (unet_blocks.c; the VAE's resnet_forward in vae.c without a time
 * embedding) with rec's tensors allocated; scratch above them. */
static int resnet_forward_rec(sd_backend *be, const sd_unet_resnet *r, const sd_tensor *x,
                              const sd_tensor *temb_act, sd_tensor *y, sd_unet_resnet_rec *rec) {
  SD_TRY(sd_op_group_norm(be, x, r->norm1_w, r->norm1_b, r->groups, r->eps, true, &rec->normed1));
  SD_TRY(sd_op_conv2d(be, &rec->normed1, r->conv1_w, r->conv1_b, 1, 1, &rec->hidden));
  if (r->time_emb_proj_w) {
    sd_tensor temb_proj = sd_tensor_2d(be->ops->act_dtype, x->shape[0], r->out_channels);
    SD_TRY(sd_tensor_alloc(be, &temb_proj));
    SD_TRY(sd_op_linear(be, temb_act, r->time_emb_proj_w, r->time_emb_proj_b, SD_ACT_NONE,
                        &temb_proj));
    SD_TRY(sd_op_add_channel_bias(be, &rec->hidden, &temb_proj, &rec->hidden));
  }
  SD_TRY(sd_op_group_norm(be, &rec->hidden, r->norm2_w, r->norm2_b, r->groups, r->eps, true,
                          &rec->normed2));
  SD_TRY(sd_op_conv2d(be, &rec->normed2, r->conv2_w, r->conv2_b, 1, 1, y));
  if (!r->shortcut_w)
    return sd_op_add(be, x, y, y);
  sd_tensor residual = *y; /* (B, Cout, H, W) */
  SD_TRY(sd_tensor_alloc(be, &residual));
  SD_TRY(sd_op_conv2d(be, x, r->shortcut_w, r->shortcut_b, 1, 0, &residual));
  return sd_op_add(be, &residual, y, y);
}

int sd_unet_resnet_forward_rec(sd_backend *be, const sd_unet_resnet *r, const sd_tensor *x,
                               const sd_tensor *temb_act, sd_tensor *y, sd_unet_resnet_rec *rec) {
  if (x->ndim != 4 || x->shape[1] != r->in_channels)
    return SD_ERROR("resnet: input has %lld channels, expected %d", (long long)x->shape[1],
                    r->in_channels);
  if (!r->time_emb_proj_w != !temb_act)
    return SD_ERROR("resnet: a time embedding is needed exactly when the block has time_emb_proj");
  int64_t b = x->shape[0], h = x->shape[2], w = x->shape[3];
  sd_dtype dt = be->ops->act_dtype;
  rec->normed1 = sd_tensor_4d(dt, b, r->in_channels, h, w);
  rec->hidden = sd_tensor_4d(dt, b, r->out_channels, h, w);
  rec->normed2 = rec->hidden;
  SD_TRY(sd_tensor_alloc(be, &rec->normed1));
  SD_TRY(sd_tensor_alloc(be, &rec->hidden));
  SD_TRY(sd_tensor_alloc(be, &rec->normed2));
  sd_arena_mark mark = sd_arena_get_mark(be);
  int rc = resnet_forward_rec(be, r, x, temb_act, y, rec);
  sd_arena_release(be, mark);
  return rc;
}

/* y = conv2(silu(norm2(conv1(silu(norm1(x))) + time_emb_proj(temb_act)))) + shortcut(x) */
static int resnet_backward(sd_backend *be, const sd_unet_resnet *r, const sd_tensor *x,
                           const sd_tensor *temb_act, const sd_unet_resnet_rec *rec,
                           const sd_tensor *dy, sd_tensor *dx, sd_tensor *dtemb_act, sd_grads *g) {
  sd_tensor dhidden = rec->hidden;   /* (B, Cout, H, W) */
  sd_tensor dnormed2 = rec->normed2; /* (B, Cout, H, W) */
  sd_tensor dnormed1 = rec->normed1; /* (B, Cin, H, W) */
  SD_TRY(sd_tensor_alloc(be, &dhidden));
  SD_TRY(sd_tensor_alloc(be, &dnormed2));
  SD_TRY(sd_tensor_alloc(be, &dnormed1));

  SD_TRY(sd_op_conv2d_backward(be, &rec->normed2, r->conv2_w, dy, 1, 1, &dnormed2,
                               sd_grads_of(g, r->conv2_w), sd_grads_of(g, r->conv2_b)));
  SD_TRY(sd_op_group_norm_backward(be, &rec->hidden, r->norm2_w, r->norm2_b, &dnormed2, r->groups,
                                   r->eps, true, &dhidden, sd_grads_of(g, r->norm2_w),
                                   sd_grads_of(g, r->norm2_b)));
  if (r->time_emb_proj_w) {
    sd_tensor dtemb_proj = sd_tensor_2d(be->ops->act_dtype, x->shape[0], r->out_channels);
    sd_tensor dtemb = *dtemb_act; /* (B, T) */
    SD_TRY(sd_tensor_alloc(be, &dtemb_proj));
    SD_TRY(sd_tensor_alloc(be, &dtemb));
    SD_TRY(sd_op_add_channel_bias_backward(be, &dhidden, &dtemb_proj));
    SD_TRY(sd_op_linear_backward(be, temb_act, r->time_emb_proj_w, &dtemb_proj, &dtemb,
                                 sd_grads_of(g, r->time_emb_proj_w),
                                 sd_grads_of(g, r->time_emb_proj_b)));
    SD_TRY(sd_op_add(be, dtemb_act, &dtemb, dtemb_act));
  }
  SD_TRY(sd_op_conv2d_backward(be, &rec->normed1, r->conv1_w, &dhidden, 1, 1, &dnormed1,
                               sd_grads_of(g, r->conv1_w), sd_grads_of(g, r->conv1_b)));
  SD_TRY(sd_op_group_norm_backward(be, x, r->norm1_w, r->norm1_b, &dnormed1, r->groups, r->eps,
                                   true, dx, sd_grads_of(g, r->norm1_w),
                                   sd_grads_of(g, r->norm1_b)));
  if (!r->shortcut_w)
    return sd_op_add(be, dx, dy, dx);
  sd_tensor dshort = *dx; /* (B, Cin, H, W) */
  SD_TRY(sd_tensor_alloc(be, &dshort));
  SD_TRY(sd_op_conv2d_backward(be, x, r->shortcut_w, dy, 1, 0, &dshort,
                               sd_grads_of(g, r->shortcut_w), sd_grads_of(g, r->shortcut_b)));
  return sd_op_add(be, dx, &dshort, dx);
}

int sd_unet_resnet_backward(sd_backend *be, const sd_unet_resnet *r, const sd_tensor *x,
                            const sd_tensor *temb_act, const sd_unet_resnet_rec *rec,
                            const sd_tensor *dy, sd_tensor *dx, sd_tensor *dtemb_act,
                            sd_grads *grads) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int rc = resnet_backward(be, r, x, temb_act, rec, dy, dx, dtemb_act, grads);
  sd_arena_release(be, mark);
  return rc;
}

int sd_unet_downsample_backward(sd_backend *be, const sd_unet_sampler *s, const sd_tensor *x,
                                const sd_tensor *dy, sd_tensor *dx, sd_grads *grads) {
  return sd_op_conv2d_backward(be, x, s->conv_w, dy, 2, 1, dx, sd_grads_of(grads, s->conv_w),
                               sd_grads_of(grads, s->conv_b));
}

int sd_unet_upsample_forward_rec(sd_backend *be, const sd_unet_sampler *s, const sd_tensor *x,
                                 sd_tensor *y, sd_tensor *up) {
  if (y->shape[2] != 2 * x->shape[2] || y->shape[3] != 2 * x->shape[3])
    return SD_ERROR("upsample: training needs exactly 2x (%lld x %lld -> %lld x %lld)",
                    (long long)x->shape[2], (long long)x->shape[3], (long long)y->shape[2],
                    (long long)y->shape[3]);
  *up = *y;
  SD_TRY(sd_tensor_alloc(be, up));
  SD_TRY(sd_op_upsample_nearest(be, x, up));
  return sd_op_conv2d(be, up, s->conv_w, s->conv_b, 1, 1, y);
}

int sd_unet_upsample_backward(sd_backend *be, const sd_unet_sampler *s, const sd_tensor *up,
                              const sd_tensor *dy, sd_tensor *dx, sd_grads *grads) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor dup = *up; /* (B, C, 2H, 2W) */
  int rc = sd_tensor_alloc(be, &dup);
  if (rc == 0)
    rc = sd_op_conv2d_backward(be, up, s->conv_w, dy, 1, 1, &dup, sd_grads_of(grads, s->conv_w),
                               sd_grads_of(grads, s->conv_b));
  if (rc == 0)
    rc = sd_op_upsample_nearest_backward(be, &dup, dx);
  sd_arena_release(be, mark);
  return rc;
}
