/* UNet of an original checkpoint (model.diffusion_model.*): architecture from shapes, LDM
 * input_blocks / middle_block / output_blocks keys to diffusers down_blocks / mid_block /
 * up_blocks names (see ldm_checkpoint.h); the x4 upscaler's label_emb (an nn.Embedding of the
 * noise levels) to class_embedding. */
#include "ldm_checkpoint.h"

#include "config_check.h"

#include "../../kernels/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_BLOCKS 256

/* The LDM UNet's block grid: levels x (layers resnets [+ attention]) plus downsamplers. */
typedef struct unet_layout {
  int input_blocks, output_blocks;
  int levels, layers;
} unet_layout;

static int scan_layout(const sd_safetensors *file, unet_layout *layout) {
  const char *path = sd_safetensors_path(file);
  const size_t prefix_len = strlen(SD_LDM_UNET_PREFIX);
  bool is_op[MAX_BLOCKS] = {false};
  int max_in = -1, max_out = -1, ops = 0;
  for (size_t k = 0; k < sd_safetensors_count(file); k++) {
    const char *key = sd_safetensors_at(file, k)->name;
    if (strncmp(key, SD_LDM_UNET_PREFIX, prefix_len) != 0)
      continue;
    const char *s = key + prefix_len;
    int i;
    if (strncmp(s, "label_emb.", 10) == 0 && strcmp(s, "label_emb.weight") != 0)
      return SD_ERROR("%s: '%s': only an embedding table of class labels (label_emb.weight, the "
                      "x4 upscaler's) is supported, not LDM's sequential label_emb (SDXL, "
                      "unCLIP)",
                      path, key);
    if (strncmp(s, "input_blocks.", 13) == 0) {
      s += 13;
      if (sd_ldm_parse_index(&s, &i) != 0 || i >= MAX_BLOCKS)
        return SD_ERROR("%s: unexpected key '%s'", path, key);
      max_in = i > max_in ? i : max_in;
      if (strcmp(s, "0.op.weight") == 0) {
        is_op[i] = true;
        ops++;
      }
    } else if (strncmp(s, "output_blocks.", 14) == 0) {
      s += 14;
      if (sd_ldm_parse_index(&s, &i) != 0 || i >= MAX_BLOCKS)
        return SD_ERROR("%s: unexpected key '%s'", path, key);
      max_out = i > max_out ? i : max_out;
    }
  }
  layout->input_blocks = max_in + 1;
  layout->output_blocks = max_out + 1;
  /* input blocks: conv_in, then per level `layers` resnets and (but the last level) a
   * downsampler; output blocks: per level layers + 1 resnets */
  int levels = ops + 1;
  int rest = layout->input_blocks - 1 - ops;
  if (levels > SD_MAX_LEVELS || rest <= 0 || rest % levels != 0)
    return SD_ERROR("%s: UNet with %d input blocks and %d downsamplers is not a Stable "
                    "Diffusion UNet layout",
                    path, layout->input_blocks, ops);
  layout->levels = levels;
  layout->layers = rest / levels;
  for (int lvl = 0; lvl + 1 < levels; lvl++)
    if (!is_op[(lvl + 1) * (layout->layers + 1)])
      return SD_ERROR("%s: UNet downsampler of level %d missing (expected '%sinput_blocks.%d.0.op."
                      "weight')",
                      path, lvl, SD_LDM_UNET_PREFIX, (lvl + 1) * (layout->layers + 1));
  if (layout->output_blocks != levels * (layout->layers + 1))
    return SD_ERROR("%s: UNet has %d output blocks, expected %d for %d levels of %d layers", path,
                    layout->output_blocks, levels * (layout->layers + 1), levels, layout->layers);
  return 0;
}

/* Transformer blocks in the attention at `<block>.1.` (0 when there is no attention). */
static int count_transformer_blocks(const sd_safetensors *file, const char *block) {
  int n = 0;
  while (
      sd_ldm_find(file, "%s%s.1.transformer_blocks.%d.norm1.weight", SD_LDM_UNET_PREFIX, block, n))
    n++;
  return n;
}

/* Attention depth of every block of a level (all equal, or an error). */
static int level_attention(const sd_safetensors *file, const char *kind, const int *blocks, int n,
                           int *depth) {
  char block[64];
  for (int j = 0; j < n; j++) {
    snprintf(block, sizeof block, "%s.%d", kind, blocks[j]);
    int d = count_transformer_blocks(file, block);
    if (j == 0)
      *depth = d;
    else if (d != *depth)
      return SD_ERROR("%s: %s%s.1 has %d transformer blocks, the level's first block %d "
                      "(uneven levels are not supported)",
                      sd_safetensors_path(file), SD_LDM_UNET_PREFIX, block, d, *depth);
  }
  return 0;
}

static int yaml_mismatch(const sd_ldm_yaml *y, const char *key, int stated, int found) {
  return SD_ERROR("%s: unet_config.params.%s = %d disagrees with the checkpoint (%d)", y->path, key,
                  stated, found);
}

/* Structural fields of the YAML must agree with the shapes. */
static int check_yaml(const sd_ldm_yaml *y, const sd_unet_config *cfg, int model_channels) {
  int n = cfg->num_levels;
  if (y->unet.in_channels >= 0 && y->unet.in_channels != cfg->in_channels)
    return yaml_mismatch(y, "in_channels", y->unet.in_channels, cfg->in_channels);
  if (y->unet.out_channels >= 0 && y->unet.out_channels != cfg->out_channels)
    return yaml_mismatch(y, "out_channels", y->unet.out_channels, cfg->out_channels);
  if (y->unet.model_channels >= 0 && y->unet.model_channels != model_channels)
    return yaml_mismatch(y, "model_channels", y->unet.model_channels, model_channels);
  if (y->unet.num_res_blocks >= 0 && y->unet.num_res_blocks != cfg->layers_per_block)
    return yaml_mismatch(y, "num_res_blocks", y->unet.num_res_blocks, cfg->layers_per_block);
  if (y->unet.context_dim >= 0 && y->unet.context_dim != cfg->cross_attention_dim)
    return yaml_mismatch(y, "context_dim", y->unet.context_dim, cfg->cross_attention_dim);
  if (y->unet.use_linear_in_transformer >= 0 &&
      y->unet.use_linear_in_transformer != (int)cfg->use_linear_projection)
    return yaml_mismatch(y, "use_linear_in_transformer", y->unet.use_linear_in_transformer,
                         cfg->use_linear_projection);
  if (y->unet.n_channel_mult >= 0) {
    if (y->unet.n_channel_mult != n)
      return yaml_mismatch(y, "channel_mult (levels)", y->unet.n_channel_mult, n);
    for (int i = 0; i < n; i++)
      if ((int64_t)y->unet.channel_mult[i] * model_channels != cfg->block_out_channels[i])
        return yaml_mismatch(y, "channel_mult x model_channels",
                             (int)((int64_t)y->unet.channel_mult[i] * model_channels),
                             cfg->block_out_channels[i]);
  }
  if (y->unet.n_attention_resolutions >= 0) {
    for (int i = 0; i < n; i++) {
      bool listed = false;
      for (int r = 0; r < y->unet.n_attention_resolutions; r++)
        listed = listed || y->unet.attention_resolutions[r] == 1 << i;
      if (listed != cfg->down_block_has_attention[i])
        return SD_ERROR("%s: unet_config.params.attention_resolutions says level %d (factor %d) "
                        "%s attention; the checkpoint %s",
                        y->path, i, 1 << i, listed ? "has" : "has no",
                        cfg->down_block_has_attention[i] ? "has" : "has none");
    }
  }
  if (y->unet.num_classes >= 0 && y->unet.num_classes != cfg->num_class_embeds)
    return yaml_mismatch(y, "num_classes", y->unet.num_classes, cfg->num_class_embeds);
  if (y->unet.n_disable_self_attentions >= 0 && y->unet.n_disable_self_attentions != n)
    return yaml_mismatch(y, "disable_self_attentions (levels)", y->unet.n_disable_self_attentions,
                         n);
  if (y->unet.disable_middle_self_attn == 1)
    return SD_ERROR("%s: unet_config.params.disable_middle_self_attn: a mid block whose attn1 "
                    "attends to the context is not supported",
                    y->path);
  if (y->unet.n_transformer_depth >= 0) {
    for (int i = 0; i < n && i < y->unet.n_transformer_depth; i++)
      if (cfg->down_block_has_attention[i] &&
          y->unet.transformer_depth[i] != cfg->transformer_layers_per_block[i])
        return yaml_mismatch(y, "transformer_depth", y->unet.transformer_depth[i],
                             cfg->transformer_layers_per_block[i]);
  }
  return 0;
}

/* Heads per level: from the YAML (num_head_channels, else num_heads), else the x4 upscaler's 8
 * heads (x4-upscaling.yaml's num_heads; a UNet with class embeddings), SD 1.x's 8 heads or SD
 * 2.x's head size 64. */
static int infer_heads(const sd_safetensors *file, const sd_ldm_yaml *y, sd_model_family family,
                       sd_unet_config *cfg) {
  const char *path = sd_safetensors_path(file);
  int n = cfg->num_levels;
  for (int i = 0; i < n; i++) {
    int channels = cfg->block_out_channels[i];
    int head_channels = 0;
    const char *source;
    if (y && y->unet.num_head_channels > 0) {
      head_channels = y->unet.num_head_channels;
      source = "unet_config.params.num_head_channels";
    } else if (y && y->unet.num_heads > 0) {
      cfg->num_attention_heads[i] = y->unet.num_heads;
      source = "unet_config.params.num_heads";
    } else if (cfg->num_class_embeds > 0) {
      cfg->num_attention_heads[i] = 8;
      source = "the x4 upscaler's 8 heads";
    } else if (family == SD_FAMILY_SD1) {
      cfg->num_attention_heads[i] = 8;
      source = "SD 1.x's 8 heads";
    } else {
      head_channels = 64;
      source = "SD 2.x's head size 64";
    }
    if (head_channels)
      cfg->num_attention_heads[i] = channels / head_channels;
    bool attends =
        cfg->down_block_has_attention[i] || cfg->up_block_has_attention[n - 1 - i] || i == n - 1;
    int heads = cfg->num_attention_heads[i];
    if (attends &&
        (heads <= 0 || channels % heads != 0 || (head_channels && channels % head_channels != 0)))
      return SD_ERROR("%s: cannot split the %d channels of UNet level %d into heads by %s (give "
                      "num_heads or num_head_channels in a YAML config)",
                      path, channels, i, source);
  }
  return 0;
}

/* The class-embedding table of the x4 upscaler's noise levels: label_emb.weight, an
 * nn.Embedding (num_classes, time_embed_dim); num_class_embeds stays 0 without one. */
static int infer_class_embeds(const sd_safetensors *file, int time_dim, sd_unet_config *cfg) {
  const sd_st_tensor *table = sd_ldm_find(file, SD_LDM_UNET_PREFIX "label_emb.weight");
  if (!table)
    return 0;
  const char *path = sd_safetensors_path(file);
  if (table->ndim != 2 || table->shape[1] != time_dim)
    return SD_ERROR("%s: tensor '%slabel_emb.weight' must be (classes, %d) (the time embedding's "
                    "width), got %d dims of which the last is %lld",
                    path, SD_LDM_UNET_PREFIX, time_dim, table->ndim,
                    (long long)table->shape[table->ndim > 0 ? table->ndim - 1 : 0]);
  if (table->shape[0] < 1 || table->shape[0] > SD_CFG_MAX_VOCAB)
    return SD_ERROR("%s: tensor '%slabel_emb.weight' has %lld classes (1 to %d supported)", path,
                    SD_LDM_UNET_PREFIX, (long long)table->shape[0], SD_CFG_MAX_VOCAB);
  cfg->num_class_embeds = (int)table->shape[0];
  return 0;
}

/* Where attn1 of the first transformer block at `<block>.1.` takes its keys and values, by the
 * input width of its to_k (inner, kv): 1 from the context (LDM's disable_self_attn), 0 from the
 * image, -1 when the widths cannot tell (the level's channels equal the context's). */
static int attn1_on_context(const sd_safetensors *file, const char *block, int channels,
                            int context, int *out) {
  const sd_st_tensor *to_k;
  SD_TRY(sd_ldm_require(file, &to_k, 2,
                        SD_LDM_UNET_PREFIX "%s.1.transformer_blocks.0.attn1.to_k.weight", block));
  int64_t kv = to_k->shape[1];
  if (kv != channels && kv != context)
    return SD_ERROR("%s: tensor '%s%s.1.transformer_blocks.0.attn1.to_k.weight' takes %lld "
                    "inputs: neither the block's %d channels nor the context's %d",
                    sd_safetensors_path(file), SD_LDM_UNET_PREFIX, block, (long long)kv, channels,
                    context);
  *out = channels == context ? -1 : kv == context;
  return 0;
}

/* Folds one attention's attn1_on_context into the level's finding (-1 unknown so far). */
static int fold_attn1(const sd_safetensors *file, const char *block, int lvl, int channels,
                      int context, int *found) {
  int on_context = -1;
  SD_TRY(attn1_on_context(file, block, channels, context, &on_context));
  if (on_context >= 0 && *found >= 0 && on_context != *found)
    return SD_ERROR("%s: UNet level %d mixes transformers whose attn1 attends to the image and to "
                    "the context (%s%s.1 differs; not supported)",
                    sd_safetensors_path(file), lvl, SD_LDM_UNET_PREFIX, block);
  if (on_context >= 0)
    *found = on_context;
  return 0;
}

/* only_cross_attention per level (diffusers' name for LDM's disable_self_attentions): from the
 * shapes of the level's down and up attentions where they tell, else the YAML's
 * disable_self_attentions, else false. The mid block's attn1 must attend to the image. */
static int infer_only_cross(const sd_safetensors *file, const sd_ldm_yaml *y, sd_unet_config *cfg) {
  int n = cfg->num_levels, L = cfg->layers_per_block, context = cfg->cross_attention_dim;
  char block[64];
  for (int lvl = 0; lvl < n; lvl++) {
    int channels = cfg->block_out_channels[lvl], found = -1, up = n - 1 - lvl;
    for (int j = 0; j < L && cfg->down_block_has_attention[lvl]; j++) {
      snprintf(block, sizeof block, "input_blocks.%d", 1 + lvl * (L + 1) + j);
      SD_TRY(fold_attn1(file, block, lvl, channels, context, &found));
    }
    for (int j = 0; j <= L && cfg->up_block_has_attention[up]; j++) {
      snprintf(block, sizeof block, "output_blocks.%d", up * (L + 1) + j);
      SD_TRY(fold_attn1(file, block, lvl, channels, context, &found));
    }
    bool stated = y && y->unet.n_disable_self_attentions > lvl;
    if (stated && found >= 0 && y->unet.disable_self_attentions[lvl] != (found == 1))
      return SD_ERROR("%s: unet_config.params.disable_self_attentions[%d] = %s disagrees with the "
                      "checkpoint (attn1 of level %d attends to the %s)",
                      y->path, lvl, y->unet.disable_self_attentions[lvl] ? "True" : "False", lvl,
                      found ? "context" : "image");
    cfg->only_cross_attention[lvl] =
        found >= 0 ? found == 1 : stated && y->unet.disable_self_attentions[lvl];
  }
  int mid = -1;
  SD_TRY(attn1_on_context(file, "middle_block", cfg->block_out_channels[n - 1], context, &mid));
  if (mid == 1)
    return SD_ERROR("%s: the mid block's attn1 attends to the context (disable_middle_self_attn; "
                    "not supported)",
                    sd_safetensors_path(file));
  return 0;
}

static int infer_config(const sd_safetensors *file, const sd_ldm_yaml *y, sd_model_family family,
                        const unet_layout *layout, sd_unet_config *cfg) {
  const char *path = sd_safetensors_path(file);
  const sd_st_tensor *conv_in, *conv_out, *time_embed, *mid_proj_in, *to_k;
  SD_TRY(sd_ldm_require(file, &conv_in, 4, SD_LDM_UNET_PREFIX "input_blocks.0.0.weight"));
  SD_TRY(sd_ldm_require(file, &conv_out, 4, SD_LDM_UNET_PREFIX "out.2.weight"));
  SD_TRY(sd_ldm_require(file, &time_embed, 2, SD_LDM_UNET_PREFIX "time_embed.0.weight"));
  SD_TRY(sd_ldm_require(
      file, &to_k, 2, SD_LDM_UNET_PREFIX "middle_block.1.transformer_blocks.0.attn2.to_k.weight"));
  mid_proj_in = sd_ldm_find(file, SD_LDM_UNET_PREFIX "middle_block.1.proj_in.weight");
  if (!mid_proj_in)
    return SD_ERROR("%s: tensor '%smiddle_block.1.proj_in.weight' missing", path,
                    SD_LDM_UNET_PREFIX);

  int n = layout->levels, L = layout->layers;
  int model_channels = (int)conv_in->shape[0];
  memset(cfg, 0, sizeof *cfg);
  cfg->in_channels = (int)conv_in->shape[1];
  cfg->out_channels = (int)conv_out->shape[0];
  cfg->num_levels = n;
  cfg->layers_per_block = L;
  cfg->cross_attention_dim = (int)to_k->shape[1];
  cfg->use_linear_projection = mid_proj_in->ndim == 2;
  cfg->norm_num_groups = 32; /* LDM's GroupNorm32 */
  cfg->norm_eps = 1e-5f;
  cfg->flip_sin_to_cos = true; /* LDM's timestep_embedding puts cos first */
  cfg->freq_shift = 0.0f;
  if (time_embed->shape[0] != 4 * model_channels)
    return SD_ERROR("%s: time_embed.0.weight has %lld outputs, expected 4 x %d model channels",
                    path, (long long)time_embed->shape[0], model_channels);

  int blocks[SD_MAX_LEVELS + 1];
  for (int lvl = 0; lvl < n; lvl++) {
    int first = 1 + lvl * (L + 1);
    const sd_st_tensor *conv1;
    SD_TRY(sd_ldm_require(file, &conv1, 4,
                          SD_LDM_UNET_PREFIX "input_blocks.%d.0.in_layers.2.weight", first));
    cfg->block_out_channels[lvl] = (int)conv1->shape[0];
    for (int j = 0; j < L; j++)
      blocks[j] = first + j;
    int down_depth, up_depth;
    SD_TRY(level_attention(file, "input_blocks", blocks, L, &down_depth));
    int up = n - 1 - lvl; /* the up level at the same resolution */
    for (int j = 0; j <= L; j++)
      blocks[j] = up * (L + 1) + j;
    SD_TRY(level_attention(file, "output_blocks", blocks, L + 1, &up_depth));
    cfg->down_block_has_attention[lvl] = down_depth > 0;
    cfg->up_block_has_attention[up] = up_depth > 0;
    if (down_depth && up_depth && down_depth != up_depth)
      return SD_ERROR("%s: UNet level %d has %d transformer blocks down and %d up (not "
                      "supported)",
                      path, lvl, down_depth, up_depth);
    cfg->transformer_layers_per_block[lvl] = down_depth ? down_depth : up_depth ? up_depth : 1;
  }
  if (cfg->block_out_channels[0] != model_channels)
    return SD_ERROR("%s: conv_in has %d outputs but the first level %d channels", path,
                    model_channels, cfg->block_out_channels[0]);
  /* the mid block uses the last level's transformer depth */
  int mid_depth = count_transformer_blocks(file, "middle_block");
  bool last_attends = cfg->down_block_has_attention[n - 1] || cfg->up_block_has_attention[0];
  if (last_attends && mid_depth != cfg->transformer_layers_per_block[n - 1])
    return SD_ERROR("%s: the mid block has %d transformer blocks, the last level %d (not "
                    "supported)",
                    path, mid_depth, cfg->transformer_layers_per_block[n - 1]);
  cfg->transformer_layers_per_block[n - 1] = mid_depth;

  SD_TRY(infer_class_embeds(file, (int)time_embed->shape[0], cfg));
  SD_TRY(infer_heads(file, y, family, cfg));
  if (y)
    SD_TRY(check_yaml(y, cfg, model_channels));
  return infer_only_cross(file, y, cfg);
}

typedef struct key_rename {
  const char *from, *to;
} key_rename;

static const key_rename resnet_names[] = {
    {"in_layers.0.", "norm1."},          {"in_layers.2.", "conv1."},
    {"emb_layers.1.", "time_emb_proj."}, {"out_layers.0.", "norm2."},
    {"out_layers.3.", "conv2."},         {"skip_connection.", "conv_shortcut."},
};

/* "<diffusers resnet prefix>" + the renamed LDM resnet suffix s. */
static int resnet_name(char *out, size_t size, const char *prefix, const char *s) {
  for (size_t i = 0; i < sizeof resnet_names / sizeof resnet_names[0]; i++) {
    size_t len = strlen(resnet_names[i].from);
    if (strncmp(s, resnet_names[i].from, len) == 0)
      return sd_ldm_name(out, size, "%s%s%s", prefix, resnet_names[i].to, s + len);
  }
  return -1;
}

/* The diffusers name of a key (without prefix); -1 (no error set) when it doesn't fit. */
static int map_name(const char *s, const unet_layout *layout, char *out, size_t size) {
  char prefix[128];
  int L = layout->layers, i, k;
  static const key_rename fixed[] = {
      {"time_embed.0.", "time_embedding.linear_1."},
      {"time_embed.2.", "time_embedding.linear_2."},
      {"input_blocks.0.0.", "conv_in."},
      {"out.0.", "conv_norm_out."},
      {"out.2.", "conv_out."},
      {"label_emb.", "class_embedding."}, /* label_emb.weight only (scan_layout) */
  };
  for (size_t f = 0; f < sizeof fixed / sizeof fixed[0]; f++) {
    size_t len = strlen(fixed[f].from);
    if (strncmp(s, fixed[f].from, len) == 0)
      return sd_ldm_name(out, size, "%s%s", fixed[f].to, s + len);
  }
  if (strncmp(s, "input_blocks.", 13) == 0) {
    s += 13;
    if (sd_ldm_parse_index(&s, &i) || sd_ldm_parse_index(&s, &k) || i < 1)
      return -1;
    int lvl = (i - 1) / (L + 1), j = (i - 1) % (L + 1);
    if (j == L) {
      if (k != 0 || strncmp(s, "op.", 3) != 0)
        return -1;
      return sd_ldm_name(out, size, "down_blocks.%d.downsamplers.0.conv.%s", lvl, s + 3);
    }
    if (k == 0) {
      snprintf(prefix, sizeof prefix, "down_blocks.%d.resnets.%d.", lvl, j);
      return resnet_name(out, size, prefix, s);
    }
    if (k == 1)
      return sd_ldm_name(out, size, "down_blocks.%d.attentions.%d.%s", lvl, j, s);
    return -1;
  }
  if (strncmp(s, "middle_block.", 13) == 0) {
    s += 13;
    if (sd_ldm_parse_index(&s, &k))
      return -1;
    if (k == 0 || k == 2) {
      snprintf(prefix, sizeof prefix, "mid_block.resnets.%d.", k / 2);
      return resnet_name(out, size, prefix, s);
    }
    if (k == 1)
      return sd_ldm_name(out, size, "mid_block.attentions.0.%s", s);
    return -1;
  }
  if (strncmp(s, "output_blocks.", 14) == 0) {
    s += 14;
    if (sd_ldm_parse_index(&s, &i) || sd_ldm_parse_index(&s, &k))
      return -1;
    int up = i / (L + 1), j = i % (L + 1);
    if (k == 0) {
      snprintf(prefix, sizeof prefix, "up_blocks.%d.resnets.%d.", up, j);
      return resnet_name(out, size, prefix, s);
    }
    /* the upsampler follows the last resnet, after its attention when there is one */
    if ((k == 1 || k == 2) && j == L && strncmp(s, "conv.", 5) == 0)
      return sd_ldm_name(out, size, "up_blocks.%d.upsamplers.0.conv.%s", up, s + 5);
    if (k == 1)
      return sd_ldm_name(out, size, "up_blocks.%d.attentions.%d.%s", up, j, s);
    return -1;
  }
  return -1;
}

int sd_ldm_unet(const sd_safetensors *file, const sd_ldm_yaml *yaml, sd_model_family family,
                sd_unet_config *cfg, sd_tensor_map *map) {
  unet_layout layout = {0};
  SD_TRY(scan_layout(file, &layout));
  SD_TRY(infer_config(file, yaml, family, &layout, cfg));
  const size_t prefix_len = strlen(SD_LDM_UNET_PREFIX);
  char name[512];
  for (size_t k = 0; k < sd_safetensors_count(file); k++) {
    const sd_st_tensor *t = sd_safetensors_at(file, k);
    if (strncmp(t->name, SD_LDM_UNET_PREFIX, prefix_len) != 0)
      continue;
    if (map_name(t->name + prefix_len, &layout, name, sizeof name) != 0)
      return SD_ERROR("%s: unexpected UNet key '%s' (not in the Stable Diffusion layout of %d "
                      "levels x %d layers)",
                      sd_safetensors_path(file), t->name, layout.levels, layout.layers);
    SD_TRY(sd_tensor_map_put(map, name, t->dtype, t->ndim, t->shape, t->data));
  }
  return 0;
}

/* Export ----------------------------------------------------------------------------------- */

/* Pairs the original prefix (printf-style) with the diffusers prefix map_name gives it. */
static int add_pair(sd_ldm_prefixes *p, const unet_layout *layout, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int add_pair(sd_ldm_prefixes *p, const unet_layout *layout, const char *fmt, ...) {
  char ldm[128], diffusers[128];
  va_list args;
  va_start(args, fmt);
  vsnprintf(ldm, sizeof ldm, fmt, args);
  va_end(args);
  if (map_name(ldm, layout, diffusers, sizeof diffusers) != 0)
    return SD_ERROR("UNet export: no diffusers name for '%s'", ldm);
  return sd_ldm_prefixes_add(p, ldm, diffusers, 0);
}

static int add_resnet_pairs(sd_ldm_prefixes *p, const unet_layout *layout, const char *block) {
  for (size_t r = 0; r < sizeof resnet_names / sizeof resnet_names[0]; r++)
    SD_TRY(add_pair(p, layout, "%s%s", block, resnet_names[r].from));
  return 0;
}

/* Every prefix of the LDM UNet of cfg's layout. */
static int unet_pairs(const sd_unet_config *cfg, const unet_layout *layout, sd_ldm_prefixes *p) {
  static const char *const fixed[] = {"time_embed.0.", "time_embed.2.", "input_blocks.0.0.",
                                      "out.0.", "out.2."};
  char block[64];
  int n = layout->levels, L = layout->layers;
  for (size_t f = 0; f < sizeof fixed / sizeof fixed[0]; f++)
    SD_TRY(add_pair(p, layout, "%s", fixed[f]));
  if (cfg->num_class_embeds > 0)
    SD_TRY(add_pair(p, layout, "label_emb."));
  for (int lvl = 0; lvl < n; lvl++) {
    for (int j = 0; j < L; j++) {
      int i = 1 + lvl * (L + 1) + j;
      snprintf(block, sizeof block, "input_blocks.%d.0.", i);
      SD_TRY(add_resnet_pairs(p, layout, block));
      SD_TRY(add_pair(p, layout, "input_blocks.%d.1.", i));
    }
    if (lvl + 1 < n)
      SD_TRY(add_pair(p, layout, "input_blocks.%d.0.op.", 1 + lvl * (L + 1) + L));
  }
  SD_TRY(add_resnet_pairs(p, layout, "middle_block.0."));
  SD_TRY(add_pair(p, layout, "middle_block.1."));
  SD_TRY(add_resnet_pairs(p, layout, "middle_block.2."));
  for (int up = 0; up < n; up++) {
    for (int j = 0; j <= L; j++) {
      int i = up * (L + 1) + j;
      snprintf(block, sizeof block, "output_blocks.%d.0.", i);
      SD_TRY(add_resnet_pairs(p, layout, block));
      if (cfg->up_block_has_attention[up])
        SD_TRY(add_pair(p, layout, "output_blocks.%d.1.", i));
    }
    /* the upsampler follows the last resnet's attention when there is one */
    if (up + 1 < n)
      SD_TRY(add_pair(p, layout, "output_blocks.%d.%d.conv.", up * (L + 1) + L,
                      cfg->up_block_has_attention[up] ? 2 : 1));
  }
  return 0;
}

int sd_ldm_unet_export(const sd_unet_config *cfg, const sd_tensor_map *map, sd_ldm_export *out) {
  unet_layout layout = {.levels = cfg->num_levels, .layers = cfg->layers_per_block};
  layout.input_blocks = 1 + layout.levels * (layout.layers + 1) - 1;
  layout.output_blocks = layout.levels * (layout.layers + 1);
  sd_ldm_prefixes pairs = {0};
  int rc = unet_pairs(cfg, &layout, &pairs);
  if (rc == 0)
    rc = sd_ldm_export_renamed(out, "UNet", SD_LDM_UNET_PREFIX, &pairs, map);
  sd_ldm_prefixes_free(&pairs);
  return rc;
}
