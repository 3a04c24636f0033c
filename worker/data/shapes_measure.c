/* Telling a picture's shape and colour back from its pixels (sd_shapes_measure in shapes.h).
 *
 * The backgrounds are grays and the shapes saturated, and a pixel that mixes a shape colour with
 * a gray (anti-aliasing, or a model's soft edge) keeps that share of its saturation (max - min of
 * the channels). So the shape is the largest connected set of pixels with at least half of its
 * colour's saturation (stray specks elsewhere, such as a model's tinted frame, are left out), and
 * its colour the palette colour nearest to the mean of its most saturated pixels. The kinds then
 * differ in three outline features:
 *   kind      fill of the bounding box   notches across rows   area in the upper half
 *   square    1                          no                    1/2
 *   circle    pi / 4 = 0.79              no                    1/2
 *   diamond   1/2                        no                    1/2
 *   triangle  1/2                        no                    1/4 (apex up)
 *   star      0.38                       yes (between the legs) about 0.45 */
#include "shapes.h"

#include <stdlib.h>
#include <string.h>

static int saturation(const uint8_t *p) {
  int hi = p[0], lo = p[0];
  for (int c = 1; c < 3; c++) {
    hi = p[c] > hi ? p[c] : hi;
    lo = p[c] < lo ? p[c] : lo;
  }
  return hi - lo;
}

/* The palette colour nearest (RGB distance) to the mean of the pixels of at least 90 % of the
 * highest saturation in the picture; -1 when no pixel reaches `least`. */
static int shape_color(const uint8_t *rgb, size_t n, int least) {
  int top = 0;
  for (size_t i = 0; i < n; i++) {
    int s = saturation(rgb + 3 * i);
    top = s > top ? s : top;
  }
  if (top < least)
    return -1;
  double sum[3] = {0, 0, 0};
  size_t count = 0;
  for (size_t i = 0; i < n; i++)
    if (10 * saturation(rgb + 3 * i) >= 9 * top) {
      for (int c = 0; c < 3; c++)
        sum[c] += rgb[3 * i + c];
      count++;
    }
  int best = 0;
  double best_d = 1e30;
  for (int k = 0; k < SD_SHAPE_COLORS; k++) {
    const uint8_t *q = sd_shape_color_rgb((sd_shape_color)k);
    double d = 0;
    for (int c = 0; c < 3; c++) {
      double e = sum[c] / (double)count - q[c];
      d += e * e;
    }
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  return best;
}

static sd_shape_kind classify(double fill, double row_solidity, double top_share) {
  if (fill > 0.9)
    return SD_SHAPE_SQUARE;
  if (fill > 0.65)
    return SD_SHAPE_CIRCLE;
  if (top_share < 0.38) /* before the notches: a soft-edged triangle's rows may notch */
    return SD_SHAPE_TRIANGLE;
  if (fill < 0.44 || row_solidity < 0.965)
    return SD_SHAPE_STAR;
  return SD_SHAPE_DIAMOND;
}

/* Labels id on the 8-connected set of mask's pixels that holds seed (label 0: not yet labelled);
 * returns its size. stack holds up to n pixel indices. */
static size_t flood(const uint8_t *mask, int width, int height, size_t seed, int32_t id,
                    int32_t *label, int32_t *stack) {
  size_t top = 0, size = 0;
  stack[top++] = (int32_t)seed;
  label[seed] = id;
  while (top) {
    int32_t i = stack[--top];
    size++;
    int x = i % width, y = i / width;
    for (int dy = -1; dy <= 1; dy++)
      for (int dx = -1; dx <= 1; dx++) {
        int u = x + dx, v = y + dy;
        if (u < 0 || v < 0 || u >= width || v >= height)
          continue;
        size_t j = (size_t)v * (size_t)width + (size_t)u;
        if (mask[j] && !label[j]) {
          label[j] = id;
          stack[top++] = (int32_t)j;
        }
      }
  }
  return size;
}

/* Marks in keep (n bytes) the largest 8-connected set of mask's pixels (the first found in
 * raster order among equals); returns its size (0 when mask is empty, or when the work lists
 * cannot be allocated). */
static size_t largest_component(const uint8_t *mask, int width, int height, uint8_t *keep) {
  size_t n = (size_t)width * (size_t)height, best = 0;
  int32_t *label = calloc(n, sizeof *label), *stack = malloc(n * sizeof *stack);
  int32_t id = 0, best_id = 0;
  if (label && stack)
    for (size_t seed = 0; seed < n; seed++)
      if (mask[seed] && !label[seed]) {
        size_t size = flood(mask, width, height, seed, ++id, label, stack);
        if (size > best) {
          best = size;
          best_id = id;
        }
      }
  for (size_t i = 0; i < n; i++)
    keep[i] = best && label[i] == best_id;
  free(label);
  free(stack);
  return best;
}

void sd_shapes_measure(const uint8_t *rgb, int width, int height, sd_shape_measure *out) {
  memset(out, 0, sizeof *out);
  size_t n = (size_t)width * (size_t)height;
  int color = shape_color(rgb, n, 60);
  if (color < 0)
    return;
  /* the shape: the largest connected set of pixels with at least half of its colour's
   * saturation (a model's stray specks, such as a tinted frame along the border, are not part of
   * what it drew) */
  int half = (saturation(sd_shape_color_rgb((sd_shape_color)color)) + 1) / 2;
  uint8_t *mask = malloc(2 * n);
  if (!mask)
    return;
  uint8_t *shape = mask + n;
  for (size_t i = 0; i < n; i++)
    mask[i] = saturation(rgb + 3 * i) >= half;
  size_t area = largest_component(mask, width, height, shape);
  if (area == 0 || area * 400 < n) {
    free(mask);
    return;
  }
  int x0 = width, x1 = -1, y0 = height, y1 = -1;
  size_t spans = 0;
  double sum_x = 0, sum_y = 0;
  for (int y = 0; y < height; y++) {
    int first = -1, last = -1;
    for (int x = 0; x < width; x++)
      if (shape[(size_t)y * (size_t)width + (size_t)x]) {
        if (first < 0)
          first = x;
        last = x;
        sum_x += x + 0.5;
        sum_y += y + 0.5;
      }
    if (first < 0)
      continue;
    spans += (size_t)(last - first + 1);
    x0 = first < x0 ? first : x0;
    x1 = last > x1 ? last : x1;
    y0 = y < y0 ? y : y0;
    y1 = y;
  }
  /* the upper half of the bounding box (a middle row counted half) */
  double middle = 0.5 * (y0 + y1), upper = 0;
  for (int y = y0; y <= y1; y++) {
    size_t row = 0;
    for (int x = x0; x <= x1; x++)
      row += shape[(size_t)y * (size_t)width + (size_t)x];
    upper += y < middle ? (double)row : y == middle ? 0.5 * (double)row : 0.0;
  }
  free(mask);
  out->found = true;
  out->color = (sd_shape_color)color;
  out->area = (double)area / (double)n;
  out->fill = (double)area / ((double)(x1 - x0 + 1) * (double)(y1 - y0 + 1));
  out->row_solidity = (double)area / (double)spans;
  out->top_share = upper / (double)area;
  out->cx = sum_x / (double)area / width;
  out->cy = sum_y / (double)area / height;
  out->kind = classify(out->fill, out->row_solidity, out->top_share);
}
