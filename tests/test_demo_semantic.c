/* The demo model draws what the prompt says (docs/demo-model.md, "Proof"): renders of the shapes
 * model are measured with sd_shapes_measure (pixels only: the dominant saturated colour, the
 * outline's features), never compared with a stored picture.
 *  1. text-to-image, every colour x shape of the dataset, `seeds` seeds each, in a trained phrasing
 *     ("a red circle") and in two it never saw ("red circle", "a circle, red"): at least 90 % of
 *     each set show the prompt's shape in the prompt's colour at the given guidance;
 *  2. the prompt and guidance matter: the empty prompt's renders (the unconditional branch alone)
 *     show a given colour x shape in at most 10 % of the cases (chance is 1 in 40), and the
 *     trained phrasing's rate at guidance 1 (the conditional branch alone) is at least 10 points
 *     below the rate at the given guidance;
 *  3. inpainting (the 4-channel blending path) of a shape's square with "a green triangle" gives
 *     a green triangle there in at least 75 % of the cases;
 *  4. img2img at strength 0.5 with the picture's own caption keeps the layout: the shape's colour,
 *     and its centre within a tenth of the side, in at least 90 % of the cases.
 * Usage: test_demo_semantic MODEL_DIR [SEEDS [STEPS [GUIDANCE [all]]]] (defaults 2, 25, 7.5).
 * Every part is measured and printed; the bars of 1, 2 and 4 are checked, and with `all`
 * inpainting's too, which the shipped model does not reach yet (issue 13; docs/demo-model.md).
 * Skipped (77) when MODEL_DIR does not exist (the model ships in models/shapes-demo). */
#include "test_util.h"

#include "data/shapes.h"
#include "image/image.h"
#include "pipeline/engine.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SIDE 64

typedef struct tally {
  int hits, total;
} tally;

static double rate(tally t) {
  return t.total ? (double)t.hits / t.total : 0.0;
}

static sd_engine *engine;
static sd_txt2img_batch batch;
static int seeds = 2;
static float guidance = 7.5f; /* of every guided render */

#define CHUNK 20 /* pictures a sd_txt2img call */

/* Renders every colour x shape in phrasing (a printf format of colour, then shape) for seeds
 * 0..seeds-1 at guidance; counts the pictures that show the shape in the colour, and marks each
 * ('+' right, 'c' wrong colour, 's' wrong shape, '.' no shape) in marks[colour][shape][seed]. */
static int count_txt2img(const char *phrasing, float guidance, tally *t,
                         char marks[SD_SHAPE_COLORS][SD_SHAPE_KINDS][17]) {
  const int n = SD_SHAPE_COLORS * SD_SHAPE_KINDS * seeds;
  char(*prompts)[96] = malloc((size_t)n * sizeof *prompts);
  sd_txt2img_item *items = malloc((size_t)n * sizeof *items);
  sd_txt2img_result results[CHUNK];
  if (!prompts || !items) {
    free(prompts);
    free(items);
    fprintf(stderr, "out of memory\n");
    return -1;
  }
  for (int i = 0; i < n; i++) {
    int c = i / (SD_SHAPE_KINDS * seeds), k = i / seeds % SD_SHAPE_KINDS;
    snprintf(prompts[i], sizeof prompts[i], phrasing, sd_shape_color_name((sd_shape_color)c),
             sd_shape_kind_name((sd_shape_kind)k));
    items[i] = (sd_txt2img_item){prompts[i], "", (uint64_t)(i % seeds), guidance};
  }
  int rc = 0;
  for (int first = 0; rc == 0 && first < n; first += CHUNK) {
    int count = n - first < CHUNK ? n - first : CHUNK;
    rc = sd_txt2img(engine, &batch, items + first, count, NULL, NULL, results);
    for (int j = 0; rc == 0 && j < count; j++) {
      int i = first + j, c = i / (SD_SHAPE_KINDS * seeds), k = i / seeds % SD_SHAPE_KINDS;
      sd_shape_measure m;
      sd_shapes_measure(results[j].rgb, SIDE, SIDE, &m);
      bool hit = m.found && m.kind == (sd_shape_kind)k && m.color == (sd_shape_color)c;
      t->hits += hit;
      t->total++;
      marks[c][k][i % seeds] = hit                            ? '+'
                               : !m.found                     ? '.'
                               : m.color != (sd_shape_color)c ? 'c'
                                                              : 's';
      marks[c][k][seeds] = 0;
      sd_txt2img_result_free(&results[j]);
    }
  }
  free(prompts);
  free(items);
  return rc;
}

static void draw_picture(sd_shape_kind kind, sd_shape_color color, float cx, float cy,
                         int background, sd_image *out) {
  sd_shape_item item = {.kind = kind,
                        .color = color,
                        .size = SD_SIZE_LARGE,
                        .position = SD_POS_CENTER,
                        .background = {background, background},
                        .cx = cx,
                        .cy = cy,
                        .radius = 0.22f};
  out->width = out->height = SIDE;
  out->channels = 3;
  out->data = malloc(3 * SIDE * SIDE);
  sd_shapes_draw(&item, SIDE, out->data);
}

/* White inside the square of side 2 half around (cx, cy) (fractions of the side). */
static void square_mask(float cx, float cy, float half, sd_image *out) {
  out->width = out->height = SIDE;
  out->channels = 3;
  out->data = calloc(3 * SIDE * SIDE, 1);
  for (int y = 0; y < SIDE; y++)
    for (int x = 0; x < SIDE; x++) {
      float u = (x + 0.5f) / SIDE - cx, v = (y + 0.5f) / SIDE - cy;
      if (u >= -half && u <= half && v >= -half && v <= half)
        memset(out->data + 3 * (y * SIDE + x), 255, 3);
    }
}

static int render_image(sd_pipeline_kind kind, float strength, const char *prompt,
                        const sd_image *init, const sd_image *mask, uint64_t seed,
                        sd_shape_measure *m) {
  sd_image_cond cond = {.init_image = init, .mask = mask};
  sd_image_params image = {.kind = kind, .strength = strength, .conds = &cond};
  sd_txt2img_item item = {prompt, "", seed, guidance};
  sd_txt2img_result result;
  if (sd_render(engine, &batch, &image, &item, 1, NULL, NULL, &result) < 0)
    return -1;
  sd_shapes_measure(result.rgb, SIDE, SIDE, m);
  sd_txt2img_result_free(&result);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL_DIR [SEEDS [STEPS]]\n", argv[0]);
    return 2;
  }
  struct stat st;
  if (stat(argv[1], &st) != 0) {
    printf("test_demo_semantic: skipped: %s does not exist\n", argv[1]);
    return 77;
  }
  seeds = argc > 2 ? atoi(argv[2]) : 2;
  int steps = argc > 3 ? atoi(argv[3]) : 25;
  guidance = argc > 4 ? (float)atof(argv[4]) : 7.5f;
  bool check_all = argc > 5 && strcmp(argv[5], "all") == 0;
  if (seeds < 1 || seeds > 16 || steps < 1 || !(guidance > 1.0f && guidance <= 30.0f) ||
      (argc > 5 && !check_all)) {
    fprintf(stderr, "SEEDS in 1..16, STEPS >= 1, GUIDANCE in (1, 30], then only 'all'\n");
    return 2;
  }
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.model_path = argv[1];
  params.device = "cpu";
  if (sd_engine_open(&params, &engine) < 0) {
    fprintf(stderr, "test_demo_semantic: %s\n", sd_error_message());
    return 1;
  }
  batch = (sd_txt2img_batch){.width = SIDE,
                             .height = SIDE,
                             .steps = steps,
                             .scheduler = sd_engine_default_scheduler(engine),
                             .rng = SD_RNG_CPU};

  /* 1 and 2: text-to-image */
  static const char *const phrasings[3] = {"a %s %s", "%s %s", "a %2$s, %1$s"};
  static const char *const phrasing_names[3] = {"trained 'a red circle'", "unseen 'red circle'",
                                                "unseen 'a circle, red'"};
  tally sets[3] = {{0}}, unguided = {0}, empty = {0};
  static char marks[5][SD_SHAPE_COLORS][SD_SHAPE_KINDS][17];
  for (int p = 0; p < 3; p++)
    if (count_txt2img(phrasings[p], guidance, &sets[p], marks[p]) < 0)
      goto fail;
  if (count_txt2img(phrasings[0], 1.0f, &unguided, marks[3]) < 0)
    goto fail;
  /* the empty prompt, counted against each colour x shape ("%.0s" prints nothing) */
  if (count_txt2img("%.0s%.0s", guidance, &empty, marks[4]) < 0)
    goto fail;
  printf("colour x shape: marks per seed at guidance %g for the three phrasings, then the\n"
         "trained one at guidance 1, then the empty prompt (+ right, c wrong colour, s wrong\n"
         "shape, . no shape)\n",
         guidance);
  for (int c = 0; c < SD_SHAPE_COLORS; c++)
    for (int k = 0; k < SD_SHAPE_KINDS; k++) {
      char name[64];
      snprintf(name, sizeof name, "%s %s", sd_shape_color_name((sd_shape_color)c),
               sd_shape_kind_name((sd_shape_kind)k));
      printf("  %-16s %s %s %s | %s | %s\n", name, marks[0][c][k], marks[1][c][k], marks[2][c][k],
             marks[3][c][k], marks[4][c][k]);
    }
  for (int p = 0; p < 3; p++)
    printf("%s at guidance %g: %d of %d (%.1f %%)\n", phrasing_names[p], guidance, sets[p].hits,
           sets[p].total, 100 * rate(sets[p]));
  printf("trained phrasing at guidance 1: %d of %d (%.1f %%)\n", unguided.hits, unguided.total,
         100 * rate(unguided));
  printf("the empty prompt matches the colour x shape it stands for: %d of %d (%.1f %%)\n",
         empty.hits, empty.total, 100 * rate(empty));

  /* 3: inpainting a shape's square with a green triangle */
  static const struct {
    sd_shape_kind kind;
    sd_shape_color color;
    float cx, cy;
    int background;
  } pictures[4] = {{SD_SHAPE_CIRCLE, SD_COLOR_RED, 0.5f, 0.5f, 0},
                   {SD_SHAPE_SQUARE, SD_COLOR_BLUE, 0.5f, 0.5f, 1},
                   {SD_SHAPE_STAR, SD_COLOR_YELLOW, 0.3f, 0.3f, 2},
                   {SD_SHAPE_DIAMOND, SD_COLOR_PURPLE, 0.7f, 0.7f, 0}};
  tally inpaint = {0}, layout = {0};
  for (int i = 0; i < 4; i++) {
    sd_image init, mask;
    draw_picture(pictures[i].kind, pictures[i].color, pictures[i].cx, pictures[i].cy,
                 pictures[i].background, &init);
    square_mask(pictures[i].cx, pictures[i].cy, 0.28f, &mask);
    for (int s = 0; s < seeds; s++) {
      sd_shape_measure m;
      if (render_image(SD_PIPELINE_INPAINT, 1.0f, "a green triangle", &init, &mask, (uint64_t)s,
                       &m) < 0)
        goto fail;
      bool hit = m.found && m.kind == SD_SHAPE_TRIANGLE && m.color == SD_COLOR_GREEN;
      inpaint.hits += hit;
      inpaint.total++;
      printf("  inpaint %s %s -> %s %s%s\n", sd_shape_color_name(pictures[i].color),
             sd_shape_kind_name(pictures[i].kind), m.found ? sd_shape_color_name(m.color) : "-",
             m.found ? sd_shape_kind_name(m.kind) : "nothing", hit ? "" : "  (miss)");
      char caption[96];
      snprintf(caption, sizeof caption, "a large %s %s", sd_shape_color_name(pictures[i].color),
               sd_shape_kind_name(pictures[i].kind));
      if (render_image(SD_PIPELINE_IMG2IMG, 0.5f, caption, &init, NULL, (uint64_t)s, &m) < 0)
        goto fail;
      float dx = (float)m.cx - pictures[i].cx, dy = (float)m.cy - pictures[i].cy;
      hit = m.found && m.color == pictures[i].color && dx * dx + dy * dy <= 0.01f;
      layout.hits += hit;
      layout.total++;
      printf("  img2img 0.5 %-24s -> %s at (%.2f, %.2f)%s\n", caption,
             m.found ? sd_shape_color_name(m.color) : "nothing", m.cx, m.cy,
             hit ? "" : "  (moved or changed)");
    }
    sd_image_free(&init);
    sd_image_free(&mask);
  }
  printf("inpainting 'a green triangle': %d of %d; img2img 0.5 keeps the layout: %d of %d\n",
         inpaint.hits, inpaint.total, layout.hits, layout.total);
  sd_engine_close(engine);

  for (int p = 0; p < 3; p++)
    CHECK(rate(sets[p]) >= 0.9, "%s: %.1f %% of the pictures match the prompt (need 90 %%)",
          phrasing_names[p], 100 * rate(sets[p]));
  CHECK(rate(empty) <= 0.1, "the empty prompt: %.1f %% match (need at most 10 %%)",
        100 * rate(empty));
  CHECK(rate(sets[0]) - rate(unguided) >= 0.1,
        "guidance %g vs 1: %.1f %% vs %.1f %% (need 10 points between them)", guidance,
        100 * rate(sets[0]), 100 * rate(unguided));
  if (!check_all)
    printf("not checked (pass 'all'): inpainting's 75 %%\n");
  else
    CHECK(rate(inpaint) >= 0.75, "inpainting: %.1f %% green triangles (need 75 %%)",
          100 * rate(inpaint));
  CHECK(rate(layout) >= 0.9, "img2img: %.1f %% kept the layout (need 90 %%)", 100 * rate(layout));
  return sd_test_finish();
fail:
  fprintf(stderr, "test_demo_semantic: %s\n", sd_error_message());
  sd_engine_close(engine);
  return 1;
}
