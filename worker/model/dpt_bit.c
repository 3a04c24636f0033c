/* The BiT backbone of DPT-hybrid (transformers' BitBackbone with layer_type "bottleneck" and
 * global_padding "same"): the stem (7x7 stride-2 conv, GroupNorm + ReLU, 3x3 stride-2 max pool)
 * and three stages of bottleneck layers whose outputs are DPT's feature maps. "same" padding is
 * TensorFlow's: a strided conv or pool pads max((ceil(H / s) - 1) s + k - H, 0) rows, the smaller
 * half on top (pad2d, then the op with no padding); stride-1 convs pad (k - 1) / 2 each side. */
#include "dpt_internal.h"

#include "../../kernels/error.h"

#include <stdio.h>
#include <stdlib.h>

/* transformers' BitGroupNormActivation eps. */
#define BIT_NORM_EPS 1e-5f

int sd_dpt_scratch(sd_backend *be, int ndim, const int64_t *shape, sd_tensor *t) {
  *t = sd_tensor_make(be->ops->act_dtype, ndim, shape);
  return sd_tensor_alloc(be, t);
}

static int get4(const sd_weights *w, const sd_tensor **out, int64_t k, int64_t c, int64_t kh,
                const char *name) {
  const int64_t shape[4] = {k, c, kh, kh};
  return sd_weights_get(w, out, 4, shape, "%s", name);
}

static int get_norm(const sd_weights *w, const sd_tensor **g, const sd_tensor **b, int64_t c,
                    const char *prefix) {
  const int64_t shape[1] = {c};
  SD_TRY(sd_weights_get(w, g, 1, shape, "%s.weight", prefix));
  return sd_weights_get(w, b, 1, shape, "%s.bias", prefix);
}

/* transformers' make_div(value, 8). */
static int make_div(double value) {
  int v = (int)(value + 4.0) / 8 * 8;
  v = v < 8 ? 8 : v;
  if (v < 0.9 * value)
    v += 8;
  return v;
}

int sd_dpt_bit_create(const sd_dpt_config *cfg, const sd_weights *w, bit_backbone *bit) {
  const char *root = "dpt.embeddings.backbone.bit";
  char name[320];
  snprintf(name, sizeof name, "%s.embedder.convolution.weight", root);
  SD_TRY(get4(w, &bit->stem_w, cfg->bit_embedding_size, cfg->num_channels, 7, name));
  snprintf(name, sizeof name, "%s.embedder.norm", root);
  SD_TRY(get_norm(w, &bit->stem_norm_w, &bit->stem_norm_b, cfg->bit_embedding_size, name));
  int in = cfg->bit_embedding_size;
  for (int s = 0; s < SD_DPT_BIT_STAGES; s++) {
    int out = cfg->bit_hidden_sizes[s];
    bit->layers[s] = calloc((size_t)cfg->bit_depths[s], sizeof *bit->layers[s]);
    if (!bit->layers[s])
      return SD_ERROR("out of memory creating BiT stage %d", s);
    for (int l = 0; l < cfg->bit_depths[s]; l++) {
      bit_layer *L = &bit->layers[s][l];
      L->in = l == 0 ? in : out;
      L->out = out;
      L->mid = make_div(out * 0.25);
      L->stride = l == 0 && s > 0 ? 2 : 1;
      char p[256];
      snprintf(p, sizeof p, "%s.encoder.stages.%d.layers.%d", root, s, l);
      snprintf(name, sizeof name, "%s.conv1.weight", p);
      SD_TRY(get4(w, &L->conv1_w, L->mid, L->in, 1, name));
      snprintf(name, sizeof name, "%s.conv2.weight", p);
      SD_TRY(get4(w, &L->conv2_w, L->mid, L->mid, 3, name));
      snprintf(name, sizeof name, "%s.conv3.weight", p);
      SD_TRY(get4(w, &L->conv3_w, L->out, L->mid, 1, name));
      for (int n = 1; n <= 3; n++) {
        snprintf(name, sizeof name, "%s.norm%d", p, n);
        const sd_tensor **g = n == 1 ? &L->norm1_w : n == 2 ? &L->norm2_w : &L->norm3_w;
        const sd_tensor **b = n == 1 ? &L->norm1_b : n == 2 ? &L->norm2_b : &L->norm3_b;
        SD_TRY(get_norm(w, g, b, n == 3 ? L->out : L->mid, name));
      }
      if (l == 0) {
        snprintf(name, sizeof name, "%s.downsample.conv.weight", p);
        SD_TRY(get4(w, &L->down_w, L->out, L->in, 1, name));
        snprintf(name, sizeof name, "%s.downsample.norm", p);
        SD_TRY(get_norm(w, &L->down_norm_w, &L->down_norm_b, L->out, name));
      }
    }
    in = out;
  }
  return 0;
}

void sd_dpt_bit_free(bit_backbone *bit) {
  for (int s = 0; s < SD_DPT_BIT_STAGES; s++) {
    free(bit->layers[s]);
    bit->layers[s] = NULL;
  }
}

/* TensorFlow "same" padding of one side of length n for kernel k, stride s. */
static int64_t same_pad(int64_t n, int64_t k, int64_t s) {
  int64_t pad = ((n + s - 1) / s - 1) * s + k - n;
  return pad > 0 ? pad : 0;
}

/* y = conv(x, w) with "same" padding (allocated here: (1, K, ceil(H / s), ceil(W / s))). */
static int same_conv(sd_backend *be, const sd_tensor *x, const sd_tensor *w, int stride,
                     sd_tensor *y) {
  int64_t k = w->shape[2], h = x->shape[2], wd = x->shape[3];
  int64_t ho = (h + stride - 1) / stride, wo = (wd + stride - 1) / stride;
  SD_TRY(sd_dpt_scratch(be, 4, (int64_t[]){x->shape[0], w->shape[0], ho, wo}, y));
  if (stride == 1 && (k - 1) % 2 == 0)
    return sd_op_conv2d(be, x, w, NULL, 1, (int)((k - 1) / 2), y);
  int64_t ph = same_pad(h, k, stride), pw = same_pad(wd, k, stride);
  if (ph == 0 && pw == 0)
    return sd_op_conv2d(be, x, w, NULL, stride, 0, y);
  sd_tensor padded;
  SD_TRY(sd_dpt_scratch(be, 4, (int64_t[]){x->shape[0], x->shape[1], h + ph, wd + pw}, &padded));
  SD_TRY(sd_op_pad2d(be, x, ph / 2, pw / 2, 0.0f, &padded));
  return sd_op_conv2d(be, &padded, w, NULL, stride, 0, y);
}

/* x = GroupNorm(x) (+ ReLU), in place. */
static int norm_act(sd_backend *be, const sd_dpt_config *cfg, sd_tensor *x, const sd_tensor *g,
                    const sd_tensor *b, bool relu) {
  SD_TRY(sd_op_group_norm(be, x, g, b, cfg->bit_num_groups, BIT_NORM_EPS, false, x));
  return relu ? sd_op_activation(be, x, SD_ACT_RELU, x) : 0;
}

static int layer_forward(sd_backend *be, const sd_dpt_config *cfg, const bit_layer *L,
                         const sd_tensor *x, sd_tensor *y) {
  sd_tensor shortcut = *x, a, b;
  if (L->down_w) {
    SD_TRY(same_conv(be, x, L->down_w, L->stride, &shortcut));
    SD_TRY(norm_act(be, cfg, &shortcut, L->down_norm_w, L->down_norm_b, false));
  }
  SD_TRY(same_conv(be, x, L->conv1_w, 1, &a));
  SD_TRY(norm_act(be, cfg, &a, L->norm1_w, L->norm1_b, true));
  SD_TRY(same_conv(be, &a, L->conv2_w, L->stride, &b));
  SD_TRY(norm_act(be, cfg, &b, L->norm2_w, L->norm2_b, true));
  SD_TRY(same_conv(be, &b, L->conv3_w, 1, y));
  SD_TRY(norm_act(be, cfg, y, L->norm3_w, L->norm3_b, false));
  SD_TRY(sd_op_add(be, y, &shortcut, y));
  return sd_op_activation(be, y, SD_ACT_RELU, y);
}

int sd_dpt_bit_forward(sd_backend *be, const sd_dpt_config *cfg, const bit_backbone *bit,
                       const sd_tensor *x, sd_tensor features[SD_DPT_BIT_STAGES],
                       sd_dpt_stage_fn hook, void *hook_ctx) {
  sd_tensor stem, pooled;
  SD_TRY(same_conv(be, x, bit->stem_w, 2, &stem));
  SD_TRY(norm_act(be, cfg, &stem, bit->stem_norm_w, bit->stem_norm_b, true));
  /* BitMaxPool2d: 3x3 stride 2; with dynamic padding the input is first padded "same" with 0
   * (below every ReLU output, so the same as torch's -inf padding would be) */
  int64_t h = stem.shape[2], w = stem.shape[3];
  sd_tensor pool_in = stem;
  if (cfg->bit_embedding_dynamic_padding) {
    int64_t ph = same_pad(h, 3, 2), pw = same_pad(w, 3, 2);
    if (ph || pw) {
      SD_TRY(sd_dpt_scratch(be, 4, (int64_t[]){1, stem.shape[1], h + ph, w + pw}, &pool_in));
      SD_TRY(sd_op_pad2d(be, &stem, ph / 2, pw / 2, 0.0f, &pool_in));
    }
  }
  int64_t ho = (pool_in.shape[2] - 3) / 2 + 1, wo = (pool_in.shape[3] - 3) / 2 + 1;
  SD_TRY(sd_dpt_scratch(be, 4, (int64_t[]){1, stem.shape[1], ho, wo}, &pooled));
  SD_TRY(sd_op_max_pool2d(be, &pool_in, 3, 2, 0, &pooled));
  if (hook)
    hook(hook_ctx, "bit.stem", &pooled);
  sd_tensor cur = pooled;
  for (int s = 0; s < SD_DPT_BIT_STAGES; s++) {
    for (int l = 0; l < cfg->bit_depths[s]; l++) {
      sd_tensor next;
      SD_TRY(layer_forward(be, cfg, &bit->layers[s][l], &cur, &next));
      cur = next;
    }
    features[s] = cur;
    if (hook) {
      char name[32];
      snprintf(name, sizeof name, "bit.stage%d", s);
      hook(hook_ctx, name, &cur);
    }
  }
  return 0;
}
