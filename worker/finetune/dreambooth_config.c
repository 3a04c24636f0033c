/* Reading `sdbatch train`'s YAML config (dreambooth_config.h). */
#include "dreambooth_config.h"

#include "../../kernels/error.h"
#include "../../kernels/file.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define QUOTE_MAX 60

typedef enum key_kind {
  KEY_PATH,     /* char *, resolved against the config's folder */
  KEY_STRING,   /* char *, non-empty */
  KEY_INT,      /* int, from min to max */
  KEY_INT64,    /* int64_t, from min to max */
  KEY_U64,      /* uint64_t */
  KEY_BOOL,     /* bool */
  KEY_NUMBER,   /* double, finite, from min to max */
  KEY_SCHEDULE, /* sd_lr_schedule */
} key_kind;

typedef struct key_spec {
  const char *name;
  key_kind kind;
  size_t offset;
  double min, max;
} key_spec;

#define KEY(name, kind, ...)                                                                       \
  { #name, kind, offsetof(sd_dreambooth_config, name), __VA_ARGS__ }
#define KEY_ANY(name, kind) KEY(name, kind, 0, 0)

static const key_spec known_keys[] = {
    KEY_ANY(pretrained_model, KEY_PATH),
    KEY_ANY(pretrained_model_config, KEY_PATH),
    KEY_ANY(instance_data_dir, KEY_PATH),
    KEY_ANY(instance_prompt, KEY_STRING),
    KEY_ANY(output_dir, KEY_PATH),
    KEY(resolution, KEY_INT, 8, 4096),
    KEY_ANY(center_crop, KEY_BOOL),
    KEY_ANY(random_flip, KEY_BOOL),
    KEY(train_batch_size, KEY_INT, 1, 4096),
    KEY(gradient_accumulation_steps, KEY_INT, 1, 4096),
    KEY(num_train_epochs, KEY_INT, 1, 1e9),
    KEY(max_train_steps, KEY_INT64, 1, 1e15),
    KEY(learning_rate, KEY_NUMBER, 0, 1e3),
    KEY_ANY(scale_lr, KEY_BOOL),
    KEY_ANY(lr_scheduler, KEY_SCHEDULE),
    KEY(lr_warmup_steps, KEY_INT64, 0, 1e15),
    KEY(adam_beta1, KEY_NUMBER, 0, 0.999999999),
    KEY(adam_beta2, KEY_NUMBER, 0, 0.999999999),
    KEY(adam_weight_decay, KEY_NUMBER, 0, 1e3),
    KEY(adam_epsilon, KEY_NUMBER, 0, 1),
    KEY(max_grad_norm, KEY_NUMBER, 0, 1e30),
    KEY_ANY(seed, KEY_U64),
    KEY(checkpointing_steps, KEY_INT64, 1, 1e15),
    KEY(checkpoints_total_limit, KEY_INT64, 1, 1e9),
    KEY_ANY(gradient_checkpointing, KEY_BOOL),
    KEY_ANY(lora, KEY_BOOL),
    KEY_ANY(train_text_encoder, KEY_BOOL),
    KEY(rank, KEY_INT, 1, 1024),
    KEY_ANY(with_prior_preservation, KEY_BOOL),
    KEY_ANY(class_data_dir, KEY_PATH),
    KEY_ANY(class_prompt, KEY_STRING),
    KEY(num_class_images, KEY_INT, 1, 1e6),
    KEY(prior_loss_weight, KEY_NUMBER, 0, 1e6),
    KEY(sample_batch_size, KEY_INT, 1, 4096),
    KEY_ANY(validation_prompt, KEY_STRING),
    KEY(num_validation_images, KEY_INT, 1, 64),
    KEY(validation_steps, KEY_INT64, 1, 1e15),
    KEY_ANY(validation_scheduler, KEY_STRING),
    KEY_ANY(single_file, KEY_STRING),
};
#define N_KNOWN (int)(sizeof known_keys / sizeof known_keys[0])

/* Arguments of train_dreambooth.py and train_dreambooth_lora.py that are not built yet: given a
 * value other than false, null, 0 or "no", they are refused as "not supported yet". */
static const struct {
  const char *name;
  const char *why;
} unsupported_keys[] = {
    {"pretrained_model_name_or_path", "name the model with pretrained_model (a local folder)"},
    {"revision", "models are local folders"},
    {"variant", "models are local folders"},
    {"tokenizer_name", "the model's own tokenizer is used"},
    {"prior_generation_precision", "class images are rendered in float32"},
    {"lora_rank", "LoRA mode is `lora: true`, its rank `rank` (train_dreambooth_lora.py's --rank)"},
    {"lora_alpha", "lora_alpha is rank, as train_dreambooth_lora.py sets it"},
    {"lora_dropout", "LoRA dropout is not implemented"},
    {"target_modules", "LoRA mode adapts the script's to_q, to_k, to_v and to_out.0"},
    {"use_lora", "LoRA mode is `lora: true`"},
    {"use_dora", "DoRA is not implemented"},
    {"validation_epochs", "validation renders every validation_steps steps"},
    {"validation_images", "validation renders are text-to-image"},
    {"mixed_precision", "training computes in float32"},
    {"use_8bit_adam", "AdamW keeps float32 state"},
    {"offset_noise", "plain randn noise only"},
    {"snr_gamma", "plain MSE loss only"},
    {"pre_compute_text_embeddings", "the instance prompt is encoded once anyway"},
    {"tokenizer_max_length", "the tokenizer's model_max_length is used"},
    {"text_encoder_use_attention_mask", "the text encoder runs without an attention mask"},
    {"class_labels_conditioning", "UNets with class labels are not trained"},
    {"resume_from_checkpoint", "use `sdbatch train CONFIG --resume`"},
    {"lr_num_cycles", "cosine_with_restarts is not implemented"},
    {"lr_power", "polynomial is not implemented"},
    {"push_to_hub", "no Hub access"},
    {"hub_token", "no Hub access"},
    {"hub_model_id", "no Hub access"},
    {"report_to", "the loss is logged to output_dir/loss.csv"},
    {"logging_dir", "the loss is logged to output_dir/loss.csv"},
    {"allow_tf32", "CPU training"},
    {"enable_xformers_memory_efficient_attention", "the attention op is sdbatch's own"},
    {"set_grads_to_none", "not applicable"},
    {"skip_save_text_encoder", "the text encoder is always copied"},
    {"dataloader_num_workers", "images are read in the training process"},
    {"local_rank", "training runs in one process"},
};
#define N_UNSUPPORTED (int)(sizeof unsupported_keys / sizeof unsupported_keys[0])

typedef struct loader {
  const char *file;
  char *dir; /* the config's folder with a trailing '/', or "" */
  sd_dreambooth_config *cfg;
} loader;

static const char *scalar(const yaml_node_t *node) {
  return (const char *)node->data.scalar.value;
}

static bool is_plain(const yaml_node_t *node) {
  return node->type == YAML_SCALAR_NODE && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool is_null(const yaml_node_t *node) {
  if (!is_plain(node))
    return false;
  const char *t = scalar(node);
  return !strcmp(t, "") || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") ||
         !strcmp(t, "NULL");
}

/* 'text' (shortened), an empty value, a list or a mapping. */
static const char *describe(const yaml_node_t *node, char *buf, size_t size) {
  if (node->type == YAML_SEQUENCE_NODE)
    return "a list";
  if (node->type == YAML_MAPPING_NODE)
    return "a mapping";
  if (node->type != YAML_SCALAR_NODE)
    return "nothing";
  if (is_plain(node) && node->data.scalar.length == 0)
    return "an empty value";
  size_t len = node->data.scalar.length, n = len < QUOTE_MAX ? len : QUOTE_MAX;
  char quoted[QUOTE_MAX + 1];
  for (size_t i = 0; i < n; i++) {
    unsigned char c = node->data.scalar.value[i];
    quoted[i] = c < 0x20 || c == 0x7F ? '?' : (char)c;
  }
  quoted[n] = '\0';
  snprintf(buf, size, "'%s'%s", quoted, n < len ? "..." : "");
  return buf;
}

static int error_at(const loader *ld, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "<file>:<line>:<col>: <message>" at node. */
static int error_at(const loader *ld, const yaml_node_t *node, const char *fmt, ...) {
  char message[1024];
  va_list args;
  va_start(args, fmt);
  vsnprintf(message, sizeof message, fmt, args);
  va_end(args);
  return SD_ERROR("%s:%d:%d: %s", ld->file, (int)node->start_mark.line + 1,
                  (int)node->start_mark.column + 1, message);
}

static int expected(const loader *ld, const yaml_node_t *node, const char *key, const char *what) {
  char got[QUOTE_MAX + 8];
  return error_at(ld, node, "%s: expected %s, got %s", key, what, describe(node, got, sizeof got));
}

/* A plain decimal number ([+-]digits[.digits][e[+-]digits]); false for anything else. */
static bool parse_number(const yaml_node_t *node, double *out) {
  if (!is_plain(node) || node->data.scalar.length == 0)
    return false;
  const char *s = scalar(node);
  if (strspn(s, "+-0123456789.eE") != strlen(s))
    return false;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*end != '\0' || errno == ERANGE || !isfinite(v))
    return false;
  *out = v;
  return true;
}

/* A plain decimal integer; false for anything else (fractions, exponents, hex). */
static bool parse_integer(const yaml_node_t *node, double *out) {
  if (!is_plain(node))
    return false;
  const char *s = scalar(node);
  const char *digits = (*s == '+' || *s == '-') ? s + 1 : s;
  size_t n = strlen(digits);
  if (n == 0 || n > 18 || strspn(digits, "0123456789") != n)
    return false;
  *out = strtod(s, NULL);
  return true;
}

static bool parse_bool(const yaml_node_t *node, bool *out) {
  if (!is_plain(node))
    return false;
  const char *t = scalar(node);
  if (!strcmp(t, "true") || !strcmp(t, "True") || !strcmp(t, "TRUE"))
    return (*out = true);
  if (!strcmp(t, "false") || !strcmp(t, "False") || !strcmp(t, "FALSE"))
    return !(*out = false);
  return false;
}

static char *copy_string(const char *s) {
  char *copy = strdup(s);
  if (!copy)
    SD_ERROR("out of memory");
  return copy;
}

static char *resolve(const loader *ld, const char *written) {
  if (written[0] == '/' || ld->dir[0] == '\0')
    return copy_string(written);
  size_t a = strlen(ld->dir), b = strlen(written);
  char *path = malloc(a + b + 1);
  if (!path) {
    SD_ERROR("out of memory");
    return NULL;
  }
  memcpy(path, ld->dir, a);
  memcpy(path + a, written, b + 1);
  return path;
}

static int set_value(const loader *ld, const key_spec *spec, const yaml_node_t *v) {
  void *field = (char *)ld->cfg + spec->offset;
  char what[128];
  double number;
  switch (spec->kind) {
  case KEY_PATH:
  case KEY_STRING:
    if (v->type != YAML_SCALAR_NODE || is_null(v) || v->data.scalar.length == 0)
      return expected(ld, v, spec->name, spec->kind == KEY_PATH ? "a path" : "a non-empty string");
    if (strlen(scalar(v)) != v->data.scalar.length)
      return error_at(ld, v, "%s: contains a NUL character", spec->name);
    free(*(char **)field);
    *(char **)field = spec->kind == KEY_PATH ? resolve(ld, scalar(v)) : copy_string(scalar(v));
    return *(char **)field ? 0 : -1;
  case KEY_BOOL:
    return parse_bool(v, (bool *)field) ? 0 : expected(ld, v, spec->name, "true or false");
  case KEY_INT:
  case KEY_INT64:
    snprintf(what, sizeof what, "an integer from %.0f to %.0f", spec->min, spec->max);
    if (!parse_integer(v, &number) || number < spec->min || number > spec->max)
      return expected(ld, v, spec->name, what);
    if (spec->kind == KEY_INT)
      *(int *)field = (int)number;
    else
      *(int64_t *)field = (int64_t)number;
    return 0;
  case KEY_U64: {
    const char *s = scalar(v);
    char *end;
    errno = 0;
    unsigned long long u = is_plain(v) && s[0] >= '0' && s[0] <= '9' ? strtoull(s, &end, 10) : 0;
    if (!is_plain(v) || !(s[0] >= '0' && s[0] <= '9') || *end != '\0' || errno == ERANGE)
      return expected(ld, v, spec->name, "a non-negative integer (at most 2^64 - 1)");
    *(uint64_t *)field = (uint64_t)u;
    return 0;
  }
  case KEY_NUMBER:
    snprintf(what, sizeof what, "a number from %g to %g", spec->min, spec->max);
    if (!parse_number(v, &number) || number < spec->min || number > spec->max)
      return expected(ld, v, spec->name, what);
    *(double *)field = number;
    return 0;
  case KEY_SCHEDULE:
    if (v->type == YAML_SCALAR_NODE &&
        (!strcmp(scalar(v), "cosine_with_restarts") || !strcmp(scalar(v), "polynomial") ||
         !strcmp(scalar(v), "piecewise_constant")))
      return error_at(ld, v,
                      "%s: '%s' is not supported yet (constant, constant_with_warmup, "
                      "linear and cosine are)",
                      spec->name, scalar(v));
    if (v->type != YAML_SCALAR_NODE || sd_lr_schedule_parse(scalar(v), field) < 0)
      return expected(ld, v, spec->name, "constant, constant_with_warmup, linear or cosine");
    return 0;
  }
  return SD_ERROR("internal: key kind %d", (int)spec->kind);
}

/* Levenshtein distance, for "did you mean"; names longer than 47 bytes are never close. */
static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 47 || lb > 47)
    return 99;
  int row[48];
  for (size_t j = 0; j <= lb; j++)
    row[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    int diagonal = row[0];
    row[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int above = row[j];
      int best = diagonal + (a[i - 1] != b[j - 1]);
      if (above + 1 < best)
        best = above + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diagonal = above;
    }
  }
  return row[lb];
}

static int unknown_key(const loader *ld, const yaml_node_t *key) {
  const char *closest = NULL;
  int best = 4;
  for (int i = 0; i < N_KNOWN; i++) {
    int d = edit_distance(scalar(key), known_keys[i].name);
    if (d < best) {
      best = d;
      closest = known_keys[i].name;
    }
  }
  char got[QUOTE_MAX + 8];
  if (closest)
    return error_at(ld, key, "unknown key %s (did you mean '%s'?)", describe(key, got, sizeof got),
                    closest);
  return error_at(ld, key, "unknown key %s (docs/training.md lists the keys)",
                  describe(key, got, sizeof got));
}

static int handle_key(const loader *ld, const yaml_node_t *key, const yaml_node_t *value,
                      const yaml_node_t **seen) {
  if (key->type != YAML_SCALAR_NODE)
    return error_at(ld, key, "expected a key name, got a %s",
                    key->type == YAML_MAPPING_NODE ? "mapping" : "list");
  const char *name = scalar(key);
  for (int i = 0; i < N_KNOWN; i++) {
    if (strcmp(name, known_keys[i].name) != 0)
      continue;
    if (seen[i])
      return error_at(ld, key, "%s: given twice", name);
    seen[i] = key;
    return set_value(ld, &known_keys[i], value);
  }
  for (int i = 0; i < N_UNSUPPORTED; i++) {
    if (strcmp(name, unsupported_keys[i].name) != 0)
      continue;
    bool off;
    double number;
    if (is_null(value) || (parse_bool(value, &off) && !off) ||
        (parse_number(value, &number) && number == 0) ||
        (value->type == YAML_SCALAR_NODE && !strcmp(scalar(value), "no")))
      return 0;
    return error_at(ld, key, "%s: not supported yet by sdbatch train (%s)", name,
                    unsupported_keys[i].why);
  }
  return unknown_key(ld, key);
}

static void set_defaults(sd_dreambooth_config *c) {
  memset(c, 0, sizeof *c);
  c->resolution = 512;
  c->train_batch_size = 4;
  c->gradient_accumulation_steps = 1;
  c->num_train_epochs = 1;
  c->learning_rate = 5e-6;
  c->lr_scheduler = SD_LR_CONSTANT;
  c->lr_warmup_steps = 500;
  c->adam_beta1 = 0.9;
  c->adam_beta2 = 0.999;
  c->adam_weight_decay = 1e-2;
  c->adam_epsilon = 1e-8;
  c->max_grad_norm = 1.0;
  c->checkpointing_steps = 500;
  c->rank = 4;
  c->num_class_images = 100;
  c->prior_loss_weight = 1.0;
  c->sample_batch_size = 4;
  c->num_validation_images = 4;
  c->validation_steps = 100;
}

static const yaml_node_t *seen_key(const yaml_node_t *const *seen, const char *name) {
  for (int i = 0; i < N_KNOWN; i++)
    if (!strcmp(known_keys[i].name, name))
      return seen[i];
  return NULL;
}

/* LoRA mode (lora: true): train_dreambooth_lora.py's defaults where its arguments differ from
 * train_dreambooth.py's (learning_rate 5e-4, rank 4); `rank` without it is refused. */
static int apply_mode(const loader *ld, const yaml_node_t *const *seen) {
  sd_dreambooth_config *c = ld->cfg;
  const yaml_node_t *rank = seen_key(seen, "rank");
  const yaml_node_t *single_file = seen_key(seen, "single_file");
  if (c->lora && single_file)
    return error_at(ld, single_file,
                    "single_file: only a full fine-tune writes a model (LoRA mode writes "
                    "pytorch_lora_weights.safetensors)");
  if (single_file) {
    size_t len = strlen(c->single_file);
    if (strchr(c->single_file, '/') || c->single_file[0] == '.' || len < 13 ||
        strcmp(c->single_file + len - 12, ".safetensors") != 0)
      return error_at(ld, single_file,
                      "single_file: '%s' is not a file name ending in .safetensors (the file is "
                      "written in output_dir)",
                      c->single_file);
  }
  if (!c->lora) {
    if (rank)
      return error_at(ld, rank,
                      "rank: only LoRA mode has a rank; add `lora: true` to train a LoRA "
                      "(train_dreambooth_lora.py), or remove rank for a full fine-tune");
    return 0;
  }
  if (!seen_key(seen, "learning_rate"))
    c->learning_rate = 5e-4;
  return 0;
}

/* The first of keys given though the feature that uses them is off: "<key>: only <user>; add
 * <switch>, or remove <key>" (user: "prior preservation uses it"); 0 when none is given. */
static int refuse_unused(const loader *ld, const yaml_node_t *const *seen, const char *const *keys,
                         size_t n, const char *feature, const char *switch_on) {
  for (size_t k = 0; k < n; k++) {
    const yaml_node_t *node = seen_key(seen, keys[k]);
    if (node)
      return error_at(ld, node, "%s: only %s; add %s, or remove %s", keys[k], feature, switch_on,
                      keys[k]);
  }
  return 0;
}

/* Prior preservation: class_data_dir and class_prompt required with it; its keys refused
 * without it (train_dreambooth.py only warns and ignores them). */
static int apply_prior(const loader *ld, const yaml_node_t *const *seen) {
  const sd_dreambooth_config *c = ld->cfg;
  static const char *const keys[] = {"class_data_dir", "class_prompt", "num_class_images",
                                     "prior_loss_weight", "sample_batch_size"};
  if (!c->with_prior_preservation)
    return refuse_unused(ld, seen, keys, sizeof keys / sizeof keys[0], "prior preservation uses it",
                         "`with_prior_preservation: true`");
  for (size_t k = 0; k < 2; k++)
    if (!seen_key(seen, keys[k]))
      return SD_ERROR("%s: missing key '%s' (required with with_prior_preservation: true)",
                      ld->file, keys[k]);
  return 0;
}

/* Validation renders: num_validation_images and validation_steps need validation_prompt; the
 * scheduler is DPMSolverMultistepScheduler (the script's default; its other choice,
 * DDPMScheduler, is not one of sdbatch's samplers). */
static int apply_validation(const loader *ld, const yaml_node_t *const *seen) {
  const sd_dreambooth_config *c = ld->cfg;
  static const char *const keys[] = {"num_validation_images", "validation_steps",
                                     "validation_scheduler"};
  if (!c->validation_prompt)
    SD_TRY(refuse_unused(ld, seen, keys, sizeof keys / sizeof keys[0], "validation renders use it",
                         "a validation_prompt"));
  const yaml_node_t *node = seen_key(seen, "validation_scheduler");
  if (node && strcmp(c->validation_scheduler, "DPMSolverMultistepScheduler") != 0)
    return error_at(ld, node,
                    "validation_scheduler: only DPMSolverMultistepScheduler (the script's "
                    "default) is supported");
  return 0;
}

static int load_mapping(const loader *ld, yaml_document_t *doc, const yaml_node_t *root) {
  const yaml_node_t *seen[N_KNOWN] = {0};
  for (yaml_node_pair_t *pair = root->data.mapping.pairs.start; pair < root->data.mapping.pairs.top;
       pair++) {
    const yaml_node_t *key = yaml_document_get_node(doc, pair->key);
    const yaml_node_t *value = yaml_document_get_node(doc, pair->value);
    SD_TRY(handle_key(ld, key, value, seen));
  }
  static const char *const required[] = {"pretrained_model", "instance_data_dir", "instance_prompt",
                                         "output_dir"};
  for (size_t r = 0; r < sizeof required / sizeof required[0]; r++)
    for (int i = 0; i < N_KNOWN; i++)
      if (!strcmp(known_keys[i].name, required[r]) && !seen[i])
        return SD_ERROR("%s: missing key '%s' (required)", ld->file, required[r]);
  if (ld->cfg->resolution % 8 != 0)
    return SD_ERROR("%s: resolution: %d is not a multiple of 8 (the VAE's factor)", ld->file,
                    ld->cfg->resolution);
  SD_TRY(apply_prior(ld, seen));
  SD_TRY(apply_validation(ld, seen));
  return apply_mode(ld, seen);
}

static int parse_text(const loader *ld, const char *text, size_t len) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser))
    return SD_ERROR("%s: cannot initialise the YAML parser", ld->file);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  yaml_document_t doc;
  int rc = 0;
  if (!yaml_parser_load(&parser, &doc)) {
    rc = SD_ERROR("%s:%d:%d: YAML syntax error: %s", ld->file, (int)parser.problem_mark.line + 1,
                  (int)parser.problem_mark.column + 1,
                  parser.problem ? parser.problem : "unknown problem");
    yaml_parser_delete(&parser);
    return rc;
  }
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root)
    rc = SD_ERROR("%s: the config is empty (expected a mapping with pretrained_model, "
                  "instance_data_dir, instance_prompt and output_dir)",
                  ld->file);
  else if (root->type != YAML_MAPPING_NODE)
    rc = error_at(ld, root, "expected a mapping of training settings at the top level");
  else
    rc = load_mapping(ld, &doc, root);
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  return rc;
}

void sd_dreambooth_config_free(sd_dreambooth_config *c) {
  free(c->path);
  free(c->pretrained_model);
  free(c->pretrained_model_config);
  free(c->instance_data_dir);
  free(c->instance_prompt);
  free(c->output_dir);
  free(c->class_data_dir);
  free(c->class_prompt);
  free(c->validation_prompt);
  free(c->validation_scheduler);
  free(c->single_file);
  memset(c, 0, sizeof *c);
}

int sd_dreambooth_config_load(const char *path, sd_dreambooth_config *out) {
  set_defaults(out);
  char *text = NULL;
  size_t len = 0;
  if (sd_file_read(path, SD_FILE_MAX_YAML, &text, &len) < 0)
    return SD_ERROR("%s: cannot read the training config: %s", path,
                    errno == EINVAL ? sd_file_error_cause(path) : strerror(errno));
  loader ld = {.file = path, .cfg = out};
  const char *slash = strrchr(path, '/');
  size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
  ld.dir = malloc(dir_len + 1);
  out->path = copy_string(path);
  int rc = ld.dir && out->path ? 0 : SD_ERROR("out of memory");
  if (rc == 0) {
    memcpy(ld.dir, path, dir_len);
    ld.dir[dir_len] = '\0';
    rc = parse_text(&ld, text, len);
  }
  free(ld.dir);
  free(text);
  if (rc < 0)
    sd_dreambooth_config_free(out);
  return rc;
}
