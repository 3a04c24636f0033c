/* PNG files of RGB images, with text chunks (the generation parameters). */
#ifndef SD_PNG_IMAGE_H
#define SD_PNG_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sd_png_text {
  const char *key;   /* Latin-1 keyword, 1-79 bytes, e.g. "parameters" */
  const char *value; /* UTF-8 text (written as an iTXt chunk) */
} sd_png_text;

/* Writes rgb (height, width, 3) to path atomically (a temporary file renamed into place). */
int sd_png_write_rgb(const char *path, const uint8_t *rgb, int width, int height,
                     const sd_png_text *texts, size_t n_texts);

/* Reads an 8-bit RGB or RGBA PNG (alpha dropped; grey expanded) into a malloc'ed (H, W, 3)
 * buffer. Text chunks with key `text_key` (NULL: none) are returned malloc'ed in *text_value
 * (NULL when absent). */
int sd_png_read_rgb(const char *path, uint8_t **rgb, int *width, int *height, const char *text_key,
                    char **text_value);

#endif
