/* PNG decoding through libpng into RGB as PIL's Image.open(...).convert("RGB") gives it (see
 * image.h for the rules per colour type and bit depth). libpng only unpacks sub-byte samples and
 * undoes interlacing; every conversion to RGB is done here, so no libpng transform (gamma, tRNS
 * expansion, 16-bit scaling) can differ from PIL's. */
#include "image_internal.h"

#include "../../kernels/error.h"

#include <png.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct png_source {
  const char *path;
  const uint8_t *data;
  size_t len, pos;
  char message[256]; /* libpng's error */
  uint8_t *raw;      /* the whole decoded image (interlaced files) or one row */
  float *gray;       /* sd_image_decode_png_gray: the samples (height, width), else NULL */
  bool want_gray;    /* decode samples of a grayscale image instead of RGB */
  int width, height; /* of the decoded image */
} png_source;

static void on_png_error(png_structp png, png_const_charp message) {
  png_source *src = png_get_error_ptr(png);
  snprintf(src->message, sizeof src->message, "%s", message);
  png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp message) {
  (void)png;
  (void)message;
}

static void read_bytes(png_structp png, png_bytep out, size_t count) {
  png_source *src = png_get_io_ptr(png);
  if (count > src->len - src->pos)
    png_error(png, "truncated file (the data ends early)");
  memcpy(out, src->data + src->pos, count);
  src->pos += count;
}

/* One row of raw samples (after png_set_packing: one byte per sample below 8 bits, big-endian
 * pairs at 16) to RGB. */
static void row_to_rgb(const uint8_t *raw, int width, int color_type, int depth,
                       const png_color *palette, int n_palette, uint8_t *rgb) {
  int channels = color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_PALETTE ? 1
                 : color_type == PNG_COLOR_TYPE_GRAY_ALPHA                                 ? 2
                 : color_type == PNG_COLOR_TYPE_RGB                                        ? 3
                                                                                           : 4;
  int bytes = depth == 16 ? 2 : 1;
  for (int x = 0; x < width; x++) {
    const uint8_t *s = raw + (size_t)x * channels * bytes;
    uint8_t *d = rgb + (size_t)x * 3;
    switch (color_type) {
    case PNG_COLOR_TYPE_PALETTE:
      if (s[0] < n_palette) {
        d[0] = palette[s[0]].red;
        d[1] = palette[s[0]].green;
        d[2] = palette[s[0]].blue;
      } else {
        d[0] = d[1] = d[2] = 0;
      }
      break;
    case PNG_COLOR_TYPE_GRAY: {
      unsigned v;
      if (depth == 16) {
        v = (unsigned)s[0] << 8 | s[1];
        v = v > 255 ? 255 : v; /* PIL: mode I;16, convert clips */
      } else {
        v = s[0] * (255u / ((1u << depth) - 1)); /* 1, 2, 4 bits: x255, x85, x17 */
      }
      d[0] = d[1] = d[2] = (uint8_t)v;
      break;
    }
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      d[0] = d[1] = d[2] = s[0]; /* the high byte at 16 bits */
      break;
    default: /* RGB, RGBA: the high byte of each sample at 16 bits, alpha dropped */
      d[0] = s[0];
      d[1] = s[bytes];
      d[2] = s[2 * bytes];
      break;
    }
  }
}

static int decode(png_source *src, png_structp png, png_infop info, sd_image *out) {
  if (setjmp(png_jmpbuf(png)))
    return SD_ERROR("%s: corrupt or truncated PNG: %s", src->path, src->message);
  png_set_read_fn(png, src, read_bytes);
  png_read_info(png, info);
  png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  int depth = png_get_bit_depth(png, info);
  int color_type = png_get_color_type(png, info);
  if (sd_image_check_size(src->path, width, height) < 0)
    return -1;
  src->width = (int)width;
  src->height = (int)height;
  png_colorp palette = NULL;
  int n_palette = 0;
  if (color_type == PNG_COLOR_TYPE_PALETTE && !png_get_PLTE(png, info, &palette, &n_palette))
    return SD_ERROR("%s: corrupt PNG: a palette image without a PLTE chunk", src->path);
  if (src->want_gray && color_type != PNG_COLOR_TYPE_GRAY)
    return SD_ERROR("%s: a depth map PNG must be grayscale without alpha (this one has color "
                    "type %d)",
                    src->path, color_type);
  if (depth < 8)
    png_set_packing(png);
  int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  size_t row_bytes = png_get_rowbytes(png, info);
  if (src->want_gray) {
    src->gray = malloc((size_t)width * height * sizeof *src->gray);
    if (!src->gray)
      return SD_ERROR("%s: out of memory for %ux%u samples", src->path, width, height);
  } else if (sd_image_alloc(out, (int)width, (int)height, 3) < 0) {
    return sd_error_context("%s", src->path);
  }
  size_t raw_rows = passes > 1 ? height : 1;
  src->raw = malloc(row_bytes * raw_rows);
  if (!src->raw)
    return SD_ERROR("%s: out of memory for %zu bytes of rows", src->path, row_bytes * raw_rows);
  /* An interlaced image is complete only after its last pass; otherwise one row at a time. */
  for (int pass = 0; pass < passes - 1; pass++)
    for (png_uint_32 y = 0; y < height; y++)
      png_read_row(png, src->raw + y * row_bytes, NULL);
  for (png_uint_32 y = 0; y < height; y++) {
    uint8_t *raw = src->raw + (passes > 1 ? y * row_bytes : 0);
    png_read_row(png, raw, NULL);
    if (src->want_gray) /* the stored samples: big-endian pairs at 16 bits */
      for (png_uint_32 x = 0; x < width; x++)
        src->gray[(size_t)y * width + x] =
            depth == 16 ? (float)((unsigned)raw[2 * x] << 8 | raw[2 * x + 1]) : (float)raw[x];
    else
      row_to_rgb(raw, (int)width, color_type, depth, palette, n_palette,
                 out->data + (size_t)y * width * 3);
  }
  png_read_end(png, NULL);
  return 0;
}

static int decode_png(png_source *src, sd_image *out) {
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, src, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  int rc = png && info ? decode(src, png, info, out)
                       : SD_ERROR("%s: out of memory for libpng", src->path);
  png_destroy_read_struct(&png, &info, NULL);
  free(src->raw);
  return rc;
}

int sd_image_decode_png_gray(const char *path, const uint8_t *data, size_t len, float **samples,
                             int *width, int *height) {
  png_source src = {path, data, len, 0, "", NULL, NULL, true, 0, 0};
  sd_image none = {0};
  int rc = decode_png(&src, &none);
  if (rc < 0) {
    free(src.gray);
    return rc;
  }
  *samples = src.gray;
  *width = src.width;
  *height = src.height;
  return 0;
}

int sd_image_decode_png(const char *path, const uint8_t *data, size_t len, sd_image *out) {
  png_source src = {path, data, len, 0, "", NULL, NULL, false, 0, 0};
  return decode_png(&src, out);
}
