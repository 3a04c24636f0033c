/* Error reporting for library code: a function that fails records a message (with the source
 * location for developers) and returns a negative code or NULL; callers add context on the way
 * up; only main() prints and decides the exit status. Library code never exits. */
#ifndef SD_ERROR_H
#define SD_ERROR_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Records a formatted message for this thread, replacing any earlier one. Returns -1, so that
 * `return SD_ERROR("...")` reads naturally. */
int sd_error_set(const char *src_file, int src_line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define SD_ERROR(...) sd_error_set(__FILE__, __LINE__, __VA_ARGS__)

/* Prepends "<context>: " to the current message (e.g. the file or tensor being worked on).
 * Returns -1. */
int sd_error_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The current message ("" when none) and where it was raised (src/file.c:123). */
const char *sd_error_message(void);
const char *sd_error_location(void);
void sd_error_clear(void);

/* Propagates a negative return code unchanged. */
#define SD_TRY(expr)                                                                               \
  do {                                                                                             \
    int sd_try_rc_ = (expr);                                                                       \
    if (sd_try_rc_ < 0)                                                                            \
      return sd_try_rc_;                                                                           \
  } while (0)

#ifdef __cplusplus
}
#endif

#endif
