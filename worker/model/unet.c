/* diffusers UNet2DConditionModel (SD 1.x / 2.x layout): sinusoidal time projection on the backend
 * (the timestep_embedding op: nothing is uploaded per call), time embedding MLP, conv_in, down
 * levels (resnets, optional transformers, downsampler) that push skips, the cross-attention mid
 * block, up levels that pop the skips in reverse order (concat, resnets, optional transformers,
 * upsampler), GroupNorm + SiLU and conv_out.
 *
 * Memory during a forward: the skips live on the arena in push order, so the up levels free each
 * one as they pop it (stack discipline); the running activation alternates between two
 * preallocated buffers; every block's temporaries are released when the block returns. */
#include "unet.h"

#include "unet_internal.h"

#include "../../kernels/error.h"
#include "../../kernels/timestep_embedding.h"

#include <stdlib.h>
#include <stdio.h>

int sd_unet_time_proj(const sd_unet_config *cfg, double timestep, float *out) {
  int dim = cfg->block_out_channels[0], half = dim / 2;
  if (half < 1 || (float)half == cfg->freq_shift)
    return SD_ERROR("unet: time projection width %d with freq_shift %g", dim, cfg->freq_shift);
  sd_timestep_embedding_args args = sd_timestep_embedding_setup(
      timestep, dim, cfg->flip_sin_to_cos, cfg->freq_shift, SD_UNET_MAX_PERIOD);
  for (int k = 0; k < dim; k++)
    out[k] = sd_timestep_embedding_element(args, k);
  return 0;
}

static int check_config(const sd_unet_config *cfg) {
  if (cfg->num_levels < 1 || cfg->num_levels > SD_MAX_LEVELS)
    return SD_ERROR("unet: %d levels (1 to %d)", cfg->num_levels, SD_MAX_LEVELS);
  if (cfg->layers_per_block < 1 || cfg->norm_num_groups < 1 || cfg->in_channels < 1 ||
      cfg->out_channels < 1 || cfg->cross_attention_dim < 1)
    return SD_ERROR("unet: layers_per_block %d, norm_num_groups %d, in/out channels %d/%d, "
                    "cross_attention_dim %d",
                    cfg->layers_per_block, cfg->norm_num_groups, cfg->in_channels,
                    cfg->out_channels, cfg->cross_attention_dim);
  for (int l = 0; l < cfg->num_levels; l++) {
    int c = cfg->block_out_channels[l];
    if (c < 1 || c % cfg->norm_num_groups)
      return SD_ERROR("unet: block_out_channels[%d] = %d does not split into %d groups", l, c,
                      cfg->norm_num_groups);
    bool has_attention = cfg->down_block_has_attention[l] ||
                         cfg->up_block_has_attention[cfg->num_levels - 1 - l] ||
                         l == cfg->num_levels - 1; /* the mid block's */
    if (has_attention &&
        (cfg->transformer_layers_per_block[l] < 1 || cfg->num_attention_heads[l] < 1))
      return SD_ERROR("unet: level %d: transformer_layers_per_block %d, attention heads %d", l,
                      cfg->transformer_layers_per_block[l], cfg->num_attention_heads[l]);
  }
  return 0;
}

/* only_cross: the level's only_cross_attention for down and up blocks; false for the mid block
 * (diffusers' UNetMidBlock2DCrossAttn does not take it). */
static int transformer_init(const sd_unet *m, sd_unet_transformer *t, const sd_weights *w,
                            const char *prefix, int level, bool only_cross) {
  const sd_unet_config *cfg = &m->cfg;
  return sd_unet_transformer_init(
      t, w, prefix, cfg->block_out_channels[level], cfg->num_attention_heads[level],
      cfg->transformer_layers_per_block[level], cfg->cross_attention_dim, cfg->norm_num_groups,
      cfg->use_linear_projection, cfg->upcast_attention, only_cross);
}

static int down_level_init(sd_unet *m, const sd_weights *w, int l) {
  const sd_unet_config *cfg = &m->cfg;
  unet_down_level *d = &m->down[l];
  int n = cfg->layers_per_block;
  char prefix[128];
  d->channels = cfg->block_out_channels[l];
  d->resnets = calloc((size_t)n, sizeof *d->resnets);
  if (!d->resnets)
    return SD_ERROR("out of memory");
  if (cfg->down_block_has_attention[l]) {
    d->attentions = calloc((size_t)n, sizeof *d->attentions);
    if (!d->attentions)
      return SD_ERROR("out of memory");
  }
  int in_channels = l == 0 ? cfg->block_out_channels[0] : cfg->block_out_channels[l - 1];
  for (int j = 0; j < n; j++) {
    snprintf(prefix, sizeof prefix, "down_blocks.%d.resnets.%d.", l, j);
    SD_TRY(sd_unet_resnet_init(&d->resnets[j], w, prefix, j == 0 ? in_channels : d->channels,
                               d->channels, m->temb_channels, cfg->norm_num_groups, cfg->norm_eps));
    if (d->attentions) {
      snprintf(prefix, sizeof prefix, "down_blocks.%d.attentions.%d.", l, j);
      SD_TRY(transformer_init(m, &d->attentions[j], w, prefix, l, cfg->only_cross_attention[l]));
    }
  }
  d->has_downsample = l < cfg->num_levels - 1;
  if (d->has_downsample) {
    snprintf(prefix, sizeof prefix, "down_blocks.%d.downsamplers.0.", l);
    SD_TRY(sd_unet_sampler_init(&d->downsample, w, prefix, d->channels));
  }
  return 0;
}

/* Up block i serves level l = num_levels - 1 - i. Its resnet j takes cat(h, skip): h has the
 * previous up block's channels (j == 0) or C; the skip has C except the last one, which comes
 * from the level above (or conv_in). */
static int up_level_init(sd_unet *m, const sd_weights *w, int i) {
  const sd_unet_config *cfg = &m->cfg;
  int levels = cfg->num_levels, l = levels - 1 - i, n = cfg->layers_per_block + 1;
  unet_up_level *u = &m->up[i];
  char prefix[128];
  u->channels = cfg->block_out_channels[l];
  u->resnets = calloc((size_t)n, sizeof *u->resnets);
  if (!u->resnets)
    return SD_ERROR("out of memory");
  if (cfg->up_block_has_attention[i]) {
    u->attentions = calloc((size_t)n, sizeof *u->attentions);
    if (!u->attentions)
      return SD_ERROR("out of memory");
  }
  int prev_channels = cfg->block_out_channels[i == 0 ? l : l + 1];
  int last_skip_channels = cfg->block_out_channels[l == 0 ? 0 : l - 1];
  for (int j = 0; j < n; j++) {
    int h_channels = j == 0 ? prev_channels : u->channels;
    int skip_channels = j == n - 1 ? last_skip_channels : u->channels;
    snprintf(prefix, sizeof prefix, "up_blocks.%d.resnets.%d.", i, j);
    SD_TRY(sd_unet_resnet_init(&u->resnets[j], w, prefix, h_channels + skip_channels, u->channels,
                               m->temb_channels, cfg->norm_num_groups, cfg->norm_eps));
    if (u->attentions) {
      snprintf(prefix, sizeof prefix, "up_blocks.%d.attentions.%d.", i, j);
      SD_TRY(transformer_init(m, &u->attentions[j], w, prefix, l, cfg->only_cross_attention[l]));
    }
  }
  u->has_upsample = i < levels - 1;
  if (u->has_upsample) {
    snprintf(prefix, sizeof prefix, "up_blocks.%d.upsamplers.0.", i);
    SD_TRY(sd_unet_sampler_init(&u->upsample, w, prefix, u->channels));
  }
  return 0;
}

static int unet_init(sd_unet *m, const sd_weights *w) {
  const sd_unet_config *cfg = &m->cfg;
  int levels = cfg->num_levels, c0 = cfg->block_out_channels[0];
  int cm = cfg->block_out_channels[levels - 1];
  int64_t t0 = m->time_channels, t = m->temb_channels;
  SD_TRY(sd_unet_weight(w, &m->conv_in_w, "", "conv_in.weight", 4, c0, cfg->in_channels, 3, 3));
  SD_TRY(sd_unet_weight(w, &m->conv_in_b, "", "conv_in.bias", 1, c0, 0, 0, 0));
  SD_TRY(
      sd_unet_weight(w, &m->time_linear_1_w, "time_embedding.", "linear_1.weight", 2, t, t0, 0, 0));
  SD_TRY(sd_unet_weight(w, &m->time_linear_1_b, "time_embedding.", "linear_1.bias", 1, t, 0, 0, 0));
  SD_TRY(
      sd_unet_weight(w, &m->time_linear_2_w, "time_embedding.", "linear_2.weight", 2, t, t, 0, 0));
  SD_TRY(sd_unet_weight(w, &m->time_linear_2_b, "time_embedding.", "linear_2.bias", 1, t, 0, 0, 0));
  if (cfg->num_class_embeds > 0)
    SD_TRY(sd_unet_weight(w, &m->class_embedding, "", "class_embedding.weight", 2,
                          cfg->num_class_embeds, t, 0, 0));
  for (int l = 0; l < levels; l++)
    if (down_level_init(m, w, l) < 0)
      return sd_error_context("unet: down_blocks.%d", l);
  for (int j = 0; j < 2; j++) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "mid_block.resnets.%d.", j);
    if (sd_unet_resnet_init(&m->mid_resnets[j], w, prefix, cm, cm, m->temb_channels,
                            cfg->norm_num_groups, cfg->norm_eps) < 0)
      return sd_error_context("unet: mid_block");
  }
  if (transformer_init(m, &m->mid_attention, w, "mid_block.attentions.0.", levels - 1, false) < 0)
    return sd_error_context("unet: mid_block");
  for (int i = 0; i < levels; i++)
    if (up_level_init(m, w, i) < 0)
      return sd_error_context("unet: up_blocks.%d", i);
  SD_TRY(sd_unet_weight(w, &m->norm_out_w, "", "conv_norm_out.weight", 1, c0, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &m->norm_out_b, "", "conv_norm_out.bias", 1, c0, 0, 0, 0));
  SD_TRY(sd_unet_weight(w, &m->conv_out_w, "", "conv_out.weight", 4, cfg->out_channels, c0, 3, 3));
  return sd_unet_weight(w, &m->conv_out_b, "", "conv_out.bias", 1, cfg->out_channels, 0, 0, 0);
}

int sd_unet_create(sd_backend *be, const sd_unet_config *cfg, const sd_weights *weights,
                   sd_unet **out) {
  *out = NULL;
  SD_TRY(check_config(cfg));
  sd_unet *m = calloc(1, sizeof *m);
  if (!m)
    return SD_ERROR("unet: out of memory");
  m->be = be;
  m->cfg = *cfg;
  m->time_channels = cfg->block_out_channels[0];
  m->temb_channels = 4 * cfg->block_out_channels[0];
  if (unet_init(m, weights) < 0) {
    sd_unet_free(m);
    return -1;
  }
  *out = m;
  return 0;
}

static void free_transformers(sd_unet_transformer *ts, int n) {
  if (!ts)
    return;
  for (int j = 0; j < n; j++)
    sd_unet_transformer_free(&ts[j]);
  free(ts);
}

void sd_unet_free(sd_unet *m) {
  if (!m)
    return;
  int n = m->cfg.layers_per_block;
  for (int l = 0; l < m->cfg.num_levels; l++) {
    free(m->down[l].resnets);
    free_transformers(m->down[l].attentions, n);
    free(m->up[l].resnets);
    free_transformers(m->up[l].attentions, n + 1);
  }
  sd_unet_transformer_free(&m->mid_attention);
  free(m);
}

/* The state of one forward: the running activation alternates between two buffers of the
 * largest activation size; the skips sit on the arena above them, each with the mark that frees
 * it. */
typedef struct unet_run {
  sd_unet *m;
  sd_backend *be;
  const sd_spatial *sp;        /* NULL: the whole image; else h, skips are this rank's bands */
  int64_t batch;               /* B */
  const sd_tensor *context;    /* (B, L, cross_attention_dim) */
  const int32_t *class_labels; /* (B) host ids, or NULL */
  sd_tensor temb_act;          /* (B, T): silu(time embedding (+ class embedding)), as every resnet
                                  takes it */
  void *buffers[2];            /* each B * max(C) * H * W activations */
  int current;                 /* which buffer holds h */
  sd_tensor h;      /* from the mid block on: the activation (B, C, h, w) in buffers[current] */
  sd_tensor *skips; /* (B, C, h, w) each, in push order */
  sd_arena_mark *skip_marks;
  int num_skips;
} unet_run;

/* A (B, C, h, w) view of the buffer not holding h. */
static sd_tensor next_buffer(unet_run *r, int64_t c, int64_t h, int64_t w) {
  sd_tensor t = sd_tensor_4d(r->be->ops->act_dtype, r->batch, c, h, w);
  t.data = r->buffers[1 - r->current];
  return t;
}

static void set_h(unet_run *r, sd_tensor t) {
  r->current = 1 - r->current;
  r->h = t;
}

static int push_skip(unet_run *r, int64_t c, int64_t h, int64_t w, sd_tensor **out) {
  r->skip_marks[r->num_skips] = sd_arena_get_mark(r->be);
  sd_tensor *s = &r->skips[r->num_skips];
  *s = sd_tensor_4d(r->be->ops->act_dtype, r->batch, c, h, w);
  SD_TRY(sd_tensor_alloc(r->be, s));
  r->num_skips++;
  *out = s;
  return 0;
}

/* y = attention(resnet(x)) or resnet(x), the step shared by every down and up level. */
static int resnet_attention(unet_run *r, const sd_unet_resnet *res, const sd_unet_transformer *attn,
                            const sd_tensor *x, sd_tensor *y) {
  if (!attn)
    return sd_unet_resnet_forward(r->be, r->sp, res, x, &r->temb_act, y);
  sd_arena_mark mark = sd_arena_get_mark(r->be);
  sd_tensor tmp = *y; /* (B, C, h, w) */
  int rc = sd_tensor_alloc(r->be, &tmp);
  if (rc == 0)
    rc = sd_unet_resnet_forward(r->be, r->sp, res, x, &r->temb_act, &tmp);
  if (rc == 0)
    rc = sd_unet_transformer_forward(r->be, r->sp, attn, &tmp, r->context, y);
  sd_arena_release(r->be, mark);
  return rc;
}

/* Down level l: h (B, C_{l-1}, h, w) -> skips pushed; the last skip becomes h. The skips double
 * as the level's outputs, so h here is a view of the top skip rather than a buffer. */
static int down_level_forward(unet_run *r, int l, const sd_tensor *in) {
  const unet_down_level *d = &r->m->down[l];
  const sd_tensor *x = in;
  int64_t hh = in->shape[2], ww = in->shape[3];
  for (int j = 0; j < r->m->cfg.layers_per_block; j++) {
    sd_tensor *s;
    SD_TRY(push_skip(r, d->channels, hh, ww, &s));
    SD_TRY(resnet_attention(r, &d->resnets[j], d->attentions ? &d->attentions[j] : NULL, x, s));
    x = s;
  }
  if (d->has_downsample) {
    sd_tensor *s;
    int64_t down_w = (ww + 1) / 2, down_h = sd_spatial_rows(r->sp, down_w, (hh + 1) / 2);
    if (down_h < 0)
      return -1;
    SD_TRY(push_skip(r, d->channels, down_h, down_w, &s));
    SD_TRY(sd_unet_downsample_forward(r->be, r->sp, &d->downsample, x, s));
  }
  return 0;
}

static int mid_forward(unet_run *r, const sd_tensor *x) {
  sd_unet *m = r->m;
  sd_tensor y = next_buffer(r, x->shape[1], x->shape[2], x->shape[3]);
  sd_arena_mark mark = sd_arena_get_mark(r->be);
  sd_tensor tmp = *x; /* (B, Cm, h, w) */
  int rc = sd_tensor_alloc(r->be, &tmp);
  if (rc == 0)
    rc = resnet_attention(r, &m->mid_resnets[0], &m->mid_attention, x, &tmp);
  if (rc == 0)
    rc = sd_unet_resnet_forward(r->be, r->sp, &m->mid_resnets[1], &tmp, &r->temb_act, &y);
  sd_arena_release(r->be, mark);
  if (rc == 0)
    set_h(r, y);
  return rc;
}

/* Up block i: for each resnet, h = attention(resnet(cat(h, popped skip))); then upsample. */
static int up_level_forward(unet_run *r, int i) {
  const unet_up_level *u = &r->m->up[i];
  for (int j = 0; j < r->m->cfg.layers_per_block + 1; j++) {
    if (r->num_skips < 1)
      return SD_ERROR("no skip left for resnet %d", j);
    const sd_tensor *skip = &r->skips[r->num_skips - 1];
    sd_tensor y = next_buffer(r, u->channels, r->h.shape[2], r->h.shape[3]);
    sd_tensor cat = sd_tensor_4d(r->be->ops->act_dtype, r->batch, r->h.shape[1] + skip->shape[1],
                                 r->h.shape[2], r->h.shape[3]);
    SD_TRY(sd_tensor_alloc(r->be, &cat));
    SD_TRY(sd_op_concat_channels(r->be, &r->h, skip, &cat));
    SD_TRY(resnet_attention(r, &u->resnets[j], u->attentions ? &u->attentions[j] : NULL, &cat, &y));
    /* frees cat and the skip, the top of the arena */
    sd_arena_release(r->be, r->skip_marks[--r->num_skips]);
    set_h(r, y);
  }
  if (u->has_upsample) {
    /* Resize to the next skip's size, as diffusers does (upsample_size) when a latent side is not
     * a multiple of 2^(levels - 1); otherwise that size is exactly 2x, its scale_factor=2 case. */
    if (r->num_skips < 1)
      return SD_ERROR("no skip left to size the upsampler");
    const sd_tensor *next_skip = &r->skips[r->num_skips - 1];
    sd_tensor y = next_buffer(r, u->channels, next_skip->shape[2], next_skip->shape[3]);
    SD_TRY(sd_unet_upsample_forward(r->be, r->sp, &u->upsample, &r->h, &y));
    set_h(r, y);
  }
  return 0;
}

static int time_embedding(unet_run *r, double timestep) {
  sd_unet *m = r->m;
  sd_dtype dt = r->be->ops->act_dtype;
  int64_t b = r->batch;
  sd_tensor proj = sd_tensor_2d(dt, b, m->time_channels);   /* (B, T0) */
  sd_tensor hidden = sd_tensor_2d(dt, b, m->temb_channels); /* (B, T) */
  r->temb_act = sd_tensor_2d(dt, b, m->temb_channels);
  SD_TRY(sd_tensor_alloc(r->be, &r->temb_act));
  sd_arena_mark mark = sd_arena_get_mark(r->be);
  int rc = sd_tensor_alloc(r->be, &proj);
  if (rc == 0)
    rc = sd_op_timestep_embedding(r->be, timestep, m->cfg.flip_sin_to_cos, m->cfg.freq_shift,
                                  SD_UNET_MAX_PERIOD, &proj);
  if (rc == 0)
    rc = sd_tensor_alloc(r->be, &hidden);
  if (rc == 0)
    rc = sd_op_linear(r->be, &proj, m->time_linear_1_w, m->time_linear_1_b, SD_ACT_SILU, &hidden);
  if (rc == 0)
    rc = sd_op_linear(r->be, &hidden, m->time_linear_2_w, m->time_linear_2_b, SD_ACT_NONE,
                      &r->temb_act);
  if (rc == 0 && m->class_embedding) { /* emb = emb + class_embedding(class_labels) */
    sd_tensor class_emb = sd_tensor_2d(dt, b, m->temb_channels);
    rc = sd_tensor_alloc(r->be, &class_emb);
    if (rc == 0)
      rc = sd_op_embedding(r->be, m->class_embedding, r->class_labels, b, &class_emb);
    if (rc == 0)
      rc = sd_op_add(r->be, &r->temb_act, &class_emb, &r->temb_act);
  }
  if (rc == 0)
    rc = sd_op_activation(r->be, &r->temb_act, SD_ACT_SILU, &r->temb_act);
  sd_arena_release(r->be, mark);
  return rc;
}

static int unet_compute(unet_run *r, const sd_tensor *sample, double timestep, sd_tensor *out) {
  sd_unet *m = r->m;
  const sd_unet_config *cfg = &m->cfg;
  sd_backend *be = r->be;
  int64_t b = sample->shape[0], hh = sample->shape[2], ww = sample->shape[3];
  int max_channels = 0;
  for (int l = 0; l < cfg->num_levels; l++)
    if (cfg->block_out_channels[l] > max_channels)
      max_channels = cfg->block_out_channels[l];

  if (time_embedding(r, timestep) < 0)
    return sd_error_context("unet: time_embedding");
  for (int k = 0; k < 2; k++) {
    sd_tensor buf = sd_tensor_4d(be->ops->act_dtype, b, max_channels, hh, ww);
    SD_TRY(sd_tensor_alloc(be, &buf));
    r->buffers[k] = buf.data;
  }

  sd_tensor *s;
  SD_TRY(push_skip(r, cfg->block_out_channels[0], hh, ww, &s));
  if (sd_spatial_conv2d(be, r->sp, sample, m->conv_in_w, m->conv_in_b, 1, 1, s) < 0)
    return sd_error_context("unet: conv_in");
  for (int l = 0; l < cfg->num_levels; l++)
    if (down_level_forward(r, l, &r->skips[r->num_skips - 1]) < 0)
      return sd_error_context("unet: down_blocks.%d", l);
  if (mid_forward(r, &r->skips[r->num_skips - 1]) < 0)
    return sd_error_context("unet: mid_block");
  for (int i = 0; i < cfg->num_levels; i++)
    if (up_level_forward(r, i) < 0)
      return sd_error_context("unet: up_blocks.%d", i);

  sd_tensor normed = r->h; /* (B, C0, H, W) */
  SD_TRY(sd_tensor_alloc(be, &normed));
  if (sd_spatial_group_norm(be, r->sp, &r->h, m->norm_out_w, m->norm_out_b, cfg->norm_num_groups,
                            cfg->norm_eps, true, &normed) < 0 ||
      sd_spatial_conv2d(be, r->sp, &normed, m->conv_out_w, m->conv_out_b, 1, 1, out) < 0)
    return sd_error_context("unet: conv_out");
  return 0;
}

int sd_unet_check_shapes(const sd_unet *m, const sd_tensor *sample, const sd_tensor *context,
                         const sd_tensor *out) {
  const sd_unet_config *cfg = &m->cfg;
  char a[96], b[96];
  if (sample->ndim != 4 || sample->shape[1] != cfg->in_channels)
    return SD_ERROR("unet: sample %s is not (B, %d, h, w)",
                    sd_tensor_shape_str(sample, a, sizeof a), cfg->in_channels);
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

int sd_unet_forward(sd_unet *m, const sd_tensor *sample, double timestep, const sd_tensor *context,
                    sd_tensor *out) {
  return sd_unet_forward_spatial(m, NULL, sample, timestep, NULL, context, out);
}

int sd_unet_forward_labels(sd_unet *m, const sd_tensor *sample, double timestep,
                           const int32_t *class_labels, const sd_tensor *context, sd_tensor *out) {
  return sd_unet_forward_spatial(m, NULL, sample, timestep, class_labels, context, out);
}

int sd_unet_forward_spatial(sd_unet *m, const sd_spatial *sp, const sd_tensor *sample,
                            double timestep, const int32_t *class_labels, const sd_tensor *context,
                            sd_tensor *out) {
  SD_TRY(sd_unet_check_shapes(m, sample, context, out));
  if (sp && sd_spatial_rows(sp, sample->shape[3], 0) != sample->shape[2])
    return SD_ERROR("unet: sample of %lld rows is not this rank's band of the decomposition",
                    (long long)sample->shape[2]);
  if (m->class_embedding && !class_labels)
    return SD_ERROR("unet: this model embeds class labels (num_class_embeds %d); none given",
                    m->cfg.num_class_embeds);
  if (!m->class_embedding && class_labels)
    return SD_ERROR("unet: class labels given to a model without a class embedding");
  int max_skips = 1 + m->cfg.num_levels * (m->cfg.layers_per_block + 1);
  unet_run r = {.m = m,
                .be = m->be,
                .sp = sp,
                .batch = sample->shape[0],
                .context = context,
                .class_labels = class_labels};
  r.skips = calloc((size_t)max_skips, sizeof *r.skips);
  r.skip_marks = calloc((size_t)max_skips, sizeof *r.skip_marks);
  if (!r.skips || !r.skip_marks) {
    free(r.skips);
    free(r.skip_marks);
    return SD_ERROR("unet: out of memory for %d skips", max_skips);
  }
  sd_arena_mark mark = sd_arena_get_mark(m->be);
  int rc = unet_compute(&r, sample, timestep, out);
  sd_arena_release(m->be, mark);
  free(r.skips);
  free(r.skip_marks);
  return rc;
}
