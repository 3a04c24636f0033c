/* kernels/file.h: untrusted input files are opened only as regular files within a size limit
 * (a FIFO, a device, a folder are refused at once, never blocked on), whole-file reads stop at the
 * limit even where the stated size is 0 (/proc), and output paths are checked before any work. */
#include "test_util.h"

#include "error.h"
#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch[] = "/tmp/sdbatch-test-file-XXXXXX";

static const char *scratch_path(const char *name) {
  static char paths[4][512];
  static int next;
  char *p = paths[next++ % 4];
  snprintf(p, 512, "%s/%s", scratch, name);
  return p;
}

/* The last error must contain each non-NULL fragment. */
static void expect_error(const char *what, const char *a, const char *b) {
  const char *msg = sd_error_message();
  CHECK((!a || strstr(msg, a)) && (!b || strstr(msg, b)), "%s: message '%s' (want '%s' '%s')", what,
        msg, a ? a : "", b ? b : "");
}

static void test_open_regular(void) {
  const char *text = scratch_path("text.txt");
  FILE *f = fopen(text, "wb");
  CHECK(f && fputs("0123456789", f) >= 0 && fclose(f) == 0, "write %s", text);
  size_t size = 0;
  int fd = sd_file_open_regular(text, 10, &size);
  CHECK(fd >= 0 && size == 10, "regular file of 10 bytes within 10: fd %d size %zu", fd, size);
  if (fd >= 0)
    close(fd);
  CHECK(sd_file_open_regular(text, 9, NULL) == -1 && errno == EFBIG, "10 bytes over a limit of 9");
  expect_error("over the limit", text, "10 bytes, larger than the limit of 9");

  const char *fifo = scratch_path("fifo");
  CHECK(mkfifo(fifo, 0600) == 0, "mkfifo %s", fifo);
  CHECK(sd_file_open_regular(fifo, 100, NULL) == -1 && errno == EINVAL, "a FIFO is refused");
  expect_error("FIFO", fifo, "not a regular file (a FIFO)");
  CHECK(sd_file_fopen_regular("/dev/zero", 100, NULL) == NULL, "/dev/zero is refused");
  expect_error("/dev/zero", "/dev/zero", "not a regular file (a character device)");
  CHECK(sd_file_check_regular(scratch, SIZE_MAX, NULL) == -1, "a folder is refused");
  expect_error("folder", scratch, "(a folder)");
  CHECK(sd_file_check_regular(scratch_path("absent"), 100, NULL) == -1 && errno == ENOENT,
        "a missing file");
  expect_error("missing", "cannot open: No such file or directory", NULL);
  const char *link = scratch_path("zero-link");
  CHECK(symlink("/dev/zero", link) == 0, "symlink");
  CHECK(sd_file_check_regular(link, 100, NULL) == -1, "a link to /dev/zero is refused");
  expect_error("link to /dev/zero", link, "(a character device)");
  FILE *stream = sd_file_fopen_regular(text, 100, &size);
  char buf[16] = {0};
  CHECK(stream && fread(buf, 1, sizeof buf, stream) == 10 && !strcmp(buf, "0123456789"),
        "stream reads the file");
  if (stream)
    fclose(stream);
}

static void test_read(void) {
  const char *text = scratch_path("text.txt");
  char *data = NULL;
  size_t len = 0;
  CHECK(sd_file_read(text, 10, &data, &len) == 0 && len == 10 && data && data[10] == '\0',
        "read 10 bytes within 10: %s", sd_error_message());
  free(data);
  CHECK(sd_file_read(text, 3, &data, &len) == -1 && data == NULL && errno == EFBIG, "limit 3");
  const char *empty = scratch_path("empty");
  FILE *f = fopen(empty, "wb");
  CHECK(f && fclose(f) == 0, "write empty");
  CHECK(sd_file_read(empty, 0, &data, &len) == 0 && len == 0 && data && data[0] == '\0',
        "empty file: %s", sd_error_message());
  free(data);
  /* stated size 0, yet /proc/self/maps has content: the read itself stops at the limit */
  CHECK(sd_file_read("/proc/self/maps", 16, &data, &len) == -1 && errno == EFBIG,
        "/proc/self/maps over 16 bytes");
  expect_error("/proc", "/proc/self/maps", "larger than the limit of 16");
  CHECK(sd_file_read("/proc/self/maps", 1 << 20, &data, &len) == 0 && len > 16, "/proc read: %s",
        sd_error_message());
  free(data);
  CHECK(sd_file_read("/dev/zero", 1 << 20, &data, &len) == -1 && data == NULL, "/dev/zero read");
  expect_error("/dev/zero read", "not a regular file", NULL);
}

static void test_check_output(void) {
  CHECK(sd_file_check_output(scratch_path("new.png")) == 0, "a new file in a folder: %s",
        sd_error_message());
  CHECK(sd_file_check_output(scratch_path("text.txt")) == 0, "an existing regular file: %s",
        sd_error_message());
  CHECK(sd_file_check_output("") == -1, "empty");
  expect_error("empty", "output path is empty", NULL);
  CHECK(sd_file_check_output(scratch) == -1, "a folder");
  expect_error("folder", "exists and is not a regular file (a folder)", NULL);
  CHECK(sd_file_check_output(scratch_path("sub/")) == -1, "trailing slash");
  expect_error("trailing slash", "names a folder", NULL);
  CHECK(sd_file_check_output(scratch_path("missing/x.png")) == -1, "missing folder");
  expect_error("missing folder", "missing': No such file or directory", NULL);
  CHECK(sd_file_check_output(scratch_path("text.txt/x.png")) == -1, "a file as folder");
  expect_error("file as folder", "x.png: Not a directory", NULL);
  CHECK(sd_file_check_output("/dev/full") == -1, "/dev/full");
  expect_error("/dev/full", "(a character device); refusing to replace it", NULL);
  CHECK(sd_file_check_output(scratch_path("fifo")) == -1, "a FIFO");
  expect_error("FIFO", "(a FIFO)", NULL);
  CHECK(sd_file_check_output(scratch_path("zero-link")) == -1, "a symbolic link");
  expect_error("link", "is a symbolic link", NULL);
  CHECK(sd_file_check_output("relative-name.png") == 0, "a name in the working folder: %s",
        sd_error_message());
}

int main(void) {
  if (!mkdtemp(scratch)) {
    perror("mkdtemp");
    return 1;
  }
  test_open_regular();
  test_read();
  test_check_output();
  const char *names[] = {"text.txt", "fifo", "zero-link", "empty"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    unlink(scratch_path(names[i]));
  rmdir(scratch);
  return sd_test_finish();
}
