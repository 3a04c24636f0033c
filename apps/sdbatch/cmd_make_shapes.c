/* sdbatch make-shapes: writes the synthetic shapes dataset (worker/data/shapes.h) as a folder of
 * PNG files with their captions in metadata.jsonl (the "imagefolder" layout that diffusers' and
 * Hugging Face datasets' training scripts read). Streamed: one image in memory at a time. */
#include "cli.h"

#include "kernels/error.h"
#include "worker/data/shapes.h"
#include "worker/io/png_image.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const shapes_usage =
    "Usage: sdbatch make-shapes DIR [--count N] [--size PX] [--seed N] [--start I]\n"
    "\n"
    "Writes items START .. START+N-1 of the synthetic shapes dataset of SEED to DIR (created if\n"
    "absent): DIR/000000.png ... and DIR/metadata.jsonl, one line a picture\n"
    "({\"file_name\": \"000000.png\", \"text\": \"a small red circle in the top left corner\"}).\n"
    "Item i depends on the seed and i alone, so any range can be written apart and the same\n"
    "command always writes the same bytes (docs/shapes.md).\n";

static double seconds_since(const struct timespec *start) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - start->tv_sec) + 1e-9 * (double)(now.tv_nsec - start->tv_nsec);
}

/* The caption as a JSON string body (captions are ASCII words; quotes and backslashes escaped
 * all the same). */
static void json_escape(const char *s, char *out, size_t size) {
  size_t n = 0;
  for (; *s && n + 3 < size; s++) {
    if (*s == '"' || *s == '\\')
      out[n++] = '\\';
    out[n++] = *s;
  }
  out[n] = 0;
}

static int write_dataset(const char *dir, uint64_t seed, int64_t start, int64_t count, int side,
                         bool progress) {
  if (mkdir(dir, 0777) < 0 && errno != EEXIST)
    return SD_ERROR("%s: cannot make the folder: %s", dir, strerror(errno));
  char path[4200];
  snprintf(path, sizeof path, "%s/metadata.jsonl", dir);
  FILE *meta = fopen(path, "w");
  if (!meta)
    return SD_ERROR("%s: cannot create: %s", path, strerror(errno));
  uint8_t *rgb = malloc((size_t)side * (size_t)side * 3);
  int rc = rgb ? 0 : SD_ERROR("out of memory for a %dx%d picture", side, side);
  struct timespec t0, last;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  last = t0;
  for (int64_t i = start; rc == 0 && i < start + count; i++) {
    sd_shape_item item;
    sd_shapes_item(seed, i, &item);
    sd_shapes_draw(&item, side, rgb);
    char name[32], caption[2 * SD_SHAPE_CAPTION_LEN];
    snprintf(name, sizeof name, "%06" PRId64 ".png", i);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    json_escape(item.caption, caption, sizeof caption);
    sd_png_text text = {"parameters", item.caption};
    rc = sd_png_write_rgb(path, rgb, side, side, &text, 1);
    if (rc == 0 && fprintf(meta, "{\"file_name\": \"%s\", \"text\": \"%s\"}\n", name, caption) < 0)
      rc = SD_ERROR("%s/metadata.jsonl: write failed: %s", dir, strerror(errno));
    if (progress && seconds_since(&last) >= 2.0) {
      clock_gettime(CLOCK_MONOTONIC, &last);
      fprintf(stderr, "sdbatch make-shapes: %" PRId64 " of %" PRId64 " pictures\n", i - start + 1,
              count);
    }
  }
  free(rgb);
  if (fclose(meta) != 0 && rc == 0)
    rc = SD_ERROR("%s/metadata.jsonl: close failed: %s", dir, strerror(errno));
  if (rc == 0 && progress)
    fprintf(stderr, "sdbatch make-shapes: wrote %" PRId64 " pictures of %dx%d to %s in %.1f s\n",
            count, side, side, dir, seconds_since(&t0));
  return rc;
}

int cmd_make_shapes(int argc, char **argv) {
  const char *cmd = "make-shapes";
  const char *dir = NULL;
  int count = 1000, side = 64;
  uint64_t seed = 0, start = 0;
  bool quiet = false;
  const cli_option options[] = {
      CLI_OPTION("count", "N", CLI_INT, &count, "pictures to write (default 1000)", .min = 1,
                 .max = 100000000),
      CLI_OPTION("size", "PX", CLI_INT, &side, "picture side in pixels (default 64)", .min = 16,
                 .max = 4096),
      CLI_OPTION("seed", "N", CLI_U64, &seed, "the dataset's seed (default 0)"),
      CLI_OPTION("start", "I", CLI_U64, &start, "index of the first picture (default 0)"),
      CLI_OPTION("quiet", NULL, CLI_FLAG, &quiet, "no progress lines"),
      {0},
  };
  const cli_command command = {.name = cmd,
                               .usage = shapes_usage,
                               .options = options,
                               .min_operands = 1,
                               .max_operands = 1,
                               .operand_name = "the folder (DIR)",
                               .operands = &dir};
  int parsed = cli_parse(&command, argc, argv, true);
  if (parsed != CLI_PARSED)
    return cli_parse_exit_status(parsed);
  if (start > (uint64_t)INT64_MAX - (uint64_t)count)
    return cli_usage_error(cmd, "--start %" PRIu64 " plus --count %d is past the last index", start,
                           count);
  if (write_dataset(dir, seed, (int64_t)start, count, side, !quiet) < 0)
    return cli_report_error(cmd);
  return 0;
}
