/* diffusers AutoencoderKL decoder on the op interface: post_quant_conv (1x1), conv_in, mid block
 * (resnet, single-head spatial self-attention, resnet), up blocks (layers_per_block + 1 resnets,
 * then nearest 2x + conv 3x3 on all but the last), GroupNorm + SiLU, conv_out. Resnets and the
 * mid block are the encoder's building blocks too, so an encoder (img2img) can sit beside the
 * decoder in struct sd_vae. */
#include "vae_internal.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- weights ---- */

static int get_vec(const sd_weights *w, const sd_tensor **out, int64_t n, const char *prefix,
                   const char *name) {
  const int64_t shape[1] = {n};
  return sd_weights_get(w, out, 1, shape, "%s%s", prefix, name);
}

static int get_norm(const sd_weights *w, const sd_tensor **gamma, const sd_tensor **beta, int64_t c,
                    const char *prefix, const char *name) {
  char key[256];
  snprintf(key, sizeof key, "%s.weight", name);
  SD_TRY(get_vec(w, gamma, c, prefix, key));
  snprintf(key, sizeof key, "%s.bias", name);
  return get_vec(w, beta, c, prefix, key);
}

static int get_linear(const sd_weights *w, const sd_tensor **weight, const sd_tensor **bias,
                      int64_t n, int64_t k, const char *prefix, const char *name) {
  const int64_t shape[2] = {n, k};
  SD_TRY(sd_weights_get(w, weight, 2, shape, "%s%s.weight", prefix, name));
  return sd_weights_get(w, bias, 1, &n, "%s%s.bias", prefix, name);
}

static int get_conv(const sd_weights *w, const sd_tensor **weight, const sd_tensor **bias,
                    int64_t out_c, int64_t in_c, int64_t kernel, const char *prefix,
                    const char *name) {
  const int64_t shape[4] = {out_c, in_c, kernel, kernel};
  SD_TRY(sd_weights_get(w, weight, 4, shape, "%s%s.weight", prefix, name));
  return sd_weights_get(w, bias, 1, &out_c, "%s%s.bias", prefix, name);
}

static int resolve_resnet(const sd_weights *w, const char *prefix, int in_c, int out_c, int groups,
                          vae_resnet *r) {
  *r = (vae_resnet){
      .in_channels = in_c, .out_channels = out_c, .groups = groups, .eps = VAE_NORM_EPS};
  SD_TRY(get_norm(w, &r->norm1_w, &r->norm1_b, in_c, prefix, "norm1"));
  SD_TRY(get_conv(w, &r->conv1_w, &r->conv1_b, out_c, in_c, 3, prefix, "conv1"));
  SD_TRY(get_norm(w, &r->norm2_w, &r->norm2_b, out_c, prefix, "norm2"));
  SD_TRY(get_conv(w, &r->conv2_w, &r->conv2_b, out_c, out_c, 3, prefix, "conv2"));
  if (in_c != out_c)
    SD_TRY(get_conv(w, &r->shortcut_w, &r->shortcut_b, out_c, in_c, 1, prefix, "conv_shortcut"));
  return 0;
}

static int resolve_attention(const sd_weights *w, const char *prefix, int c, vae_attention *a) {
  a->channels = c;
  SD_TRY(get_norm(w, &a->norm_w, &a->norm_b, c, prefix, "group_norm"));
  a->proj = (sd_unet_attention){.heads = 1};
  SD_TRY(get_linear(w, &a->proj.to_q, &a->proj.to_q_b, c, c, prefix, "to_q"));
  SD_TRY(get_linear(w, &a->proj.to_k, &a->proj.to_k_b, c, c, prefix, "to_k"));
  SD_TRY(get_linear(w, &a->proj.to_v, &a->proj.to_v_b, c, c, prefix, "to_v"));
  return get_linear(w, &a->proj.to_out_w, &a->proj.to_out_b, c, c, prefix, "to_out.0");
}

static int resolve_mid_block(const sd_weights *w, const char *prefix, int c, int groups,
                             bool attention, vae_mid_block *mid) {
  char p[256];
  for (int i = 0; i < 2; i++) {
    snprintf(p, sizeof p, "%sresnets.%d.", prefix, i);
    SD_TRY(resolve_resnet(w, p, c, c, groups, &mid->resnets[i]));
  }
  mid->has_attention = attention;
  if (!attention)
    return 0;
  snprintf(p, sizeof p, "%sattentions.0.", prefix);
  return resolve_attention(w, p, c, &mid->attention);
}

static int resolve_decoder(const sd_weights *w, const sd_vae_config *cfg, vae_decoder *dec) {
  const int levels = cfg->num_levels, top = cfg->block_out_channels[levels - 1];
  SD_TRY(get_conv(w, &dec->conv_in_w, &dec->conv_in_b, top, cfg->latent_channels, 3, "decoder.",
                  "conv_in"));
  SD_TRY(resolve_mid_block(w, "decoder.mid_block.", top, cfg->norm_num_groups,
                           cfg->mid_block_add_attention, &dec->mid));
  int in_c = top;
  char p[256];
  for (int i = 0; i < levels; i++) {
    vae_up_block *up = &dec->up[i];
    const int out_c = cfg->block_out_channels[levels - 1 - i];
    up->num_resnets = cfg->layers_per_block + 1;
    up->resnets = calloc((size_t)up->num_resnets, sizeof *up->resnets);
    if (!up->resnets)
      return SD_ERROR("out of host memory");
    for (int j = 0; j < up->num_resnets; j++) {
      snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d.", i, j);
      SD_TRY(resolve_resnet(w, p, j == 0 ? in_c : out_c, out_c, cfg->norm_num_groups,
                            &up->resnets[j]));
    }
    if (i < levels - 1) {
      snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.", i);
      SD_TRY(get_conv(w, &up->upsample_w, &up->upsample_b, out_c, out_c, 3, p, "conv"));
    }
    in_c = out_c;
  }
  const int bottom = cfg->block_out_channels[0];
  SD_TRY(get_norm(w, &dec->norm_out_w, &dec->norm_out_b, bottom, "decoder.", "conv_norm_out"));
  return get_conv(w, &dec->conv_out_w, &dec->conv_out_b, cfg->out_channels, bottom, 3, "decoder.",
                  "conv_out");
}

static int resolve_encoder(const sd_weights *w, const sd_vae_config *cfg, vae_encoder *enc) {
  const int levels = cfg->num_levels, top = cfg->block_out_channels[levels - 1];
  SD_TRY(get_conv(w, &enc->conv_in_w, &enc->conv_in_b, cfg->block_out_channels[0], cfg->in_channels,
                  3, "encoder.", "conv_in"));
  int in_c = cfg->block_out_channels[0];
  char p[256];
  for (int i = 0; i < levels; i++) {
    vae_down_block *down = &enc->down[i];
    const int out_c = cfg->block_out_channels[i];
    down->num_resnets = cfg->layers_per_block;
    down->resnets =
        calloc((size_t)(down->num_resnets ? down->num_resnets : 1), sizeof *down->resnets);
    if (!down->resnets)
      return SD_ERROR("out of host memory");
    for (int j = 0; j < down->num_resnets; j++) {
      snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d.", i, j);
      SD_TRY(resolve_resnet(w, p, j == 0 ? in_c : out_c, out_c, cfg->norm_num_groups,
                            &down->resnets[j]));
    }
    if (i < levels - 1) {
      snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.", i);
      SD_TRY(get_conv(w, &down->downsample_w, &down->downsample_b, out_c, out_c, 3, p, "conv"));
    }
    in_c = out_c;
  }
  SD_TRY(resolve_mid_block(w, "encoder.mid_block.", top, cfg->norm_num_groups,
                           cfg->mid_block_add_attention, &enc->mid));
  SD_TRY(get_norm(w, &enc->norm_out_w, &enc->norm_out_b, top, "encoder.", "conv_norm_out"));
  return get_conv(w, &enc->conv_out_w, &enc->conv_out_b, 2 * cfg->latent_channels, top, 3,
                  "encoder.", "conv_out");
}

static int check_config(const sd_vae_config *cfg) {
  if (cfg->num_levels < 1 || cfg->num_levels > SD_MAX_LEVELS)
    return SD_ERROR("config: %d levels (block_out_channels) outside 1..%d", cfg->num_levels,
                    SD_MAX_LEVELS);
  if (cfg->latent_channels < 1 || cfg->out_channels < 1 || cfg->layers_per_block < 0 ||
      cfg->norm_num_groups < 1)
    return SD_ERROR("config: latent_channels %d, out_channels %d, layers_per_block %d, "
                    "norm_num_groups %d out of range",
                    cfg->latent_channels, cfg->out_channels, cfg->layers_per_block,
                    cfg->norm_num_groups);
  for (int i = 0; i < cfg->num_levels; i++)
    if (cfg->block_out_channels[i] < 1 || cfg->block_out_channels[i] % cfg->norm_num_groups)
      return SD_ERROR("config: block_out_channels[%d] = %d does not split into %d groups", i,
                      cfg->block_out_channels[i], cfg->norm_num_groups);
  return 0;
}

int sd_vae_create(sd_backend *be, const sd_vae_config *cfg, const sd_weights *weights,
                  sd_vae **out) {
  *out = NULL;
  if (check_config(cfg) < 0)
    return sd_error_context("vae");
  sd_vae *model = calloc(1, sizeof *model);
  if (!model)
    return SD_ERROR("vae: out of host memory");
  model->be = be;
  model->cfg = *cfg;
  const int lc = cfg->latent_channels;
  if (get_conv(weights, &model->post_quant_conv_w, &model->post_quant_conv_b, lc, lc, 1, "",
               "post_quant_conv") < 0 ||
      resolve_decoder(weights, cfg, &model->decoder) < 0 ||
      get_conv(weights, &model->quant_conv_w, &model->quant_conv_b, 2 * lc, 2 * lc, 1, "",
               "quant_conv") < 0 ||
      resolve_encoder(weights, cfg, &model->encoder) < 0) {
    sd_vae_free(model);
    return sd_error_context("vae");
  }
  *out = model;
  return 0;
}

void sd_vae_free(sd_vae *model) {
  if (!model)
    return;
  for (int i = 0; i < SD_MAX_LEVELS; i++) {
    free(model->decoder.up[i].resnets);
    free(model->encoder.down[i].resnets);
  }
  free(model);
}

const sd_vae_config *sd_vae_get_config(const sd_vae *model) {
  return &model->cfg;
}

sd_backend *sd_vae_get_backend(const sd_vae *model) {
  return model->be;
}

/* ---- forward ---- */

float sd_vae_attention_scale(const vae_attention *a) {
  return 1.0f / sqrtf((float)a->channels);
}

/* A (B, C, H, W) header on memory of `like`. */
static sd_tensor view4(const sd_tensor *like, int64_t b, int64_t c, int64_t h, int64_t w) {
  sd_tensor t = sd_tensor_4d(like->dtype, b, c, h, w);
  t.data = like->data;
  return t;
}

/* y (B, Cout, H, W) = shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))), where x is
 * (B, Cin, H, W) and y must not alias x. */
static int resnet_forward(sd_backend *be, const sd_spatial *sp, const vae_resnet *r, int groups,
                          const sd_tensor *x, sd_tensor *y) {
  const int64_t b = x->shape[0], h = x->shape[2], w = x->shape[3];
  sd_tensor normed = sd_tensor_4d(be->ops->act_dtype, b, r->in_channels, h, w); /* (B, Cin, H, W) */
  sd_tensor mid = sd_tensor_4d(be->ops->act_dtype, b, r->out_channels, h, w); /* (B, Cout, H, W) */
  SD_TRY(sd_tensor_alloc(be, &normed));
  SD_TRY(sd_tensor_alloc(be, &mid));
  SD_TRY(sd_spatial_group_norm(be, sp, x, r->norm1_w, r->norm1_b, groups, VAE_NORM_EPS, true,
                               &normed));
  SD_TRY(sd_spatial_conv2d(be, sp, &normed, r->conv1_w, r->conv1_b, 1, 1, &mid));
  SD_TRY(sd_spatial_group_norm(be, sp, &mid, r->norm2_w, r->norm2_b, groups, VAE_NORM_EPS, true,
                               &mid));
  SD_TRY(sd_spatial_conv2d(be, sp, &mid, r->conv2_w, r->conv2_b, 1, 1, y));
  if (!r->shortcut_w)
    return sd_op_add(be, x, y, y);
  /* the shortcut (B, Cout, H, W) reuses `normed` (dead after conv1) when it fits */
  sd_tensor shortcut = view4(&normed, b, r->out_channels, h, w);
  if (r->out_channels > r->in_channels)
    SD_TRY(sd_tensor_alloc(be, &shortcut));
  SD_TRY(sd_op_conv2d(be, x, r->shortcut_w, r->shortcut_b, 1, 0, &shortcut));
  return sd_op_add(be, &shortcut, y, y);
}

/* y (B, C, H, W) = x + to_out(attention(to_q(n), to_k(n), to_v(n))) with
 * n = GroupNorm(x) as (B, H*W, C) tokens and one head of dim C; y must not alias x. */
static int attention_forward(sd_backend *be, const sd_spatial *sp, const vae_attention *a,
                             int groups, const sd_tensor *x, sd_tensor *y) {
  const int64_t b = x->shape[0], c = a->channels, hw = x->shape[2] * x->shape[3];
  const sd_dtype dt = be->ops->act_dtype;
  sd_tensor normed = sd_tensor_3d(dt, b, c, hw); /* (B, C, HW) */
  sd_tensor tokens = sd_tensor_3d(dt, b, hw, c); /* (B, HW, C) */
  sd_tensor q = tokens, k = tokens, v = tokens, o = tokens;
  SD_TRY(sd_tensor_alloc(be, &normed));
  SD_TRY(sd_tensor_alloc(be, &tokens));
  SD_TRY(sd_tensor_alloc(be, &q));
  SD_TRY(sd_tensor_alloc(be, &k));
  SD_TRY(sd_tensor_alloc(be, &v));
  SD_TRY(sd_tensor_alloc(be, &o));

  sd_tensor normed4 = view4(&normed, b, c, x->shape[2], x->shape[3]); /* (B, C, H, W) */
  SD_TRY(sd_spatial_group_norm(be, sp, x, a->norm_w, a->norm_b, groups, VAE_NORM_EPS, false,
                               &normed4));
  SD_TRY(sd_op_transpose(be, &normed, &tokens));
  const sd_unet_attention *p = &a->proj;
  SD_TRY(sd_op_linear(be, &tokens, p->to_q, p->to_q_b, SD_ACT_NONE, &q));
  SD_TRY(sd_op_linear(be, &tokens, p->to_k, p->to_k_b, SD_ACT_NONE, &k));
  SD_TRY(sd_op_linear(be, &tokens, p->to_v, p->to_v_b, SD_ACT_NONE, &v));
  SD_TRY(sd_spatial_attention(be, sp, &q, &k, &v, x->shape[3], 1, sd_vae_attention_scale(a), &o));
  SD_TRY(sd_op_linear(be, &o, p->to_out_w, p->to_out_b, SD_ACT_NONE, &tokens));
  sd_tensor y3 = sd_tensor_3d(dt, b, c, hw); /* (B, C, HW) on y's memory */
  y3.data = y->data;
  SD_TRY(sd_op_transpose(be, &tokens, &y3));
  return sd_op_add(be, y, x, y);
}

/* The decoder's activations alternate between two scratch buffers of the largest stage size:
 * each step reads `cur` and writes the next stage into `spare`; then the two swap. */
typedef struct ping_pong {
  sd_tensor cur; /* (B, C, H, W) stage input */
  void *spare;   /* memory for the stage output */
} ping_pong;

static sd_tensor pp_next(const ping_pong *pp, int64_t c, int64_t h, int64_t w) {
  sd_tensor t = sd_tensor_4d(pp->cur.dtype, pp->cur.shape[0], c, h, w);
  t.data = pp->spare;
  return t;
}

static void pp_advance(ping_pong *pp, const sd_tensor *next) {
  pp->spare = pp->cur.data;
  pp->cur = *next;
}

/* Largest activation (elements) of any decoder stage for latents (B, *, h, w). */
static int64_t decoder_max_numel(const sd_vae_config *cfg, int64_t b, int64_t h, int64_t w) {
  const int levels = cfg->num_levels;
  int64_t best = b * cfg->latent_channels * h * w;
  for (int i = 0; i < levels; i++) {
    const int64_t c = cfg->block_out_channels[levels - 1 - i];
    const int64_t in_c = i == 0 ? c : cfg->block_out_channels[levels - i];
    if (b * in_c * h * w > best) /* conv_in / the previous level's output */
      best = b * in_c * h * w;
    if (b * c * h * w > best)
      best = b * c * h * w;
    if (i < levels - 1) {
      h *= 2;
      w *= 2;
      if (b * c * h * w > best)
        best = b * c * h * w;
    }
  }
  return best;
}

static int resnet_step(sd_backend *be, const sd_spatial *sp, const vae_resnet *r, int groups,
                       ping_pong *pp) {
  sd_tensor next = pp_next(pp, r->out_channels, pp->cur.shape[2], pp->cur.shape[3]);
  const sd_arena_mark mark = sd_arena_get_mark(be);
  int rc = resnet_forward(be, sp, r, groups, &pp->cur, &next);
  sd_arena_release(be, mark);
  SD_TRY(rc);
  pp_advance(pp, &next);
  return 0;
}

static int mid_block_step(sd_backend *be, const sd_spatial *sp, const vae_mid_block *mid,
                          int groups, ping_pong *pp) {
  if (resnet_step(be, sp, &mid->resnets[0], groups, pp) < 0)
    return sd_error_context("resnets.0");
  if (mid->has_attention) {
    sd_tensor next = pp_next(pp, pp->cur.shape[1], pp->cur.shape[2], pp->cur.shape[3]);
    const sd_arena_mark mark = sd_arena_get_mark(be);
    int rc = attention_forward(be, sp, &mid->attention, groups, &pp->cur, &next);
    sd_arena_release(be, mark);
    if (rc < 0)
      return sd_error_context("attentions.0");
    pp_advance(pp, &next);
  }
  if (resnet_step(be, sp, &mid->resnets[1], groups, pp) < 0)
    return sd_error_context("resnets.1");
  return 0;
}

static int up_block_step(sd_backend *be, const sd_spatial *sp, const vae_up_block *up, int groups,
                         ping_pong *pp) {
  for (int j = 0; j < up->num_resnets; j++)
    if (resnet_step(be, sp, &up->resnets[j], groups, pp) < 0)
      return sd_error_context("resnets.%d", j);
  if (!up->upsample_w)
    return 0;
  const int64_t c = pp->cur.shape[1], h = 2 * pp->cur.shape[2], w = 2 * pp->cur.shape[3];
  sd_tensor upsampled = pp_next(pp, c, h, w); /* (B, C, 2H, 2W) */
  if (sd_op_upsample_nearest(be, &pp->cur, &upsampled) < 0)
    return sd_error_context("upsamplers.0");
  pp_advance(pp, &upsampled);
  sd_tensor next = pp_next(pp, c, h, w);
  if (sd_spatial_conv2d(be, sp, &pp->cur, up->upsample_w, up->upsample_b, 1, 1, &next) < 0)
    return sd_error_context("upsamplers.0.conv");
  pp_advance(pp, &next);
  return 0;
}

/* z (B, latent_channels, h, w) -> image (B, out_channels, 2^(levels-1) h, 2^(levels-1) w). */
static int decode_into(sd_vae *model, const sd_spatial *sp, const sd_tensor *z, void *ping,
                       void *pong, sd_tensor *image) {
  sd_backend *be = model->be;
  const sd_vae_config *cfg = &model->cfg;
  const vae_decoder *dec = &model->decoder;
  const int groups = cfg->norm_num_groups, levels = cfg->num_levels;
  const int64_t h = z->shape[2], w = z->shape[3];

  sd_tensor latents = sd_tensor_4d(be->ops->act_dtype, z->shape[0], cfg->latent_channels, h, w);
  latents.data = ping; /* (B, latent_channels, h, w) */
  if (sd_op_conv2d(be, z, model->post_quant_conv_w, model->post_quant_conv_b, 1, 0, &latents) < 0)
    return sd_error_context("post_quant_conv");
  ping_pong pp = {latents, pong};

  sd_tensor next = pp_next(&pp, cfg->block_out_channels[levels - 1], h, w);
  if (sd_spatial_conv2d(be, sp, &pp.cur, dec->conv_in_w, dec->conv_in_b, 1, 1, &next) < 0)
    return sd_error_context("decoder.conv_in");
  pp_advance(&pp, &next);

  if (mid_block_step(be, sp, &dec->mid, groups, &pp) < 0)
    return sd_error_context("decoder.mid_block");
  for (int i = 0; i < levels; i++)
    if (up_block_step(be, sp, &dec->up[i], groups, &pp) < 0)
      return sd_error_context("decoder.up_blocks.%d", i);

  if (sd_spatial_group_norm(be, sp, &pp.cur, dec->norm_out_w, dec->norm_out_b, groups, VAE_NORM_EPS,
                            true, &pp.cur) < 0)
    return sd_error_context("decoder.conv_norm_out");
  if (sd_spatial_conv2d(be, sp, &pp.cur, dec->conv_out_w, dec->conv_out_b, 1, 1, image) < 0)
    return sd_error_context("decoder.conv_out");
  return 0;
}

int sd_vae_decode(sd_vae *model, const sd_tensor *z, sd_tensor *image) {
  return sd_vae_decode_spatial(model, NULL, z, image);
}

int sd_vae_check_decode_shapes(const sd_vae *model, const sd_tensor *z, const sd_tensor *image) {
  const sd_vae_config *cfg = &model->cfg;
  const int64_t factor = (int64_t)1 << (cfg->num_levels - 1);
  char zs[96], is[96];
  if (z->ndim != 4 || z->shape[1] != cfg->latent_channels || z->shape[2] < 1 || z->shape[3] < 1)
    return SD_ERROR("vae: latents must be (B, %d, h, w), got %s", cfg->latent_channels,
                    sd_tensor_shape_str(z, zs, sizeof zs));
  if (image->ndim != 4 || image->shape[0] != z->shape[0] || image->shape[1] != cfg->out_channels ||
      image->shape[2] != factor * z->shape[2] || image->shape[3] != factor * z->shape[3])
    return SD_ERROR("vae: image must be (%lld, %d, %lld, %lld) for latents %s, got %s",
                    (long long)z->shape[0], cfg->out_channels, (long long)(factor * z->shape[2]),
                    (long long)(factor * z->shape[3]), sd_tensor_shape_str(z, zs, sizeof zs),
                    sd_tensor_shape_str(image, is, sizeof is));
  return 0;
}

int sd_vae_decode_spatial(sd_vae *model, const sd_spatial *sp, const sd_tensor *z,
                          sd_tensor *image) {
  sd_backend *be = model->be;
  const sd_vae_config *cfg = &model->cfg;
  char zs[96];
  SD_TRY(sd_vae_check_decode_shapes(model, z, image));
  if (sp && sd_spatial_rows(sp, z->shape[3], 0) != z->shape[2])
    return SD_ERROR("vae: latents of %lld rows are not this rank's band of the decomposition",
                    (long long)z->shape[2]);

  const sd_arena_mark mark = sd_arena_get_mark(be);
  const int64_t cap = decoder_max_numel(cfg, z->shape[0], z->shape[2], z->shape[3]);
  sd_tensor ping = sd_tensor_1d(be->ops->act_dtype, cap);
  sd_tensor pong = ping;
  int rc = sd_tensor_alloc(be, &ping);
  if (rc == 0)
    rc = sd_tensor_alloc(be, &pong);
  if (rc == 0)
    rc = decode_into(model, sp, z, ping.data, pong.data, image);
  sd_arena_release(be, mark);
  return rc < 0 ? sd_error_context("vae decode %s", sd_tensor_shape_str(z, zs, sizeof zs)) : 0;
}

/* ---- encoder ---- */

/* Largest activation (elements) of any encoder stage for images (B, *, H, W). */
static int64_t encoder_max_numel(const sd_vae_config *cfg, int64_t b, int64_t h, int64_t w) {
  int64_t best = b * cfg->in_channels * h * w;
  for (int i = 0; i < cfg->num_levels; i++) {
    const int64_t c = cfg->block_out_channels[i];
    if (b * c * h * w > best)
      best = b * c * h * w;
    if (i < cfg->num_levels - 1) {
      /* the zero-padded input of the downsampler: (B, C, H + 1, W + 1) */
      if (b * c * (h + 1) * (w + 1) > best)
        best = b * c * (h + 1) * (w + 1);
      h = (h - 2) / 2 + 1;
      w = (w - 2) / 2 + 1;
    }
  }
  return best;
}

/* Downsample2D(use_conv, padding=0): F.pad(x, (0, 1, 0, 1)) then conv 3x3 stride 2. */
static int down_block_step(sd_backend *be, const vae_down_block *down, int groups, ping_pong *pp) {
  for (int j = 0; j < down->num_resnets; j++)
    if (resnet_step(be, NULL, &down->resnets[j], groups, pp) < 0)
      return sd_error_context("resnets.%d", j);
  if (!down->downsample_w)
    return 0;
  const int64_t c = pp->cur.shape[1], h = pp->cur.shape[2], w = pp->cur.shape[3];
  sd_tensor padded = pp_next(pp, c, h + 1, w + 1); /* (B, C, H + 1, W + 1) */
  if (sd_op_pad2d(be, &pp->cur, 0, 0, 0.0f, &padded) < 0)
    return sd_error_context("downsamplers.0 (padding)");
  pp_advance(pp, &padded);
  sd_tensor next = pp_next(pp, c, (h - 2) / 2 + 1, (w - 2) / 2 + 1);
  if (sd_op_conv2d(be, &pp->cur, down->downsample_w, down->downsample_b, 2, 0, &next) < 0)
    return sd_error_context("downsamplers.0.conv");
  pp_advance(pp, &next);
  return 0;
}

/* image (B, in_channels, H, W) -> moments (B, 2 latent_channels, h, w). */
static int encode_into(sd_vae *model, const sd_tensor *image, void *ping, void *pong,
                       sd_tensor *moments) {
  sd_backend *be = model->be;
  const sd_vae_config *cfg = &model->cfg;
  const vae_encoder *enc = &model->encoder;
  const int groups = cfg->norm_num_groups, levels = cfg->num_levels;
  ping_pong pp = {*image, ping};
  sd_tensor next = pp_next(&pp, cfg->block_out_channels[0], image->shape[2], image->shape[3]);
  if (sd_op_conv2d(be, image, enc->conv_in_w, enc->conv_in_b, 1, 1, &next) < 0)
    return sd_error_context("encoder.conv_in");
  pp = (ping_pong){next, pong};
  for (int i = 0; i < levels; i++)
    if (down_block_step(be, &enc->down[i], groups, &pp) < 0)
      return sd_error_context("encoder.down_blocks.%d", i);
  if (mid_block_step(be, NULL, &enc->mid, groups, &pp) < 0)
    return sd_error_context("encoder.mid_block");
  if (sd_op_group_norm(be, &pp.cur, enc->norm_out_w, enc->norm_out_b, groups, VAE_NORM_EPS, true,
                       &pp.cur) < 0)
    return sd_error_context("encoder.conv_norm_out");
  next = pp_next(&pp, 2 * cfg->latent_channels, pp.cur.shape[2], pp.cur.shape[3]);
  if (sd_op_conv2d(be, &pp.cur, enc->conv_out_w, enc->conv_out_b, 1, 1, &next) < 0)
    return sd_error_context("encoder.conv_out");
  if (sd_op_conv2d(be, &next, model->quant_conv_w, model->quant_conv_b, 1, 0, moments) < 0)
    return sd_error_context("quant_conv");
  return 0;
}

int sd_vae_check_encode_shapes(const sd_vae *model, const sd_tensor *image,
                               const sd_tensor *moments) {
  const sd_vae_config *cfg = &model->cfg;
  const int64_t factor = (int64_t)1 << (cfg->num_levels - 1);
  char is[96], ms[96];
  if (image->ndim != 4 || image->shape[1] != cfg->in_channels || image->shape[2] < factor ||
      image->shape[3] < factor || image->shape[2] % factor || image->shape[3] % factor)
    return SD_ERROR("vae encode: image must be (B, %d, H, W) with H and W multiples of %lld, "
                    "got %s",
                    cfg->in_channels, (long long)factor, sd_tensor_shape_str(image, is, sizeof is));
  if (moments->ndim != 4 || moments->shape[0] != image->shape[0] ||
      moments->shape[1] != 2 * cfg->latent_channels ||
      moments->shape[2] != image->shape[2] / factor ||
      moments->shape[3] != image->shape[3] / factor)
    return SD_ERROR("vae encode: moments must be (%lld, %d, %lld, %lld) for image %s, got %s",
                    (long long)image->shape[0], 2 * cfg->latent_channels,
                    (long long)(image->shape[2] / factor), (long long)(image->shape[3] / factor),
                    sd_tensor_shape_str(image, is, sizeof is),
                    sd_tensor_shape_str(moments, ms, sizeof ms));
  return 0;
}

int sd_vae_encode(sd_vae *model, const sd_tensor *image, sd_tensor *moments) {
  sd_backend *be = model->be;
  const sd_vae_config *cfg = &model->cfg;
  char is[96];
  SD_TRY(sd_vae_check_encode_shapes(model, image, moments));
  const sd_arena_mark mark = sd_arena_get_mark(be);
  const int64_t cap = encoder_max_numel(cfg, image->shape[0], image->shape[2], image->shape[3]);
  sd_tensor ping = sd_tensor_1d(be->ops->act_dtype, cap);
  sd_tensor pong = ping;
  int rc = sd_tensor_alloc(be, &ping);
  if (rc == 0)
    rc = sd_tensor_alloc(be, &pong);
  if (rc == 0)
    rc = encode_into(model, image, ping.data, pong.data, moments);
  sd_arena_release(be, mark);
  return rc < 0 ? sd_error_context("vae encode %s", sd_tensor_shape_str(image, is, sizeof is)) : 0;
}

void sd_vae_latent_sample(const float *moments, const float *noise, int latent_channels, int64_t hw,
                          float scaling_factor, float *latents) {
  const size_t n = (size_t)latent_channels * (size_t)hw;
  for (size_t i = 0; i < n; i++) {
    float mean = moments[i], logvar = moments[n + i];
    logvar = logvar < -30.0f ? -30.0f : logvar > 20.0f ? 20.0f : logvar;
    float std = expf(0.5f * logvar);
    float sample = mean + std * noise[i];
    latents[i] = scaling_factor * sample;
  }
}
