/* Flag parsing helpers and error printing for the sdbatch subcommands. */
#include "cli.h"

#include "kernels/error.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int cli_parse_int(const char *command, const char *flag, const char *text, int min, int max,
                  int *out) {
  char *end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno || end == text || *end || value < min || value > max) {
    cli_usage_error(command, "%s: expected an integer from %d to %d, got '%s'", flag, min, max,
                    text);
    return -1;
  }
  *out = (int)value;
  return 0;
}

int cli_parse_u64(const char *command, const char *flag, const char *text, uint64_t *out) {
  char *end = NULL;
  errno = 0;
  if (text[0] == '-') {
    cli_usage_error(command, "%s: expected a non-negative integer, got '%s'", flag, text);
    return -1;
  }
  unsigned long long value = strtoull(text, &end, 10);
  if (errno || end == text || *end) {
    cli_usage_error(command, "%s: expected a non-negative integer, got '%s'", flag, text);
    return -1;
  }
  *out = (uint64_t)value;
  return 0;
}

int cli_parse_float(const char *command, const char *flag, const char *text, float *out) {
  char *end = NULL;
  errno = 0;
  float value = strtof(text, &end);
  if (errno || end == text || *end || !isfinite(value)) {
    cli_usage_error(command, "%s: expected a number, got '%s'", flag, text);
    return -1;
  }
  *out = value;
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
