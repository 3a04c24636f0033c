/* Reading a DPT depth estimator folder: config.json (transformers' DPTConfig and its BitConfig)
 * and model.safetensors, with the constant weight transforms stated in dpt_files.h. */
#include "dpt_files.h"

#include "config_json.h"
#include "safetensors.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds: generous multiples of the largest real DPT (dpt-large: 1024 hidden, 24 layers). */
#define DPT_MAX_HIDDEN   8192
#define DPT_MAX_LAYERS   128
#define DPT_MAX_IMAGE    4096
#define DPT_MAX_CHANNELS 8192
#define DPT_MAX_DEPTH    64

/* transformers' GroupNorm / BatchNorm2d default eps; BiT's weight standardization eps. */
#define DPT_BATCH_NORM_EPS 1e-5
#define BIT_WS_EPS         1e-8

typedef struct cfg_ctx {
  const char *path;
  const char *prefix; /* "" or "backbone_config." for error messages */
  const cJSON *obj;
} cfg_ctx;

static const cJSON *item_of(const cfg_ctx *c, const char *name) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(c->obj, name);
  return item && !cJSON_IsNull(item) ? item : NULL;
}

/* Integer field in [lo, hi]; `fallback` when absent. */
static int get_int(const cfg_ctx *c, const char *name, int fallback, int lo, int hi, int *out) {
  const cJSON *item = item_of(c, name);
  if (!item) {
    *out = fallback;
    return 0;
  }
  double d = item->valuedouble;
  if (!cJSON_IsNumber(item) || floor(d) != d || d < lo || d > hi)
    return SD_ERROR("%s: field '%s%s' must be an integer in [%d, %d]", c->path, c->prefix, name, lo,
                    hi);
  *out = (int)d;
  return 0;
}

static int get_bool(const cfg_ctx *c, const char *name, bool fallback, bool *out) {
  const cJSON *item = item_of(c, name);
  if (!item) {
    *out = fallback;
    return 0;
  }
  if (!cJSON_IsBool(item))
    return SD_ERROR("%s: field '%s%s' must be true or false", c->path, c->prefix, name);
  *out = cJSON_IsTrue(item);
  return 0;
}

static int get_float(const cfg_ctx *c, const char *name, float fallback, float *out) {
  const cJSON *item = item_of(c, name);
  if (!item) {
    *out = fallback;
    return 0;
  }
  if (!cJSON_IsNumber(item) || !(item->valuedouble > 0.0) || item->valuedouble > 1.0)
    return SD_ERROR("%s: field '%s%s' must be a number in (0, 1]", c->path, c->prefix, name);
  *out = (float)item->valuedouble;
  return 0;
}

/* A string field that must be absent (then `fallback` is assumed) or one of `allowed`
 * (case-insensitive), else refused as unsupported. */
static int expect_string(const cfg_ctx *c, const char *name, const char *fallback,
                         const char *const *allowed, int n_allowed) {
  const cJSON *item = item_of(c, name);
  const char *value = fallback;
  if (item) {
    if (!cJSON_IsString(item))
      return SD_ERROR("%s: field '%s%s' must be a string", c->path, c->prefix, name);
    value = item->valuestring;
  }
  for (int i = 0; i < n_allowed; i++)
    if (value && strcasecmp(value, allowed[i]) == 0)
      return 0;
  return SD_ERROR("%s: field '%s%s' is \"%s\"; sdbatch implements \"%s\"", c->path, c->prefix, name,
                  value ? value : "null", allowed[0]);
}

/* A list of exactly n integers in [lo, hi]. */
static int get_int_list(const cfg_ctx *c, const char *name, int n, int lo, int hi, int *out) {
  const cJSON *item = item_of(c, name);
  if (!item)
    return SD_ERROR("%s: required field '%s%s' missing", c->path, c->prefix, name);
  if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != n)
    return SD_ERROR("%s: field '%s%s' must be a list of %d integers", c->path, c->prefix, name, n);
  for (int i = 0; i < n; i++) {
    const cJSON *e = cJSON_GetArrayItem(item, i);
    double d = e->valuedouble;
    if (!cJSON_IsNumber(e) || floor(d) != d || d < lo || d > hi)
      return SD_ERROR("%s: field '%s%s[%d]' must be an integer in [%d, %d]", c->path, c->prefix,
                      name, i, lo, hi);
    out[i] = (int)d;
  }
  return 0;
}

/* transformers' make_div(value, 8) of BiT's channel counts. */
static int make_div(double value) {
  int v = (int)(value + 4.0) / 8 * 8;
  v = v < 8 ? 8 : v;
  if (v < 0.9 * value)
    v += 8;
  return v;
}

static int parse_bit(const char *path, const cJSON *obj, sd_dpt_config *cfg) {
  if (!cJSON_IsObject(obj))
    return SD_ERROR("%s: DPT-hybrid needs a 'backbone_config' object", path);
  cfg_ctx c = {path, "backbone_config.", obj};
  static const char *const bit[] = {"bit"}, *const bottleneck[] = {"bottleneck"},
                           *const same[] = {"same"}, *const relu[] = {"relu"};
  SD_TRY(expect_string(&c, "model_type", "bit", bit, 1));
  SD_TRY(expect_string(&c, "layer_type", "preactivation", bottleneck, 1));
  SD_TRY(expect_string(&c, "global_padding", NULL, same, 1));
  SD_TRY(expect_string(&c, "hidden_act", "relu", relu, 1));
  int channels, output_stride, width_factor;
  SD_TRY(get_int(&c, "num_channels", 3, 1, 16, &channels));
  if (channels != cfg->num_channels)
    return SD_ERROR("%s: backbone_config.num_channels %d differs from num_channels %d", path,
                    channels, cfg->num_channels);
  SD_TRY(get_int(&c, "embedding_size", 64, 1, DPT_MAX_CHANNELS, &cfg->bit_embedding_size));
  SD_TRY(get_int(&c, "num_groups", 32, 1, DPT_MAX_CHANNELS, &cfg->bit_num_groups));
  SD_TRY(get_int(&c, "output_stride", 32, 1, 1024, &output_stride));
  SD_TRY(get_int(&c, "width_factor", 1, 1, 16, &width_factor));
  SD_TRY(get_bool(&c, "embedding_dynamic_padding", false, &cfg->bit_embedding_dynamic_padding));
  /* the stem's stride 4 and the stages' 1, 2, 2: dilation would start at output_stride <= 16 */
  if (output_stride <= 16)
    return SD_ERROR("%s: backbone_config.output_stride %d dilates the BiT stages; sdbatch "
                    "implements output_stride > 16",
                    path, output_stride);
  const cJSON *depths = item_of(&c, "depths");
  if (!depths || !cJSON_IsArray(depths) || cJSON_GetArraySize(depths) != SD_DPT_BIT_STAGES)
    return SD_ERROR("%s: backbone_config.depths must list %d stages (DPT-hybrid's stage1..3)", path,
                    SD_DPT_BIT_STAGES);
  SD_TRY(get_int_list(&c, "depths", SD_DPT_BIT_STAGES, 1, DPT_MAX_DEPTH, cfg->bit_depths));
  int sizes[8] = {0};
  const cJSON *hs = item_of(&c, "hidden_sizes");
  int n_sizes = hs && cJSON_IsArray(hs) ? cJSON_GetArraySize(hs) : 0;
  if (n_sizes < SD_DPT_BIT_STAGES || n_sizes > 8)
    return SD_ERROR("%s: backbone_config.hidden_sizes must list 3 to 8 sizes", path);
  SD_TRY(get_int_list(&c, "hidden_sizes", n_sizes, 1, DPT_MAX_CHANNELS, sizes));
  for (int s = 0; s < SD_DPT_BIT_STAGES; s++)
    cfg->bit_hidden_sizes[s] = make_div((double)sizes[s] * width_factor);
  const cJSON *features = item_of(&c, "out_features");
  static const char *const want[SD_DPT_BIT_STAGES] = {"stage1", "stage2", "stage3"};
  bool ok =
      features && cJSON_IsArray(features) && cJSON_GetArraySize(features) == SD_DPT_BIT_STAGES;
  for (int i = 0; ok && i < SD_DPT_BIT_STAGES; i++) {
    const cJSON *f = cJSON_GetArrayItem(features, i);
    ok = cJSON_IsString(f) && strcmp(f->valuestring, want[i]) == 0;
  }
  if (!ok)
    return SD_ERROR("%s: backbone_config.out_features must be [\"stage1\", \"stage2\", "
                    "\"stage3\"] (DPT-hybrid's three feature maps)",
                    path);
  int mid_groups[SD_DPT_BIT_STAGES + 1] = {cfg->bit_embedding_size};
  for (int s = 0; s < SD_DPT_BIT_STAGES; s++)
    mid_groups[s + 1] = cfg->bit_hidden_sizes[s];
  for (int s = 0; s <= SD_DPT_BIT_STAGES; s++) {
    int mid = s ? make_div(mid_groups[s] * 0.25) : mid_groups[0];
    if (mid_groups[s] % cfg->bit_num_groups || mid % cfg->bit_num_groups)
      return SD_ERROR("%s: backbone_config: %d or %d channels do not split into num_groups %d",
                      path, mid_groups[s], mid, cfg->bit_num_groups);
  }
  return 0;
}

static int parse_dpt(const char *path, const cJSON *root, sd_dpt_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg_ctx c = {path, "", root};
  static const char *const dpt[] = {"dpt"}, *const project[] = {"project"},
                           *const gelu[] = {"gelu"};
  SD_TRY(expect_string(&c, "model_type", NULL, dpt, 1));
  SD_TRY(expect_string(&c, "readout_type", "project", project, 1));
  SD_TRY(expect_string(&c, "hidden_act", "gelu", gelu, 1));
  SD_TRY(get_bool(&c, "is_hybrid", false, &cfg->is_hybrid));
  SD_TRY(get_int(&c, "num_channels", 3, 1, 16, &cfg->num_channels));
  SD_TRY(get_int(&c, "image_size", 384, 1, DPT_MAX_IMAGE, &cfg->image_size));
  SD_TRY(get_int(&c, "patch_size", 16, 1, DPT_MAX_IMAGE, &cfg->patch_size));
  SD_TRY(get_int(&c, "hidden_size", 768, 1, DPT_MAX_HIDDEN, &cfg->hidden_size));
  SD_TRY(get_int(&c, "num_hidden_layers", 12, 1, DPT_MAX_LAYERS, &cfg->num_hidden_layers));
  SD_TRY(get_int(&c, "num_attention_heads", 12, 1, DPT_MAX_HIDDEN, &cfg->num_attention_heads));
  SD_TRY(get_int(&c, "intermediate_size", 3072, 1, 4 * DPT_MAX_HIDDEN, &cfg->intermediate_size));
  SD_TRY(get_float(&c, "layer_norm_eps", 1e-12f, &cfg->layer_norm_eps));
  SD_TRY(get_bool(&c, "qkv_bias", true, &cfg->qkv_bias));
  SD_TRY(get_int(&c, "fusion_hidden_size", 256, 2, DPT_MAX_CHANNELS, &cfg->fusion_hidden_size));
  SD_TRY(get_bool(&c, "use_batch_norm_in_fusion_residual", false,
                  &cfg->use_batch_norm_in_fusion_residual));
  SD_TRY(get_bool(&c, "use_bias_in_fusion_residual", !cfg->use_batch_norm_in_fusion_residual,
                  &cfg->use_bias_in_fusion_residual));
  bool add_projection;
  SD_TRY(get_bool(&c, "add_projection", false, &add_projection));
  if (add_projection)
    return SD_ERROR("%s: field 'add_projection' is true; sdbatch implements DPT heads without "
                    "the extra projection",
                    path);
  int head_in_index;
  SD_TRY(get_int(&c, "head_in_index", -1, -4, 3, &head_in_index));
  if (head_in_index != -1 && head_in_index != SD_DPT_STAGES - 1)
    return SD_ERROR("%s: field 'head_in_index' is %d; sdbatch implements -1 (the last fusion "
                    "stage)",
                    path, head_in_index);
  if (cfg->hidden_size % cfg->num_attention_heads)
    return SD_ERROR("%s: hidden_size %d does not split into %d heads", path, cfg->hidden_size,
                    cfg->num_attention_heads);
  if (cfg->image_size % cfg->patch_size)
    return SD_ERROR("%s: image_size %d is not a multiple of patch_size %d", path, cfg->image_size,
                    cfg->patch_size);
  SD_TRY(get_int_list(&c, "backbone_out_indices", SD_DPT_STAGES, 0, cfg->num_hidden_layers - 1,
                      cfg->backbone_out_indices));
  SD_TRY(get_int_list(&c, "neck_hidden_sizes", SD_DPT_STAGES, 1, DPT_MAX_CHANNELS,
                      cfg->neck_hidden_sizes));
  const cJSON *factors = item_of(&c, "reassemble_factors");
  if (!factors || !cJSON_IsArray(factors) || cJSON_GetArraySize(factors) != SD_DPT_STAGES)
    return SD_ERROR("%s: field 'reassemble_factors' must be a list of %d numbers", path,
                    SD_DPT_STAGES);
  for (int i = 0; i < SD_DPT_STAGES; i++) {
    const cJSON *f = cJSON_GetArrayItem(factors, i);
    double v = cJSON_IsNumber(f) ? f->valuedouble : 0.0;
    double inv = v > 0.0 ? 1.0 / v : 0.0;
    if (v >= 1.0 && v <= 64.0 && floor(v) == v) {
      cfg->reassemble_up[i] = (int)v;
      cfg->reassemble_down[i] = 1;
    } else if (v > 0.0 && v < 1.0 && inv <= 64.0 && fabs(inv - floor(inv + 0.5)) < 1e-9) {
      cfg->reassemble_up[i] = 1;
      cfg->reassemble_down[i] = (int)floor(inv + 0.5);
    } else {
      return SD_ERROR("%s: field 'reassemble_factors[%d]' must be an integer in [1, 64] or 1 / n "
                      "with n in [2, 64]",
                      path, i);
    }
  }
  /* DPT-hybrid feeds its first two neck stages from BiT and must ignore them (transformers'
   * default); plain DPT ignores none whatever the file says (DPTConfig forces []) */
  const cJSON *ignore = item_of(&c, "neck_ignore_stages");
  if (cfg->is_hybrid && ignore) {
    int ignored[2] = {0};
    if (!cJSON_IsArray(ignore) || cJSON_GetArraySize(ignore) != 2 ||
        get_int_list(&c, "neck_ignore_stages", 2, 0, SD_DPT_STAGES - 1, ignored) < 0 ||
        ignored[0] != 0 || ignored[1] != 1)
      return SD_ERROR("%s: field 'neck_ignore_stages' must be [0, 1] for DPT-hybrid", path);
  }
  const cJSON *backbone = item_of(&c, "backbone_config");
  if (cfg->is_hybrid && !backbone) {
    /* DPTConfig's default backbone for DPT-hybrid: BitConfig(global_padding="same",
     * layer_type="bottleneck", depths=[3, 4, 9], out_features=stage1..3,
     * embedding_dynamic_padding=True) with BitConfig's other defaults */
    static const int depths[SD_DPT_BIT_STAGES] = {3, 4, 9};
    static const int sizes[SD_DPT_BIT_STAGES] = {256, 512, 1024};
    cfg->bit_embedding_size = 64;
    cfg->bit_num_groups = 32;
    cfg->bit_embedding_dynamic_padding = true;
    for (int s = 0; s < SD_DPT_BIT_STAGES; s++) {
      cfg->bit_depths[s] = depths[s];
      cfg->bit_hidden_sizes[s] = sizes[s];
    }
  } else if (cfg->is_hybrid) {
    SD_TRY(parse_bit(path, backbone, cfg));
  }
  if (cfg->is_hybrid && cfg->patch_size != 16)
    return SD_ERROR("%s: DPT-hybrid's patch_size must be 16 (the BiT stride), not %d", path,
                    cfg->patch_size);
  if (!cfg->is_hybrid && backbone) {
    return SD_ERROR("%s: a plain DPT with a 'backbone_config' (e.g. DINOv2, Swin) is not "
                    "implemented",
                    path);
  }
  return 0;
}

int sd_dpt_config_read(const char *path, sd_dpt_config *cfg) {
  cJSON *root;
  SD_TRY(sd_json_read_file(path, &root));
  int rc = parse_dpt(path, root, cfg);
  cJSON_Delete(root);
  return rc;
}

/* ---- weights ---- */

typedef struct dpt_internal {
  sd_safetensors *file;
  float **buffers; /* transformed weights, owned */
  size_t n_buffers, cap_buffers;
} dpt_internal;

static float *new_buffer(dpt_internal *in, size_t count) {
  if (in->n_buffers == in->cap_buffers) {
    size_t cap = in->cap_buffers ? 2 * in->cap_buffers : 64;
    float **grown = realloc(in->buffers, cap * sizeof *grown);
    if (!grown)
      return NULL;
    in->buffers = grown;
    in->cap_buffers = cap;
  }
  float *b = malloc(count * sizeof *b);
  if (b)
    in->buffers[in->n_buffers++] = b;
  return b;
}

static const sd_st_tensor *need(const dpt_internal *in, const char *name, int ndim) {
  const sd_st_tensor *t = sd_safetensors_find(in->file, name);
  if (!t) {
    SD_ERROR("%s: tensor '%s' missing", sd_safetensors_path(in->file), name);
    return NULL;
  }
  if (t->ndim != ndim) {
    SD_ERROR("%s: tensor '%s' has %d dims, expected %d", sd_safetensors_path(in->file), name,
             t->ndim, ndim);
    return NULL;
  }
  return t;
}

/* Replaces a BiT convolution weight (K, C, kh, kw) by its standardized copy. */
static int standardize(dpt_internal *in, sd_tensor_map *map, const char *name) {
  const sd_st_tensor *t = need(in, name, 4);
  if (!t)
    return -1;
  size_t k = (size_t)t->shape[0], per = (size_t)(t->shape[1] * t->shape[2] * t->shape[3]);
  float *w = new_buffer(in, k * per);
  if (!w)
    return SD_ERROR("out of memory standardizing '%s'", name);
  sd_convert_to_f32(t->dtype, t->data, w, k * per);
  for (size_t o = 0; o < k; o++) {
    float *row = w + o * per;
    double mean = 0.0, var = 0.0;
    for (size_t i = 0; i < per; i++)
      mean += row[i];
    mean /= (double)per;
    for (size_t i = 0; i < per; i++)
      var += (row[i] - mean) * (row[i] - mean);
    var /= (double)per;
    double inv = 1.0 / sqrt(var + BIT_WS_EPS);
    for (size_t i = 0; i < per; i++)
      row[i] = (float)((row[i] - mean) * inv);
  }
  return sd_tensor_map_put(map, name, SD_DTYPE_F32, t->ndim, t->shape, w);
}

/* Folds batch_norm `bn` (eval: running statistics) into the convolution `conv` before it: the
 * weight scaled per output channel, a bias "<conv>.bias" added (on top of the conv's own). */
static int fold_batch_norm(dpt_internal *in, sd_tensor_map *map, const char *conv, const char *bn) {
  char name[320];
  snprintf(name, sizeof name, "%s.weight", conv);
  const sd_st_tensor *wt = need(in, name, 4);
  if (!wt)
    return -1;
  size_t k = (size_t)wt->shape[0], per = (size_t)(wt->shape[1] * wt->shape[2] * wt->shape[3]);
  const char *parts[4] = {"weight", "bias", "running_mean", "running_var"};
  float *stats[4];
  for (int p = 0; p < 4; p++) {
    char key[320];
    snprintf(key, sizeof key, "%s.%s", bn, parts[p]);
    const sd_st_tensor *s = need(in, key, 1);
    if (!s)
      return -1;
    if ((size_t)s->shape[0] != k)
      return SD_ERROR("%s: tensor '%s' has %lld entries for %zu channels",
                      sd_safetensors_path(in->file), key, (long long)s->shape[0], k);
    stats[p] = new_buffer(in, k);
    if (!stats[p])
      return SD_ERROR("out of memory folding '%s'", key);
    sd_convert_to_f32(s->dtype, s->data, stats[p], k);
  }
  float *w = new_buffer(in, k * per), *b = new_buffer(in, k);
  if (!w || !b)
    return SD_ERROR("out of memory folding '%s'", bn);
  sd_convert_to_f32(wt->dtype, wt->data, w, k * per);
  char bias_name[320];
  snprintf(bias_name, sizeof bias_name, "%s.bias", conv);
  const sd_st_tensor *conv_b = sd_safetensors_find(in->file, bias_name);
  for (size_t o = 0; o < k; o++) {
    double scale = stats[0][o] / sqrt((double)stats[3][o] + DPT_BATCH_NORM_EPS);
    float own = 0.0f;
    if (conv_b)
      sd_convert_to_f32(conv_b->dtype,
                        (const char *)conv_b->data + o * sd_dtype_size(conv_b->dtype), &own, 1);
    for (size_t i = 0; i < per; i++)
      w[o * per + i] = (float)(w[o * per + i] * scale);
    b[o] = (float)((own - stats[2][o]) * scale + stats[1][o]);
  }
  const int64_t bias_shape[1] = {(int64_t)k};
  SD_TRY(sd_tensor_map_put(map, name, SD_DTYPE_F32, 4, wt->shape, w));
  return sd_tensor_map_put(map, bias_name, SD_DTYPE_F32, 1, bias_shape, b);
}

static int transform_bit(dpt_internal *in, sd_tensor_map *map, const sd_dpt_config *cfg) {
  const char *bit = "dpt.embeddings.backbone.bit.";
  char name[320];
  snprintf(name, sizeof name, "%sembedder.convolution.weight", bit);
  SD_TRY(standardize(in, map, name));
  for (int s = 0; s < SD_DPT_BIT_STAGES; s++)
    for (int l = 0; l < cfg->bit_depths[s]; l++) {
      static const char *const convs[] = {"conv1", "conv2", "conv3", "downsample.conv"};
      for (int c = 0; c < (l == 0 ? 4 : 3); c++) {
        snprintf(name, sizeof name, "%sencoder.stages.%d.layers.%d.%s.weight", bit, s, l, convs[c]);
        SD_TRY(standardize(in, map, name));
      }
    }
  return 0;
}

static int transform_fusion(dpt_internal *in, sd_tensor_map *map) {
  for (int i = 0; i < SD_DPT_STAGES; i++)
    for (int r = 1; r <= 2; r++)
      for (int c = 1; c <= 2; c++) {
        char conv[256], bn[256];
        snprintf(conv, sizeof conv, "neck.fusion_stage.layers.%d.residual_layer%d.convolution%d", i,
                 r, c);
        snprintf(bn, sizeof bn, "neck.fusion_stage.layers.%d.residual_layer%d.batch_norm%d", i, r,
                 c);
        SD_TRY(fold_batch_norm(in, map, conv, bn));
      }
  return 0;
}

void sd_dpt_files_close(sd_dpt_files *files) {
  if (!files)
    return;
  dpt_internal *in = files->internal;
  if (in) {
    for (size_t i = 0; i < in->n_buffers; i++)
      free(in->buffers[i]);
    free(in->buffers);
    sd_safetensors_close(in->file);
    free(in);
  }
  sd_tensor_map_free(files->tensors);
  free(files);
}

int sd_dpt_files_open(const char *dir, sd_dpt_files **out) {
  *out = NULL;
  sd_dpt_files *files = calloc(1, sizeof *files);
  dpt_internal *in = calloc(1, sizeof *in);
  if (!files || !in) {
    free(files);
    free(in);
    return SD_ERROR("out of memory opening %s", dir);
  }
  files->internal = in;
  char path[4096];
  int rc = -1;
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (sd_dpt_config_read(path, &files->cfg) < 0)
    goto fail;
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (sd_safetensors_open(path, &in->file) < 0)
    goto fail;
  files->tensors = sd_tensor_map_create();
  if (!files->tensors) {
    SD_ERROR("out of memory opening %s", dir);
    goto fail;
  }
  for (size_t i = 0; i < sd_safetensors_count(in->file); i++) {
    const sd_st_tensor *t = sd_safetensors_at(in->file, i);
    if (sd_tensor_map_put(files->tensors, t->name, t->dtype, t->ndim, t->shape, t->data) < 0)
      goto fail;
  }
  if (files->cfg.is_hybrid && transform_bit(in, files->tensors, &files->cfg) < 0)
    goto fail;
  if (files->cfg.use_batch_norm_in_fusion_residual && transform_fusion(in, files->tensors) < 0)
    goto fail;
  *out = files;
  return 0;
fail:
  rc = -1;
  sd_error_context("depth estimator %s", dir);
  sd_dpt_files_close(files);
  return rc;
}
