/* A 5x7 bitmap font for labels on images (contact sheets): printable ASCII; other characters are
 * drawn as '?'. */
#ifndef SD_FONT5X7_H
#define SD_FONT5X7_H

#include <stdint.h>

#define SD_FONT_W       5
#define SD_FONT_H       7
#define SD_FONT_ADVANCE 6 /* pixels from one character to the next, at scale 1 */

/* Characters (code points) text would draw. */
int sd_font_text_chars(const char *text);
/* text after its first `chars` characters. */
const char *sd_font_skip(const char *text, int chars);
/* Draws at most max_chars characters of UTF-8 text into rgb (height, width, 3), top-left at
 * (x, y), each font pixel a scale x scale square; pixels outside the image are skipped. */
void sd_font_draw(uint8_t *rgb, int width, int height, int x, int y, int scale,
                  const uint8_t color[3], const char *text, int max_chars);

#endif
