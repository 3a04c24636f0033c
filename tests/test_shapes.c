/* The shapes dataset (worker/data/shapes.h): items are a function of (seed, index) alone, their
 * captions name what is drawn (never in test_demo_semantic's unseen phrasings; the first recipe's
 * five templates unchanged), every kind, colour, size and template occurs, and the
 * measurement, which sees pixels only, tells the generator's shape and colour back (>= 99 % of
 * 2,000 items at 64 and at 128 pixels; the misses are printed). */
#include "test_util.h"

#include "data/shapes.h"

#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

static void test_items(void) {
  sd_shape_item a, b;
  int kinds[SD_SHAPE_KINDS] = {0}, colors[SD_SHAPE_COLORS] = {0}, sizes[SD_SHAPE_SIZES] = {0};
  int templates[SD_SHAPE_TEMPLATES] = {0}, two_tone = 0, bad_caption = 0, differ = 0;
  int held_out = 0;
  enum { N = 6000 };
  for (int64_t i = 0; i < N; i++) {
    sd_shapes_item(7, i, &a);
    sd_shapes_item(7, i, &b);
    CHECK(memcmp(&a, &b, sizeof a) == 0 || i > 0, "item %lld is a function of (seed, index)",
          (long long)i);
    if (memcmp(&a, &b, sizeof a) != 0)
      bad_caption++;
    sd_shapes_item(8, i, &b);
    differ += memcmp(&a, &b, sizeof a) != 0;
    kinds[a.kind]++;
    colors[a.color]++;
    sizes[a.size]++;
    two_tone += a.background[0] != a.background[1];
    if (a.template_index < 0 || a.template_index >= SD_SHAPE_TEMPLATES) {
      bad_caption++;
      continue;
    }
    templates[a.template_index]++;
    const char *c = a.caption, *color = sd_shape_color_name(a.color);
    bad_caption += !strstr(c, sd_shape_kind_name(a.kind)) || !strstr(c, color);
    bad_caption += strstr(c, "a orange") != NULL; /* "an orange" */
    if (strstr(c, " in the ") && !strstr(c, sd_shape_position_name(a.position)))
      bad_caption++;
    if ((strstr(c, "small") || strstr(c, "medium") || strstr(c, "large")) &&
        !strstr(c, sd_shape_size_name(a.size)))
      bad_caption++;
    if (a.size == SD_SIZE_LARGE && a.position != SD_POS_CENTER)
      bad_caption++;
    /* test_demo_semantic's unseen phrasings are never a caption */
    char unseen[2][64];
    snprintf(unseen[0], sizeof unseen[0], "%s %s", color, sd_shape_kind_name(a.kind));
    snprintf(unseen[1], sizeof unseen[1], "%s %s, %s", strchr("aeiou", color[0]) ? "an" : "a",
             sd_shape_kind_name(a.kind), color);
    held_out += strcmp(c, unseen[0]) == 0 || strcmp(c, unseen[1]) == 0;
    /* the first recipe's captions: the same item drawn from the first five templates */
    sd_shapes_item_from(7, i, SD_SHAPE_TEMPLATES_V1, &b);
    if (b.kind != a.kind || b.color != a.color || b.cx != a.cx || b.radius != a.radius ||
        b.template_index >= SD_SHAPE_TEMPLATES_V1)
      bad_caption++;
  }
  CHECK(held_out == 0, "%d captions are test_demo_semantic's unseen phrasings", held_out);
  /* captions of the shipped model's recipe (seed 1), as the binary that trained it wrote them */
  static const char *const v1[3] = {"a purple star",
                                    "a yellow star in the center on a white background",
                                    "a green star on a black background"};
  for (int i = 0; i < 3; i++) {
    sd_shapes_item_from(1, i, SD_SHAPE_TEMPLATES_V1, &a);
    CHECK(strcmp(a.caption, v1[i]) == 0, "seed 1 item %d's first-recipe caption: '%s', want '%s'",
          i, a.caption, v1[i]);
  }
  CHECK(bad_caption == 0, "%d items whose caption does not name their colour, shape, size or place",
        bad_caption);
  CHECK(differ > N * 9 / 10, "another seed gives other items (%d of %d differ)", differ, N);
  for (int k = 0; k < SD_SHAPE_KINDS; k++)
    CHECK(kinds[k] > N / SD_SHAPE_KINDS * 8 / 10, "%s: %d items", sd_shape_kind_name(k), kinds[k]);
  for (int k = 0; k < SD_SHAPE_COLORS; k++)
    CHECK(colors[k] > N / SD_SHAPE_COLORS * 8 / 10, "%s: %d items", sd_shape_color_name(k),
          colors[k]);
  for (int k = 0; k < SD_SHAPE_SIZES; k++)
    CHECK(sizes[k] > N / SD_SHAPE_SIZES * 8 / 10, "%s: %d items", sd_shape_size_name(k), sizes[k]);
  for (int k = 0; k < SD_SHAPE_TEMPLATES; k++)
    CHECK(templates[k] > N / SD_SHAPE_TEMPLATES * 7 / 10, "caption template %d: %d items", k,
          templates[k]);
  CHECK(two_tone > N / 6 && two_tone < N / 2, "two-tone backgrounds: %d of %d", two_tone, N);
  sd_shapes_item(7, 123, &a);
  printf("item 123 of seed 7: %s\n", a.caption);
}

/* The measurement against the generator's labels. */
static void test_measure(int side) {
  enum { N = 2000 };
  uint8_t *rgb = malloc((size_t)side * side * 3), *again = malloc((size_t)side * side * 3);
  int kind_ok = 0, color_ok = 0, found = 0, shown = 0;
  int confusion[SD_SHAPE_KINDS][SD_SHAPE_KINDS] = {{0}};
  for (int64_t i = 0; i < N; i++) {
    sd_shape_item it;
    sd_shapes_item(11, i, &it);
    sd_shapes_draw(&it, side, rgb);
    sd_shapes_draw(&it, side, again);
    CHECK(memcmp(rgb, again, (size_t)side * side * 3) == 0 || i > 0, "drawing is deterministic");
    sd_shape_measure m;
    sd_shapes_measure(rgb, side, side, &m);
    found += m.found;
    if (!m.found)
      continue;
    kind_ok += m.kind == it.kind;
    color_ok += m.color == it.color;
    confusion[it.kind][m.kind]++;
    if ((m.kind != it.kind || m.color != it.color) && shown++ < 8)
      printf("  %d px, item %lld '%s': measured %s %s (fill %.3f, row solidity %.3f, top %.3f)\n",
             side, (long long)i, it.caption, sd_shape_color_name(m.color),
             sd_shape_kind_name(m.kind), m.fill, m.row_solidity, m.top_share);
  }
  printf("%d px: %d of %d found, shape right %d, colour right %d\n", side, found, N, kind_ok,
         color_ok);
  for (int k = 0; k < SD_SHAPE_KINDS; k++) {
    printf("  %-8s ->", sd_shape_kind_name(k));
    for (int j = 0; j < SD_SHAPE_KINDS; j++)
      printf(" %5d", confusion[k][j]);
    printf("\n");
  }
  CHECK(found == N, "%d px: every shape found (%d of %d)", side, found, N);
  CHECK(kind_ok >= N * 99 / 100, "%d px: shape told back for %d of %d (>= 99 %%)", side, kind_ok,
        N);
  CHECK(color_ok >= N * 99 / 100, "%d px: colour told back for %d of %d (>= 99 %%)", side, color_ok,
        N);

  /* a gray picture has no shape */
  for (size_t k = 0; k < (size_t)side * side * 3; k++)
    rgb[k] = (uint8_t)(k / 3 % 200);
  sd_shape_measure m;
  sd_shapes_measure(rgb, side, side, &m);
  CHECK(!m.found, "%d px: a gray picture has no shape", side);
  free(rgb);
  free(again);
}

/* A model's stray specks (stretches of the shape's colour along the border, a dot in a corner,
 * each smaller than the smallest shape) are not the shape: the measure keeps the largest
 * connected set, so each item measures as its clean picture does; and a frame alone is one
 * connected outline. */
static void test_measure_ignores_specks(void) {
  enum { SIDE = 64, N = 200 };
  uint8_t rgb[SIDE * SIDE * 3];
  int same = 0;
  for (int64_t i = 0; i < N; i++) {
    sd_shape_item it;
    sd_shapes_item(11, i, &it);
    sd_shapes_draw(&it, SIDE, rgb);
    sd_shape_measure clean, specked;
    sd_shapes_measure(rgb, SIDE, SIDE, &clean);
    const uint8_t *c = sd_shape_color_rgb(it.color);
    for (int k = 24; k < 40; k++) { /* 16 px of the top row and of the right column */
      memcpy(rgb + 3 * k, c, 3);
      memcpy(rgb + 3 * (k * SIDE + SIDE - 1), c, 3);
    }
    memcpy(rgb + 3 * ((SIDE - 1) * SIDE), c, 3); /* a dot in the bottom left corner */
    sd_shapes_measure(rgb, SIDE, SIDE, &specked);
    same += clean.found && specked.found && clean.kind == specked.kind &&
            clean.color == specked.color && clean.fill == specked.fill && clean.cx == specked.cx &&
            clean.cy == specked.cy;
  }
  CHECK(same == N, "specks along the border leave the measure unchanged (%d of %d)", same, N);

  /* the frame alone: 127 pixels of a 64 x 64 box, fill 0.03 */
  memset(rgb, 128, sizeof rgb);
  const uint8_t *red = sd_shape_color_rgb(SD_COLOR_RED);
  for (int k = 0; k < SIDE; k++) {
    memcpy(rgb + 3 * k, red, 3);
    memcpy(rgb + 3 * (k * SIDE + SIDE - 1), red, 3);
  }
  sd_shape_measure m;
  sd_shapes_measure(rgb, SIDE, SIDE, &m);
  CHECK(m.found && m.color == SD_COLOR_RED && fabs(m.fill - 127.0 / 4096.0) < 1e-12,
        "a frame alone is found as one outline of fill %.4f (127 / 4096)", m.fill);
}

int main(void) {
  test_items();
  test_measure_ignores_specks();
  test_measure(64);
  test_measure(128);
  return sd_test_finish();
}
