/* Option value parsers and error printing for the sdbatch subcommands. */
#include "cli.h"

#include "jobs/sha256.h"
#include "kernels/error.h"
#include "worker/pipeline/engine.h"
#include "worker/rng/rng.h"
#include "worker/sched/scheduler.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_parse_rng(const char *text, void *target) {
  return sd_rng_kind_parse(text, target);
}

int cli_parse_precision(const char *text, void *target) {
  return sd_precision_parse(text, target);
}

int cli_parse_vae_tiling(const char *text, void *target) {
  return sd_vae_tiling_parse(text, target);
}

int cli_parse_dpt_backend(const char *text, void *target) {
  return sd_dpt_backend_parse(text, target);
}

int cli_parse_scheduler(const char *text, void *target) {
  return sd_scheduler_kind_parse(text, target);
}

/* Splits "FILE[:SUFFIX]" (see cli.h) into a new *path; *suffix NULL when there is none. */
static int split_spec(const char *text, char **path, const char **suffix) {
  const char *colon = strrchr(text, ':');
  *suffix = NULL;
  if (!colon || access(text, F_OK) == 0) {
    *path = strdup(text);
  } else {
    *path = strndup(text, (size_t)(colon - text));
    *suffix = colon + 1;
  }
  if (!*path)
    return SD_ERROR("out of memory");
  if (!(*path)[0]) {
    free(*path);
    return SD_ERROR("expected FILE before ':' in '%s'", text);
  }
  return 0;
}

int cli_parse_lora(const char *text, void *target) {
  cli_adapters *adapters = target;
  if (adapters->lora_count == CLI_MAX_ADAPTERS)
    return SD_ERROR("at most %d LoRA files", CLI_MAX_ADAPTERS);
  char *path;
  const char *scale_text;
  SD_TRY(split_spec(text, &path, &scale_text));
  float scale = 1.0f;
  if (scale_text) {
    char *end = NULL;
    errno = 0;
    scale = strtof(scale_text, &end);
    if (errno || end == scale_text || *end || !isfinite(scale)) {
      free(path);
      return SD_ERROR("the scale after ':' must be a finite number, got '%s'", scale_text);
    }
  }
  adapters->loras[adapters->lora_count++] = (sd_lora_spec){path, scale};
  return 0;
}

int cli_parse_embedding(const char *text, void *target) {
  cli_adapters *adapters = target;
  if (adapters->embedding_count == CLI_MAX_ADAPTERS)
    return SD_ERROR("at most %d embedding files", CLI_MAX_ADAPTERS);
  char *path;
  const char *token;
  SD_TRY(split_spec(text, &path, &token));
  if (token && !token[0]) {
    free(path);
    return SD_ERROR("empty TOKEN after ':' in '%s'", text);
  }
  adapters->embeddings[adapters->embedding_count++] = (sd_embedding_spec){path, token};
  return 0;
}

void cli_adapters_free(cli_adapters *adapters) {
  for (int i = 0; i < adapters->lora_count; i++)
    free((char *)adapters->loras[i].path);
  for (int i = 0; i < adapters->embedding_count; i++)
    free((char *)adapters->embeddings[i].path);
  adapters->lora_count = adapters->embedding_count = 0;
}

int cli_format_adapters(const cli_adapters *adapters, char *buf, size_t size) {
  size_t used = strlen(buf);
  char hex[65];
  for (int i = 0; i < adapters->lora_count; i++) {
    const sd_lora_spec *l = &adapters->loras[i];
    SD_TRY(sd_sha256_file(l->path, hex));
    used += (size_t)snprintf(buf + used, used < size ? size - used : 0,
                             ", LoRA %d: %s, LoRA %d scale: %g, LoRA %d SHA-256: %s", i + 1,
                             l->path, i + 1, (double)l->scale, i + 1, hex);
  }
  for (int i = 0; i < adapters->embedding_count; i++) {
    const sd_embedding_spec *e = &adapters->embeddings[i];
    SD_TRY(sd_sha256_file(e->path, hex));
    used += (size_t)snprintf(buf + used, used < size ? size - used : 0, ", Embedding %d: %s", i + 1,
                             e->path);
    if (e->token)
      used += (size_t)snprintf(buf + used, used < size ? size - used : 0,
                               ", Embedding %d token: %s", i + 1, e->token);
    used += (size_t)snprintf(buf + used, used < size ? size - used : 0,
                             ", Embedding %d SHA-256: %s", i + 1, hex);
  }
  if (used >= size)
    return SD_ERROR("the PNG parameters text is longer than %zu bytes", size);
  return 0;
}

int cli_report_error(const char *command) {
  fprintf(stderr, "sdbatch %s: error: %s\n", command, sd_error_message());
  if (getenv("SDBATCH_DEBUG"))
    fprintf(stderr, "  (raised at %s)\n", sd_error_location());
  return 1;
}

int cli_usage_error(const char *command, const char *fmt, ...) {
  fprintf(stderr, "sdbatch %s: ", command);
  va_list args;
  va_start(args, fmt);
  vfprintf(stderr, fmt, args);
  va_end(args);
  fprintf(stderr, "\n(see 'sdbatch %s --help')\n", command);
  return 2;
}
