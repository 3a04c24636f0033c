/* Thread-local error message with context prefixes (see error.h). */
#include "error.h"

#include <stdio.h>
#include <string.h>

#define SD_ERROR_CAPACITY 2048

static _Thread_local char error_message[SD_ERROR_CAPACITY];
static _Thread_local char error_location[256];

int sd_error_set(const char *src_file, int src_line, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vsnprintf(error_message, sizeof error_message, fmt, args);
  va_end(args);
  snprintf(error_location, sizeof error_location, "%s:%d", src_file, src_line);
  return -1;
}

int sd_error_context(const char *fmt, ...) {
  char prefix[SD_ERROR_CAPACITY];
  va_list args;
  va_start(args, fmt);
  int n = vsnprintf(prefix, sizeof prefix, fmt, args);
  va_end(args);
  if (n < 0)
    return -1;
  char joined[SD_ERROR_CAPACITY];
  if (error_message[0])
    snprintf(joined, sizeof joined, "%s: %s", prefix, error_message);
  else
    snprintf(joined, sizeof joined, "%s", prefix);
  memcpy(error_message, joined, sizeof error_message);
  return -1;
}

const char *sd_error_message(void) {
  return error_message;
}

const char *sd_error_location(void) {
  return error_location;
}

void sd_error_clear(void) {
  error_message[0] = '\0';
  error_location[0] = '\0';
}
