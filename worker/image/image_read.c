/* sd_image_read_rgb: the file is opened as a regular file only (a FIFO or device never blocks
 * or streams), read whole under SD_IMAGE_MAX_FILE_BYTES, and decoded from memory by the format
 * its signature names. */
#include "image.h"
#include "image_internal.h"

#include "../../kernels/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_regular_file(const char *path, uint8_t **data, size_t *len) {
  *data = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return SD_ERROR("%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  int rc = -1;
  uint8_t *buf = NULL;
  if (fstat(fd, &st) < 0) {
    SD_ERROR("%s: cannot stat: %s", path, strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    SD_ERROR("%s: not a regular file", path);
    goto out;
  }
  if (st.st_size == 0) {
    SD_ERROR("%s: empty file", path);
    goto out;
  }
  if ((uint64_t)st.st_size > SD_IMAGE_MAX_FILE_BYTES) {
    SD_ERROR("%s: %lld bytes, more than the %zu an input image may have", path,
             (long long)st.st_size, SD_IMAGE_MAX_FILE_BYTES);
    goto out;
  }
  size_t size = (size_t)st.st_size;
  buf = malloc(size);
  if (!buf) {
    SD_ERROR("%s: out of memory for %zu bytes", path, size);
    goto out;
  }
  size_t used = 0;
  while (used < size) {
    ssize_t got = read(fd, buf + used, size - used);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      SD_ERROR("%s: read error: %s", path, strerror(errno));
      goto out;
    }
    if (got == 0) {
      SD_ERROR("%s: the file shrank while being read", path);
      goto out;
    }
    used += (size_t)got;
  }
  *data = buf;
  *len = size;
  buf = NULL;
  rc = 0;
out:
  free(buf);
  close(fd);
  return rc;
}

int sd_image_check_size(const char *path, uint64_t width, uint64_t height) {
  if (width == 0 || height == 0)
    return SD_ERROR("%s: the image is empty (%llux%llu)", path, (unsigned long long)width,
                    (unsigned long long)height);
  if (width > SD_IMAGE_MAX_SIDE || height > SD_IMAGE_MAX_SIDE ||
      (int64_t)(width * height) > SD_IMAGE_MAX_PIXELS)
    return SD_ERROR("%s: %llux%llu pixels is too large (at most %d per side and %lld in all)", path,
                    (unsigned long long)width, (unsigned long long)height, SD_IMAGE_MAX_SIDE,
                    (long long)SD_IMAGE_MAX_PIXELS);
  return 0;
}

int sd_image_alloc(sd_image *image, int width, int height, int channels) {
  image->width = width;
  image->height = height;
  image->channels = channels;
  image->data = malloc((size_t)width * (size_t)height * (size_t)channels);
  return image->data ? 0 : SD_ERROR("out of memory for a %dx%dx%d image", width, height, channels);
}

void sd_image_free(sd_image *image) {
  if (!image)
    return;
  free(image->data);
  image->data = NULL;
  image->width = image->height = image->channels = 0;
}

int sd_image_read_rgb(const char *path, sd_image *out) {
  memset(out, 0, sizeof *out);
  uint8_t *data = NULL;
  size_t len = 0;
  SD_TRY(read_regular_file(path, &data, &len));
  static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  int rc;
  if (len >= 8 && memcmp(data, png_signature, 8) == 0)
    rc = sd_image_decode_png(path, data, len, out);
  else if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
    rc = sd_image_decode_jpeg(path, data, len, out);
  else
    rc = SD_ERROR("%s: not a PNG or JPEG file (unknown signature)", path);
  free(data);
  if (rc < 0)
    sd_image_free(out);
  return rc;
}

int sd_image_read_gray_samples(const char *path, float **samples, int *width, int *height) {
  *samples = NULL;
  uint8_t *data = NULL;
  size_t len = 0;
  SD_TRY(read_regular_file(path, &data, &len));
  static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  int rc = len >= 8 && memcmp(data, png_signature, 8) == 0
               ? sd_image_decode_png_gray(path, data, len, samples, width, height)
               : SD_ERROR("%s: not a PNG file (unknown signature)", path);
  free(data);
  return rc;
}
