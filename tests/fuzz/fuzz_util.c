/* Helpers of the fuzz harnesses (see fuzz.h). */
#define _GNU_SOURCE
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const char *sd_fuzz_file(const uint8_t *data, size_t size) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("sdbatch-fuzz", MFD_CLOEXEC);
    if (fd < 0)
      return NULL;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
    return NULL;
  return path;
}

void sd_fuzz_split(const uint8_t *data, size_t size, const char *separator, size_t *first,
                   size_t *second_at) {
  size_t n = strlen(separator);
  const uint8_t *at = size >= n ? memmem(data, size, separator, n) : NULL;
  *first = at ? (size_t)(at - data) : size;
  *second_at = at ? *first + n : size;
}

char *sd_fuzz_string(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (s) {
    memcpy(s, data, size);
    s[size] = '\0';
  }
  return s;
}
