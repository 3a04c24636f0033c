/* `sdbatch inspect` and `sdbatch export` through the built program (argv[1]), and the file
 * through h5dump (hdf5-tools): the summary's figures, PNGs equal to the stored pixels with their
 * parameters, contact sheets equal to the library's rendering, errors that name the file and
 * exit status 1 (2 for usage), inspect --verify finding a flipped bit in one image chunk. Inspect
 * must also work while a writer holds the file open. */
#include "coordinator/contact_sheet.h"
#include "coordinator/output.h"
#include "kernels/error.h"
#include "test_util.h"
#include "worker/io/png_image.h"

#include <hdf5.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp_dir[] = "/tmp/sd_test_output_cli_XXXXXX";
static const char *sdbatch;
static char out_text[1 << 16], err_text[1 << 16];

enum { W = 40, H = 32, N = 12 };
static const char *const prompts[] = {"a red cube", "a lighthouse at dawn"};

static uint8_t pixel(int64_t index, int y, int x, int c) {
  return (uint8_t)(index * 37 + y * 7 + x * 3 + c * 101);
}
static void make_image(int64_t index, uint8_t *rgb) {
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      for (int c = 0; c < 3; c++)
        rgb[((size_t)y * W + x) * 3 + c] = pixel(index, y, x, c);
}
/* 2 prompts x 3 seeds x 2 guidance scales, in job order */
static sd_output_item_meta meta_of(int64_t i) {
  return (sd_output_item_meta){.prompt_index = (int32_t)(i / 6),
                               .seed = 42 + (i / 2) % 3,
                               .guidance_scale = i % 2 ? 7.5f : 1.5f,
                               .steps = 20,
                               .scheduler = "ddim"};
}
static int meta_callback(void *ctx, int64_t index, sd_output_item_meta *meta) {
  (void)ctx;
  *meta = meta_of(index);
  return 0;
}
static int state_of(int64_t i) {
  return i == 7 ? SD_ITEM_FAILED : (i == 4 || i == 9 || i == 10) ? SD_ITEM_PENDING : SD_ITEM_DONE;
}

/* A path in the test's folder (from a ring of 16 buffers: keep longer-lived paths elsewhere). */
static char *path_in_tmp(const char *name) {
  static char paths[16][300];
  static int next = 0;
  char *p = paths[next++ % 16];
  snprintf(p, sizeof paths[0], "%s/%s", tmp_dir, name);
  return p;
}

static void slurp(const char *path, char *buf, size_t size) {
  buf[0] = 0;
  FILE *f = fopen(path, "r");
  if (!f)
    return;
  size_t n = fread(buf, 1, size - 1, f);
  buf[n] = 0;
  fclose(f);
}

/* Runs "<program> <args>" with stdout and stderr captured; returns the exit status. */
static int run(const char *program, const char *args) {
  char command[2048];
  snprintf(command, sizeof command, "'%s' %s >'%s/out.txt' 2>'%s/err.txt'", program, args, tmp_dir,
           tmp_dir);
  int status = system(command);
  slurp(path_in_tmp("out.txt"), out_text, sizeof out_text);
  slurp(path_in_tmp("err.txt"), err_text, sizeof err_text);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static sd_output *make_file(const char *path, bool close_it) {
  sd_output_spec spec = {.path = path,
                         .n_items = N,
                         .width = W,
                         .height = H,
                         .save_latents = false,
                         .job_yaml = "model: m\n",
                         .job_hash = "abcdef0123456789",
                         .model_path = "/models/tiny-sd",
                         .model_identity = "ident-7",
                         .n_prompts = 2,
                         .prompts = prompts,
                         .job_path = "jobs/sweep.yaml",
                         .item_meta = meta_callback};
  sd_output *o = NULL;
  if (sd_output_open(&spec, &o) < 0) {
    CHECK(false, "make %s: %s", path, sd_error_message());
    return NULL;
  }
  uint8_t rgb[W * H * 3];
  for (int64_t i = 0; i < N; i++) {
    if (state_of(i) == SD_ITEM_DONE) {
      make_image(i, rgb);
      CHECK(sd_output_write_done(o, i, NULL, rgb, NULL) == 0, "write %lld", (long long)i);
    } else if (state_of(i) == SD_ITEM_FAILED) {
      CHECK(sd_output_write_failed(o, i, NULL, "NaN in the latents at step 12") == 0, "fail");
    }
  }
  if (close_it) {
    CHECK(sd_output_close(o) == 0, "close: %s", sd_error_message());
    return NULL;
  }
  CHECK(sd_output_flush(o) == 0, "flush: %s", sd_error_message());
  return o;
}

static void test_inspect(const char *file) {
  char args[512];
  snprintf(args, sizeof args, "inspect '%s'", file);
  CHECK(run(sdbatch, args) == 0, "inspect: exit 0 (%s)", err_text);
  const char *want[] = {
      "schema          version 3",
      "job             jobs/sweep.yaml",
      "job hash        abcdef0123456789",
      "model           /models/tiny-sd",
      "model identity  ident-7",
      "size            40x32 pixels, latents not saved",
      "items           12 total: 8 done, 1 failed, 3 pending",
      "prompts         2",
      "  prompt          2 values: 0, 1",
      "  seed            3 values: 42, 43, 44",
      "  guidance_scale  2 values: 1.5, 7.5",
      "  steps           1 value: 20",
      "  scheduler       1 value: ddim",
      "failures        first 1 of 1:",
      "  item 7: NaN in the latents at step 12",
  };
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
    CHECK(strstr(out_text, want[k]) != NULL, "inspect prints '%s'", want[k]);
  if (strstr(out_text, "8 done") == NULL)
    fprintf(stderr, "inspect printed:\n%s\n", out_text);

  CHECK(run(sdbatch, "inspect --help") == 0 && strstr(out_text, "Usage: sdbatch inspect"),
        "inspect --help");
  CHECK(run(sdbatch, "inspect") == 2, "inspect without a file: usage error");
  const char *missing = path_in_tmp("missing.h5");
  snprintf(args, sizeof args, "inspect '%s'", missing);
  CHECK(run(sdbatch, args) == 1 && strstr(err_text, missing), "missing file named: %s", err_text);
  const char *text = path_in_tmp("notes.h5");
  FILE *f = fopen(text, "w");
  fputs("not hdf5\n", f);
  fclose(f);
  snprintf(args, sizeof args, "inspect '%s'", text);
  CHECK(run(sdbatch, args) == 1 && strstr(err_text, text) && strstr(err_text, "not an HDF5 file"),
        "non-HDF5 file: %s", err_text);
}

static void test_export_png(const char *file) {
  const char *dir = path_in_tmp("pngs");
  char args[512];
  snprintf(args, sizeof args, "export '%s' --png '%s'", file, dir);
  CHECK(run(sdbatch, args) == 0 && strstr(out_text, "wrote 8 PNG files"), "export --png: %s%s",
        out_text, err_text);
  uint8_t want[W * H * 3];
  for (int64_t i = 0; i < N; i++) {
    char png[400];
    snprintf(png, sizeof png, "%s/item-%06lld.png", dir, (long long)i);
    if (state_of(i) != SD_ITEM_DONE) {
      CHECK(access(png, F_OK) != 0, "no PNG for item %lld (not done)", (long long)i);
      continue;
    }
    uint8_t *rgb = NULL;
    char *parameters = NULL;
    int w = 0, h = 0;
    CHECK(sd_png_read_rgb(png, &rgb, &w, &h, "parameters", &parameters) == 0, "read %s: %s", png,
          sd_error_message());
    make_image(i, want);
    CHECK(rgb && w == W && h == H && memcmp(rgb, want, sizeof want) == 0, "item %lld pixels",
          (long long)i);
    sd_output_item_meta m = meta_of(i);
    char seed[64], cfg[64];
    snprintf(seed, sizeof seed, "Seed: %lld", (long long)m.seed);
    snprintf(cfg, sizeof cfg, "CFG scale: %g", m.guidance_scale);
    size_t prompt_len = strlen(prompts[m.prompt_index]);
    CHECK(parameters && strncmp(parameters, prompts[m.prompt_index], prompt_len) == 0 &&
              parameters[prompt_len] == '\n' && strstr(parameters, seed) &&
              strstr(parameters, cfg) && strstr(parameters, "Steps: 20, Sampler: ddim"),
          "item %lld parameters: %s", (long long)i, parameters ? parameters : "(none)");
    free(rgb);
    free(parameters);
  }
}

static void test_export_grid(const char *file) {
  char args[768];
  const char *grid = path_in_tmp("grid.png");
  snprintf(args, sizeof args, "export '%s' --grid '%s'", file, grid);
  CHECK(run(sdbatch, args) == 0, "export --grid: %s", err_text);
  const char *second = path_in_tmp("grid-002.png");
  CHECK(strstr(out_text, second) && access(path_in_tmp("grid-001.png"), F_OK) == 0,
        "two sheets (one per prompt): %s", out_text);

  /* the second sheet equals the library's rendering of it */
  sd_output_reader *r = NULL;
  sd_sweep *sweep = NULL;
  sd_sheet_plan plan;
  sd_sheet_options options = sd_sheet_options_default();
  uint8_t *want = NULL;
  char title[512];
  CHECK(sd_output_reader_open(file, &r) == 0 && sd_sweep_scan(r, &sweep) == 0 &&
            sd_sheet_plan_make(sweep, sd_output_reader_info(r), &options, &plan) == 0 &&
            sd_sheet_render(r, sweep, &plan, 1, &want, title, sizeof title, NULL) == 0,
        "library sheet: %s", sd_error_message());
  uint8_t *got = NULL;
  char *text = NULL;
  int w = 0, h = 0;
  CHECK(sd_png_read_rgb(second, &got, &w, &h, "parameters", &text) == 0, "read sheet: %s",
        sd_error_message());
  CHECK(want && got && w == plan.sheet_w && h == plan.sheet_h &&
            memcmp(got, want, (size_t)w * h * 3) == 0,
        "sheet 2 (%dx%d) equals the rendering (%dx%d)", w, h, plan.sheet_w, plan.sheet_h);
  CHECK(text && strstr(text, "a lighthouse at dawn") && strstr(text, "rows: seed"),
        "sheet text: %s", text ? text : "(none)");
  free(got);
  free(text);
  free(want);
  sd_sweep_free(sweep);
  sd_output_reader_close(r);

  const char *single = path_in_tmp("single.png");
  snprintf(args, sizeof args,
           "export '%s' --grid '%s' --rows guidance_scale --cols seed "
           "--max-sheets 1",
           file, single);
  CHECK(run(sdbatch, args) == 0 && access(single, F_OK) == 0 &&
            strstr(out_text, "note: wrote the first 1 of 2 sheets"),
        "one sheet with a note: %s%s", out_text, err_text);
  snprintf(args, sizeof args, "export '%s' --grid '%s' --rows prompt --cols prompt", file, single);
  CHECK(run(sdbatch, args) == 1 && strstr(err_text, "same axis"), "rows == cols: %s", err_text);
  snprintf(args, sizeof args, "export '%s' --grid '%s' --rows colour", file, single);
  CHECK(run(sdbatch, args) == 2 && strstr(err_text, "colour"), "unknown axis: %s", err_text);
  snprintf(args, sizeof args, "export '%s'", file);
  CHECK(run(sdbatch, args) == 2 && strstr(err_text, "nothing to do"), "no action: %s", err_text);
  CHECK(run(sdbatch, "export --help") == 0 && strstr(out_text, "--grid FILE.png"), "export --help");
}

static void test_h5dump(const char *file) {
  if (system("command -v h5dump >/dev/null 2>&1") != 0) {
    CHECK(false, "h5dump not found: install hdf5-tools (scripts/install-deps.sh does)");
    return;
  }
  char args[512];
  snprintf(args, sizeof args, "-H '%s'", file);
  CHECK(run("h5dump", args) == 0 && strstr(out_text, "DATASET \"images\"") &&
            strstr(out_text, "ATTRIBUTE \"job_yaml\"") &&
            strstr(out_text, "SIMPLE { ( 12, 32, 40, 3 ) / ( 12, 32, 40, 3 ) }"),
        "h5dump -H reads the file: %s", err_text);
  snprintf(args, sizeof args, "-d /status '%s'", file);
  CHECK(run("h5dump", args) == 0 && strstr(out_text, "1, 1, 1, 1, 0, 1, 1, 2, 1, 0, 0, 1"),
        "h5dump reads the statuses: %s", out_text);
  snprintf(args, sizeof args, "-a /job_hash '%s'", file);
  CHECK(run("h5dump", args) == 0 && strstr(out_text, "\"abcdef0123456789\""),
        "h5dump reads the attributes");
}

/* inspect --verify: a sound file passes; a copy with one bit flipped in item 3's image chunk is
 * reported (item 3 only, exit status 1), and export skips that item with a warning. */
static void test_verify(const char *file) {
  char args[700];
  snprintf(args, sizeof args, "inspect --verify '%s'", file);
  CHECK(run(sdbatch, args) == 0 && strstr(out_text, "verified        12 items: 0 damaged"),
        "inspect --verify on a sound file: %s%s", out_text, err_text);

  const char *bad = path_in_tmp("bad.h5");
  snprintf(args, sizeof args, "cp '%s' '%s'", file, bad);
  CHECK(system(args) == 0, "copy");
  hid_t f = H5Fopen(bad, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, "images", H5P_DEFAULT);
  hsize_t offset[4] = {3, 0, 0, 0}, size = 0;
  unsigned mask = 0;
  haddr_t addr = HADDR_UNDEF;
  CHECK(H5Dget_chunk_info_by_coord(d, offset, &mask, &addr, &size) >= 0, "item 3's chunk");
  H5Dclose(d);
  H5Fclose(f);
  FILE *fp = fopen(bad, "r+b");
  int c = fp && fseek(fp, (long)addr + 100, SEEK_SET) == 0 ? fgetc(fp) : EOF;
  CHECK(c != EOF && fseek(fp, (long)addr + 100, SEEK_SET) == 0 && fputc(c ^ 1, fp) != EOF,
        "flip a bit");
  if (fp)
    fclose(fp);
  snprintf(args, sizeof args, "inspect --verify '%s'", bad);
  CHECK(run(sdbatch, args) == 1 &&
            strstr(out_text, "  item 3 (done): image chunk cannot be read (HDF5: data error "
                             "detected by Fletcher32 checksum)") &&
            strstr(out_text, "verified        12 items: 1 damaged"),
        "inspect --verify reports item 3: %s%s", out_text, err_text);
  CHECK(run(sdbatch, "inspect --verify") == 2, "--verify without a file: usage error");
  snprintf(args, sizeof args, "export '%s' --png '%s'", bad, path_in_tmp("bad_png"));
  CHECK(run(sdbatch, args) == 0 && strstr(out_text, "wrote 7 PNG files") &&
            strstr(err_text, "item 3 skipped: damaged") &&
            access(path_in_tmp("bad_png/item-000003.png"), F_OK) != 0 &&
            access(path_in_tmp("bad_png/item-000002.png"), F_OK) == 0,
        "export skips the damaged item: %s%s", out_text, err_text);
}

/* inspect while this process holds the file open for writing (as `sdbatch run` does) */
static void test_inspect_while_writing(void) {
  const char *file = path_in_tmp("open.h5");
  sd_output *o = make_file(file, false);
  if (!o)
    return;
  char args[512];
  snprintf(args, sizeof args, "inspect '%s'", file);
  CHECK(run(sdbatch, args) == 0 && strstr(out_text, "8 done, 1 failed, 3 pending"),
        "inspect during a run: %s%s", out_text, err_text);
  sd_output_close(o);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_output_cli PATH/TO/sdbatch\n");
    return 1;
  }
  sdbatch = argv[1];
  if (!mkdtemp(tmp_dir)) {
    perror("mkdtemp");
    return 1;
  }
  static char file[300];
  snprintf(file, sizeof file, "%s/sweep.h5", tmp_dir);
  make_file(file, true);
  test_inspect(file);
  test_export_png(file);
  test_export_grid(file);
  test_h5dump(file);
  test_verify(file);
  test_inspect_while_writing();
  char command[400];
  snprintf(command, sizeof command, "rm -rf '%s'", tmp_dir);
  if (system(command) != 0)
    fprintf(stderr, "could not remove %s\n", tmp_dir);
  return sd_test_finish();
}
