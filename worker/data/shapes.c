/* The shapes dataset's items and their drawing (shapes.h). */
#include "shapes.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const kind_names[SD_SHAPE_KINDS] = {"circle", "square", "triangle", "diamond",
                                                       "star"};
static const char *const color_names[SD_SHAPE_COLORS] = {"red",  "orange", "yellow", "green",
                                                         "cyan", "blue",   "purple", "pink"};
static const uint8_t color_rgb[SD_SHAPE_COLORS][3] = {
    {220, 30, 30},  {245, 130, 20}, {240, 215, 30}, {30, 160, 50},
    {30, 200, 215}, {35, 70, 220},  {135, 50, 185}, {240, 110, 180},
};
static const char *const size_names[SD_SHAPE_SIZES] = {"small", "medium", "large"};
static const char *const position_names[SD_SHAPE_POSITIONS] = {
    "center", "top left corner", "top right corner", "bottom left corner", "bottom right corner"};
static const char *const background_names[SD_SHAPE_BACKGROUNDS] = {"white", "light gray",
                                                                   "dark gray", "black"};
static const uint8_t background_rgb[SD_SHAPE_BACKGROUNDS][3] = {
    {250, 250, 250}, {190, 190, 190}, {70, 70, 70}, {10, 10, 10}};

/* Circumradius of each size, in fractions of the side. Small was 0.13 and medium 0.2 until
 * 2026-12-05: a small shape 17 pixels across at 64 x 64 is 4 x 4 cells of the demo model's
 * latent, where its VAE brought small squares and stars back as discs (docs/demo-model.md). A
 * medium shape in a corner (centre 0.27 in, +-0.02) still clears the border: 0.22 x 1.08 < 0.25. */
static const float size_radius[SD_SHAPE_SIZES] = {0.17f, 0.22f, 0.3f};

const char *sd_shape_kind_name(sd_shape_kind kind) {
  return kind >= 0 && kind < SD_SHAPE_KINDS ? kind_names[kind] : "?";
}
const char *sd_shape_color_name(sd_shape_color color) {
  return color >= 0 && color < SD_SHAPE_COLORS ? color_names[color] : "?";
}
const char *sd_shape_size_name(sd_shape_size size) {
  return size >= 0 && size < SD_SHAPE_SIZES ? size_names[size] : "?";
}
const char *sd_shape_position_name(sd_shape_position position) {
  return position >= 0 && position < SD_SHAPE_POSITIONS ? position_names[position] : "?";
}
const char *sd_shape_background_name(int background) {
  return background >= 0 && background < SD_SHAPE_BACKGROUNDS ? background_names[background] : "?";
}
const uint8_t *sd_shape_color_rgb(sd_shape_color color) {
  return color_rgb[color >= 0 && color < SD_SHAPE_COLORS ? color : 0];
}
const uint8_t *sd_shape_background_rgb(int background) {
  return background_rgb[background >= 0 && background < SD_SHAPE_BACKGROUNDS ? background : 0];
}

/* splitmix64: the item's stream of draws, seeded by (seed, index) alone. */
static uint64_t next_u64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static int draw_below(uint64_t *state, int n) {
  return (int)(next_u64(state) % (uint64_t)n);
}

/* A uniform float in [0, 1). */
static float draw_unit(uint64_t *state) {
  return (float)(next_u64(state) >> 40) / (float)(1 << 24);
}

/* "a" or "an" before word. */
static const char *article(const char *word) {
  return strchr("aeiou", word[0]) ? "an" : "a";
}

static void make_caption(const sd_shape_item *it, int template_index, int templates, char *out) {
  const char *shape = kind_names[it->kind], *color = color_names[it->color];
  const char *size = size_names[it->size], *where = position_names[it->position];
  char background[48];
  if (it->background[0] == it->background[1])
    snprintf(background, sizeof background, "%s", background_names[it->background[0]]);
  else
    snprintf(background, sizeof background, "%s and %s", background_names[it->background[0]],
             background_names[it->background[1]]);
  const char *a = article(color);
  switch (template_index) {
  case 0:
    snprintf(out, SD_SHAPE_CAPTION_LEN, "%s %s %s", a, color, shape);
    break;
  case 1:
    snprintf(out, SD_SHAPE_CAPTION_LEN, "%s %s %s on a %s background", a, color, shape, background);
    break;
  case 2:
    snprintf(out, SD_SHAPE_CAPTION_LEN, "a %s %s %s", size, color, shape);
    break;
  case 3:
    snprintf(out, SD_SHAPE_CAPTION_LEN, "a %s %s %s in the %s", size, color, shape, where);
    break;
  case 4:
    /* the first recipe wrote "a orange ..." here: kept for its captions, fixed for the others */
    snprintf(out, SD_SHAPE_CAPTION_LEN, "%s %s %s in the %s on a %s background",
             templates == SD_SHAPE_TEMPLATES_V1 ? "a" : a, color, shape, where, background);
    break;
  /* other orders and words (the test's unseen phrasings, "red circle" and "a circle, red", are
   * none of them: tests/test_shapes.c) */
  case 5:
    snprintf(out, SD_SHAPE_CAPTION_LEN, "a %s in %s", shape, color);
    break;
  case 6:
    snprintf(out, SD_SHAPE_CAPTION_LEN, "a %s %s in %s", size, shape, color);
    break;
  case 7:
    snprintf(out, SD_SHAPE_CAPTION_LEN, "the %s is %s", shape, color);
    break;
  case 8:
    snprintf(out, SD_SHAPE_CAPTION_LEN, "a %s coloured %s on a %s background", shape, color,
             background);
    break;
  case 9:
    snprintf(out, SD_SHAPE_CAPTION_LEN, "in the %s: %s %s %s", where, a, color, shape);
    break;
  case 10:
    snprintf(out, SD_SHAPE_CAPTION_LEN, "on a %s background, a %s %s %s", background, size, color,
             shape);
    break;
  case 11:
    snprintf(out, SD_SHAPE_CAPTION_LEN, "a picture of %s %s %s", a, color, shape);
    break;
  case 12:
    snprintf(out, SD_SHAPE_CAPTION_LEN, "a %s background with %s %s %s", background, a, color,
             shape);
    break;
  case 13:
    snprintf(out, SD_SHAPE_CAPTION_LEN, "the %s shape is a %s", color, shape);
    break;
  default:
    snprintf(out, SD_SHAPE_CAPTION_LEN, "a %s %s, in %s, in the %s", size, shape, color, where);
    break;
  }
}

void sd_shapes_item_from(uint64_t seed, int64_t index, int templates, sd_shape_item *out) {
  uint64_t state = seed ^ ((uint64_t)index * 0xD1B54A32D192ED03ull);
  next_u64(&state);
  memset(out, 0, sizeof *out);
  out->kind = (sd_shape_kind)draw_below(&state, SD_SHAPE_KINDS);
  out->color = (sd_shape_color)draw_below(&state, SD_SHAPE_COLORS);
  out->size = (sd_shape_size)draw_below(&state, SD_SHAPE_SIZES);
  /* a large shape fills the middle: it has no corner to sit in */
  out->position = out->size == SD_SIZE_LARGE
                      ? SD_POS_CENTER
                      : (sd_shape_position)draw_below(&state, SD_SHAPE_POSITIONS);
  out->background[0] = draw_below(&state, SD_SHAPE_BACKGROUNDS);
  out->background[1] =
      draw_below(&state, 3) == 0 ? draw_below(&state, SD_SHAPE_BACKGROUNDS) : out->background[0];
  out->radius = size_radius[out->size] * (0.92f + 0.16f * draw_unit(&state));
  /* corners: the centre a quarter in from the sides; some jitter everywhere */
  static const float anchor[SD_SHAPE_POSITIONS][2] = {
      {0.5f, 0.5f}, {0.27f, 0.27f}, {0.73f, 0.27f}, {0.27f, 0.73f}, {0.73f, 0.73f}};
  out->cx = anchor[out->position][0] + 0.04f * (draw_unit(&state) - 0.5f);
  out->cy = anchor[out->position][1] + 0.04f * (draw_unit(&state) - 0.5f);
  if (templates < 1 || templates > SD_SHAPE_TEMPLATES)
    templates = SD_SHAPE_TEMPLATES;
  out->template_index = draw_below(&state, templates);
  make_caption(out, out->template_index, templates, out->caption);
}

void sd_shapes_item(uint64_t seed, int64_t index, sd_shape_item *out) {
  sd_shapes_item_from(seed, index, SD_SHAPE_TEMPLATES, out);
}

/* The star's ten vertices (outer, inner alternately; one point up), relative to the centre. */
static void star_vertices(float r, float xs[10], float ys[10]) {
  const float pi = 3.14159265358979f;
  for (int k = 0; k < 10; k++) {
    float a = -pi / 2 + (float)k * pi / 5;
    float rr = k % 2 ? 0.45f * r : r;
    xs[k] = rr * cosf(a);
    ys[k] = rr * sinf(a);
  }
}

/* Even-odd test of (x, y) against the polygon. */
static bool in_polygon(const float *xs, const float *ys, int n, float x, float y) {
  bool inside = false;
  for (int i = 0, j = n - 1; i < n; j = i++)
    if ((ys[i] > y) != (ys[j] > y) && x < (xs[j] - xs[i]) * (y - ys[i]) / (ys[j] - ys[i]) + xs[i])
      inside = !inside;
  return inside;
}

/* Whether (dx, dy), relative to the centre, is inside the shape of circumradius r. */
static bool inside_shape(sd_shape_kind kind, float r, const float *sx, const float *sy, float dx,
                         float dy) {
  switch (kind) {
  case SD_SHAPE_CIRCLE:
    return dx * dx + dy * dy <= r * r;
  case SD_SHAPE_SQUARE:
    return fabsf(dx) <= 0.75f * r && fabsf(dy) <= 0.75f * r;
  case SD_SHAPE_DIAMOND:
    return fabsf(dx) + fabsf(dy) <= r;
  case SD_SHAPE_TRIANGLE: {
    /* equilateral, circumradius r, apex up: below the two upper edges, above the base */
    const float sqrt3 = 1.7320508f;
    return dy <= 0.5f * r && sqrt3 * dx - dy <= r && -sqrt3 * dx - dy <= r;
  }
  case SD_SHAPE_STAR:
    return in_polygon(sx, sy, 10, dx, dy);
  default:
    return false;
  }
}

void sd_shapes_draw(const sd_shape_item *item, int side, uint8_t *rgb) {
  enum { SAMPLES = 4 };
  float r = item->radius * (float)side, cx = item->cx * (float)side, cy = item->cy * (float)side;
  float sx[10], sy[10];
  star_vertices(r, sx, sy);
  const uint8_t *fg = color_rgb[item->color];
  for (int y = 0; y < side; y++) {
    const uint8_t *bg = background_rgb[item->background[2 * y < side ? 0 : 1]];
    for (int x = 0; x < side; x++) {
      int hits = 0;
      for (int j = 0; j < SAMPLES; j++)
        for (int i = 0; i < SAMPLES; i++) {
          float px = (float)x + ((float)i + 0.5f) / SAMPLES,
                py = (float)y + ((float)j + 0.5f) / SAMPLES;
          hits += inside_shape(item->kind, r, sx, sy, px - cx, py - cy);
        }
      uint8_t *p = rgb + ((size_t)y * (size_t)side + (size_t)x) * 3;
      for (int c = 0; c < 3; c++)
        p[c] =
            (uint8_t)((fg[c] * hits + bg[c] * (SAMPLES * SAMPLES - hits) + SAMPLES * SAMPLES / 2) /
                      (SAMPLES * SAMPLES));
    }
  }
}
