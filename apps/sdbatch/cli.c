/* Option value parsers and error printing for the sdbatch subcommands. */
#include "cli.h"

#include "kernels/error.h"
#include "worker/pipeline/engine.h"
#include "worker/rng/rng.h"
#include "worker/sched/scheduler.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int cli_parse_rng(const char *text, void *target) {
  return sd_rng_kind_parse(text, target);
}

int cli_parse_precision(const char *text, void *target) {
  return sd_precision_parse(text, target);
}

int cli_parse_vae_tiling(const char *text, void *target) {
  return sd_vae_tiling_parse(text, target);
}

int cli_parse_scheduler(const char *text, void *target) {
  return sd_scheduler_kind_parse(text, target);
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
