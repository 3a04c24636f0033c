/* DPTForDepthEstimation on the op interface (see dpt.h): embeddings (BiT + 1x1 projection for
 * DPT-hybrid, a patch conv for ViT; CLS token; position embeddings resized bilinearly to the
 * token grid), pre-norm ViT layers, the reassemble stage (readout "project": each token
 * concatenated with the CLS token through a Linear + GELU; 1x1 projection; ConvTranspose2d /
 * identity / strided 3x3 conv resize), the neck's 3x3 convs, feature fusion (pre-activation
 * residual units, bilinear 2x with align_corners, 1x1 projection) and the head. Batch 1. */
#include "dpt_internal.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct vit_layer {
  const sd_tensor *ln1_w, *ln1_b, *ln2_w, *ln2_b;     /* (D) */
  const sd_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b; /* (D, D), (D) or NULL */
  const sd_tensor *o_w, *o_b;                         /* (D, D), (D) */
  const sd_tensor *fc1_w, *fc1_b;                     /* (I, D), (I) */
  const sd_tensor *fc2_w, *fc2_b;                     /* (D, I), (D) */
} vit_layer;

/* DPTPreActResidualLayer: relu, conv1, relu, conv2, + input (batch norms folded in). */
typedef struct residual_unit {
  const sd_tensor *conv1_w, *conv1_b, *conv2_w, *conv2_b; /* (F, F, 3, 3), (F) or NULL */
} residual_unit;

typedef struct fusion_layer {
  residual_unit res1, res2;
  const sd_tensor *proj_w, *proj_b; /* (F, F, 1, 1), (F) */
} fusion_layer;

struct sd_dpt {
  sd_backend *be;
  sd_dpt_config cfg;
  bit_backbone bit;                   /* hybrid */
  const sd_tensor *patch_w, *patch_b; /* (D, C, p, p) or, hybrid, (D, Cbit, 1, 1); (D) */
  const sd_tensor *cls;               /* (1, 1, D) */
  const sd_tensor *pos;               /* (1, 1 + g*g, D), g = image_size / patch_size */
  vit_layer *layers;                  /* (num_hidden_layers) */
  const sd_tensor *readout_w[SD_DPT_STAGES], *readout_b[SD_DPT_STAGES];       /* (D, 2D), (D) */
  const sd_tensor *reassemble_w[SD_DPT_STAGES], *reassemble_b[SD_DPT_STAGES]; /* (Ci, D, 1, 1) */
  const sd_tensor *resize_w[SD_DPT_STAGES], *resize_b[SD_DPT_STAGES]; /* NULL for factor 1 */
  const sd_tensor *neck_w[SD_DPT_STAGES];                             /* (F, Ci, 3, 3) */
  fusion_layer fusion[SD_DPT_STAGES];
  const sd_tensor *head1_w, *head1_b; /* (F/2, F, 3, 3), (F/2) */
  const sd_tensor *head2_w, *head2_b; /* (32, F/2, 3, 3), (32) */
  const sd_tensor *head3_w, *head3_b; /* (1, 32, 1, 1), (1) */
  sd_dpt_stage_fn hook;
  void *hook_ctx;
};

static int get(const sd_weights *w, const sd_tensor **out, int ndim, const int64_t *shape,
               const char *fmt, int index) {
  char name[256];
  snprintf(name, sizeof name, fmt, index);
  return sd_weights_get(w, out, ndim, shape, "%s", name);
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

static int get_linear(const sd_weights *w, const sd_tensor **wt, const sd_tensor **b, int64_t n,
                      int64_t k, const char *prefix, int index, bool bias) {
  char name[256];
  snprintf(name, sizeof name, "%s.weight", prefix);
  SD_TRY(get(w, wt, 2, SHAPE(n, k), name, index));
  *b = NULL;
  if (!bias)
    return 0;
  snprintf(name, sizeof name, "%s.bias", prefix);
  return get(w, b, 1, SHAPE(n), name, index);
}

static int get_conv(const sd_weights *w, const sd_tensor **wt, const sd_tensor **b, int64_t k,
                    int64_t c, int64_t kh, const char *prefix, int index, bool bias) {
  char name[256];
  snprintf(name, sizeof name, "%s.weight", prefix);
  SD_TRY(get(w, wt, 4, SHAPE(k, c, kh, kh), name, index));
  *b = NULL;
  if (!bias)
    return 0;
  snprintf(name, sizeof name, "%s.bias", prefix);
  return get(w, b, 1, SHAPE(k), name, index);
}

static int create_layers(sd_dpt *m, const sd_weights *w) {
  const sd_dpt_config *c = &m->cfg;
  int64_t d = c->hidden_size, inter = c->intermediate_size;
  m->layers = calloc((size_t)c->num_hidden_layers, sizeof *m->layers);
  if (!m->layers)
    return SD_ERROR("out of memory creating DPT layers");
  for (int i = 0; i < c->num_hidden_layers; i++) {
    vit_layer *L = &m->layers[i];
    SD_TRY(get(w, &L->ln1_w, 1, SHAPE(d), "dpt.encoder.layer.%d.layernorm_before.weight", i));
    SD_TRY(get(w, &L->ln1_b, 1, SHAPE(d), "dpt.encoder.layer.%d.layernorm_before.bias", i));
    SD_TRY(get(w, &L->ln2_w, 1, SHAPE(d), "dpt.encoder.layer.%d.layernorm_after.weight", i));
    SD_TRY(get(w, &L->ln2_b, 1, SHAPE(d), "dpt.encoder.layer.%d.layernorm_after.bias", i));
    SD_TRY(get_linear(w, &L->q_w, &L->q_b, d, d, "dpt.encoder.layer.%d.attention.attention.query",
                      i, c->qkv_bias));
    SD_TRY(get_linear(w, &L->k_w, &L->k_b, d, d, "dpt.encoder.layer.%d.attention.attention.key", i,
                      c->qkv_bias));
    SD_TRY(get_linear(w, &L->v_w, &L->v_b, d, d, "dpt.encoder.layer.%d.attention.attention.value",
                      i, c->qkv_bias));
    SD_TRY(get_linear(w, &L->o_w, &L->o_b, d, d, "dpt.encoder.layer.%d.attention.output.dense", i,
                      true));
    SD_TRY(get_linear(w, &L->fc1_w, &L->fc1_b, inter, d, "dpt.encoder.layer.%d.intermediate.dense",
                      i, true));
    SD_TRY(get_linear(w, &L->fc2_w, &L->fc2_b, d, inter, "dpt.encoder.layer.%d.output.dense", i,
                      true));
  }
  return 0;
}

static bool neck_from_bit(const sd_dpt_config *c, int i) {
  return c->is_hybrid && i < 2;
}

static int create_neck(sd_dpt *m, const sd_weights *w) {
  const sd_dpt_config *c = &m->cfg;
  int64_t d = c->hidden_size, f = c->fusion_hidden_size;
  bool bias = c->use_bias_in_fusion_residual || c->use_batch_norm_in_fusion_residual;
  for (int i = 0; i < SD_DPT_STAGES; i++) {
    int64_t ci = c->neck_hidden_sizes[i];
    if (neck_from_bit(c, i)) {
      if (ci != c->bit_hidden_sizes[i])
        return SD_ERROR("depth estimator: neck_hidden_sizes[%d] = %lld but BiT stage %d has %d "
                        "channels",
                        i, (long long)ci, i + 1, c->bit_hidden_sizes[i]);
    } else {
      SD_TRY(get_linear(w, &m->readout_w[i], &m->readout_b[i], d, 2 * d,
                        "neck.reassemble_stage.readout_projects.%d.0", i, true));
      SD_TRY(get_conv(w, &m->reassemble_w[i], &m->reassemble_b[i], ci, d, 1,
                      "neck.reassemble_stage.layers.%d.projection", i, true));
      if (c->reassemble_up[i] > 1) {
        int64_t k = c->reassemble_up[i];
        SD_TRY(get(w, &m->resize_w[i], 4, SHAPE(ci, ci, k, k),
                   "neck.reassemble_stage.layers.%d.resize.weight", i));
        SD_TRY(get(w, &m->resize_b[i], 1, SHAPE(ci), "neck.reassemble_stage.layers.%d.resize.bias",
                   i));
      } else if (c->reassemble_down[i] > 1) {
        SD_TRY(get_conv(w, &m->resize_w[i], &m->resize_b[i], ci, ci, 3,
                        "neck.reassemble_stage.layers.%d.resize", i, true));
      }
    }
    SD_TRY(get(w, &m->neck_w[i], 4, SHAPE(f, ci, 3, 3), "neck.convs.%d.weight", i));
    fusion_layer *L = &m->fusion[i];
    residual_unit *units[2] = {&L->res1, &L->res2};
    for (int r = 0; r < 2; r++) {
      char prefix[160];
      snprintf(prefix, sizeof prefix, "neck.fusion_stage.layers.%%d.residual_layer%d.convolution1",
               r + 1);
      SD_TRY(get_conv(w, &units[r]->conv1_w, &units[r]->conv1_b, f, f, 3, prefix, i, bias));
      snprintf(prefix, sizeof prefix, "neck.fusion_stage.layers.%%d.residual_layer%d.convolution2",
               r + 1);
      SD_TRY(get_conv(w, &units[r]->conv2_w, &units[r]->conv2_b, f, f, 3, prefix, i, bias));
    }
    SD_TRY(get_conv(w, &L->proj_w, &L->proj_b, f, f, 1, "neck.fusion_stage.layers.%d.projection", i,
                    true));
  }
  SD_TRY(get_conv(w, &m->head1_w, &m->head1_b, f / 2, f, 3, "head.head.%d", 0, true));
  SD_TRY(get_conv(w, &m->head2_w, &m->head2_b, 32, f / 2, 3, "head.head.%d", 2, true));
  return get_conv(w, &m->head3_w, &m->head3_b, 1, 32, 1, "head.head.%d", 4, true);
}

int sd_dpt_create(sd_backend *be, const sd_dpt_config *cfg, const sd_weights *weights,
                  sd_dpt **out) {
  *out = NULL;
  sd_dpt *m = calloc(1, sizeof *m);
  if (!m)
    return SD_ERROR("out of memory creating the depth estimator");
  m->be = be;
  m->cfg = *cfg;
  int64_t d = cfg->hidden_size, g = cfg->image_size / cfg->patch_size;
  int rc = 0;
  if (cfg->is_hybrid) {
    rc = sd_dpt_bit_create(cfg, weights, &m->bit);
    if (rc == 0)
      rc = get_conv(weights, &m->patch_w, &m->patch_b, d, cfg->bit_hidden_sizes[2], 1,
                    "dpt.embeddings.projection", 0, true);
  } else {
    rc = get_conv(weights, &m->patch_w, &m->patch_b, d, cfg->num_channels, cfg->patch_size,
                  "dpt.embeddings.patch_embeddings.projection", 0, true);
  }
  if (rc == 0)
    rc = get(weights, &m->cls, 3, SHAPE(1, 1, d), "dpt.embeddings.cls_token", 0);
  if (rc == 0)
    rc = get(weights, &m->pos, 3, SHAPE(1, 1 + g * g, d), "dpt.embeddings.position_embeddings", 0);
  if (rc == 0)
    rc = create_layers(m, weights);
  if (rc == 0)
    rc = create_neck(m, weights);
  if (rc < 0) {
    sd_dpt_free(m);
    return sd_error_context("depth estimator");
  }
  *out = m;
  return 0;
}

void sd_dpt_free(sd_dpt *model) {
  if (!model)
    return;
  sd_dpt_bit_free(&model->bit);
  free(model->layers);
  free(model);
}

void sd_dpt_set_stage_hook(sd_dpt *model, sd_dpt_stage_fn fn, void *ctx) {
  model->hook = fn;
  model->hook_ctx = ctx;
}

static void stage(const sd_dpt *m, const char *fmt, int index, const sd_tensor *t) {
  if (!m->hook)
    return;
  char name[64];
  snprintf(name, sizeof name, fmt, index);
  m->hook(m->hook_ctx, name, t);
}

/* Side of reassembled stage i for a token grid side g (hybrid stages 0, 1: BiT's). */
static int64_t stage_side(const sd_dpt_config *c, int i, int64_t g) {
  if (neck_from_bit(c, i))
    return g * 4 >> i; /* BiT strides 4 and 8 against the grid's 16 */
  if (c->reassemble_up[i] > 1)
    return g * c->reassemble_up[i];
  if (c->reassemble_down[i] > 1)
    return (g - 1) / c->reassemble_down[i] + 1; /* 3x3 conv, pad 1 */
  return g;
}

void sd_dpt_output_size(const sd_dpt *model, int64_t h, int64_t w, int64_t *out_h, int64_t *out_w) {
  const sd_dpt_config *c = &model->cfg;
  *out_h = *out_w = 0;
  if (h != w || h % c->patch_size || h < c->patch_size || (c->is_hybrid && h != c->image_size))
    return;
  *out_h = *out_w = stage_side(c, SD_DPT_STAGES - 1, h / c->patch_size) * 32;
}

#define TRY_OUT(call)                                                                              \
  do {                                                                                             \
    if ((call) < 0)                                                                                \
      goto out;                                                                                    \
  } while (0)

/* tokens (1, 1 + g*g, D) = [cls; patches (1, D, g, g) flattened] + position embeddings resized
 * from their grid to g x g (bilinear, align_corners=False, as _resize_pos_embed). */
static int embed(sd_dpt *m, const sd_tensor *patches, sd_tensor *tokens) {
  sd_backend *be = m->be;
  int64_t d = m->cfg.hidden_size, g = patches->shape[2], n = g * g;
  int64_t g0 = m->cfg.image_size / m->cfg.patch_size;
  sd_tensor flat, seq;
  SD_TRY(sd_tensor_reshape(patches, 3, SHAPE(1, d, n), &flat));
  SD_TRY(sd_dpt_scratch(be, 3, SHAPE(1, n, d), &seq));
  SD_TRY(sd_op_transpose(be, &flat, &seq));
  SD_TRY(sd_dpt_scratch(be, 3, SHAPE(1, 1 + n, d), tokens));
  sd_tensor cls4, seq4, tok4;
  SD_TRY(sd_tensor_reshape(m->cls, 4, SHAPE(1, 1, d, 1), &cls4));
  SD_TRY(sd_tensor_reshape(&seq, 4, SHAPE(1, n, d, 1), &seq4));
  SD_TRY(sd_tensor_reshape(tokens, 4, SHAPE(1, 1 + n, d, 1), &tok4));
  SD_TRY(sd_op_concat_channels(be, &cls4, &seq4, &tok4));
  if (g == g0)
    return sd_op_add(be, tokens, m->pos, tokens);
  /* the grid part (1, g0*g0, D) -> (1, D, g0, g0) -> (1, D, g, g) -> (1, g*g, D) */
  size_t elem = sd_dtype_size(m->pos->dtype);
  sd_tensor grid = sd_tensor_3d(m->pos->dtype, 1, g0 * g0, d), grid_t, small, big, big_t, pos;
  grid.data = (char *)m->pos->data + (size_t)d * elem;
  SD_TRY(sd_dpt_scratch(be, 4, SHAPE(1, d, g0, g0), &small));
  sd_tensor small3;
  SD_TRY(sd_tensor_reshape(&small, 3, SHAPE(1, d, g0 * g0), &small3));
  SD_TRY(sd_op_transpose(be, &grid, &small3));
  SD_TRY(sd_dpt_scratch(be, 4, SHAPE(1, d, g, g), &big));
  SD_TRY(sd_op_interpolate(be, &small, SD_INTERP_BILINEAR, false, &big));
  SD_TRY(sd_tensor_reshape(&big, 3, SHAPE(1, d, n), &big_t));
  SD_TRY(sd_dpt_scratch(be, 3, SHAPE(1, n, d), &grid_t));
  SD_TRY(sd_op_transpose(be, &big_t, &grid_t));
  sd_tensor cls_pos = sd_tensor_4d(m->pos->dtype, 1, 1, d, 1), grid4, pos4;
  cls_pos.data = m->pos->data;
  SD_TRY(sd_dpt_scratch(be, 3, SHAPE(1, 1 + n, d), &pos));
  SD_TRY(sd_tensor_reshape(&grid_t, 4, SHAPE(1, n, d, 1), &grid4));
  SD_TRY(sd_tensor_reshape(&pos, 4, SHAPE(1, 1 + n, d, 1), &pos4));
  SD_TRY(sd_op_concat_channels(be, &cls_pos, &grid4, &pos4));
  return sd_op_add(be, tokens, &pos, tokens);
}

/* One pre-norm ViT layer on x (1, L, D), in place. */
static int vit_layer_forward(sd_dpt *m, const vit_layer *L, sd_tensor *x) {
  sd_backend *be = m->be;
  const sd_dpt_config *c = &m->cfg;
  int64_t len = x->shape[1], d = c->hidden_size;
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor h, q, k, v, o, mid, out;
  int rc = -1;
  TRY_OUT(sd_dpt_scratch(be, 3, SHAPE(1, len, d), &h));
  TRY_OUT(sd_dpt_scratch(be, 3, SHAPE(1, len, d), &q));
  TRY_OUT(sd_dpt_scratch(be, 3, SHAPE(1, len, d), &k));
  TRY_OUT(sd_dpt_scratch(be, 3, SHAPE(1, len, d), &v));
  TRY_OUT(sd_dpt_scratch(be, 3, SHAPE(1, len, d), &o));
  TRY_OUT(sd_dpt_scratch(be, 3, SHAPE(1, len, c->intermediate_size), &mid));
  TRY_OUT(sd_dpt_scratch(be, 3, SHAPE(1, len, d), &out));
  TRY_OUT(sd_op_layer_norm(be, x, L->ln1_w, L->ln1_b, c->layer_norm_eps, &h));
  TRY_OUT(sd_op_linear(be, &h, L->q_w, L->q_b, SD_ACT_NONE, &q));
  TRY_OUT(sd_op_linear(be, &h, L->k_w, L->k_b, SD_ACT_NONE, &k));
  TRY_OUT(sd_op_linear(be, &h, L->v_w, L->v_b, SD_ACT_NONE, &v));
  int heads = c->num_attention_heads;
  float scale = 1.0f / sqrtf((float)(d / heads));
  TRY_OUT(sd_op_attention(be, &q, &k, &v, heads, scale, false, &o));
  TRY_OUT(sd_op_linear(be, &o, L->o_w, L->o_b, SD_ACT_NONE, &out));
  TRY_OUT(sd_op_add(be, x, &out, x));
  TRY_OUT(sd_op_layer_norm(be, x, L->ln2_w, L->ln2_b, c->layer_norm_eps, &h));
  TRY_OUT(sd_op_linear(be, &h, L->fc1_w, L->fc1_b, SD_ACT_GELU, &mid));
  TRY_OUT(sd_op_linear(be, &mid, L->fc2_w, L->fc2_b, SD_ACT_NONE, &out));
  TRY_OUT(sd_op_add(be, x, &out, x));
  rc = 0;
out:
  sd_arena_release(be, mark);
  return rc;
}

/* Reassemble stage i: hs (1, 1 + g*g, D) -> y (1, Ci, side, side) (allocated here). */
static int reassemble(sd_dpt *m, int i, const sd_tensor *hs, int64_t g, sd_tensor *y) {
  sd_backend *be = m->be;
  const sd_dpt_config *c = &m->cfg;
  int64_t d = c->hidden_size, n = g * g, ci = c->neck_hidden_sizes[i];
  /* [token, cls] rows (n, 2D): the tokens and n copies of the CLS row side by side */
  sd_tensor table, cls_rep, tok, cat, cat3, proj, proj_t, feat;
  SD_TRY(sd_tensor_reshape(hs, 2, SHAPE(1 + n, d), &table));
  SD_TRY(sd_dpt_scratch(be, 2, SHAPE(n, d), &cls_rep));
  int32_t *zeros = calloc((size_t)n, sizeof *zeros);
  if (!zeros)
    return SD_ERROR("out of memory for %lld readout ids", (long long)n);
  int rc = sd_op_embedding(be, &table, zeros, n, &cls_rep);
  free(zeros);
  SD_TRY(rc);
  tok = sd_tensor_4d(hs->dtype, n, d, 1, 1);
  tok.data = (char *)hs->data + (size_t)d * sd_dtype_size(hs->dtype);
  sd_tensor rep4;
  SD_TRY(sd_tensor_reshape(&cls_rep, 4, SHAPE(n, d, 1, 1), &rep4));
  SD_TRY(sd_dpt_scratch(be, 4, SHAPE(n, 2 * d, 1, 1), &cat));
  SD_TRY(sd_op_concat_channels(be, &tok, &rep4, &cat));
  SD_TRY(sd_tensor_reshape(&cat, 3, SHAPE(1, n, 2 * d), &cat3));
  SD_TRY(sd_dpt_scratch(be, 3, SHAPE(1, n, d), &proj));
  SD_TRY(sd_op_linear(be, &cat3, m->readout_w[i], m->readout_b[i], SD_ACT_GELU, &proj));
  SD_TRY(sd_dpt_scratch(be, 3, SHAPE(1, d, n), &proj_t));
  SD_TRY(sd_op_transpose(be, &proj, &proj_t));
  sd_tensor grid;
  SD_TRY(sd_tensor_reshape(&proj_t, 4, SHAPE(1, d, g, g), &grid));
  SD_TRY(sd_dpt_scratch(be, 4, SHAPE(1, ci, g, g), &feat));
  SD_TRY(sd_op_conv2d(be, &grid, m->reassemble_w[i], m->reassemble_b[i], 1, 0, &feat));
  int64_t side = stage_side(c, i, g);
  if (!m->resize_w[i]) {
    *y = feat;
    return 0;
  }
  SD_TRY(sd_dpt_scratch(be, 4, SHAPE(1, ci, side, side), y));
  if (c->reassemble_up[i] > 1)
    return sd_op_conv_transpose2d(be, &feat, m->resize_w[i], m->resize_b[i], c->reassemble_up[i], 0,
                                  y);
  return sd_op_conv2d(be, &feat, m->resize_w[i], m->resize_b[i], c->reassemble_down[i], 1, y);
}

/* y = x + conv2(relu(conv1(relu(x)))), y allocated here. */
static int residual_forward(sd_dpt *m, const residual_unit *u, const sd_tensor *x, sd_tensor *y) {
  sd_backend *be = m->be;
  sd_tensor a, b;
  SD_TRY(sd_dpt_scratch(be, 4, x->shape, &a));
  SD_TRY(sd_dpt_scratch(be, 4, x->shape, &b));
  SD_TRY(sd_dpt_scratch(be, 4, x->shape, y));
  SD_TRY(sd_op_activation(be, x, SD_ACT_RELU, &a));
  SD_TRY(sd_op_conv2d(be, &a, u->conv1_w, u->conv1_b, 1, 1, &b));
  SD_TRY(sd_op_activation(be, &b, SD_ACT_RELU, &b));
  SD_TRY(sd_op_conv2d(be, &b, u->conv2_w, u->conv2_b, 1, 1, &a));
  return sd_op_add(be, &a, x, y);
}

/* DPTFeatureFusionLayer: fused (may be NULL for the first) and the stage's feature -> out. */
static int fusion_forward(sd_dpt *m, const fusion_layer *L, const sd_tensor *fused,
                          const sd_tensor *feature, sd_tensor *out) {
  sd_backend *be = m->be;
  sd_tensor h = *feature;
  if (fused) {
    sd_tensor res = *feature, r;
    if (!sd_tensor_same_shape(fused, feature)) {
      SD_TRY(sd_dpt_scratch(be, 4, fused->shape, &res));
      SD_TRY(sd_op_interpolate(be, feature, SD_INTERP_BILINEAR, false, &res));
    }
    SD_TRY(residual_forward(m, &L->res1, &res, &r));
    SD_TRY(sd_dpt_scratch(be, 4, fused->shape, &h));
    SD_TRY(sd_op_add(be, fused, &r, &h));
  }
  sd_tensor r2, up;
  SD_TRY(residual_forward(m, &L->res2, &h, &r2));
  SD_TRY(sd_dpt_scratch(be, 4, SHAPE(1, r2.shape[1], 2 * r2.shape[2], 2 * r2.shape[3]), &up));
  SD_TRY(sd_op_interpolate(be, &r2, SD_INTERP_BILINEAR, true, &up));
  SD_TRY(sd_dpt_scratch(be, 4, up.shape, out));
  return sd_op_conv2d(be, &up, L->proj_w, L->proj_b, 1, 0, out);
}

static int head_forward(sd_dpt *m, const sd_tensor *x, sd_tensor *depth) {
  sd_backend *be = m->be;
  int64_t f = m->cfg.fusion_hidden_size, h = x->shape[2], w = x->shape[3];
  sd_tensor a, up, b, d4;
  SD_TRY(sd_dpt_scratch(be, 4, SHAPE(1, f / 2, h, w), &a));
  SD_TRY(sd_op_conv2d(be, x, m->head1_w, m->head1_b, 1, 1, &a));
  SD_TRY(sd_dpt_scratch(be, 4, SHAPE(1, f / 2, 2 * h, 2 * w), &up));
  SD_TRY(sd_op_interpolate(be, &a, SD_INTERP_BILINEAR, true, &up));
  SD_TRY(sd_dpt_scratch(be, 4, SHAPE(1, 32, 2 * h, 2 * w), &b));
  SD_TRY(sd_op_conv2d(be, &up, m->head2_w, m->head2_b, 1, 1, &b));
  SD_TRY(sd_op_activation(be, &b, SD_ACT_RELU, &b));
  SD_TRY(sd_tensor_reshape(depth, 4, SHAPE(1, 1, 2 * h, 2 * w), &d4));
  SD_TRY(sd_op_conv2d(be, &b, m->head3_w, m->head3_b, 1, 0, &d4));
  return sd_op_activation(be, &d4, SD_ACT_RELU, &d4);
}

static int forward(sd_dpt *m, const sd_tensor *pixels, sd_tensor *depth) {
  sd_backend *be = m->be;
  const sd_dpt_config *c = &m->cfg;
  int64_t d = c->hidden_size, g = pixels->shape[2] / c->patch_size, n = g * g;
  sd_tensor bit_features[SD_DPT_BIT_STAGES], patches, tokens;
  SD_TRY(sd_dpt_scratch(be, 4, SHAPE(1, d, g, g), &patches));
  if (c->is_hybrid) {
    SD_TRY(sd_dpt_bit_forward(be, c, &m->bit, pixels, bit_features, m->hook, m->hook_ctx));
    if (bit_features[2].shape[2] != g || bit_features[2].shape[3] != g)
      return SD_ERROR("depth estimator: BiT features of %lldx%lld for a %lldx%lld token grid",
                      (long long)bit_features[2].shape[2], (long long)bit_features[2].shape[3],
                      (long long)g, (long long)g);
    SD_TRY(sd_op_conv2d(be, &bit_features[2], m->patch_w, m->patch_b, 1, 0, &patches));
  } else {
    SD_TRY(sd_op_conv2d(be, pixels, m->patch_w, m->patch_b, c->patch_size, 0, &patches));
  }
  SD_TRY(embed(m, &patches, &tokens));
  stage(m, "dpt.embeddings", 0, &tokens);
  sd_tensor kept[SD_DPT_STAGES];
  for (int i = 0; i < SD_DPT_STAGES; i++)
    SD_TRY(sd_dpt_scratch(be, 3, SHAPE(1, 1 + n, d), &kept[i]));
  for (int l = 0; l < c->num_hidden_layers; l++) {
    SD_TRY(vit_layer_forward(m, &m->layers[l], &tokens));
    stage(m, "vit.layer%d", l, &tokens);
    for (int i = 0; i < SD_DPT_STAGES; i++)
      if (c->backbone_out_indices[i] == l && !neck_from_bit(c, i))
        SD_TRY(sd_op_copy(be, &tokens, &kept[i]));
  }
  sd_tensor features[SD_DPT_STAGES];
  for (int i = 0; i < SD_DPT_STAGES; i++) {
    sd_tensor r;
    if (neck_from_bit(c, i)) {
      r = bit_features[i];
    } else {
      SD_TRY(reassemble(m, i, &kept[i], g, &r));
      stage(m, "neck.reassemble%d", i, &r);
    }
    SD_TRY(sd_dpt_scratch(be, 4, SHAPE(1, c->fusion_hidden_size, r.shape[2], r.shape[3]),
                          &features[i]));
    SD_TRY(sd_op_conv2d(be, &r, m->neck_w[i], NULL, 1, 1, &features[i]));
    stage(m, "neck.conv%d", i, &features[i]);
  }
  sd_tensor fused, prev;
  for (int j = 0; j < SD_DPT_STAGES; j++) {
    SD_TRY(fusion_forward(m, &m->fusion[j], j ? &prev : NULL, &features[SD_DPT_STAGES - 1 - j],
                          &fused));
    stage(m, "neck.fusion%d", j, &fused);
    prev = fused;
  }
  return head_forward(m, &fused, depth);
}

int sd_dpt_forward(sd_dpt *model, const sd_tensor *pixel_values, sd_tensor *depth) {
  const sd_dpt_config *c = &model->cfg;
  char sp[96], sd[96];
  int64_t oh, ow;
  if (pixel_values->ndim != 4 || pixel_values->shape[0] != 1 ||
      pixel_values->shape[1] != c->num_channels)
    return SD_ERROR("depth estimator: pixel_values %s is not (1, %d, H, W)",
                    sd_tensor_shape_str(pixel_values, sp, sizeof sp), c->num_channels);
  sd_dpt_output_size(model, pixel_values->shape[2], pixel_values->shape[3], &oh, &ow);
  if (oh == 0)
    return SD_ERROR("depth estimator: a %lldx%lld input; this %s DPT takes %s",
                    (long long)pixel_values->shape[2], (long long)pixel_values->shape[3],
                    c->is_hybrid ? "hybrid" : "ViT",
                    c->is_hybrid ? "exactly image_size x image_size"
                                 : "squares of a multiple of patch_size");
  if (depth->ndim != 3 || depth->shape[0] != 1 || depth->shape[1] != oh || depth->shape[2] != ow)
    return SD_ERROR("depth estimator: depth %s is not (1, %lld, %lld)",
                    sd_tensor_shape_str(depth, sd, sizeof sd), (long long)oh, (long long)ow);
  sd_arena_mark mark = sd_arena_get_mark(model->be);
  int rc = forward(model, pixel_values, depth);
  sd_arena_release(model->be, mark);
  return rc < 0 ? sd_error_context("depth estimator") : 0;
}
