/* sd_job_load: a job file (YAML, schema v1) into an sd_job. The file is loaded with libyaml's
 * document API; every value is checked against the schema and the first problem is reported
 * with the file, line and column of the offending node. */
#include "job_internal.h"
#include "../worker/sched/scheduler_names.h"

#include "error.h"
#include "file.h"
#include "worker/sched/scheduler.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Most values in one sweep list. */
#define SWEEP_MAX_VALUES 1000

/* Longest value quoted back in a message, in bytes. */
#define QUOTE_MAX 40

typedef struct loader {
  const char *file; /* the job file, for messages */
  const char *dir;  /* its folder with a trailing '/', or "" */
  yaml_document_t *doc;
  sd_job *job;
  sd_job_pos karras_pos;
  sd_job_pos cfg_parallel_pos;
  const char *prompts_text; /* a prompts_file's contents given in memory, or NULL: read it */
  size_t prompts_len;
} loader;

typedef int (*key_handler)(loader *ld, const char *key, yaml_node_t *value);

static sd_job_pos node_pos(const yaml_node_t *node) {
  return (sd_job_pos){(int)node->start_mark.line + 1, (int)node->start_mark.column + 1};
}

static const char *scalar_text(const yaml_node_t *node) {
  return (const char *)node->data.scalar.value;
}

static bool is_plain(const yaml_node_t *node) {
  return node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool is_null(const yaml_node_t *node) {
  if (node->type != YAML_SCALAR_NODE || !is_plain(node))
    return false;
  const char *t = scalar_text(node);
  return !strcmp(t, "") || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") ||
         !strcmp(t, "NULL");
}

/* What a node is, for "got ..." in messages: 'text' (shortened, control characters as '?'),
 * an empty value, a list or a mapping. */
static const char *describe(const yaml_node_t *node, char *buf, size_t size) {
  if (node->type == YAML_SEQUENCE_NODE)
    return "a list";
  if (node->type == YAML_MAPPING_NODE)
    return "a mapping";
  if (node->type != YAML_SCALAR_NODE)
    return "nothing";
  if (is_plain(node) && node->data.scalar.length == 0)
    return "an empty value";
  const unsigned char *text = node->data.scalar.value;
  size_t len = node->data.scalar.length;
  size_t n = len;
  if (n > QUOTE_MAX) {
    n = QUOTE_MAX;
    while (n > 0 && (text[n] & 0xC0) == 0x80)
      n--;
  }
  char quoted[QUOTE_MAX + 1];
  for (size_t i = 0; i < n; i++)
    quoted[i] = text[i] < 0x20 || text[i] == 0x7F ? '?' : (char)text[i];
  quoted[n] = '\0';
  snprintf(buf, size, "'%s'%s", quoted, n < len ? "..." : "");
  return buf;
}

static int error_at(loader *ld, const yaml_node_t *node, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* "<file>:<line>:<col>: <key>: <message>" at node. */
static int error_at(loader *ld, const yaml_node_t *node, const char *key, const char *fmt, ...) {
  char message[768];
  va_list args;
  va_start(args, fmt);
  vsnprintf(message, sizeof message, fmt, args);
  va_end(args);
  return sd_job_error_at(ld->file, node_pos(node), "%s: %s", key, message);
}

/* "expected <what>, got <node>" at node. */
static int error_expected(loader *ld, const yaml_node_t *node, const char *key, const char *what) {
  char got[QUOTE_MAX + 8];
  return error_at(ld, node, key, "expected %s, got %s", what, describe(node, got, sizeof got));
}

/* A plain decimal integer ([+]digits) within [0, max]. */
static bool parse_uint(const yaml_node_t *node, uint64_t max, uint64_t *out) {
  if (node->type != YAML_SCALAR_NODE || !is_plain(node))
    return false;
  const char *s = scalar_text(node);
  if (*s == '+')
    s++;
  if (*s == '\0')
    return false;
  uint64_t value = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return false;
    unsigned digit = (unsigned)(*s - '0');
    if (value > (UINT64_MAX - digit) / 10)
      return false;
    value = value * 10 + digit;
  }
  if (value > max)
    return false;
  *out = value;
  return true;
}

/* A plain decimal number: [+](digits[.digits] | .digits)[(e|E)[+-]digits], with a leading '-'
 * too when signed. */
static bool parse_decimal(const yaml_node_t *node, bool signed_ok, double *out) {
  if (node->type != YAML_SCALAR_NODE || !is_plain(node))
    return false;
  const char *s = scalar_text(node);
  const char *p = s;
  if (*p == '+' || (signed_ok && *p == '-'))
    p++;
  size_t int_digits = strspn(p, "0123456789");
  p += int_digits;
  size_t frac_digits = 0;
  if (*p == '.') {
    p++;
    frac_digits = strspn(p, "0123456789");
    p += frac_digits;
  }
  if (int_digits + frac_digits == 0)
    return false;
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-')
      p++;
    size_t exp_digits = strspn(p, "0123456789");
    if (exp_digits == 0)
      return false;
    p += exp_digits;
  }
  if (*p != '\0')
    return false;
  errno = 0;
  double value = strtod(s, NULL);
  if (errno == ERANGE && value != 0.0)
    return false;
  *out = value;
  return true;
}

/* A plain non-negative decimal number. */
static bool parse_number(const yaml_node_t *node, double *out) {
  return parse_decimal(node, false, out);
}

static bool parse_bool(const yaml_node_t *node, bool *out) {
  if (node->type != YAML_SCALAR_NODE || !is_plain(node))
    return false;
  const char *t = scalar_text(node);
  if (!strcmp(t, "true") || !strcmp(t, "True") || !strcmp(t, "TRUE")) {
    *out = true;
    return true;
  }
  if (!strcmp(t, "false") || !strcmp(t, "False") || !strcmp(t, "FALSE")) {
    *out = false;
    return true;
  }
  return false;
}

/* A string value: a scalar that is not null, with no NUL inside (libyaml has already checked
 * that it is UTF-8). Empty strings only when allow_empty. */
static int get_string(loader *ld, yaml_node_t *node, const char *key, const char *what,
                      bool allow_empty, const char **out) {
  if (node->type != YAML_SCALAR_NODE || is_null(node) ||
      (!allow_empty && node->data.scalar.length == 0))
    return error_expected(ld, node, key, what);
  if (strlen(scalar_text(node)) != node->data.scalar.length)
    return error_at(ld, node, key, "contains a NUL character");
  if (sd_utf8_valid_prefix(scalar_text(node), node->data.scalar.length) != node->data.scalar.length)
    return error_at(ld, node, key, "invalid UTF-8");
  *out = scalar_text(node);
  return 0;
}

static char *dup_string(const char *s) {
  size_t len = strlen(s);
  char *copy = malloc(len + 1);
  if (!copy) {
    SD_ERROR("out of memory copying a %zu-byte string", len);
    return NULL;
  }
  memcpy(copy, s, len + 1);
  return copy;
}

/* Relative paths are taken relative to the job file's folder. */
static char *resolve_path(loader *ld, const char *written) {
  if (written[0] == '/' || ld->dir[0] == '\0')
    return dup_string(written);
  size_t dir_len = strlen(ld->dir), len = strlen(written);
  char *path = malloc(dir_len + len + 1);
  if (!path) {
    SD_ERROR("out of memory resolving '%s'", written);
    return NULL;
  }
  memcpy(path, ld->dir, dir_len);
  memcpy(path + dir_len, written, len + 1);
  return path;
}

static int get_path(loader *ld, yaml_node_t *node, const char *key, char **resolved,
                    sd_job_pos *pos) {
  const char *written;
  SD_TRY(get_string(ld, node, key, "a path", false, &written));
  *resolved = resolve_path(ld, written);
  if (!*resolved)
    return -1;
  *pos = node_pos(node);
  return 0;
}

static int handle_model(loader *ld, const char *key, yaml_node_t *value) {
  SD_TRY(get_path(ld, value, key, &ld->job->model, &ld->job->model_pos));
  ld->job->model_written = dup_string(scalar_text(value));
  return ld->job->model_written ? 0 : -1;
}

static int handle_model_config(loader *ld, const char *key, yaml_node_t *value) {
  SD_TRY(get_path(ld, value, key, &ld->job->model_config, &ld->job->model_config_pos));
  ld->job->model_config_written = dup_string(scalar_text(value));
  return ld->job->model_config_written ? 0 : -1;
}

static int handle_depth_estimator(loader *ld, const char *key, yaml_node_t *value) {
  SD_TRY(get_path(ld, value, key, &ld->job->depth_estimator, &ld->job->depth_estimator_pos));
  ld->job->depth_estimator_written = dup_string(scalar_text(value));
  return ld->job->depth_estimator_written ? 0 : -1;
}

static int handle_output(loader *ld, const char *key, yaml_node_t *value) {
  return get_path(ld, value, key, &ld->job->output, &ld->job->output_pos);
}

static int handle_prompts_file(loader *ld, const char *key, yaml_node_t *value) {
  return get_path(ld, value, key, &ld->job->prompts_file, &ld->job->prompts_file_pos);
}

static int handle_negative_prompt(loader *ld, const char *key, yaml_node_t *value) {
  const char *text;
  SD_TRY(get_string(ld, value, key, "a string", true, &text));
  ld->job->negative_prompt = dup_string(text);
  return ld->job->negative_prompt ? 0 : -1;
}

static int add_prompt_node(loader *ld, yaml_node_t *node, const char *key) {
  const char *text;
  SD_TRY(get_string(ld, node, key, "a string (quote it if it reads as null)", true, &text));
  return sd_job_add_prompt(ld->job, text, node->data.scalar.length);
}

static int handle_prompts(loader *ld, const char *key, yaml_node_t *value) {
  if (value->type == YAML_SCALAR_NODE)
    return add_prompt_node(ld, value, key);
  if (value->type != YAML_SEQUENCE_NODE)
    return error_expected(ld, value, key, "a string or a list of strings");
  yaml_node_item_t *first = value->data.sequence.items.start;
  yaml_node_item_t *end = value->data.sequence.items.top;
  if (first == end)
    return error_at(ld, value, key, "the list is empty; give at least one prompt");
  for (yaml_node_item_t *it = first; it < end; it++) {
    char label[64];
    snprintf(label, sizeof label, "%s[%td]", key, it - first);
    SD_TRY(add_prompt_node(ld, yaml_document_get_node(ld->doc, *it), label));
  }
  return 0;
}

/* Sweeps: a scalar or a non-empty list of distinct values, each checked by parse_value. */
typedef struct sweep_spec {
  const char *expected; /* "a positive integer (at most 1000)" */
  size_t elem_size;
  bool (*parse_value)(const yaml_node_t *node, void *out);
} sweep_spec;

static int parse_sweep(loader *ld, const char *key, yaml_node_t *value, const sweep_spec *spec,
                       void **values, int *count) {
  char what[256];
  if (value->type == YAML_SCALAR_NODE) {
    void *one = malloc(spec->elem_size);
    if (!one)
      return SD_ERROR("out of memory");
    if (!spec->parse_value(value, one)) {
      free(one);
      snprintf(what, sizeof what, "%s or a list of them", spec->expected);
      return error_expected(ld, value, key, what);
    }
    *values = one;
    *count = 1;
    return 0;
  }
  if (value->type != YAML_SEQUENCE_NODE) {
    snprintf(what, sizeof what, "%s or a list of them", spec->expected);
    return error_expected(ld, value, key, what);
  }
  yaml_node_item_t *first = value->data.sequence.items.start;
  yaml_node_item_t *end = value->data.sequence.items.top;
  if (first == end)
    return error_at(ld, value, key, "the list is empty; give at least one value");
  if (end - first > SWEEP_MAX_VALUES)
    return error_at(ld, value, key, "more than %d values", SWEEP_MAX_VALUES);
  int n = (int)(end - first);
  char *array = malloc((size_t)n * spec->elem_size);
  if (!array)
    return SD_ERROR("out of memory for %d values", n);
  for (int i = 0; i < n; i++) {
    yaml_node_t *node = yaml_document_get_node(ld->doc, first[i]);
    char label[64];
    snprintf(label, sizeof label, "%s[%d]", key, i);
    char *slot = array + (size_t)i * spec->elem_size;
    if (!spec->parse_value(node, slot)) {
      free(array);
      return error_expected(ld, node, label, spec->expected);
    }
    for (int j = 0; j < i; j++)
      if (memcmp(array + (size_t)j * spec->elem_size, slot, spec->elem_size) == 0) {
        free(array);
        char got[QUOTE_MAX + 8];
        return error_at(ld, node, label, "%s is already in the list at %s[%d]",
                        describe(node, got, sizeof got), key, j);
      }
  }
  *values = array;
  *count = n;
  return 0;
}

static bool parse_steps_value(const yaml_node_t *node, void *out) {
  uint64_t v;
  if (!parse_uint(node, SD_JOB_MAX_STEPS, &v) || v < 1)
    return false;
  *(int *)out = (int)v;
  return true;
}

static bool parse_guidance_value(const yaml_node_t *node, void *out) {
  double v;
  if (!parse_number(node, &v))
    return false;
  *(double *)out = v;
  return true;
}

static bool parse_scheduler_value(const yaml_node_t *node, void *out) {
#define SD_SCHEDULER_NAME_ENTRY(kind, name, class_name, karras, setup) {SD_SCHED_##kind, name},
  static const struct {
    int kind;
    const char *name;
  } names[] = {SD_SCHEDULER_LIST(SD_SCHEDULER_NAME_ENTRY){SD_JOB_SCHEDULER_DEFAULT, "default"}};
#undef SD_SCHEDULER_NAME_ENTRY
  if (node->type != YAML_SCALAR_NODE)
    return false;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!strcmp(scalar_text(node), names[i].name)) {
      *(int *)out = names[i].kind;
      return true;
    }
  return false;
}

#define SD_SCHEDULER_NAME_TEXT(kind, name, class_name, karras, setup) name ", "

static int handle_steps(loader *ld, const char *key, yaml_node_t *value) {
  static const sweep_spec spec = {"a positive integer (at most 1000)", sizeof(int),
                                  parse_steps_value};
  void *values;
  SD_TRY(parse_sweep(ld, key, value, &spec, &values, &ld->job->info.n_steps));
  ld->job->steps = values;
  return 0;
}

static int handle_guidance_scale(loader *ld, const char *key, yaml_node_t *value) {
  static const sweep_spec spec = {"a non-negative number", sizeof(double), parse_guidance_value};
  void *values;
  SD_TRY(parse_sweep(ld, key, value, &spec, &values, &ld->job->info.n_guidance));
  ld->job->guidance_scales = values;
  return 0;
}

static int handle_scheduler(loader *ld, const char *key, yaml_node_t *value) {
  static const sweep_spec spec = {
      "a scheduler (" SD_SCHEDULER_LIST(SD_SCHEDULER_NAME_TEXT) "or default)", sizeof(int),
      parse_scheduler_value};
  void *values;
  SD_TRY(parse_sweep(ld, key, value, &spec, &values, &ld->job->info.n_schedulers));
  ld->job->schedulers = values;
  return 0;
}

static int get_size(loader *ld, const char *key, yaml_node_t *value, int *out) {
  uint64_t v;
  if (!parse_uint(value, SD_JOB_MAX_SIZE, &v) || v < SD_JOB_MIN_SIZE || v % 8 != 0)
    return error_expected(ld, value, key, "a multiple of 8 in [64, 4096]");
  *out = (int)v;
  return 0;
}

static int handle_width(loader *ld, const char *key, yaml_node_t *value) {
  return get_size(ld, key, value, &ld->job->info.width);
}

static int handle_height(loader *ld, const char *key, yaml_node_t *value) {
  return get_size(ld, key, value, &ld->job->info.height);
}

static int handle_batch_size(loader *ld, const char *key, yaml_node_t *value) {
  uint64_t v;
  if (!parse_uint(value, SD_JOB_MAX_BATCH_SIZE, &v) || v < 1)
    return error_expected(ld, value, key, "an integer in [1, 1024]");
  ld->job->info.batch_size = (int)v;
  return 0;
}

static int handle_karras(loader *ld, const char *key, yaml_node_t *value) {
  if (!parse_bool(value, &ld->job->info.karras))
    return error_expected(ld, value, key, "true or false");
  ld->karras_pos = node_pos(value);
  return 0;
}

static int handle_save_latents(loader *ld, const char *key, yaml_node_t *value) {
  if (!parse_bool(value, &ld->job->info.save_latents))
    return error_expected(ld, value, key, "true or false");
  return 0;
}

static int handle_ranks_per_image(loader *ld, const char *key, yaml_node_t *value) {
  uint64_t v;
  if (!parse_uint(value, SD_JOB_MAX_RANKS_PER_IMAGE, &v) || v < 1)
    return error_expected(ld, value, key, "an integer in [1, 1024]");
  ld->job->info.ranks_per_image = (int)v;
  return 0;
}

static int handle_cfg_parallel(loader *ld, const char *key, yaml_node_t *value) {
  if (!parse_bool(value, &ld->job->info.cfg_parallel))
    return error_expected(ld, value, key, "true or false");
  ld->cfg_parallel_pos = node_pos(value);
  return 0;
}

static int handle_rng(loader *ld, const char *key, yaml_node_t *value) {
  const char *t = value->type == YAML_SCALAR_NODE ? scalar_text(value) : "";
  if (!strcmp(t, "cuda"))
    ld->job->info.rng = SD_RNG_CUDA;
  else if (!strcmp(t, "cpu"))
    ld->job->info.rng = SD_RNG_CPU;
  else
    return error_expected(ld, value, key, "cuda or cpu");
  return 0;
}

static int handle_device(loader *ld, const char *key, yaml_node_t *value) {
  const char *t = value->type == YAML_SCALAR_NODE ? scalar_text(value) : "";
  if (!strcmp(t, "auto"))
    ld->job->info.device = SD_JOB_DEVICE_AUTO;
  else if (!strcmp(t, "cuda"))
    ld->job->info.device = SD_JOB_DEVICE_CUDA;
  else if (!strcmp(t, "cpu"))
    ld->job->info.device = SD_JOB_DEVICE_CPU;
  else
    return error_expected(ld, value, key, "auto, cuda or cpu");
  return 0;
}

static int handle_dpt_preprocess(loader *ld, const char *key, yaml_node_t *value) {
  const char *t = value->type == YAML_SCALAR_NODE ? scalar_text(value) : "";
  if (!strcmp(t, "pil"))
    ld->job->info.dpt_preprocess = SD_JOB_DPT_PREPROCESS_PIL;
  else if (!strcmp(t, "torchvision"))
    ld->job->info.dpt_preprocess = SD_JOB_DPT_PREPROCESS_TORCHVISION;
  else
    return error_expected(ld, value, key, "pil or torchvision");
  ld->job->info.dpt_preprocess_given = true;
  return 0;
}

/* seeds: N, [N, ...] (distinct) or {start: N, count: N}. */
static int compare_seed_order(const void *a, const void *b) {
  const uint64_t *x = a, *y = b; /* (seed, index) pairs */
  if (x[0] != y[0])
    return x[0] < y[0] ? -1 : 1;
  return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* Reports the first seed (in list order) that repeats an earlier one. */
static int check_distinct_seeds(loader *ld, const char *key, yaml_node_t *list) {
  int64_t n = ld->job->info.n_seeds;
  uint64_t *pairs = malloc((size_t)n * 2 * sizeof *pairs);
  if (!pairs)
    return SD_ERROR("out of memory checking %" PRId64 " seeds", n);
  for (int64_t i = 0; i < n; i++) {
    pairs[2 * i] = ld->job->seed_list[i];
    pairs[2 * i + 1] = (uint64_t)i;
  }
  qsort(pairs, (size_t)n, 2 * sizeof *pairs, compare_seed_order);
  int64_t repeat = -1, earlier = -1;
  for (int64_t i = 1; i < n; i++)
    if (pairs[2 * i] == pairs[2 * i - 2] && (repeat < 0 || (int64_t)pairs[2 * i + 1] < repeat)) {
      repeat = (int64_t)pairs[2 * i + 1];
      earlier = (int64_t)pairs[2 * i - 1];
    }
  free(pairs);
  if (repeat < 0)
    return 0;
  yaml_node_t *node = yaml_document_get_node(ld->doc, list->data.sequence.items.start[repeat]);
  char label[64], got[QUOTE_MAX + 8];
  snprintf(label, sizeof label, "%s[%" PRId64 "]", key, repeat);
  return error_at(ld, node, label, "%s is already in the list at %s[%" PRId64 "]",
                  describe(node, got, sizeof got), key, earlier);
}

static int seeds_range(loader *ld, const char *key, yaml_node_t *map) {
  yaml_node_t *start = NULL, *count = NULL;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
    const char *name = k->type == YAML_SCALAR_NODE ? scalar_text(k) : "";
    yaml_node_t **slot = !strcmp(name, "start") ? &start : !strcmp(name, "count") ? &count : NULL;
    char got[QUOTE_MAX + 8];
    if (!slot)
      return error_at(ld, k, key, "unknown key %s (expected start and count)",
                      describe(k, got, sizeof got));
    if (*slot)
      return error_at(ld, k, key, "duplicate key '%s' (first given at line %d)", name,
                      node_pos(*slot).line);
    *slot = v;
  }
  if (!start || !count)
    return error_at(ld, map, key, "missing '%s' (expected {start: N, count: N})",
                    start ? "count" : "start");
  char label[64];
  uint64_t first, n;
  snprintf(label, sizeof label, "%s.start", key);
  if (!parse_uint(start, UINT64_MAX, &first))
    return error_expected(ld, start, label,
                          "a non-negative integer (at most 18446744073709551615)");
  snprintf(label, sizeof label, "%s.count", key);
  if (!parse_uint(count, INT64_MAX, &n) || n < 1)
    return error_expected(ld, count, label, "a positive integer (at most 9223372036854775807)");
  if (n - 1 > UINT64_MAX - first)
    return error_at(ld, count, label,
                    "start + count - 1 is beyond the largest seed, 18446744073709551615");
  ld->job->seed_start = first;
  ld->job->info.n_seeds = (int64_t)n;
  return 0;
}

static int handle_seeds(loader *ld, const char *key, yaml_node_t *value) {
  static const char expected_any[] =
      "a non-negative integer, a list of them or {start: N, count: N}";
  static const char expected_one[] = "a non-negative integer (at most 18446744073709551615)";
  sd_job *job = ld->job;
  if (value->type == YAML_MAPPING_NODE)
    return seeds_range(ld, key, value);
  if (value->type == YAML_SCALAR_NODE) {
    uint64_t seed;
    if (!parse_uint(value, UINT64_MAX, &seed))
      return error_expected(ld, value, key, expected_any);
    job->seed_start = seed;
    job->info.n_seeds = 1;
    return 0;
  }
  yaml_node_item_t *first = value->data.sequence.items.start;
  int64_t n = value->data.sequence.items.top - first;
  if (n == 0)
    return error_at(ld, value, key, "the list is empty; give at least one seed");
  job->seed_list = malloc((size_t)n * sizeof *job->seed_list);
  if (!job->seed_list)
    return SD_ERROR("out of memory for %" PRId64 " seeds", n);
  for (int64_t i = 0; i < n; i++) {
    yaml_node_t *node = yaml_document_get_node(ld->doc, first[i]);
    if (!parse_uint(node, UINT64_MAX, &job->seed_list[i])) {
      char label[64];
      snprintf(label, sizeof label, "%s[%" PRId64 "]", key, i);
      return error_expected(ld, node, label, expected_one);
    }
  }
  job->info.n_seeds = n;
  return check_distinct_seeds(ld, key, value);
}

static bool parse_lora_scale_value(const yaml_node_t *node, void *out) {
  return parse_decimal(node, true, out);
}

/* The mapping value of `name` in map, NULL when absent; -1 for a key that is not one of
 * allowed (a NULL-terminated list). */
static int mapping_fields(loader *ld, yaml_node_t *map, const char *key, const char *const *allowed,
                          yaml_node_t **values) {
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
    int found = -1;
    for (int i = 0; allowed[i] && k->type == YAML_SCALAR_NODE; i++)
      if (!strcmp(scalar_text(k), allowed[i]))
        found = i;
    if (found < 0) {
      char got[QUOTE_MAX + 8];
      return error_at(ld, k, key, "unknown key %s (expected %s%s%s)", describe(k, got, sizeof got),
                      allowed[0], allowed[1] ? " or " : "", allowed[1] ? allowed[1] : "");
    }
    if (values[found])
      return error_at(ld, k, key, "duplicate key '%s'", allowed[found]);
    values[found] = yaml_document_get_node(ld->doc, p->value);
  }
  return 0;
}

/* A list of adapters: each a path, or a mapping with `file` and the field `extra`. */
static int adapter_list(loader *ld, const char *key, yaml_node_t *value, const char *extra,
                        int (*add)(loader *ld, const char *label, yaml_node_t *file,
                                   yaml_node_t *extra)) {
  if (value->type != YAML_SEQUENCE_NODE)
    return error_expected(ld, value, key, "a list of files (or {file: ..., ...} mappings)");
  yaml_node_item_t *first = value->data.sequence.items.start;
  yaml_node_item_t *end = value->data.sequence.items.top;
  if (first == end)
    return error_at(ld, value, key, "the list is empty; leave the key out for none");
  if (end - first > 32)
    return error_at(ld, value, key, "more than 32 files");
  for (yaml_node_item_t *it = first; it < end; it++) {
    char label[64];
    snprintf(label, sizeof label, "%s[%td]", key, it - first);
    yaml_node_t *node = yaml_document_get_node(ld->doc, *it);
    if (node->type == YAML_MAPPING_NODE) {
      const char *const allowed[] = {"file", extra, NULL};
      yaml_node_t *fields[2] = {NULL, NULL};
      SD_TRY(mapping_fields(ld, node, label, allowed, fields));
      if (!fields[0])
        return error_at(ld, node, label, "missing key 'file'");
      SD_TRY(add(ld, label, fields[0], fields[1]));
    } else {
      SD_TRY(add(ld, label, node, NULL));
    }
  }
  return 0;
}

static int add_lora(loader *ld, const char *label, yaml_node_t *file, yaml_node_t *scale) {
  sd_job *job = ld->job;
  int n = job->info.n_loras;
  sd_job_lora *loras = realloc(job->loras, (size_t)(n + 1) * sizeof *loras);
  if (loras)
    job->loras = loras;
  sd_job_pos *pos = realloc(job->lora_pos, (size_t)(n + 1) * sizeof *pos);
  if (pos)
    job->lora_pos = pos;
  if (!loras || !pos)
    return SD_ERROR("out of memory");
  sd_job_lora *lora = &job->loras[n];
  memset(lora, 0, sizeof *lora);
  job->info.n_loras = n + 1; /* owned from here: sd_job_free frees what is set */
  char *resolved;
  SD_TRY(get_path(ld, file, label, &resolved, &job->lora_pos[n]));
  lora->file = resolved;
  if (!(lora->file_written = dup_string(scalar_text(file))))
    return -1;
  char scale_key[80];
  snprintf(scale_key, sizeof scale_key, "%s.scale", label);
  if (!scale) {
    double *one = malloc(sizeof *one);
    if (!one)
      return SD_ERROR("out of memory");
    *one = 1.0;
    lora->scales = one;
    lora->n_scales = 1;
    return 0;
  }
  static const sweep_spec spec = {"a number", sizeof(double), parse_lora_scale_value};
  void *values;
  SD_TRY(parse_sweep(ld, scale_key, scale, &spec, &values, &lora->n_scales));
  lora->scales = values;
  return 0;
}

static int add_embedding(loader *ld, const char *label, yaml_node_t *file, yaml_node_t *token) {
  sd_job *job = ld->job;
  int n = job->info.n_embeddings;
  sd_job_embedding *embeddings = realloc(job->embeddings, (size_t)(n + 1) * sizeof *embeddings);
  if (embeddings)
    job->embeddings = embeddings;
  sd_job_pos *pos = realloc(job->embedding_pos, (size_t)(n + 1) * sizeof *pos);
  if (pos)
    job->embedding_pos = pos;
  if (!embeddings || !pos)
    return SD_ERROR("out of memory");
  sd_job_embedding *e = &job->embeddings[n];
  memset(e, 0, sizeof *e);
  job->info.n_embeddings = n + 1;
  char *resolved;
  SD_TRY(get_path(ld, file, label, &resolved, &job->embedding_pos[n]));
  e->file = resolved;
  if (!(e->file_written = dup_string(scalar_text(file))))
    return -1;
  if (token) {
    char token_key[80];
    const char *text;
    snprintf(token_key, sizeof token_key, "%s.token", label);
    SD_TRY(get_string(ld, token, token_key, "a non-empty string", false, &text));
    if (!(e->token = dup_string(text)))
      return -1;
  }
  return 0;
}

static int handle_loras(loader *ld, const char *key, yaml_node_t *value) {
  return adapter_list(ld, key, value, "scale", add_lora);
}

static int handle_embeddings(loader *ld, const char *key, yaml_node_t *value) {
  return adapter_list(ld, key, value, "token", add_embedding);
}

/* `images`, `masks`, `depth_maps`: a path (a file, a folder of images or a .txt list file) or a
 * non-empty list of file paths. */
static int input_list(loader *ld, const char *key, yaml_node_t *value, sd_job_input_kind kind) {
  if (value->type == YAML_SCALAR_NODE) {
    const char *written;
    SD_TRY(get_string(ld, value, key, "a path or a list of paths", false, &written));
    char *resolved = resolve_path(ld, written);
    if (!resolved)
      return -1;
    int rc = sd_job_inputs_add(ld->job, kind, key, written, resolved, node_pos(value), true);
    free(resolved);
    return rc;
  }
  if (value->type != YAML_SEQUENCE_NODE)
    return error_expected(ld, value, key, "a path or a list of paths");
  yaml_node_item_t *first = value->data.sequence.items.start;
  yaml_node_item_t *end = value->data.sequence.items.top;
  if (first == end)
    return error_at(ld, value, key, "the list is empty; leave the key out for none");
  ld->job->input_pos[kind] = node_pos(value);
  for (yaml_node_item_t *it = first; it < end; it++) {
    char label[64];
    snprintf(label, sizeof label, "%s[%td]", key, it - first);
    yaml_node_t *node = yaml_document_get_node(ld->doc, *it);
    const char *written;
    SD_TRY(get_string(ld, node, label, "a path", false, &written));
    char *resolved = resolve_path(ld, written);
    if (!resolved)
      return -1;
    int rc = sd_job_inputs_add(ld->job, kind, label, written, resolved, node_pos(node), false);
    free(resolved);
    SD_TRY(rc);
  }
  return 0;
}

static int handle_images(loader *ld, const char *key, yaml_node_t *value) {
  return input_list(ld, key, value, SD_JOB_INPUT_IMAGES);
}

static int handle_masks(loader *ld, const char *key, yaml_node_t *value) {
  return input_list(ld, key, value, SD_JOB_INPUT_MASKS);
}

static int handle_depth_maps(loader *ld, const char *key, yaml_node_t *value) {
  return input_list(ld, key, value, SD_JOB_INPUT_DEPTH_MAPS);
}

static bool parse_strength_value(const yaml_node_t *node, void *out) {
  double v;
  if (!parse_number(node, &v) || v > 1.0)
    return false;
  *(double *)out = v;
  return true;
}

static bool parse_noise_level_value(const yaml_node_t *node, void *out) {
  uint64_t v;
  if (!parse_uint(node, SD_JOB_MAX_NOISE_LEVEL, &v))
    return false;
  *(int *)out = (int)v;
  return true;
}

static int handle_strength(loader *ld, const char *key, yaml_node_t *value) {
  static const sweep_spec spec = {"a number in [0, 1]", sizeof(double), parse_strength_value};
  void *values;
  SD_TRY(parse_sweep(ld, key, value, &spec, &values, &ld->job->info.n_strengths));
  ld->job->strengths = values;
  ld->job->strength_pos = node_pos(value);
  return 0;
}

static int handle_noise_level(loader *ld, const char *key, yaml_node_t *value) {
  static const sweep_spec spec = {"an integer in [0, 1000]", sizeof(int), parse_noise_level_value};
  void *values;
  SD_TRY(parse_sweep(ld, key, value, &spec, &values, &ld->job->info.n_noise_levels));
  ld->job->noise_levels = values;
  ld->job->noise_level_pos = node_pos(value);
  return 0;
}

static const struct job_key {
  const char *name;
  key_handler handle;
} job_keys[] = {
    {"model", handle_model},
    {"model_config", handle_model_config},
    {"depth_estimator", handle_depth_estimator},
    {"dpt_preprocess", handle_dpt_preprocess},
    {"output", handle_output},
    {"prompts", handle_prompts},
    {"prompts_file", handle_prompts_file},
    {"negative_prompt", handle_negative_prompt},
    {"seeds", handle_seeds},
    {"width", handle_width},
    {"height", handle_height},
    {"steps", handle_steps},
    {"guidance_scale", handle_guidance_scale},
    {"scheduler", handle_scheduler},
    {"karras", handle_karras},
    {"rng", handle_rng},
    {"batch_size", handle_batch_size},
    {"save_latents", handle_save_latents},
    {"device", handle_device},
    {"ranks_per_image", handle_ranks_per_image},
    {"cfg_parallel", handle_cfg_parallel},
    {"loras", handle_loras},
    {"embeddings", handle_embeddings},
    {"images", handle_images},
    {"masks", handle_masks},
    {"depth_maps", handle_depth_maps},
    {"strength", handle_strength},
    {"noise_level", handle_noise_level},
};

enum { N_JOB_KEYS = sizeof job_keys / sizeof job_keys[0] };

static int key_index(const char *name) {
  for (int i = 0; i < N_JOB_KEYS; i++)
    if (!strcmp(job_keys[i].name, name))
      return i;
  return -1;
}

/* Levenshtein distance, for "did you mean"; names longer than 31 bytes are never close. */
static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 31 || lb > 31)
    return 99;
  int row[32];
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

static int unknown_key(loader *ld, yaml_node_t *key_node) {
  const char *name = scalar_text(key_node);
  const char *closest = NULL;
  int best = 3;
  for (int i = 0; i < N_JOB_KEYS; i++) {
    int d = edit_distance(name, job_keys[i].name);
    if (d < best) {
      best = d;
      closest = job_keys[i].name;
    }
  }
  char got[QUOTE_MAX + 8];
  if (closest)
    return sd_job_error_at(ld->file, node_pos(key_node), "unknown key %s (did you mean '%s'?)",
                           describe(key_node, got, sizeof got), closest);
  return sd_job_error_at(ld->file, node_pos(key_node), "unknown key %s",
                         describe(key_node, got, sizeof got));
}

static int check_karras(loader *ld) {
#define SD_SCHEDULER_KARRAS_ENTRY(kind, name, class_name, karras, setup)                           \
  [SD_SCHED_##kind] = {name, karras},
  static const struct {
    const char *name;
    bool karras;
  } schedulers[] = {SD_SCHEDULER_LIST(SD_SCHEDULER_KARRAS_ENTRY)};
#undef SD_SCHEDULER_KARRAS_ENTRY
  enum { N_SCHEDULERS = sizeof schedulers / sizeof schedulers[0] };
  const sd_job_info *info = &ld->job->info;
  if (!info->karras)
    return 0;
  for (int i = 0; i < info->n_schedulers; i++) {
    int kind = info->schedulers[i];
    if (kind == SD_JOB_SCHEDULER_DEFAULT || schedulers[kind].karras)
      continue;
    char with_karras[256] = "";
    for (int k = 0, n = 0; k < N_SCHEDULERS; k++)
      if (schedulers[k].karras)
        n += snprintf(with_karras + n, sizeof with_karras - (size_t)n, "%s%s", n ? ", " : "",
                      schedulers[k].name);
    return sd_job_error_at(ld->file, ld->karras_pos,
                           "karras: scheduler '%s' has no Karras sigmas (%s have them)",
                           schedulers[kind].name, with_karras);
  }
  return 0;
}

/* CFG parallelism puts the two halves on two halves of each group. */
static int check_cfg_parallel(loader *ld) {
  const sd_job_info *info = &ld->job->info;
  if (info->cfg_parallel && info->ranks_per_image % 2 != 0)
    return sd_job_error_at(ld->file, ld->cfg_parallel_pos,
                           "cfg_parallel: needs an even ranks_per_image (2, 4, ...: the two CFG "
                           "halves each take half of a group), not %d",
                           info->ranks_per_image);
  return 0;
}

/* Defaults for the optional keys that were not given; then the public view's pointers. */
static int apply_defaults(sd_job *job) {
  sd_job_info *info = &job->info;
  if (!job->negative_prompt && !(job->negative_prompt = dup_string("")))
    return -1;
  if (!job->steps) {
    if (!(job->steps = malloc(sizeof *job->steps)))
      return SD_ERROR("out of memory");
    job->steps[0] = 50;
    info->n_steps = 1;
  }
  if (!job->guidance_scales) {
    if (!(job->guidance_scales = malloc(sizeof *job->guidance_scales)))
      return SD_ERROR("out of memory");
    job->guidance_scales[0] = 7.5;
    info->n_guidance = 1;
  }
  if (!job->schedulers) {
    if (!(job->schedulers = malloc(sizeof *job->schedulers)))
      return SD_ERROR("out of memory");
    job->schedulers[0] = SD_JOB_SCHEDULER_DEFAULT;
    info->n_schedulers = 1;
  }
  if (info->batch_size == 0)
    info->batch_size = 1;
  if (info->ranks_per_image == 0)
    info->ranks_per_image = 1;
  if (!job->strengths) {
    if (!(job->strengths = malloc(sizeof *job->strengths)))
      return SD_ERROR("out of memory");
    job->strengths[0] = SD_JOB_STRENGTH_DEFAULT;
    info->n_strengths = 1;
  }
  if (!job->noise_levels) {
    if (!(job->noise_levels = malloc(sizeof *job->noise_levels)))
      return SD_ERROR("out of memory");
    job->noise_levels[0] = SD_JOB_NOISE_LEVEL_DEFAULT;
    info->n_noise_levels = 1;
  }

  info->path = job->path;
  info->model = job->model;
  info->model_config = job->model_config;
  info->depth_estimator = job->depth_estimator;
  info->output = job->output;
  info->prompts_file = job->prompts_file;
  info->negative_prompt = job->negative_prompt;
  info->steps = job->steps;
  info->guidance_scales = job->guidance_scales;
  info->schedulers = job->schedulers;
  info->loras = job->loras;
  info->embeddings = job->embeddings;
  info->strengths = job->strengths;
  info->noise_levels = job->noise_levels;
  return 0;
}

static int check_item_count(loader *ld, yaml_node_t *root) {
  sd_job_info *info = &ld->job->info;
  int64_t total_sets = 1;
  int64_t factors[] = {info->n_schedulers,
                       info->n_steps,
                       info->n_strengths,
                       info->n_noise_levels,
                       info->n_images ? info->n_images : 1,
                       info->n_prompts,
                       info->n_seeds,
                       info->n_guidance};
  for (int i = 0; i < info->n_loras; i++)
    if (__builtin_mul_overflow(total_sets, (int64_t)info->loras[i].n_scales, &total_sets))
      return sd_job_error_at(ld->file, node_pos(root), "too many LoRA scale combinations");
  info->n_lora_sets = total_sets;
  int64_t total = total_sets;
  for (size_t i = 0; i < sizeof factors / sizeof factors[0]; i++)
    if (__builtin_mul_overflow(total, factors[i], &total))
      return sd_job_error_at(ld->file, node_pos(root),
                             "the job has more than 9223372036854775807 items");
  info->n_items = total;
  return 0;
}

static int load_mapping(loader *ld, yaml_node_t *root) {
  sd_job_pos seen[N_JOB_KEYS] = {{0, 0}};
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
       p++) {
    yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
    char got[QUOTE_MAX + 8];
    if (k->type != YAML_SCALAR_NODE)
      return sd_job_error_at(ld->file, node_pos(k), "expected a key name, got %s",
                             describe(k, got, sizeof got));
    int index = key_index(scalar_text(k));
    if (index < 0)
      return unknown_key(ld, k);
    const char *name = job_keys[index].name;
    if (seen[index].line > 0)
      return sd_job_error_at(ld->file, node_pos(k), "duplicate key '%s' (first given at line %d)",
                             name, seen[index].line);
    seen[index] = node_pos(k);
    bool prompts_given = seen[key_index("prompts")].line > 0;
    bool prompts_file_given = seen[key_index("prompts_file")].line > 0;
    if (prompts_given && prompts_file_given)
      return sd_job_error_at(ld->file, node_pos(k),
                             "%s: give either prompts or prompts_file, not both", name);
    SD_TRY(job_keys[index].handle(ld, name, v));
  }
  if (seen[key_index("model")].line == 0)
    return sd_job_error_at(ld->file, node_pos(root), "missing required key 'model'");
  if (seen[key_index("output")].line == 0)
    return sd_job_error_at(ld->file, node_pos(root), "missing required key 'output'");
  if (seen[key_index("prompts")].line == 0 && seen[key_index("prompts_file")].line == 0)
    return sd_job_error_at(ld->file, node_pos(root),
                           "missing required key 'prompts' (or 'prompts_file')");
  if (seen[key_index("seeds")].line == 0)
    return sd_job_error_at(ld->file, node_pos(root), "missing required key 'seeds'");
  SD_TRY(sd_job_inputs_check(ld->job));
  SD_TRY(apply_defaults(ld->job));
  SD_TRY(check_karras(ld));
  SD_TRY(check_cfg_parallel(ld));
  if (ld->job->prompts_file && ld->prompts_text)
    SD_TRY(sd_job_parse_prompts(ld->job, ld->prompts_text, ld->prompts_len));
  else if (ld->job->prompts_file)
    SD_TRY(sd_job_read_prompts_file(ld->job));
  SD_TRY(check_item_count(ld, root));
  return sd_job_compute_hash(ld->job);
}

/* 1-based position of a 0-based byte offset in text (columns in characters). */
static sd_job_pos offset_pos(const char *text, size_t len, size_t offset) {
  sd_job_pos pos = {1, 1};
  for (size_t i = 0; i < offset && i < len; i++) {
    if (text[i] == '\n') {
      pos.line++;
      pos.col = 1;
    } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
      pos.col++;
    }
  }
  return pos;
}

/* The byte at 0-based (line, character column) of text, or '\0' past its end. */
static char char_at(const char *text, size_t len, size_t line, size_t column) {
  size_t i = 0;
  for (size_t l = 0; l < line && i < len; i++)
    l += text[i] == '\n';
  for (size_t c = 0; i < len && text[i] != '\n'; i++) {
    if (((unsigned char)text[i] & 0xC0) == 0x80)
      continue;
    if (c++ == column)
      return text[i];
  }
  return '\0';
}

static int parser_error(loader *ld, const yaml_parser_t *parser) {
  const sd_job *job = ld->job;
  const char *problem = parser->problem ? parser->problem : "unknown problem";
  if (parser->error == YAML_MEMORY_ERROR)
    return SD_ERROR("%s: out of memory while reading YAML", ld->file);
  if (parser->error == YAML_READER_ERROR) {
    /* libyaml points at the octet after a bad lead byte; name the sequence's first byte */
    size_t valid = sd_utf8_valid_prefix(job->yaml_text, job->yaml_len);
    if (strstr(problem, "UTF-8") && valid < job->yaml_len)
      return sd_job_error_at(ld->file, offset_pos(job->yaml_text, job->yaml_len, valid),
                             "invalid UTF-8 (byte 0x%02X); job files are UTF-8",
                             (unsigned char)job->yaml_text[valid]);
    sd_job_pos pos = offset_pos(job->yaml_text, job->yaml_len, parser->problem_offset);
    if (parser->problem_value >= 0)
      return sd_job_error_at(ld->file, pos, "not valid YAML text: %s (0x%02X)", problem,
                             (unsigned)parser->problem_value);
    return sd_job_error_at(ld->file, pos, "not valid YAML text: %s", problem);
  }
  yaml_mark_t mark = parser->problem_mark;
  sd_job_pos pos = {(int)mark.line + 1, (int)mark.column + 1};
  bool tab = char_at(job->yaml_text, job->yaml_len, mark.line, mark.column) == '\t';
  return sd_job_error_at(ld->file, pos, "YAML syntax error: %s%s%s%s%s", problem,
                         parser->context ? " (" : "", parser->context ? parser->context : "",
                         parser->context ? ")" : "",
                         tab ? "; indent with spaces, YAML does not allow tabs" : "");
}

/* Reads the file into job->yaml_text, with the job file's own wording on failure. */
static int read_job_file(sd_job *job) {
  /* job files are small; the limit bounds what a mistaken path (a checkpoint, say) can cost */
  if (sd_file_read(job->path, SD_FILE_MAX_JOB, &job->yaml_text, &job->yaml_len) == 0)
    return 0;
  if (errno == EFBIG)
    return SD_ERROR("%s: the job file is larger than %zu bytes; is it a job file?", job->path,
                    SD_FILE_MAX_JOB);
  if (errno == ENOMEM)
    return SD_ERROR("%s: out of memory reading the job file", job->path);
  char cause[256]; /* copied: the message is rewritten below */
  snprintf(cause, sizeof cause, "%s",
           errno == EINVAL ? sd_file_error_cause(job->path) : strerror(errno));
  return SD_ERROR("%s: cannot read the job file: %s", job->path, cause);
}

static int load_document(loader *ld) {
  sd_job *job = ld->job;
  const unsigned char *bytes = (const unsigned char *)job->yaml_text;
  if (job->yaml_len >= 2 &&
      ((bytes[0] == 0xFE && bytes[1] == 0xFF) || (bytes[0] == 0xFF && bytes[1] == 0xFE)))
    return sd_job_error_at(ld->file, (sd_job_pos){1, 1},
                           "the job file must be UTF-8 (it starts with a UTF-16 byte-order mark)");
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser))
    return SD_ERROR("%s: cannot initialise the YAML parser", ld->file);
  yaml_parser_set_input_string(&parser, bytes, job->yaml_len);
  yaml_document_t doc, extra;
  int rc = 0;
  if (!yaml_parser_load(&parser, &doc)) {
    rc = parser_error(ld, &parser);
    yaml_parser_delete(&parser);
    return rc;
  }
  ld->doc = &doc;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root) {
    rc = sd_job_error_at(ld->file, (sd_job_pos){1, 1},
                         "the job file is empty (expected a mapping with model, output, prompts "
                         "and seeds)");
  } else if (!yaml_parser_load(&parser, &extra)) {
    rc = parser_error(ld, &parser);
  } else {
    if (yaml_document_get_root_node(&extra))
      rc = sd_job_error_at(
          ld->file, (sd_job_pos){(int)extra.start_mark.line + 1, (int)extra.start_mark.column + 1},
          "a second YAML document; a job file holds one job");
    yaml_document_delete(&extra);
    if (rc == 0 && root->type != YAML_MAPPING_NODE) {
      char got[QUOTE_MAX + 8];
      rc = sd_job_error_at(ld->file, node_pos(root),
                           "expected a mapping of job settings at the top level, got %s",
                           describe(root, got, sizeof got));
    }
    if (rc == 0)
      rc = load_mapping(ld, root);
  }
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  ld->doc = NULL;
  return rc;
}

/* The job at path, its bytes read from the file (text NULL) or given. */
static int load_job(const char *path, const char *text, size_t len, const char *prompts_text,
                    size_t prompts_len, sd_job **out) {
  *out = NULL;
  sd_job *job = calloc(1, sizeof *job);
  if (!job)
    return SD_ERROR("%s: out of memory", path);
  char *dir = NULL;
  job->path = dup_string(path);
  if (!job->path)
    goto out_free_job;
  const char *slash = strrchr(path, '/');
  size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
  dir = malloc(dir_len + 1);
  if (!dir) {
    SD_ERROR("%s: out of memory", path);
    goto out_free_job;
  }
  memcpy(dir, path, dir_len);
  dir[dir_len] = '\0';
  if (!text) {
    if (read_job_file(job) != 0)
      goto out_free_job;
  } else {
    job->yaml_text = malloc(len + 1);
    if (!job->yaml_text) {
      SD_ERROR("%s: out of memory", path);
      goto out_free_job;
    }
    memcpy(job->yaml_text, text, len);
    job->yaml_text[len] = '\0';
    job->yaml_len = len;
  }
  loader ld = {.file = path,
               .dir = dir,
               .job = job,
               .prompts_text = prompts_text,
               .prompts_len = prompts_len};
  if (load_document(&ld) != 0)
    goto out_free_job;
  free(dir);
  *out = job;
  return 0;

out_free_job:
  free(dir);
  sd_job_free(job);
  return -1;
}

int sd_job_load(const char *path, sd_job **out) {
  return load_job(path, NULL, 0, NULL, 0, out);
}

int sd_job_load_text(const char *path, const char *text, size_t len, const char *prompts_text,
                     size_t prompts_len, sd_job **out) {
  return load_job(path, text, len, prompts_text, prompts_len, out);
}
