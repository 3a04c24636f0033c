/* The synthetic captioned dataset of the project's own demo model (docs/shapes.md): images of
 * simple shapes in named colours, sizes and positions on plain or two-tone backgrounds, each with
 * a caption from templates ("a small red circle in the top left corner"), and the measurement
 * that tells a picture's shape and colour back (to check what a model draws).
 *
 * Item i of a dataset is a function of (seed, i) alone: any item is made on its own, in any
 * order, so a dataset of any size is streamed and never held in memory. */
#ifndef SD_SHAPES_H
#define SD_SHAPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sd_shape_kind {
  SD_SHAPE_CIRCLE = 0,
  SD_SHAPE_SQUARE,
  SD_SHAPE_TRIANGLE, /* apex up */
  SD_SHAPE_DIAMOND,  /* a square standing on a corner */
  SD_SHAPE_STAR,     /* five points, one up */
  SD_SHAPE_KINDS,
} sd_shape_kind;

/* Saturated colours of the shapes; the backgrounds are grays (sd_shape_backgrounds). */
typedef enum sd_shape_color {
  SD_COLOR_RED = 0,
  SD_COLOR_ORANGE,
  SD_COLOR_YELLOW,
  SD_COLOR_GREEN,
  SD_COLOR_CYAN,
  SD_COLOR_BLUE,
  SD_COLOR_PURPLE,
  SD_COLOR_PINK,
  SD_SHAPE_COLORS,
} sd_shape_color;

typedef enum sd_shape_size {
  SD_SIZE_SMALL = 0,
  SD_SIZE_MEDIUM,
  SD_SIZE_LARGE,
  SD_SHAPE_SIZES
} sd_shape_size;

typedef enum sd_shape_position {
  SD_POS_CENTER = 0,
  SD_POS_TOP_LEFT,
  SD_POS_TOP_RIGHT,
  SD_POS_BOTTOM_LEFT,
  SD_POS_BOTTOM_RIGHT,
  SD_SHAPE_POSITIONS,
} sd_shape_position;

/* Background grays: white, light gray, dark gray, black. */
#define SD_SHAPE_BACKGROUNDS 4

/* Longest caption, NUL included. */
#define SD_SHAPE_CAPTION_LEN 96
/* Caption templates: the first SD_SHAPE_TEMPLATES_V1 put the colour right before the shape ("a red
 * circle ..."), the shipped model's first recipe drew from them alone; the later ones name the
 * colour and the shape in other orders and words ("a circle in red", "the circle is red") so
 * that a model learns words rather than five sentences (docs/shapes.md). */
#define SD_SHAPE_TEMPLATES    15
#define SD_SHAPE_TEMPLATES_V1 5

/* One item's content. */
typedef struct sd_shape_item {
  sd_shape_kind kind;
  sd_shape_color color;
  sd_shape_size size;
  sd_shape_position position;
  int background[2];  /* top and bottom halves' grays (equal: a plain background) */
  float cx, cy;       /* centre, in fractions of the side */
  float radius;       /* circumradius, in fractions of the side */
  int template_index; /* the caption's template, < the templates drawn from */
  char caption[SD_SHAPE_CAPTION_LEN];
} sd_shape_item;

const char *sd_shape_kind_name(sd_shape_kind kind);
const char *sd_shape_color_name(sd_shape_color color);
const char *sd_shape_size_name(sd_shape_size size);
/* "center", "top left corner", ... */
const char *sd_shape_position_name(sd_shape_position position);
const char *sd_shape_background_name(int background);
/* The colours as RGB (sd_shape_color / background index -> 3 bytes). */
const uint8_t *sd_shape_color_rgb(sd_shape_color color);
const uint8_t *sd_shape_background_rgb(int background);

/* Item index of the dataset of seed: its content and caption (one of the SD_SHAPE_TEMPLATES
 * templates, chosen per item). */
void sd_shapes_item(uint64_t seed, int64_t index, sd_shape_item *out);
/* sd_shapes_item with the caption drawn from the first `templates` templates (1 ..
 * SD_SHAPE_TEMPLATES); the picture does not depend on it (SD_SHAPE_TEMPLATES_V1: the captions of
 * the first demo recipe). */
void sd_shapes_item_from(uint64_t seed, int64_t index, int templates, sd_shape_item *out);
/* Draws item into rgb (side, side, 3), anti-aliased (4 x 4 samples a pixel). side >= 16. */
void sd_shapes_draw(const sd_shape_item *item, int side, uint8_t *rgb);

/* What sd_shapes_measure sees in a picture. */
typedef struct sd_shape_measure {
  bool found;           /* false: no saturated shape (fewer than 1/400 of the pixels) */
  sd_shape_kind kind;   /* the shape its outline says */
  sd_shape_color color; /* the palette colour nearest to its mean colour */
  double area;          /* of the shape's pixels, in fractions of the image */
  double fill;          /* area / bounding box */
  double row_solidity;  /* area / the rows' spans (1 for shapes without notches) */
  double top_share;     /* share of the area in the upper half of the bounding box */
  double cx, cy;        /* the centre of the shape's pixels, in fractions of width and height */
} sd_shape_measure;

/* Finds the shape in rgb (height, width, 3): the saturated pixels (the backgrounds are gray),
 * their colour and the outline features that tell the kinds apart (fill of the bounding box,
 * notches across rows, mass above and below the middle). For checking what a model draws from a
 * prompt: it looks at pixels only, never at how the picture was made. */
void sd_shapes_measure(const uint8_t *rgb, int width, int height, sd_shape_measure *out);

#endif
