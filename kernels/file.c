/* Whole-file reads (see file.h). */
#include "file.h"

#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_CAPACITY ((size_t)1 << 16)

int sd_file_read(const char *path, size_t max_bytes, char **data, size_t *len) {
  *data = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    int code = errno;
    SD_ERROR("%s: cannot open: %s", path, strerror(code));
    errno = code;
    return -1;
  }
  /* Reads at most one byte more than allowed, which tells a file that is too large. */
  size_t limit = max_bytes < SIZE_MAX ? max_bytes + 1 : SIZE_MAX;
  char *buf = NULL;
  size_t used = 0, capacity = 0; /* capacity counts the NUL */
  int code = 0;
  errno = 0;
  while (used < limit) {
    if (capacity - used < 2) {
      size_t wanted = capacity ? capacity * 2 : FIRST_CAPACITY;
      if (wanted - 1 > limit)
        wanted = limit + 1;
      char *grown = wanted > capacity ? realloc(buf, wanted) : NULL;
      if (!grown) {
        code = ENOMEM;
        SD_ERROR("%s: out of memory reading %zu bytes", path, wanted);
        goto out_free;
      }
      buf = grown;
      capacity = wanted;
    }
    size_t got = fread(buf + used, 1, capacity - 1 - used, f);
    used += got;
    if (got == 0)
      break;
  }
  if (ferror(f)) {
    code = errno ? errno : EIO;
    SD_ERROR("%s: read error: %s", path, strerror(code));
    goto out_free;
  }
  if (used > max_bytes) {
    code = EFBIG;
    SD_ERROR("%s: larger than %zu bytes", path, max_bytes);
    goto out_free;
  }
  fclose(f);
  buf[used] = '\0';
  char *fitted = realloc(buf, used + 1);
  *data = fitted ? fitted : buf;
  *len = used;
  return 0;
out_free:
  free(buf);
  fclose(f);
  errno = code;
  return -1;
}
