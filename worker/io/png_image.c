/* PNG writing and reading through libpng (see png_image.h). */
#include "png_image.h"

#include "../../kernels/error.h"
#include "../../kernels/file.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void png_error_handler(png_structp png, png_const_charp message) {
  char *buffer = png_get_error_ptr(png);
  snprintf(buffer, 256, "%s", message);
  png_longjmp(png, 1);
}

static void png_warning_handler(png_structp png, png_const_charp message) {
  (void)png;
  (void)message;
}

int sd_png_write_rgb(const char *path, const uint8_t *rgb, int width, int height,
                     const sd_png_text *texts, size_t n_texts) {
  SD_TRY(sd_file_check_output(path));
  char tmp_path[4096 + 16];
  int n = snprintf(tmp_path, sizeof tmp_path, "%s.tmp.XXXXXX", path);
  if (n < 0 || (size_t)n >= sizeof tmp_path)
    return SD_ERROR("%s: path too long", path);
  int fd = mkstemp(tmp_path); /* a new file: never one that someone put there */
  FILE *file = fd >= 0 ? fdopen(fd, "wb") : NULL;
  if (!file) {
    int err = errno;
    if (fd >= 0) {
      close(fd);
      remove(tmp_path);
    }
    return SD_ERROR("%s: cannot create: %s", path, strerror(err));
  }
  char png_message[256] = "";
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, png_message, png_error_handler,
                                            png_warning_handler);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  png_bytep *row_pointers = calloc((size_t)height, sizeof *row_pointers);
  png_textp png_texts = calloc(n_texts ? n_texts : 1, sizeof *png_texts);
  if (!png || !info || !row_pointers || !png_texts) {
    png_destroy_write_struct(&png, &info);
    free(row_pointers);
    free(png_texts);
    fclose(file);
    remove(tmp_path);
    return SD_ERROR("%s: out of memory for libpng", path);
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    free(row_pointers);
    free(png_texts);
    fclose(file);
    remove(tmp_path);
    return SD_ERROR("%s: libpng: %s", path, png_message);
  }
  png_init_io(png, file);
  png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  for (size_t i = 0; i < n_texts; i++) {
    png_texts[i].compression = PNG_ITXT_COMPRESSION_NONE;
    png_texts[i].key = (png_charp)texts[i].key;
    png_texts[i].text = (png_charp)texts[i].value;
  }
  if (n_texts)
    png_set_text(png, info, png_texts, (int)n_texts);
  for (int y = 0; y < height; y++)
    row_pointers[y] = (png_bytep)(rgb + (size_t)y * width * 3);
  png_set_rows(png, info, row_pointers);
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
  png_destroy_write_struct(&png, &info);
  free(row_pointers);
  free(png_texts);
  int failed = fchmod(fileno(file), 0644) != 0; /* mkstemp made it 0600 */
  failed |= fclose(file) != 0;
  if (failed) {
    remove(tmp_path);
    return SD_ERROR("%s: write failed: %s", path, strerror(errno));
  }
  if (sd_file_check_output(path) != 0) { /* replaced by something else while we rendered */
    remove(tmp_path);
    return -1;
  }
  if (rename(tmp_path, path) != 0) {
    int err = errno;
    remove(tmp_path);
    return SD_ERROR("%s: cannot rename the finished file into place: %s", path, strerror(err));
  }
  return 0;
}

int sd_png_read_rgb(const char *path, uint8_t **rgb, int *width, int *height, const char *text_key,
                    char **text_value) {
  *rgb = NULL;
  if (text_value)
    *text_value = NULL;
  FILE *file = fopen(path, "rb");
  if (!file)
    return SD_ERROR("%s: cannot open: %s", path, strerror(errno));
  unsigned char signature[8];
  if (fread(signature, 1, 8, file) != 8 || png_sig_cmp(signature, 0, 8)) {
    fclose(file);
    return SD_ERROR("%s: not a PNG file", path);
  }
  char png_message[256] = "";
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, png_message, png_error_handler,
                                           png_warning_handler);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  uint8_t *volatile pixels = NULL;
  png_bytep *volatile rows = NULL;
  if (!png || !info) {
    png_destroy_read_struct(&png, &info, NULL);
    fclose(file);
    return SD_ERROR("%s: out of memory for libpng", path);
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(pixels);
    free(rows);
    fclose(file);
    return SD_ERROR("%s: libpng: %s", path, png_message);
  }
  png_init_io(png, file);
  png_set_sig_bytes(png, 8);
  png_set_user_limits(png, 16384, 16384);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  int color = png_get_color_type(png, info);
  if (png_get_bit_depth(png, info) == 16)
    png_set_strip_16(png);
  if (color == PNG_COLOR_TYPE_PALETTE)
    png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) {
    if (png_get_bit_depth(png, info) < 8)
      png_set_expand_gray_1_2_4_to_8(png);
    png_set_gray_to_rgb(png);
  }
  if (color & PNG_COLOR_MASK_ALPHA)
    png_set_strip_alpha(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) {
    png_set_tRNS_to_alpha(png);
    png_set_strip_alpha(png);
  }
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != (size_t)w * 3)
    png_error(png, "unsupported pixel layout");
  pixels = malloc((size_t)w * h * 3);
  rows = malloc(sizeof *rows * h);
  if (!pixels || !rows)
    png_error(png, "out of memory");
  for (png_uint_32 y = 0; y < h; y++)
    rows[y] = pixels + (size_t)y * w * 3;
  png_read_image(png, rows);
  png_read_end(png, info);
  if (text_key && text_value) {
    png_textp texts = NULL;
    int count = 0;
    png_get_text(png, info, &texts, &count);
    for (int i = 0; i < count; i++)
      if (strcmp(texts[i].key, text_key) == 0) {
        *text_value = strdup(texts[i].text);
        break;
      }
  }
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  fclose(file);
  *rgb = pixels;
  *width = (int)w;
  *height = (int)h;
  return 0;
}
