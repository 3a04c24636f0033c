/* Diffusers / transformers config.json readers (see config_json.h). */
#include "config_json.h"

#include "config_check.h"

#include "../../kernels/error.h"
#include "../../kernels/file.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sd_json_parse_object(const char *text, size_t len, const char *name, cJSON **out) {
  *out = NULL;
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!root)
    return SD_ERROR("%s: not valid JSON (error near byte %ld)", name,
                    end ? (long)(end - text) : -1L);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return SD_ERROR("%s: not a JSON object", name);
  }
  *out = root;
  return 0;
}

int sd_json_read_file(const char *path, cJSON **out) {
  *out = NULL;
  char *text;
  size_t used;
  SD_TRY(sd_file_read(path, SD_FILE_MAX_CONFIG, &text, &used));
  int rc = sd_json_parse_object(text, used, path, out);
  free(text);
  return rc;
}

/* Field access. Getters return 1 when the field is stated, 0 when absent or null, -1 (error
 * naming file and field) when it has the wrong type. */
typedef struct json_ctx {
  const char *path;
  const cJSON *root;
} json_ctx;

static const cJSON *field(const json_ctx *c, const char *name) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(c->root, name);
  return item && !cJSON_IsNull(item) ? item : NULL;
}

static int as_int(const json_ctx *c, const char *name, const cJSON *item, int *out) {
  double d = item->valuedouble;
  if (!cJSON_IsNumber(item) || floor(d) != d || fabs(d) > 2147483647.0)
    return SD_ERROR("%s: field '%s' must be an integer", c->path, name);
  *out = (int)d;
  return 1;
}

static int get_int(const json_ctx *c, const char *name, int *out) {
  const cJSON *item = field(c, name);
  return item ? as_int(c, name, item, out) : 0;
}

static int get_float(const json_ctx *c, const char *name, float *out) {
  const cJSON *item = field(c, name);
  if (!item)
    return 0;
  if (!cJSON_IsNumber(item) || !(fabs(item->valuedouble) <= FLT_MAX))
    return SD_ERROR("%s: field '%s' must be a number within float range", c->path, name);
  *out = (float)item->valuedouble;
  return 1;
}

static int get_bool(const json_ctx *c, const char *name, bool *out) {
  const cJSON *item = field(c, name);
  if (!item)
    return 0;
  if (!cJSON_IsBool(item))
    return SD_ERROR("%s: field '%s' must be true or false", c->path, name);
  *out = cJSON_IsTrue(item);
  return 1;
}

static int get_string(const json_ctx *c, const char *name, const char **out) {
  const cJSON *item = field(c, name);
  if (!item)
    return 0;
  if (!cJSON_IsString(item))
    return SD_ERROR("%s: field '%s' must be a string", c->path, name);
  *out = item->valuestring;
  return 1;
}

/* An int (the same for each of n levels) or a list of exactly n ints. */
static int get_int_per_level(const json_ctx *c, const char *name, int n, int *out) {
  const cJSON *item = field(c, name);
  if (!item)
    return 0;
  if (cJSON_IsNumber(item)) {
    int v;
    SD_TRY(as_int(c, name, item, &v));
    for (int i = 0; i < n; i++)
      out[i] = v;
    return 1;
  }
  if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != n)
    return SD_ERROR("%s: field '%s' must be an integer or a list of %d integers (one per level)",
                    c->path, name, n);
  for (int i = 0; i < n; i++) {
    char element[96];
    snprintf(element, sizeof element, "%s[%d]", name, i);
    SD_TRY(as_int(c, element, cJSON_GetArrayItem(item, i), &out[i]));
  }
  return 1;
}

/* A list of 1 to SD_MAX_LEVELS ints; returns its length via *n. */
static int get_int_list(const json_ctx *c, const char *name, int *out, int *n) {
  const cJSON *item = field(c, name);
  if (!item)
    return 0;
  int size = cJSON_IsArray(item) ? cJSON_GetArraySize(item) : -1;
  if (size < 1 || size > SD_MAX_LEVELS)
    return SD_ERROR("%s: field '%s' must be a list of 1 to %d integers", c->path, name,
                    SD_MAX_LEVELS);
  for (int i = 0; i < size; i++) {
    char element[96];
    snprintf(element, sizeof element, "%s[%d]", name, i);
    SD_TRY(as_int(c, element, cJSON_GetArrayItem(item, i), &out[i]));
    if (out[i] <= 0)
      return SD_ERROR("%s: field '%s' must be positive", c->path, element);
  }
  *n = size;
  return 1;
}

static int required(const json_ctx *c, const char *name, int rc) {
  if (rc == 0)
    return SD_ERROR("%s: required field '%s' missing", c->path, name);
  return rc < 0 ? -1 : 0;
}

static int positive(const json_ctx *c, const char *name, int value) {
  if (value <= 0)
    return SD_ERROR("%s: field '%s' must be positive (got %d)", c->path, name, value);
  return 0;
}

/* Fields whose other values the engine does not implement. Absent or null always passes. */
typedef enum expect_kind {
  EXPECT_NULL,   /* must be null */
  EXPECT_FALSE,  /* false, or a list of false */
  EXPECT_TRUE,   /* true */
  EXPECT_STRING, /* equal to str */
  EXPECT_NUMBER, /* equal to num */
} expect_kind;

typedef struct expectation {
  const char *name;
  expect_kind kind;
  const char *str;
  double num;
} expectation;

static int unsupported(const json_ctx *c, const char *name, const cJSON *item, const char *want) {
  char *printed = cJSON_PrintUnformatted(item);
  SD_ERROR("%s: %s = %.80s is not supported (%s)", c->path, name, printed ? printed : "?", want);
  free(printed);
  return -1;
}

static int check_expectations(const json_ctx *c, const expectation *list, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const expectation *e = &list[i];
    const cJSON *item = field(c, e->name);
    if (!item)
      continue;
    char want[96];
    switch (e->kind) {
    case EXPECT_NULL:
      return unsupported(c, e->name, item, "only null");
    case EXPECT_FALSE:
      if (cJSON_IsArray(item)) {
        const cJSON *element;
        cJSON_ArrayForEach(element, item) {
          if (!cJSON_IsFalse(element))
            return unsupported(c, e->name, item, "only false");
        }
      } else if (!cJSON_IsFalse(item)) {
        return unsupported(c, e->name, item, "only false");
      }
      break;
    case EXPECT_TRUE:
      if (!cJSON_IsTrue(item))
        return unsupported(c, e->name, item, "only true");
      break;
    case EXPECT_STRING:
      if (!cJSON_IsString(item) || strcmp(item->valuestring, e->str) != 0) {
        snprintf(want, sizeof want, "only \"%s\"", e->str);
        return unsupported(c, e->name, item, want);
      }
      break;
    case EXPECT_NUMBER:
      if (!cJSON_IsNumber(item) || item->valuedouble != e->num) {
        snprintf(want, sizeof want, "only %g", e->num);
        return unsupported(c, e->name, item, want);
      }
      break;
    }
  }
  return 0;
}

/* A list of n block type names: each must be with_attention (flag true) or plain (false). */
static int get_block_types(const json_ctx *c, const char *name, int n, const char *with_attention,
                           const char *plain, bool *has_attention) {
  const cJSON *item = field(c, name);
  if (!item)
    return 0;
  if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != n)
    return SD_ERROR("%s: field '%s' must be a list of %d block type names (one per entry of "
                    "block_out_channels)",
                    c->path, name, n);
  for (int i = 0; i < n; i++) {
    const cJSON *type = cJSON_GetArrayItem(item, i);
    if (!cJSON_IsString(type))
      return SD_ERROR("%s: %s[%d] must be a string", c->path, name, i);
    if (with_attention && strcmp(type->valuestring, with_attention) == 0)
      has_attention[i] = true;
    else if (strcmp(type->valuestring, plain) == 0)
      has_attention[i] = false;
    else if (with_attention)
      return SD_ERROR("%s: %s[%d] '%s' is not supported (%s or %s)", c->path, name, i,
                      type->valuestring, with_attention, plain);
    else
      return SD_ERROR("%s: %s[%d] '%s' is not supported (only %s)", c->path, name, i,
                      type->valuestring, plain);
  }
  return 1;
}

static const expectation unet_expectations[] = {
    {"time_embedding_type", EXPECT_STRING, "positional", 0},
    {"mid_block_type", EXPECT_STRING, "UNetMidBlock2DCrossAttn", 0},
    {"act_fn", EXPECT_STRING, "silu", 0},
    {"resnet_time_scale_shift", EXPECT_STRING, "default", 0},
    {"attention_type", EXPECT_STRING, "default", 0},
    {"class_embed_type", EXPECT_NULL, NULL, 0},
    {"addition_embed_type", EXPECT_NULL, NULL, 0},
    {"encoder_hid_dim", EXPECT_NULL, NULL, 0},
    {"encoder_hid_dim_type", EXPECT_NULL, NULL, 0},
    {"time_cond_proj_dim", EXPECT_NULL, NULL, 0},
    {"time_embedding_dim", EXPECT_NULL, NULL, 0},
    {"time_embedding_act_fn", EXPECT_NULL, NULL, 0},
    {"timestep_post_act", EXPECT_NULL, NULL, 0},
    {"cross_attention_norm", EXPECT_NULL, NULL, 0},
    {"reverse_transformer_layers_per_block", EXPECT_NULL, NULL, 0},
    {"mid_block_only_cross_attention", EXPECT_FALSE, NULL, 0},
    {"dual_cross_attention", EXPECT_FALSE, NULL, 0},
    {"center_input_sample", EXPECT_FALSE, NULL, 0},
    {"resnet_skip_time_act", EXPECT_FALSE, NULL, 0},
    {"class_embeddings_concat", EXPECT_FALSE, NULL, 0},
    {"conv_in_kernel", EXPECT_NUMBER, NULL, 3},
    {"conv_out_kernel", EXPECT_NUMBER, NULL, 3},
    {"downsample_padding", EXPECT_NUMBER, NULL, 1},
    {"mid_block_scale_factor", EXPECT_NUMBER, NULL, 1},
    {"resnet_out_scale_factor", EXPECT_NUMBER, NULL, 1},
};

static int parse_unet(const json_ctx *c, sd_unet_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->in_channels = 4;
  cfg->out_channels = 4;
  cfg->norm_num_groups = 32;
  cfg->norm_eps = 1e-5f;
  cfg->flip_sin_to_cos = true;
  SD_TRY(check_expectations(c, unet_expectations,
                            sizeof unet_expectations / sizeof unet_expectations[0]));
  const cJSON *mid = cJSON_GetObjectItemCaseSensitive(c->root, "mid_block_type");
  if (mid && cJSON_IsNull(mid)) /* diffusers then builds no mid block */
    return unsupported(c, "mid_block_type", mid, "only \"UNetMidBlock2DCrossAttn\"");
  SD_TRY(get_int(c, "in_channels", &cfg->in_channels));
  SD_TRY(get_int(c, "out_channels", &cfg->out_channels));
  SD_TRY(positive(c, "in_channels", cfg->in_channels));
  SD_TRY(positive(c, "out_channels", cfg->out_channels));
  SD_TRY(
      required(c, "block_out_channels",
               get_int_list(c, "block_out_channels", cfg->block_out_channels, &cfg->num_levels)));
  int n = cfg->num_levels;
  SD_TRY(required(c, "down_block_types",
                  get_block_types(c, "down_block_types", n, "CrossAttnDownBlock2D", "DownBlock2D",
                                  cfg->down_block_has_attention)));
  SD_TRY(required(c, "up_block_types",
                  get_block_types(c, "up_block_types", n, "CrossAttnUpBlock2D", "UpBlock2D",
                                  cfg->up_block_has_attention)));
  const cJSON *layers = field(c, "layers_per_block");
  if (layers && cJSON_IsArray(layers))
    return SD_ERROR("%s: a per-level list for 'layers_per_block' is not supported", c->path);
  SD_TRY(required(c, "layers_per_block", get_int(c, "layers_per_block", &cfg->layers_per_block)));
  SD_TRY(positive(c, "layers_per_block", cfg->layers_per_block));
  for (int i = 0; i < n; i++)
    cfg->transformer_layers_per_block[i] = 1;
  SD_TRY(
      get_int_per_level(c, "transformer_layers_per_block", n, cfg->transformer_layers_per_block));
  /* diffusers' quirk: num_attention_heads defaults to attention_head_dim (default 8), which SD
   * configs use to state the heads per level */
  const char *heads_field = "num_attention_heads";
  for (int i = 0; i < n; i++)
    cfg->num_attention_heads[i] = 8;
  int stated = get_int_per_level(c, "num_attention_heads", n, cfg->num_attention_heads);
  SD_TRY(stated);
  if (stated == 0) {
    heads_field = "attention_head_dim";
    SD_TRY(get_int_per_level(c, "attention_head_dim", n, cfg->num_attention_heads));
  }
  const cJSON *cross = field(c, "cross_attention_dim");
  if (cross && cJSON_IsArray(cross))
    return SD_ERROR("%s: a per-level list for 'cross_attention_dim' is not supported", c->path);
  SD_TRY(required(c, "cross_attention_dim",
                  get_int(c, "cross_attention_dim", &cfg->cross_attention_dim)));
  SD_TRY(positive(c, "cross_attention_dim", cfg->cross_attention_dim));
  SD_TRY(get_int(c, "norm_num_groups", &cfg->norm_num_groups));
  SD_TRY(positive(c, "norm_num_groups", cfg->norm_num_groups));
  SD_TRY(get_float(c, "norm_eps", &cfg->norm_eps));
  SD_TRY(get_bool(c, "use_linear_projection", &cfg->use_linear_projection));
  SD_TRY(get_bool(c, "upcast_attention", &cfg->upcast_attention));
  SD_TRY(get_bool(c, "flip_sin_to_cos", &cfg->flip_sin_to_cos));
  SD_TRY(get_float(c, "freq_shift", &cfg->freq_shift));
  SD_TRY(required(c, "sample_size", get_int(c, "sample_size", &cfg->sample_size)));
  SD_TRY(positive(c, "sample_size", cfg->sample_size));
  if (get_int(c, "num_class_embeds", &cfg->num_class_embeds) == 1 &&
      (cfg->num_class_embeds < 1 || cfg->num_class_embeds > SD_CFG_MAX_VOCAB))
    return SD_ERROR("%s: field 'num_class_embeds' must be in [1, %d] (got %d)", c->path,
                    SD_CFG_MAX_VOCAB, cfg->num_class_embeds);
  const cJSON *only_cross = field(c, "only_cross_attention");
  if (only_cross && cJSON_IsBool(only_cross)) {
    for (int i = 0; i < n; i++)
      cfg->only_cross_attention[i] = cJSON_IsTrue(only_cross);
  } else if (only_cross) {
    if (!cJSON_IsArray(only_cross) || cJSON_GetArraySize(only_cross) != n)
      return SD_ERROR("%s: field 'only_cross_attention' must be true, false or a list of %d "
                      "booleans (one per down block)",
                      c->path, n);
    for (int i = 0; i < n; i++) {
      const cJSON *e = cJSON_GetArrayItem(only_cross, i);
      if (!cJSON_IsBool(e))
        return SD_ERROR("%s: only_cross_attention[%d] must be true or false", c->path, i);
      cfg->only_cross_attention[i] = cJSON_IsTrue(e);
    }
  }

  for (int i = 0; i < n; i++) {
    int channels = cfg->block_out_channels[i];
    /* the mid block uses the last level's heads and transformer depth */
    bool attends =
        cfg->down_block_has_attention[i] || cfg->up_block_has_attention[n - 1 - i] || i == n - 1;
    if (channels % cfg->norm_num_groups != 0)
      return SD_ERROR("%s: block_out_channels[%d] = %d is not a multiple of norm_num_groups %d",
                      c->path, i, channels, cfg->norm_num_groups);
    if (attends && (cfg->num_attention_heads[i] <= 0 || channels % cfg->num_attention_heads[i]))
      return SD_ERROR("%s: %s gives %d heads at level %d, which do not divide its %d channels",
                      c->path, heads_field, cfg->num_attention_heads[i], i, channels);
    if (attends && cfg->transformer_layers_per_block[i] <= 0)
      return SD_ERROR("%s: transformer_layers_per_block[%d] must be positive", c->path, i);
  }
  return 0;
}

static const expectation vae_expectations[] = {
    {"act_fn", EXPECT_STRING, "silu", 0},     {"shift_factor", EXPECT_NULL, NULL, 0},
    {"latents_mean", EXPECT_NULL, NULL, 0},   {"latents_std", EXPECT_NULL, NULL, 0},
    {"use_quant_conv", EXPECT_TRUE, NULL, 0}, {"use_post_quant_conv", EXPECT_TRUE, NULL, 0},
};

static int parse_vae(const json_ctx *c, sd_vae_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->in_channels = 3;
  cfg->out_channels = 3;
  cfg->latent_channels = 4;
  cfg->norm_num_groups = 32;
  cfg->scaling_factor = 0.18215f;
  cfg->sample_size = 32;
  cfg->mid_block_add_attention = true;
  SD_TRY(check_expectations(c, vae_expectations,
                            sizeof vae_expectations / sizeof vae_expectations[0]));
  SD_TRY(get_int(c, "in_channels", &cfg->in_channels));
  SD_TRY(get_int(c, "out_channels", &cfg->out_channels));
  SD_TRY(get_int(c, "latent_channels", &cfg->latent_channels));
  SD_TRY(positive(c, "in_channels", cfg->in_channels));
  SD_TRY(positive(c, "out_channels", cfg->out_channels));
  SD_TRY(positive(c, "latent_channels", cfg->latent_channels));
  SD_TRY(
      required(c, "block_out_channels",
               get_int_list(c, "block_out_channels", cfg->block_out_channels, &cfg->num_levels)));
  bool unused[SD_MAX_LEVELS];
  SD_TRY(
      get_block_types(c, "down_block_types", cfg->num_levels, NULL, "DownEncoderBlock2D", unused));
  SD_TRY(get_block_types(c, "up_block_types", cfg->num_levels, NULL, "UpDecoderBlock2D", unused));
  SD_TRY(required(c, "layers_per_block", get_int(c, "layers_per_block", &cfg->layers_per_block)));
  SD_TRY(positive(c, "layers_per_block", cfg->layers_per_block));
  SD_TRY(get_int(c, "norm_num_groups", &cfg->norm_num_groups));
  SD_TRY(positive(c, "norm_num_groups", cfg->norm_num_groups));
  SD_TRY(get_float(c, "scaling_factor", &cfg->scaling_factor));
  const cJSON *size = field(c, "sample_size");
  if (size && cJSON_IsArray(size))
    return SD_ERROR("%s: a list for 'sample_size' is not supported", c->path);
  SD_TRY(get_int(c, "sample_size", &cfg->sample_size));
  SD_TRY(get_bool(c, "mid_block_add_attention", &cfg->mid_block_add_attention));
  for (int i = 0; i < cfg->num_levels; i++)
    if (cfg->block_out_channels[i] % cfg->norm_num_groups != 0)
      return SD_ERROR("%s: block_out_channels[%d] = %d is not a multiple of norm_num_groups %d",
                      c->path, i, cfg->block_out_channels[i], cfg->norm_num_groups);
  return 0;
}

static int parse_activation(const json_ctx *c, const char *name, sd_activation *out) {
  const char *act = NULL;
  int rc = get_string(c, name, &act);
  SD_TRY(rc);
  if (rc == 0)
    return 0;
  if (strcmp(act, "quick_gelu") == 0)
    *out = SD_ACT_QUICK_GELU;
  else if (strcmp(act, "gelu") == 0)
    *out = SD_ACT_GELU;
  else if (strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0)
    *out = SD_ACT_GELU_TANH;
  else
    return SD_ERROR("%s: %s '%s' is not supported (quick_gelu, gelu, gelu_new, "
                    "gelu_pytorch_tanh)",
                    c->path, name, act);
  return 1;
}

static int parse_clip(const json_ctx *c, sd_clip_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->vocab_size = 49408;
  cfg->max_position_embeddings = 77;
  cfg->hidden_act = SD_ACT_QUICK_GELU;
  cfg->layer_norm_eps = 1e-5f;
  cfg->bos_token_id = 49406;
  cfg->eos_token_id = 49407;
  SD_TRY(required(c, "hidden_size", get_int(c, "hidden_size", &cfg->hidden_size)));
  SD_TRY(
      required(c, "intermediate_size", get_int(c, "intermediate_size", &cfg->intermediate_size)));
  SD_TRY(
      required(c, "num_hidden_layers", get_int(c, "num_hidden_layers", &cfg->num_hidden_layers)));
  SD_TRY(required(c, "num_attention_heads",
                  get_int(c, "num_attention_heads", &cfg->num_attention_heads)));
  SD_TRY(get_int(c, "vocab_size", &cfg->vocab_size));
  SD_TRY(get_int(c, "max_position_embeddings", &cfg->max_position_embeddings));
  SD_TRY(parse_activation(c, "hidden_act", &cfg->hidden_act));
  SD_TRY(get_float(c, "layer_norm_eps", &cfg->layer_norm_eps));
  SD_TRY(get_int(c, "bos_token_id", &cfg->bos_token_id));
  SD_TRY(get_int(c, "eos_token_id", &cfg->eos_token_id));
  SD_TRY(positive(c, "hidden_size", cfg->hidden_size));
  SD_TRY(positive(c, "intermediate_size", cfg->intermediate_size));
  SD_TRY(positive(c, "num_hidden_layers", cfg->num_hidden_layers));
  SD_TRY(positive(c, "num_attention_heads", cfg->num_attention_heads));
  SD_TRY(positive(c, "vocab_size", cfg->vocab_size));
  SD_TRY(positive(c, "max_position_embeddings", cfg->max_position_embeddings));
  if (cfg->hidden_size % cfg->num_attention_heads != 0)
    return SD_ERROR("%s: num_attention_heads %d does not divide hidden_size %d", c->path,
                    cfg->num_attention_heads, cfg->hidden_size);
  return 0;
}

static const expectation scheduler_expectations[] = {
    {"trained_betas", EXPECT_NULL, NULL, 0},
    {"thresholding", EXPECT_FALSE, NULL, 0},
    {"rescale_betas_zero_snr", EXPECT_FALSE, NULL, 0},
};

/* Matches a stated string against names; sets *out to the index. */
static int get_choice(const json_ctx *c, const char *name, const char *const *names, int n,
                      int *out) {
  const char *value = NULL;
  int rc = get_string(c, name, &value);
  if (rc <= 0)
    return rc;
  for (int i = 0; i < n; i++) {
    if (strcmp(value, names[i]) == 0) {
      *out = i;
      return 1;
    }
  }
  char list[256] = "";
  for (int i = 0; i < n; i++) {
    strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
    strncat(list, names[i], sizeof list - strlen(list) - 1);
  }
  return SD_ERROR("%s: %s '%s' is not supported (%s)", c->path, name, value, list);
}

static int parse_scheduler(const json_ctx *c, sd_scheduler_config *cfg) {
  sd_scheduler_config_defaults(cfg);
  SD_TRY(check_expectations(c, scheduler_expectations,
                            sizeof scheduler_expectations / sizeof scheduler_expectations[0]));
  const char *class_name = NULL;
  SD_TRY(required(c, "_class_name", get_string(c, "_class_name", &class_name)));
  if (strlen(class_name) >= sizeof cfg->class_name)
    return SD_ERROR("%s: _class_name '%s' is too long", c->path, class_name);
  snprintf(cfg->class_name, sizeof cfg->class_name, "%s", class_name);

  static const char *const schedules[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
  static const char *const predictions[] = {"epsilon", "v_prediction", "sample"};
  static const char *const spacings[] = {"leading", "linspace", "trailing"};
  int choice = 0, rc;
  unsigned *set = &cfg->fields_set;
#define SD_STATED(expr, bit)                                                                       \
  do {                                                                                             \
    rc = (expr);                                                                                   \
    SD_TRY(rc);                                                                                    \
    if (rc)                                                                                        \
      *set |= (bit);                                                                               \
  } while (0)
  SD_STATED(get_int(c, "num_train_timesteps", &cfg->num_train_timesteps),
            SD_SCHED_FIELD_NUM_TRAIN_TIMESTEPS);
  SD_STATED(get_float(c, "beta_start", &cfg->beta_start), SD_SCHED_FIELD_BETA_START);
  SD_STATED(get_float(c, "beta_end", &cfg->beta_end), SD_SCHED_FIELD_BETA_END);
  SD_STATED(get_choice(c, "beta_schedule", schedules, 3, &choice), SD_SCHED_FIELD_BETA_SCHEDULE);
  if (rc)
    cfg->beta_schedule = (sd_beta_schedule)choice;
  SD_STATED(get_choice(c, "prediction_type", predictions, 3, &choice),
            SD_SCHED_FIELD_PREDICTION_TYPE);
  if (rc)
    cfg->prediction_type = (sd_prediction_type)choice;
  SD_STATED(get_choice(c, "timestep_spacing", spacings, 3, &choice),
            SD_SCHED_FIELD_TIMESTEP_SPACING);
  if (rc)
    cfg->timestep_spacing = (sd_timestep_spacing)choice;
  SD_STATED(get_int(c, "steps_offset", &cfg->steps_offset), SD_SCHED_FIELD_STEPS_OFFSET);
  SD_STATED(get_bool(c, "set_alpha_to_one", &cfg->set_alpha_to_one),
            SD_SCHED_FIELD_SET_ALPHA_TO_ONE);
  SD_STATED(get_bool(c, "clip_sample", &cfg->clip_sample), SD_SCHED_FIELD_CLIP_SAMPLE);
  SD_STATED(get_float(c, "clip_sample_range", &cfg->clip_sample_range),
            SD_SCHED_FIELD_CLIP_SAMPLE_RANGE);
  SD_STATED(get_bool(c, "skip_prk_steps", &cfg->skip_prk_steps), SD_SCHED_FIELD_SKIP_PRK_STEPS);
  SD_STATED(get_bool(c, "use_karras_sigmas", &cfg->use_karras_sigmas),
            SD_SCHED_FIELD_USE_KARRAS_SIGMAS);
#undef SD_STATED
  SD_TRY(positive(c, "num_train_timesteps", cfg->num_train_timesteps));
  return 0;
}

/* Reads path (or parses text) and runs parse on it. */
#define SD_DEFINE_READER(read_fn, parse_fn, type, parse, check)                                    \
  int parse_fn(const char *text, size_t len, const char *name, type *cfg) {                        \
    cJSON *root;                                                                                   \
    SD_TRY(sd_json_parse_object(text, len, name, &root));                                          \
    json_ctx c = {name, root};                                                                     \
    int rc = parse(&c, cfg);                                                                       \
    cJSON_Delete(root);                                                                            \
    return rc < 0 ? rc : check(cfg, name);                                                         \
  }                                                                                                \
  int read_fn(const char *path, type *cfg) {                                                       \
    char *text;                                                                                    \
    size_t len;                                                                                    \
    SD_TRY(sd_file_read(path, SD_FILE_MAX_CONFIG, &text, &len));                                   \
    int rc = parse_fn(text, len, path, cfg);                                                       \
    free(text);                                                                                    \
    return rc;                                                                                     \
  }

SD_DEFINE_READER(sd_unet_config_read, sd_unet_config_parse, sd_unet_config, parse_unet,
                 sd_unet_config_check)
SD_DEFINE_READER(sd_vae_config_read, sd_vae_config_parse, sd_vae_config, parse_vae,
                 sd_vae_config_check)
SD_DEFINE_READER(sd_clip_config_read, sd_clip_config_parse, sd_clip_config, parse_clip,
                 sd_clip_config_check)
SD_DEFINE_READER(sd_scheduler_config_read, sd_scheduler_config_parse, sd_scheduler_config,
                 parse_scheduler, sd_scheduler_config_check)

static int path_join(char *out, size_t size, const char *dir, const char *name) {
  int n = snprintf(out, size, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= size)
    return SD_ERROR("%s/%s: path too long", dir, name);
  return 0;
}

static int readable(const char *path) {
  return access(path, R_OK) == 0;
}

/* The pad token of a tokenizer config file: a string, or {"content": string}. 1 when found. */
static int pad_token_from(const char *path, char *out, size_t size) {
  if (!readable(path))
    return 0;
  cJSON *root;
  SD_TRY(sd_json_read_file(path, &root));
  const cJSON *pad = cJSON_GetObjectItemCaseSensitive(root, "pad_token");
  if (cJSON_IsObject(pad))
    pad = cJSON_GetObjectItemCaseSensitive(pad, "content");
  int rc = 0;
  if (pad && !cJSON_IsNull(pad)) {
    if (!cJSON_IsString(pad) || strlen(pad->valuestring) >= size || !pad->valuestring[0])
      rc = SD_ERROR("%s: pad_token must be a non-empty string (or {\"content\": string}) under "
                    "%zu bytes",
                    path, size);
    else {
      snprintf(out, size, "%s", pad->valuestring);
      rc = 1;
    }
  }
  cJSON_Delete(root);
  return rc;
}

int sd_tokenizer_files_read(const char *dir, int max_position_embeddings, sd_tokenizer_files *tok) {
  memset(tok, 0, sizeof *tok);
  char vocab[4096], merges[4096], json[4096], special[4096], config[4096];
  SD_TRY(path_join(vocab, sizeof vocab, dir, "vocab.json"));
  SD_TRY(path_join(merges, sizeof merges, dir, "merges.txt"));
  SD_TRY(path_join(json, sizeof json, dir, "tokenizer.json"));
  SD_TRY(path_join(special, sizeof special, dir, "special_tokens_map.json"));
  SD_TRY(path_join(config, sizeof config, dir, "tokenizer_config.json"));
  if (readable(vocab) && readable(merges)) {
    snprintf(tok->vocab_json, sizeof tok->vocab_json, "%s", vocab);
    snprintf(tok->merges_txt, sizeof tok->merges_txt, "%s", merges);
  } else if (readable(json)) {
    snprintf(tok->tokenizer_json, sizeof tok->tokenizer_json, "%s", json);
  } else {
    return SD_ERROR("%s: no tokenizer files (vocab.json + merges.txt, or tokenizer.json)", dir);
  }
  int rc = pad_token_from(special, tok->pad_token, sizeof tok->pad_token);
  SD_TRY(rc);
  if (rc == 0)
    rc = pad_token_from(config, tok->pad_token, sizeof tok->pad_token);
  SD_TRY(rc);
  if (rc == 0)
    snprintf(tok->pad_token, sizeof tok->pad_token, "<|endoftext|>");

  tok->model_max_length = max_position_embeddings;
  if (readable(config)) {
    cJSON *root;
    SD_TRY(sd_json_read_file(config, &root));
    const cJSON *length = cJSON_GetObjectItemCaseSensitive(root, "model_max_length");
    if (length && !cJSON_IsNull(length)) {
      if (!cJSON_IsNumber(length) || length->valuedouble < 2) {
        cJSON_Delete(root);
        return SD_ERROR("%s: model_max_length must be a number >= 2", config);
      }
      if (length->valuedouble < max_position_embeddings)
        tok->model_max_length = (int)length->valuedouble;
    }
    cJSON_Delete(root);
  }
  return 0;
}
