/* The UNet's convolutional blocks: ResnetBlock2D with its time-embedding projection, and the
 * Downsample2D / Upsample2D samplers (diffusers resnet.py, downsampling.py, upsampling.py). */
#include "unet_blocks.h"

#include "../../kernels/error.h"

int sd_unet_weight(const sd_weights *w, const sd_tensor **out, const char *prefix,
                   const char *suffix, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  const int64_t shape[4] = {d0, d1, d2, d3};
  return sd_weights_get(w, out, ndim, shape, "%s%s", prefix, suffix);
}

int sd_unet_resnet_init(sd_unet_resnet *r, const sd_weights *w, const char *prefix, int in_channels,
                        int out_channels, int temb_channels, int groups, float eps) {
  int64_t ci = in_channels, co = out_channels;
  *r = (sd_unet_resnet){
      .in_channels = in_channels, .out_channels = out_channels, .groups = groups, .eps = eps};
  SD_TRY(sd_unet_weight(w, &r->norm1_w, prefix, "norm1.weight", 1, ci, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &r->norm1_b, prefix, "norm1.bias", 1, ci, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &r->conv1_w, prefix, "conv1.weight", 4, co, ci, 3, 3));
  SD_TRY(sd_unet_weight(w, &r->conv1_b, prefix, "conv1.bias", 1, co, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &r->time_emb_proj_w, prefix, "time_emb_proj.weight", 2, co,
                        temb_channels, 0, 0));
  SD_TRY(sd_unet_weight(w, &r->time_emb_proj_b, prefix, "time_emb_proj.bias", 1, co, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &r->norm2_w, prefix, "norm2.weight", 1, co, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &r->norm2_b, prefix, "norm2.bias", 1, co, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &r->conv2_w, prefix, "conv2.weight", 4, co, co, 3, 3));
  SD_TRY(sd_unet_weight(w, &r->conv2_b, prefix, "conv2.bias", 1, co, 0, 0, 0));
  if (in_channels != out_channels) {
    SD_TRY(sd_unet_weight(w, &r->shortcut_w, prefix, "conv_shortcut.weight", 4, co, ci, 1, 1));
    SD_TRY(sd_unet_weight(w, &r->shortcut_b, prefix, "conv_shortcut.bias", 1, co, 0, 0, 0));
  }
  return 0;
}

/* y = conv2(silu(norm2(conv1(silu(norm1(x))) + time_emb_proj(temb_act)))) + shortcut(x) */
static int resnet_compute(sd_backend *be, const sd_spatial *sp, const sd_unet_resnet *r,
                          const sd_tensor *x, const sd_tensor *temb_act, sd_tensor *y) {
  int64_t b = x->shape[0], h = x->shape[2], w = x->shape[3];
  sd_dtype dt = be->ops->act_dtype;
  sd_tensor normed = sd_tensor_4d(dt, b, r->in_channels, h, w);    /* (B, Cin, H, W) */
  sd_tensor hidden = sd_tensor_4d(dt, b, r->out_channels, h, w);   /* (B, Cout, H, W) */
  sd_tensor temb_proj = sd_tensor_2d(dt, b, r->out_channels);      /* (B, Cout) */
  sd_tensor residual = sd_tensor_4d(dt, b, r->out_channels, h, w); /* (B, Cout, H, W) */
  SD_TRY(sd_tensor_alloc(be, &normed));
  SD_TRY(sd_tensor_alloc(be, &hidden));
  SD_TRY(sd_tensor_alloc(be, &temb_proj));

  SD_TRY(
      sd_spatial_group_norm(be, sp, x, r->norm1_w, r->norm1_b, r->groups, r->eps, true, &normed));
  SD_TRY(sd_spatial_conv2d(be, sp, &normed, r->conv1_w, r->conv1_b, 1, 1, &hidden));
  SD_TRY(
      sd_op_linear(be, temb_act, r->time_emb_proj_w, r->time_emb_proj_b, SD_ACT_NONE, &temb_proj));
  SD_TRY(sd_op_add_channel_bias(be, &hidden, &temb_proj, &hidden));
  SD_TRY(sd_spatial_group_norm(be, sp, &hidden, r->norm2_w, r->norm2_b, r->groups, r->eps, true,
                               &hidden));
  SD_TRY(sd_spatial_conv2d(be, sp, &hidden, r->conv2_w, r->conv2_b, 1, 1, y));
  if (!r->shortcut_w)
    return sd_op_add(be, x, y, y);
  SD_TRY(sd_tensor_alloc(be, &residual));
  SD_TRY(sd_op_conv2d(be, x, r->shortcut_w, r->shortcut_b, 1, 0, &residual));
  return sd_op_add(be, &residual, y, y);
}

int sd_unet_resnet_forward(sd_backend *be, const sd_spatial *sp, const sd_unet_resnet *r,
                           const sd_tensor *x, const sd_tensor *temb_act, sd_tensor *y) {
  if (x->ndim != 4 || x->shape[1] != r->in_channels)
    return SD_ERROR("resnet: input has %lld channels, expected %d", (long long)x->shape[1],
                    r->in_channels);
  sd_arena_mark mark = sd_arena_get_mark(be);
  int rc = resnet_compute(be, sp, r, x, temb_act, y);
  sd_arena_release(be, mark);
  return rc;
}

int sd_unet_sampler_init(sd_unet_sampler *s, const sd_weights *w, const char *prefix,
                         int channels) {
  SD_TRY(sd_unet_weight(w, &s->conv_w, prefix, "conv.weight", 4, channels, channels, 3, 3));
  return sd_unet_weight(w, &s->conv_b, prefix, "conv.bias", 1, channels, 0, 0, 0);
}

int sd_unet_downsample_forward(sd_backend *be, const sd_spatial *sp, const sd_unet_sampler *s,
                               const sd_tensor *x, sd_tensor *y) {
  return sd_spatial_conv2d(be, sp, x, s->conv_w, s->conv_b, 2, 1, y);
}

int sd_unet_upsample_forward(sd_backend *be, const sd_spatial *sp, const sd_unet_sampler *s,
                             const sd_tensor *x, sd_tensor *y) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor up = *y; /* (B, C, Ho, Wo) */
  int rc = sd_tensor_alloc(be, &up);
  if (rc == 0)
    rc = sd_op_upsample_nearest(be, x, &up);
  if (rc == 0)
    rc = sd_spatial_conv2d(be, sp, &up, s->conv_w, s->conv_b, 1, 1, y);
  sd_arena_release(be, mark);
  return rc;
}
