/* Regular-file opens with size limits, and whole-file reads (see file.h). */
#define _GNU_SOURCE
#include "file.h"

#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIRST_CAPACITY ((size_t)1 << 16)

static const char *file_type_name(mode_t mode) {
  return S_ISDIR(mode)    ? "a folder"
         : S_ISFIFO(mode) ? "a FIFO"
         : S_ISCHR(mode)  ? "a character device"
         : S_ISBLK(mode)  ? "a block device"
         : S_ISSOCK(mode) ? "a socket"
                          : "not a plain file";
}

/* Checks the type and size of an open descriptor; sets the error and errno on failure. */
static int check_stat(const char *path, const struct stat *st, size_t max_bytes, size_t *size) {
  if (!S_ISREG(st->st_mode)) {
    SD_ERROR("%s: not a regular file (%s)", path, file_type_name(st->st_mode));
    errno = EINVAL;
    return -1;
  }
  if (st->st_size < 0 || (uint64_t)st->st_size > (uint64_t)max_bytes) {
    SD_ERROR("%s: %lld bytes, larger than the limit of %zu for this kind of file", path,
             (long long)st->st_size, max_bytes);
    errno = EFBIG;
    return -1;
  }
  if (size)
    *size = (size_t)st->st_size;
  return 0;
}

int sd_file_open_regular(const char *path, size_t max_bytes, size_t *size) {
  /* O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    int code = errno;
    SD_ERROR("%s: cannot open: %s", path, strerror(code));
    errno = code;
    return -1;
  }
  struct stat st;
  int code = 0;
  if (fstat(fd, &st) != 0) {
    code = errno;
    SD_ERROR("%s: cannot stat: %s", path, strerror(code));
  } else if (check_stat(path, &st, max_bytes, size) != 0) {
    code = errno;
  } else {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
      code = errno;
      SD_ERROR("%s: cannot set blocking reads: %s", path, strerror(code));
    }
  }
  if (code) {
    close(fd);
    errno = code;
    return -1;
  }
  return fd;
}

FILE *sd_file_fopen_regular(const char *path, size_t max_bytes, size_t *size) {
  int fd = sd_file_open_regular(path, max_bytes, size);
  if (fd < 0)
    return NULL;
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    int code = errno;
    SD_ERROR("%s: cannot open a stream: %s", path, strerror(code));
    close(fd);
    errno = code;
  }
  return f;
}

int sd_file_check_regular(const char *path, size_t max_bytes, size_t *size) {
  int fd = sd_file_open_regular(path, max_bytes, size);
  if (fd < 0)
    return -1;
  close(fd);
  return 0;
}

int sd_file_read(const char *path, size_t max_bytes, char **data, size_t *len) {
  *data = NULL;
  *len = 0;
  int fd = sd_file_open_regular(path, max_bytes, NULL);
  if (fd < 0)
    return -1;
  /* Reads at most one byte more than allowed, which tells a file that grew too large. */
  size_t limit = max_bytes < SIZE_MAX ? max_bytes + 1 : SIZE_MAX;
  char *buf = NULL;
  size_t used = 0, capacity = 0; /* capacity counts the NUL */
  int code = 0;
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
    ssize_t got = read(fd, buf + used, capacity - 1 - used);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      code = errno;
      SD_ERROR("%s: read error: %s", path, strerror(code));
      goto out_free;
    }
    if (got == 0)
      break;
    used += (size_t)got;
  }
  if (used > max_bytes) {
    code = EFBIG;
    SD_ERROR("%s: larger than the limit of %zu bytes for this kind of file", path, max_bytes);
    goto out_free;
  }
  close(fd);
  buf[used] = '\0';
  char *fitted = realloc(buf, used + 1);
  *data = fitted ? fitted : buf;
  *len = used;
  return 0;
out_free:
  free(buf);
  close(fd);
  errno = code;
  return -1;
}

int sd_file_check_output(const char *path) {
  size_t len = strlen(path);
  if (len == 0)
    return SD_ERROR("output path is empty");
  if (path[len - 1] == '/')
    return SD_ERROR("%s: names a folder, not a file", path);
  struct stat st;
  if (lstat(path, &st) == 0) {
    if (S_ISLNK(st.st_mode))
      return SD_ERROR("%s: is a symbolic link; refusing to replace it (give the target's path)",
                      path);
    if (!S_ISREG(st.st_mode))
      return SD_ERROR("%s: exists and is not a regular file (%s); refusing to replace it", path,
                      file_type_name(st.st_mode));
  } else if (errno != ENOENT) {
    return SD_ERROR("%s: %s", path, strerror(errno));
  }
  char dir[4096];
  if (sd_file_parent_folder(path, dir, sizeof dir) < 0)
    return SD_ERROR("%s: path too long", path);
  if (stat(dir, &st) != 0)
    return SD_ERROR("%s: folder '%s': %s", path, dir, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return SD_ERROR("%s: '%s' is not a folder", path, dir);
  if (access(dir, W_OK) != 0)
    return SD_ERROR("%s: folder '%s' is not writable: %s", path, dir, strerror(errno));
  return 0;
}

int sd_file_parent_folder(const char *path, char *buf, size_t size) {
  const char *slash = strrchr(path, '/');
  int n;
  if (!slash)
    n = snprintf(buf, size, ".");
  else if (slash == path)
    n = snprintf(buf, size, "/");
  else
    n = snprintf(buf, size, "%.*s", (int)(slash - path), path);
  return n >= 0 && (size_t)n < size ? 0 : -1;
}

const char *sd_file_error_cause(const char *path) {
  const char *message = sd_error_message();
  size_t n = strlen(path);
  if (strncmp(message, path, n) == 0 && strncmp(message + n, ": ", 2) == 0)
    return message + n + 2;
  return message;
}
