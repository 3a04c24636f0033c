/* Text encoder of an original checkpoint: SD 1.x's transformers CLIPTextModel under
 * cond_stage_model.transformer. (names kept), or SD 2.x's OpenCLIP text tower under
 * cond_stage_model.model. (renamed to transformers names, in_proj split into q/k/v, the last
 * resblock of a whole tower dropped for the penultimate-layer output), and the way back
 * (sd_ldm_clip_export). See ldm_checkpoint.h. */
#include "ldm_checkpoint.h"

#include "../../kernels/error.h"

#include <stdio.h>
#include <string.h>

/* CLIP ViT-L/14 and OpenCLIP ViT-H/14 both use 64-channel heads. */
#define CLIP_HEAD_CHANNELS 64

static int infer_heads(const sd_safetensors *file, const sd_ldm_yaml *y, sd_clip_config *cfg) {
  if (y && y->text.num_attention_heads > 0)
    cfg->num_attention_heads = y->text.num_attention_heads;
  else if (cfg->hidden_size % CLIP_HEAD_CHANNELS == 0)
    cfg->num_attention_heads = cfg->hidden_size / CLIP_HEAD_CHANNELS;
  else
    return SD_ERROR("%s: cannot infer the text encoder's heads: hidden size %d is not a multiple "
                    "of CLIP's head size %d (state cond_stage_config.params.num_attention_heads "
                    "in a YAML config)",
                    sd_safetensors_path(file), cfg->hidden_size, CLIP_HEAD_CHANNELS);
  if (cfg->hidden_size % cfg->num_attention_heads != 0)
    return SD_ERROR("%s: %d text encoder heads do not divide hidden size %d",
                    y ? y->path : sd_safetensors_path(file), cfg->num_attention_heads,
                    cfg->hidden_size);
  return 0;
}

static void clip_defaults(sd_clip_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->layer_norm_eps = 1e-5f;
  cfg->bos_token_id = 49406;
  cfg->eos_token_id = 49407;
}

static int openai_clip(const sd_safetensors *file, const sd_ldm_yaml *y, sd_clip_config *cfg,
                       sd_tensor_map *map) {
  const size_t prefix_len = strlen(SD_LDM_CLIP_PREFIX);
  char name[512];
  for (size_t k = 0; k < sd_safetensors_count(file); k++) {
    const sd_st_tensor *t = sd_safetensors_at(file, k);
    if (strncmp(t->name, SD_LDM_CLIP_PREFIX, prefix_len) != 0)
      continue;
    const char *s = t->name + prefix_len;
    const char *model = strncmp(s, "text_model.", 11) == 0 ? "" : "text_model.";
    SD_TRY(sd_ldm_name(name, sizeof name, "%s%s", model, s));
    if (strcmp(name, "text_model.embeddings.position_ids") == 0)
      continue; /* a buffer of 0..76, not a weight */
    SD_TRY(sd_tensor_map_put(map, name, t->dtype, t->ndim, t->shape, t->data));
  }
  const sd_st_tensor *token =
      sd_tensor_map_get(map, "text_model.embeddings.token_embedding.weight");
  const sd_st_tensor *position =
      sd_tensor_map_get(map, "text_model.embeddings.position_embedding.weight");
  const sd_st_tensor *fc1 = sd_tensor_map_get(map, "text_model.encoder.layers.0.mlp.fc1.weight");
  if (!token || !position || !fc1 || token->ndim != 2 || position->ndim != 2 || fc1->ndim != 2)
    return SD_ERROR("%s: text encoder embeddings or layer 0 missing or mis-shaped (under %s)",
                    sd_safetensors_path(file), SD_LDM_CLIP_PREFIX);
  clip_defaults(cfg);
  cfg->vocab_size = (int)token->shape[0];
  cfg->hidden_size = (int)token->shape[1];
  cfg->max_position_embeddings = (int)position->shape[0];
  cfg->intermediate_size = (int)fc1->shape[0];
  cfg->num_hidden_layers =
      sd_ldm_count_indexed(file, SD_LDM_CLIP_PREFIX "text_model.encoder.layers.");
  if (cfg->num_hidden_layers == 0)
    cfg->num_hidden_layers = sd_ldm_count_indexed(file, SD_LDM_CLIP_PREFIX "encoder.layers.");
  cfg->hidden_act = SD_ACT_QUICK_GELU;
  return infer_heads(file, y, cfg);
}

typedef struct key_rename {
  const char *from, *to;
} key_rename;

static const key_rename resblock_names[] = {
    {"ln_1.", "layer_norm1."},
    {"ln_2.", "layer_norm2."},
    {"mlp.c_fc.", "mlp.fc1."},
    {"mlp.c_proj.", "mlp.fc2."},
    {"attn.out_proj.", "self_attn.out_proj."},
};

/* in_proj (3C, C) or (3C): rows [0, C) q, [C, 2C) k, [2C, 3C) v, each a contiguous range. */
static int split_in_proj(const sd_safetensors *file, const sd_st_tensor *t, int layer,
                         const char *kind, sd_tensor_map *map) {
  if (t->ndim < 1 || t->shape[0] % 3 != 0)
    return SD_ERROR("%s: tensor '%s': first dimension %lld is not 3 x channels",
                    sd_safetensors_path(file), t->name, (long long)t->shape[0]);
  int64_t shape[SD_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  shape[0] /= 3;
  size_t third = t->bytes / 3;
  static const char *const parts[] = {"q_proj", "k_proj", "v_proj"};
  char name[256];
  for (int p = 0; p < 3; p++) {
    snprintf(name, sizeof name, "text_model.encoder.layers.%d.self_attn.%s.%s", layer, parts[p],
             kind);
    SD_TRY(
        sd_tensor_map_put(map, name, t->dtype, t->ndim, shape, (const char *)t->data + p * third));
  }
  return 0;
}

/* Maps one OpenCLIP key (without prefix): 0 mapped or ignored, 1 unknown, -1 error. */
static int map_open_clip_key(const sd_safetensors *file, const sd_st_tensor *t, const char *s,
                             int layers, sd_tensor_map *map) {
  static const key_rename fixed[] = {
      {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
      {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
      {"ln_final.weight", "text_model.final_layer_norm.weight"},
      {"ln_final.bias", "text_model.final_layer_norm.bias"},
  };
  for (size_t f = 0; f < sizeof fixed / sizeof fixed[0]; f++)
    if (strcmp(s, fixed[f].from) == 0)
      return sd_tensor_map_put(map, fixed[f].to, t->dtype, t->ndim, t->shape, t->data);
  /* the CLIP training heads, unused by Stable Diffusion */
  if (strcmp(s, "text_projection") == 0 || strcmp(s, "logit_scale") == 0 ||
      strcmp(s, "attn_mask") == 0)
    return 0;
  int layer;
  if (strncmp(s, "transformer.resblocks.", 22) != 0)
    return 1;
  s += 22;
  if (sd_ldm_parse_index(&s, &layer) != 0)
    return 1;
  if (layer >= layers)
    return 0; /* beyond the layer whose output SD uses */
  if (strcmp(s, "attn.in_proj_weight") == 0)
    return split_in_proj(file, t, layer, "weight", map);
  if (strcmp(s, "attn.in_proj_bias") == 0)
    return split_in_proj(file, t, layer, "bias", map);
  for (size_t r = 0; r < sizeof resblock_names / sizeof resblock_names[0]; r++) {
    size_t len = strlen(resblock_names[r].from);
    if (strncmp(s, resblock_names[r].from, len) == 0) {
      char name[512];
      SD_TRY(sd_ldm_name(name, sizeof name, "text_model.encoder.layers.%d.%s%s", layer,
                         resblock_names[r].to, s + len));
      return sd_tensor_map_put(map, name, t->dtype, t->ndim, t->shape, t->data);
    }
  }
  return 1;
}

static int open_clip(const sd_safetensors *file, const sd_ldm_yaml *y, sd_clip_config *cfg,
                     sd_tensor_map *map) {
  const char *path = sd_safetensors_path(file);
  const sd_st_tensor *token, *position, *c_fc;
  SD_TRY(sd_ldm_require(file, &token, 2, SD_LDM_OPENCLIP_PREFIX "token_embedding.weight"));
  SD_TRY(sd_ldm_require(file, &position, 2, SD_LDM_OPENCLIP_PREFIX "positional_embedding"));
  SD_TRY(sd_ldm_require(file, &c_fc, 2,
                        SD_LDM_OPENCLIP_PREFIX "transformer.resblocks.0.mlp.c_fc.weight"));
  int resblocks = sd_ldm_count_indexed(file, SD_LDM_OPENCLIP_PREFIX "transformer.resblocks.");
  /* a whole OpenCLIP tower (text_projection present) still has the last resblock SD skips; a
   * file converted from a diffusers text encoder has it cut already */
  bool full_tower = sd_ldm_find(file, SD_LDM_OPENCLIP_PREFIX "text_projection") != NULL;
  bool penultimate = full_tower && !(y && y->text.penultimate == 0);
  clip_defaults(cfg);
  cfg->vocab_size = (int)token->shape[0];
  cfg->hidden_size = (int)token->shape[1];
  cfg->max_position_embeddings = (int)position->shape[0];
  cfg->intermediate_size = (int)c_fc->shape[0];
  cfg->num_hidden_layers = penultimate ? resblocks - 1 : resblocks;
  cfg->hidden_act = SD_ACT_GELU;
  if (cfg->num_hidden_layers < 1)
    return SD_ERROR("%s: OpenCLIP text encoder has %d resblocks, too few for its penultimate "
                    "layer",
                    path, resblocks);
  SD_TRY(infer_heads(file, y, cfg));
  const size_t prefix_len = strlen(SD_LDM_OPENCLIP_PREFIX);
  for (size_t k = 0; k < sd_safetensors_count(file); k++) {
    const sd_st_tensor *t = sd_safetensors_at(file, k);
    if (strncmp(t->name, SD_LDM_OPENCLIP_PREFIX, prefix_len) != 0)
      continue;
    int rc = map_open_clip_key(file, t, t->name + prefix_len, cfg->num_hidden_layers, map);
    SD_TRY(rc);
    if (rc == 1)
      return SD_ERROR("%s: unexpected OpenCLIP key '%s'", path, t->name);
  }
  return 0;
}

int sd_ldm_clip(const sd_safetensors *file, const sd_ldm_yaml *yaml, sd_model_family family,
                sd_clip_config *cfg, sd_tensor_map *map) {
  return family == SD_FAMILY_SD2 ? open_clip(file, yaml, cfg, map)
                                 : openai_clip(file, yaml, cfg, map);
}

/* Export ----------------------------------------------------------------------------------- */

/* SD 2.x: layer's q, k, v projections (kind "weight" or "bias") joined into in_proj. */
static int export_in_proj(const sd_tensor_map *map, int layer, const char *kind,
                          sd_ldm_export *out) {
  static const char *const parts[] = {"q_proj", "k_proj", "v_proj"};
  const sd_st_tensor *t[3];
  char name[256];
  for (int p = 0; p < 3; p++) {
    snprintf(name, sizeof name, "text_model.encoder.layers.%d.self_attn.%s.%s", layer, parts[p],
             kind);
    t[p] = sd_tensor_map_get(map, name);
    if (!t[p])
      return SD_ERROR("text encoder tensor '%s' missing", name);
    if (t[p]->dtype != t[0]->dtype || t[p]->ndim != t[0]->ndim || t[p]->bytes != t[0]->bytes ||
        memcmp(t[p]->shape, t[0]->shape, (size_t)t[0]->ndim * sizeof t[0]->shape[0]) != 0)
      return SD_ERROR("text encoder layer %d: q, k and v projection %ss differ in shape or dtype",
                      layer, kind);
  }
  char *joined = sd_ldm_export_buffer(out, 3 * t[0]->bytes);
  if (!joined)
    return -1;
  for (int p = 0; p < 3; p++)
    memcpy(joined + p * t[0]->bytes, t[p]->data, t[0]->bytes);
  int64_t shape[SD_MAX_DIMS];
  memcpy(shape, t[0]->shape, sizeof shape);
  shape[0] *= 3;
  snprintf(name, sizeof name, SD_LDM_OPENCLIP_PREFIX "transformer.resblocks.%d.attn.in_proj_%s",
           layer, kind);
  return sd_ldm_export_add(out, name, t[0]->dtype, t[0]->ndim, shape, joined, 3 * t[0]->bytes);
}

/* SD 2.x: the OpenCLIP text tower of the model's layers (q/k/v joined by export_in_proj). */
static int open_clip_export(const sd_clip_config *cfg, const sd_tensor_map *map,
                            sd_ldm_export *out) {
  static const key_rename fixed[] = {
      {"token_embedding.", "text_model.embeddings.token_embedding."},
      {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
      {"ln_final.", "text_model.final_layer_norm."},
  };
  sd_ldm_prefixes pairs = {0};
  char ldm[128], diffusers[128];
  int rc = 0;
  for (size_t f = 0; rc == 0 && f < sizeof fixed / sizeof fixed[0]; f++)
    rc = sd_ldm_prefixes_add(&pairs, fixed[f].from, fixed[f].to, 0);
  for (int layer = 0; rc == 0 && layer < cfg->num_hidden_layers; layer++)
    for (size_t r = 0; rc == 0 && r < sizeof resblock_names / sizeof resblock_names[0]; r++) {
      snprintf(ldm, sizeof ldm, "transformer.resblocks.%d.%s", layer, resblock_names[r].from);
      snprintf(diffusers, sizeof diffusers, "text_model.encoder.layers.%d.%s", layer,
               resblock_names[r].to);
      rc = sd_ldm_prefixes_add(&pairs, ldm, diffusers, 0);
    }
  /* the q/k/v projections are joined below, the rest renamed */
  sd_tensor_map *rest = rc == 0 ? sd_tensor_map_create() : NULL;
  if (rc == 0 && !rest)
    rc = SD_ERROR("out of memory");
  for (size_t k = 0; rc == 0 && k < sd_tensor_map_count(map); k++) {
    const sd_st_tensor *t = sd_tensor_map_at(map, k);
    if (!strstr(t->name, ".self_attn.q_proj.") && !strstr(t->name, ".self_attn.k_proj.") &&
        !strstr(t->name, ".self_attn.v_proj."))
      rc = sd_tensor_map_put(rest, t->name, t->dtype, t->ndim, t->shape, t->data);
  }
  if (rc == 0)
    rc = sd_ldm_export_renamed(out, "text encoder", SD_LDM_OPENCLIP_PREFIX, &pairs, rest);
  for (int layer = 0; rc == 0 && layer < cfg->num_hidden_layers; layer++) {
    rc = export_in_proj(map, layer, "weight", out);
    if (rc == 0)
      rc = export_in_proj(map, layer, "bias", out);
  }
  sd_tensor_map_free(rest);
  sd_ldm_prefixes_free(&pairs);
  return rc;
}

int sd_ldm_clip_export(sd_model_family family, const sd_clip_config *cfg, const sd_tensor_map *map,
                       sd_ldm_export *out) {
  if (family == SD_FAMILY_SD2)
    return open_clip_export(cfg, map, out);
  /* SD 1.x: transformers' names under cond_stage_model.transformer. */
  sd_ldm_prefixes pairs = {0};
  int rc = sd_ldm_prefixes_add(&pairs, "text_model.", "text_model.", 0);
  if (rc == 0)
    rc = sd_ldm_export_renamed(out, "text encoder", SD_LDM_CLIP_PREFIX, &pairs, map);
  sd_ldm_prefixes_free(&pairs);
  return rc;
}
