/* LDM-style YAML configs through libyaml's document API (see ldm_yaml.h). */
#include "ldm_yaml.h"

#include "config_check.h"

#include "../../kernels/error.h"
#include "../../kernels/file.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

typedef struct yaml_ctx {
  const char *path;
  yaml_document_t *doc;
} yaml_ctx;

/* The node at a dotted key path below node, or NULL when any part is absent. */
static yaml_node_t *lookup(const yaml_ctx *c, yaml_node_t *node, const char *dotted) {
  char key[128];
  while (node && *dotted) {
    const char *dot = strchr(dotted, '.');
    size_t len = dot ? (size_t)(dot - dotted) : strlen(dotted);
    if (len >= sizeof key || node->type != YAML_MAPPING_NODE)
      return NULL;
    memcpy(key, dotted, len);
    key[len] = '\0';
    yaml_node_t *found = NULL;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
      yaml_node_t *k = yaml_document_get_node(c->doc, pair->key);
      if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
        found = yaml_document_get_node(c->doc, pair->value);
    }
    node = found;
    dotted = dot ? dot + 1 : dotted + len;
  }
  return node;
}

static int scalar_error(const yaml_ctx *c, const char *key, const yaml_node_t *node,
                        const char *want) {
  if (node->type != YAML_SCALAR_NODE)
    return SD_ERROR("%s: line %lu: %s must be %s", c->path,
                    (unsigned long)node->start_mark.line + 1, key, want);
  return SD_ERROR("%s: line %lu: %s '%s' is not %s", c->path,
                  (unsigned long)node->start_mark.line + 1, key,
                  (const char *)node->data.scalar.value, want);
}

static int parse_int_node(const yaml_ctx *c, const char *key, const yaml_node_t *node, int *out) {
  if (node->type != YAML_SCALAR_NODE)
    return scalar_error(c, key, node, "an integer");
  const char *s = (const char *)node->data.scalar.value;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end || errno || v < -2147483647L || v > 2147483647L)
    return scalar_error(c, key, node, "an integer");
  *out = (int)v;
  return 0;
}

/* An int in [min, max] (or LDM's -1 for "unset" when allow_unset). */
static int check_range(const yaml_ctx *c, const char *key, const yaml_node_t *node, int value,
                       int min, int max, bool allow_unset) {
  if ((value < min || value > max) && !(allow_unset && value == -1))
    return SD_ERROR("%s: line %lu: %s = %d is outside what sdbatch supports (%d to %d%s)", c->path,
                    (unsigned long)node->start_mark.line + 1, key, value, min, max,
                    allow_unset ? ", or -1" : "");
  return 0;
}

static int get_int(const yaml_ctx *c, yaml_node_t *base, const char *key, int min, int max,
                   int *out) {
  yaml_node_t *node = lookup(c, base, key);
  if (!node)
    return 0;
  SD_TRY(parse_int_node(c, key, node, out));
  return check_range(c, key, node, *out, min, max, false);
}

/* num_heads / num_head_channels, where LDM's files write -1 for "not this one". */
static int get_int_or_unset(const yaml_ctx *c, yaml_node_t *base, const char *key, int max,
                            int *out) {
  yaml_node_t *node = lookup(c, base, key);
  if (!node)
    return 0;
  SD_TRY(parse_int_node(c, key, node, out));
  return check_range(c, key, node, *out, 1, max, true);
}

static int get_float(const yaml_ctx *c, yaml_node_t *base, const char *key, float *out) {
  yaml_node_t *node = lookup(c, base, key);
  if (!node)
    return 0;
  if (node->type != YAML_SCALAR_NODE)
    return scalar_error(c, key, node, "a number");
  const char *s = (const char *)node->data.scalar.value;
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !isfinite(v) || fabs(v) > FLT_MAX)
    return scalar_error(c, key, node, "a number");
  *out = (float)v;
  return 0;
}

static int bool_node(const yaml_ctx *c, const char *key, const yaml_node_t *node, int *out) {
  if (node->type == YAML_SCALAR_NODE) {
    const char *s = (const char *)node->data.scalar.value;
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
      if (strcasecmp(s, yes[i]) == 0) {
        *out = 1;
        return 0;
      }
      if (strcasecmp(s, no[i]) == 0) {
        *out = 0;
        return 0;
      }
    }
  }
  return scalar_error(c, key, node, "true or false");
}

static int get_bool(const yaml_ctx *c, yaml_node_t *base, const char *key, int *out) {
  yaml_node_t *node = lookup(c, base, key);
  return node ? bool_node(c, key, node, out) : 0;
}

/* A list of at most capacity ints in [min, max]; an int scalar fills every entry when
 * scalar_fills. */
static int get_int_list(const yaml_ctx *c, yaml_node_t *base, const char *key, int min, int max,
                        int *out, int capacity, int *count, int scalar_fills) {
  yaml_node_t *node = lookup(c, base, key);
  if (!node)
    return 0;
  if (scalar_fills && node->type == YAML_SCALAR_NODE) {
    int v;
    SD_TRY(parse_int_node(c, key, node, &v));
    SD_TRY(check_range(c, key, node, v, min, max, false));
    for (int i = 0; i < capacity; i++)
      out[i] = v;
    *count = capacity;
    return 0;
  }
  if (node->type != YAML_SEQUENCE_NODE)
    return scalar_error(c, key, node, "a list of integers");
  int n = 0;
  for (yaml_node_item_t *item = node->data.sequence.items.start;
       item < node->data.sequence.items.top; item++) {
    if (n == capacity)
      return SD_ERROR("%s: line %lu: %s has more than %d entries", c->path,
                      (unsigned long)node->start_mark.line + 1, key, capacity);
    yaml_node_t *element = yaml_document_get_node(c->doc, *item);
    SD_TRY(parse_int_node(c, key, element, &out[n]));
    SD_TRY(check_range(c, key, element, out[n], min, max, false));
    n++;
  }
  *count = n;
  return 0;
}

/* A list of at most capacity booleans. */
static int get_bool_list(const yaml_ctx *c, yaml_node_t *base, const char *key, bool *out,
                         int capacity, int *count) {
  yaml_node_t *node = lookup(c, base, key);
  if (!node)
    return 0;
  if (node->type != YAML_SEQUENCE_NODE)
    return scalar_error(c, key, node, "a list of true / false");
  int n = 0;
  for (yaml_node_item_t *item = node->data.sequence.items.start;
       item < node->data.sequence.items.top; item++) {
    if (n == capacity)
      return SD_ERROR("%s: line %lu: %s has more than %d entries", c->path,
                      (unsigned long)node->start_mark.line + 1, key, capacity);
    yaml_node_t *element = yaml_document_get_node(c->doc, *item);
    int value;
    SD_TRY(bool_node(c, key, element, &value));
    out[n++] = value;
  }
  *count = n;
  return 0;
}

static int get_parameterization(const yaml_ctx *c, yaml_node_t *params, int *out) {
  yaml_node_t *node = lookup(c, params, "parameterization");
  if (!node)
    return 0;
  const char *s = node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value : "";
  if (strcmp(s, "eps") == 0)
    *out = SD_PREDICT_EPSILON;
  else if (strcmp(s, "v") == 0)
    *out = SD_PREDICT_V;
  else if (strcmp(s, "x0") == 0)
    *out = SD_PREDICT_SAMPLE;
  else
    return scalar_error(c, "model.params.parameterization", node, "\"eps\", \"v\" or \"x0\"");
  return 0;
}

static int get_text_layer(const yaml_ctx *c, yaml_node_t *text, int *out) {
  yaml_node_t *node = lookup(c, text, "layer");
  if (!node)
    return 0;
  const char *s = node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value : "";
  if (strcmp(s, "penultimate") == 0)
    *out = 1;
  else if (strcmp(s, "last") == 0)
    *out = 0;
  else
    return scalar_error(c, "cond_stage_config.params.layer", node, "\"last\" or \"penultimate\"");
  return 0;
}

static void set_unset(sd_ldm_yaml *y) {
  memset(y, 0, sizeof *y);
  y->parameterization = -1;
  y->scale_factor = NAN;
  y->image_size = -1;
  y->linear_start = NAN;
  y->linear_end = NAN;
  y->timesteps = -1;
  y->unet.in_channels = y->unet.out_channels = y->unet.model_channels = -1;
  y->unet.num_res_blocks = y->unet.num_heads = y->unet.num_head_channels = -1;
  y->unet.context_dim = y->unet.use_linear_in_transformer = -1;
  y->unet.n_channel_mult = y->unet.n_attention_resolutions = y->unet.n_transformer_depth = -1;
  y->unet.num_classes = y->unet.n_disable_self_attentions = y->unet.disable_middle_self_attn = -1;
  y->low_scale.linear_start = NAN;
  y->low_scale.linear_end = NAN;
  y->low_scale.timesteps = y->low_scale.max_noise_level = -1;
  y->vae.ch = y->vae.num_res_blocks = y->vae.z_channels = -1;
  y->vae.in_channels = y->vae.out_ch = y->vae.n_ch_mult = y->vae.norm_num_groups = -1;
  y->text.penultimate = -1;
  y->text.num_attention_heads = -1;
}

/* The x4 upscaler's low_scale_config: the noise schedule of the low-res image (LDM's
 * AbstractLowScaleModel.register_schedule, whose only schedule sdbatch takes is its default
 * "linear": sqrt-spaced betas, diffusers' scaled_linear) and max_noise_level. */
static int read_low_scale(const yaml_ctx *c, yaml_node_t *params, sd_ldm_yaml *y) {
  yaml_node_t *low = lookup(c, params, "low_scale_config.params");
  if (!low)
    return 0;
  SD_TRY(get_int(c, low, "max_noise_level", 0, SD_CFG_MAX_TRAIN_STEPS - 1,
                 &y->low_scale.max_noise_level));
  yaml_node_t *schedule = lookup(c, low, "noise_schedule_config");
  if (!schedule)
    return 0;
  yaml_node_t *kind = lookup(c, schedule, "beta_schedule");
  if (kind && (kind->type != YAML_SCALAR_NODE ||
               strcmp((const char *)kind->data.scalar.value, "linear") != 0))
    return scalar_error(c, "low_scale_config.params.noise_schedule_config.beta_schedule", kind,
                        "\"linear\" (the only low-res noise schedule sdbatch supports)");
  SD_TRY(get_float(c, schedule, "linear_start", &y->low_scale.linear_start));
  SD_TRY(get_float(c, schedule, "linear_end", &y->low_scale.linear_end));
  return get_int(c, schedule, "timesteps", 1, SD_CFG_MAX_TRAIN_STEPS, &y->low_scale.timesteps);
}

static int read_fields(const yaml_ctx *c, yaml_node_t *root, sd_ldm_yaml *y) {
  yaml_node_t *params = lookup(c, root, "model.params");
  if (!params || params->type != YAML_MAPPING_NODE)
    return SD_ERROR("%s: no model.params mapping (not an LDM config?)", c->path);
  const int io = SD_CFG_MAX_IO_CHANNELS, channels = SD_CFG_MAX_CHANNELS;
  SD_TRY(get_parameterization(c, params, &y->parameterization));
  SD_TRY(get_float(c, params, "scale_factor", &y->scale_factor));
  SD_TRY(get_int(c, params, "image_size", 1, SD_CFG_MAX_SAMPLE_SIZE, &y->image_size));
  SD_TRY(get_float(c, params, "linear_start", &y->linear_start));
  SD_TRY(get_float(c, params, "linear_end", &y->linear_end));
  SD_TRY(get_int(c, params, "timesteps", 1, SD_CFG_MAX_TRAIN_STEPS, &y->timesteps));

  yaml_node_t *unet = lookup(c, params, "unet_config.params");
  if (unet) {
    SD_TRY(get_int(c, unet, "in_channels", 1, io, &y->unet.in_channels));
    SD_TRY(get_int(c, unet, "out_channels", 1, io, &y->unet.out_channels));
    SD_TRY(get_int(c, unet, "model_channels", 1, channels, &y->unet.model_channels));
    SD_TRY(get_int(c, unet, "num_res_blocks", 1, SD_CFG_MAX_RESNETS, &y->unet.num_res_blocks));
    SD_TRY(get_int_or_unset(c, unet, "num_heads", channels, &y->unet.num_heads));
    SD_TRY(get_int_or_unset(c, unet, "num_head_channels", channels, &y->unet.num_head_channels));
    SD_TRY(get_int(c, unet, "context_dim", 1, channels, &y->unet.context_dim));
    SD_TRY(get_bool(c, unet, "use_linear_in_transformer", &y->unet.use_linear_in_transformer));
    SD_TRY(get_int_list(c, unet, "channel_mult", 1, SD_LDM_MAX_MULT, y->unet.channel_mult,
                        SD_MAX_LEVELS, &y->unet.n_channel_mult, 0));
    SD_TRY(get_int_list(c, unet, "attention_resolutions", 1, 1 << 16, y->unet.attention_resolutions,
                        8, &y->unet.n_attention_resolutions, 0));
    SD_TRY(get_int_list(c, unet, "transformer_depth", 0, SD_CFG_MAX_LAYERS,
                        y->unet.transformer_depth, SD_MAX_LEVELS, &y->unet.n_transformer_depth, 1));
    SD_TRY(get_int(c, unet, "num_classes", 1, SD_CFG_MAX_VOCAB, &y->unet.num_classes));
    SD_TRY(get_bool_list(c, unet, "disable_self_attentions", y->unet.disable_self_attentions,
                         SD_MAX_LEVELS, &y->unet.n_disable_self_attentions));
    SD_TRY(get_bool(c, unet, "disable_middle_self_attn", &y->unet.disable_middle_self_attn));
  }
  SD_TRY(read_low_scale(c, params, y));
  yaml_node_t *vae = lookup(c, params, "first_stage_config.params.ddconfig");
  if (vae) {
    SD_TRY(get_int(c, vae, "ch", 1, channels, &y->vae.ch));
    SD_TRY(get_int(c, vae, "num_res_blocks", 1, SD_CFG_MAX_RESNETS, &y->vae.num_res_blocks));
    SD_TRY(get_int(c, vae, "z_channels", 1, io, &y->vae.z_channels));
    SD_TRY(get_int(c, vae, "in_channels", 1, io, &y->vae.in_channels));
    SD_TRY(get_int(c, vae, "out_ch", 1, io, &y->vae.out_ch));
    SD_TRY(get_int_list(c, vae, "ch_mult", 1, SD_LDM_MAX_MULT, y->vae.ch_mult, SD_MAX_LEVELS,
                        &y->vae.n_ch_mult, 0));
    SD_TRY(get_int(c, vae, "norm_num_groups", 1, channels, &y->vae.norm_num_groups));
  }
  yaml_node_t *text = lookup(c, params, "cond_stage_config.params");
  if (text) {
    SD_TRY(get_text_layer(c, text, &y->text.penultimate));
    SD_TRY(get_int(c, text, "num_attention_heads", 1, channels, &y->text.num_attention_heads));
  }
  return 0;
}

int sd_ldm_yaml_parse(const char *text, size_t len, const char *name, sd_ldm_yaml *out) {
  set_unset(out);
  if (strlen(name) >= sizeof out->path)
    return SD_ERROR("%s: path too long", name);
  snprintf(out->path, sizeof out->path, "%s", name);
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser))
    return SD_ERROR("%s: cannot initialise the YAML parser", name);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  int rc = -1;
  if (!yaml_parser_load(&parser, &doc)) {
    SD_ERROR("%s: line %lu: YAML error: %s", name, (unsigned long)parser.problem_mark.line + 1,
             parser.problem ? parser.problem : "unknown");
    goto out_parser;
  }
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  yaml_ctx c = {name, &doc};
  if (!root)
    SD_ERROR("%s: empty YAML document", name);
  else
    rc = read_fields(&c, root, out);
  yaml_document_delete(&doc);
out_parser:
  yaml_parser_delete(&parser);
  return rc;
}

int sd_ldm_yaml_read(const char *path, sd_ldm_yaml *out) {
  set_unset(out);
  char *text;
  size_t len;
  SD_TRY(sd_file_read(path, SD_FILE_MAX_YAML, &text, &len));
  int rc = sd_ldm_yaml_parse(text, len, path, out);
  free(text);
  return rc;
}
