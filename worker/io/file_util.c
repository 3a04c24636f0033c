/* File-system helpers (file_util.h). */
#include "file_util.h"

#include "../../kernels/error.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Ends a write through tmp (rc: 0 so far, or the error already set): flushed, fsync'ed, closed
 * and renamed over dst; on any failure tmp is removed. */
static int commit_tmp(FILE *out, const char *tmp, const char *dst, int rc) {
  if (rc == 0 && (fflush(out) != 0 || fsync(fileno(out)) != 0))
    rc = SD_ERROR("%s: write failed: %s", tmp, strerror(errno));
  if (fclose(out) != 0 && rc == 0)
    rc = SD_ERROR("%s: close failed: %s", tmp, strerror(errno));
  if (rc == 0 && rename(tmp, dst) < 0)
    rc = SD_ERROR("cannot rename %s to %s: %s", tmp, dst, strerror(errno));
  if (rc < 0)
    unlink(tmp);
  return rc;
}

int sd_copy_file(const char *src, const char *dst) {
  char tmp[PATH_MAX + 8];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", dst) >= (int)sizeof tmp)
    return SD_ERROR("%s: path too long", dst);
  FILE *in = fopen(src, "rb");
  if (!in)
    return SD_ERROR("%s: cannot open: %s", src, strerror(errno));
  FILE *out = fopen(tmp, "wb");
  if (!out) {
    fclose(in);
    return SD_ERROR("%s: cannot create: %s", tmp, strerror(errno));
  }
  char buf[1 << 16];
  size_t got;
  int rc = 0;
  while (rc == 0 && (got = fread(buf, 1, sizeof buf, in)) > 0)
    if (fwrite(buf, 1, got, out) != got)
      rc = SD_ERROR("%s: write failed: %s", tmp, strerror(errno));
  if (rc == 0 && ferror(in))
    rc = SD_ERROR("%s: read failed", src);
  fclose(in);
  return commit_tmp(out, tmp, dst, rc);
}

int sd_write_file(const char *dst, const void *data, size_t n) {
  char tmp[PATH_MAX + 8];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", dst) >= (int)sizeof tmp)
    return SD_ERROR("%s: path too long", dst);
  FILE *out = fopen(tmp, "wb");
  if (!out)
    return SD_ERROR("%s: cannot create: %s", tmp, strerror(errno));
  int rc =
      fwrite(data, 1, n, out) == n ? 0 : SD_ERROR("%s: write failed: %s", tmp, strerror(errno));
  return commit_tmp(out, tmp, dst, rc);
}

int sd_make_folder(const char *path) {
  if (mkdir(path, 0777) < 0 && errno != EEXIST)
    return SD_ERROR("%s: cannot make the folder: %s", path, strerror(errno));
  return 0;
}

int sd_remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) < 0)
    return errno == ENOENT ? 0 : SD_ERROR("%s: cannot read: %s", path, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return unlink(path) < 0 ? SD_ERROR("%s: cannot delete: %s", path, strerror(errno)) : 0;
  DIR *d = opendir(path);
  if (!d)
    return SD_ERROR("%s: cannot read: %s", path, strerror(errno));
  struct dirent *e;
  char child[PATH_MAX];
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= (int)sizeof child)
      rc = SD_ERROR("%s/%s: path too long", path, e->d_name);
    else
      rc = sd_remove_tree(child);
  }
  closedir(d);
  if (rc == 0 && rmdir(path) < 0)
    rc = SD_ERROR("%s: cannot delete the folder: %s", path, strerror(errno));
  return rc;
}

int sd_remove_entries_containing(const char *dir, const char *part) {
  DIR *d = opendir(dir);
  if (!d)
    return SD_ERROR("%s: cannot read the folder: %s", dir, strerror(errno));
  struct dirent *e;
  char path[PATH_MAX];
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (!strstr(e->d_name, part))
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    rc = sd_remove_tree(path);
  }
  closedir(d);
  return rc;
}
