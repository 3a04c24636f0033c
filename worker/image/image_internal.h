/* Shared by the image files (not a public header): the decoders behind sd_image_read_rgb and the
 * size check they apply to a header before allocating pixels. */
#ifndef SD_IMAGE_INTERNAL_H
#define SD_IMAGE_INTERNAL_H

#include "image.h"

/* Refuses (with an error naming path) an empty image or one over SD_IMAGE_MAX_SIDE /
 * SD_IMAGE_MAX_PIXELS. */
int sd_image_check_size(const char *path, uint64_t width, uint64_t height);
/* Allocates image->data for (height, width, channels); -1 with an error when out of memory. */
int sd_image_alloc(sd_image *image, int width, int height, int channels);

/* Decode a whole file held in memory into out (RGB); errors name path. */
int sd_image_decode_png(const char *path, const uint8_t *data, size_t len, sd_image *out);
int sd_image_decode_jpeg(const char *path, const uint8_t *data, size_t len, sd_image *out);
/* A grayscale PNG's samples as stored (0..2^depth - 1) into *samples (height, width; malloc'ed);
 * any other color type is refused. */
int sd_image_decode_png_gray(const char *path, const uint8_t *data, size_t len, float **samples,
                             int *width, int *height);

#endif
