/* sdbatch export: a job's output file as PNG files (one per done item, the parameters in a text
 * chunk) and/or contact sheets (labelled grids over two sweep axes). Reads the file only. */
#include "cli.h"

#include "coordinator/contact_sheet.h"
#include "coordinator/output.h"
#include "kernels/error.h"
#include "kernels/file.h"
#include "worker/image/image.h"
#include "worker/io/png_image.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EXPORT_BLOCK 4096

static const char *const export_usage =
    "Usage: sdbatch export OUT.h5 --png DIR\n"
    "       sdbatch export OUT.h5 --grid FILE.png [--rows AXIS] [--cols AXIS]\n"
    "                             [--max-side PX] [--max-sheets N]\n"
    "\n"
    "Writes the images of a job's output file (only reads the file; works while a run writes\n"
    "it). --png and --grid may be given together.\n";

static int parse_axis(const char *text, void *target) {
  return sd_axis_parse(text, target);
}

/* The "parameters" text of an item, in the layout other Stable Diffusion tools read. */
static void item_parameters(const sd_output_info *info, const sd_output_record *rec,
                            const char *prompt, char *buf, size_t size) {
  snprintf(buf, size,
           "%s\nSteps: %d, Sampler: %s, CFG scale: %g, Seed: %lld, Size: %dx%d, Model: %s", prompt,
           rec->steps, rec->scheduler[0] ? rec->scheduler : "default", rec->guidance_scale,
           (long long)rec->seed, info->width, info->height, info->model_path);
}

/* Writes item index as a PNG. Returns 0, 1 when the item is damaged (its image or prompt cannot
 * be read: the error says why, nothing is written), -1 on an error that stops the export. */
static int export_item(sd_output_reader *reader, const char *path, const char *dir, int64_t index,
                       const sd_output_record *rec, uint8_t *rgb) {
  const sd_output_info *info = sd_output_reader_info(reader);
  char *prompt = NULL;
  if (sd_output_read_image(reader, index, rgb) < 0 ||
      sd_output_read_prompt(reader, rec->prompt_index, &prompt) < 0)
    return 1;
  size_t size = strlen(prompt) + 1024;
  char *parameters = malloc(size);
  char *file = malloc(strlen(dir) + 32);
  char origin[512];
  int rc = -1;
  if (!parameters || !file) {
    SD_ERROR("out of memory");
    goto out;
  }
  item_parameters(info, rec, prompt, parameters, size);
  snprintf(origin, sizeof origin, "item %lld of %s (job %s)", (long long)index, path,
           info->job_hash);
  sprintf(file, "%s/item-%06lld.png", dir, (long long)index);
  const sd_png_text texts[] = {{"parameters", parameters}, {"sdbatch", origin}};
  rc = sd_png_write_rgb(file, rgb, info->width, info->height, texts, 2);
out:
  free(prompt);
  free(parameters);
  free(file);
  return rc;
}

static int export_pngs(sd_output_reader *reader, const char *path, const char *dir) {
  if (mkdir(dir, 0777) < 0 && errno != EEXIST)
    return SD_ERROR("%s: cannot make the folder: %s", dir, strerror(errno));
  const sd_output_info *info = sd_output_reader_info(reader);
  sd_output_record *records = malloc(EXPORT_BLOCK * sizeof *records);
  uint8_t *rgb = malloc((size_t)info->width * info->height * 3);
  int64_t written = 0, skipped = 0;
  int rc = 0;
  if (!records || !rgb)
    rc = SD_ERROR("out of memory");
  for (int64_t start = 0; rc == 0 && start < info->n_items; start += EXPORT_BLOCK) {
    int64_t count = info->n_items - start < EXPORT_BLOCK ? info->n_items - start : EXPORT_BLOCK;
    rc = sd_output_read_records(reader, start, count, records);
    for (int64_t i = 0; rc == 0 && i < count; i++) {
      if (records[i].problem[0]) {
        fprintf(stderr, "sdbatch export: warning: %s: item %lld skipped: damaged row (%s)\n", path,
                (long long)(start + i), records[i].problem);
        skipped++;
        continue;
      }
      if (records[i].status != SD_ITEM_DONE)
        continue;
      rc = export_item(reader, path, dir, start + i, &records[i], rgb);
      if (rc < 0) {
        sd_error_context("item %lld", (long long)(start + i));
      } else if (rc == 1) {
        fprintf(stderr, "sdbatch export: warning: %s: item %lld skipped: damaged (%s)\n", path,
                (long long)(start + i), sd_error_message());
        skipped++;
        rc = 0;
      } else {
        written++;
      }
    }
  }
  free(records);
  free(rgb);
  if (rc == 0)
    printf("wrote %lld PNG files to %s%s\n", (long long)written, dir,
           skipped ? " (damaged items skipped: see the warnings, and sdbatch inspect --verify)"
                   : "");
  return rc;
}

/* FILE.png for a single sheet, FILE-001.png ... for several. */
static char *sheet_path(const char *grid, int64_t index, int64_t count) {
  size_t len = strlen(grid);
  char *path = malloc(len + 32);
  if (!path)
    return NULL;
  if (count == 1) {
    memcpy(path, grid, len + 1);
    return path;
  }
  size_t stem = len > 4 && strcmp(grid + len - 4, ".png") == 0 ? len - 4 : len;
  int digits = count > 999 ? snprintf(NULL, 0, "%lld", (long long)count) : 3;
  sprintf(path, "%.*s-%0*lld.png", (int)stem, grid, digits, (long long)index + 1);
  return path;
}

/* Where the input column's images are read: their paths (relative to the job file's folder, as
 * the job gave them) resolved against `folder`. */
typedef struct input_loader {
  sd_output_reader *reader;
  char folder[4096];
  bool warned; /* about an input that could not be read (said once) */
} input_loader;

static int load_input(void *ctx, int64_t input, int w, int h, uint8_t *rgb, size_t stride) {
  input_loader *loader = ctx;
  sd_output_input row;
  SD_TRY(sd_output_read_input(loader->reader, input, &row));
  const char *file = row.files[SD_OUTPUT_INPUT_IMAGE];
  char resolved[8300];
  snprintf(resolved, sizeof resolved, "%s%s%s", file[0] == '/' ? "" : loader->folder,
           file[0] == '/' ? "" : "/", file);
  sd_output_input_free(&row);
  sd_image image = {0};
  if (sd_image_read_rgb(resolved, &image) < 0) {
    if (!loader->warned)
      fprintf(stderr,
              "sdbatch export: warning: %s; its cell says \"no input\" (--inputs-from DIR reads "
              "the inputs from elsewhere)\n",
              sd_error_message());
    loader->warned = true;
    return -1;
  }
  sd_sheet_scale(image.data, image.width, image.height, rgb, w, h, stride);
  sd_image_free(&image);
  return 0;
}

static int export_grid(sd_output_reader *reader, const char *path, const char *grid,
                       const sd_sheet_options *options, const char *inputs_folder) {
  const sd_output_info *info = sd_output_reader_info(reader);
  sd_sweep *sweep = NULL;
  SD_TRY(sd_sweep_scan(reader, &sweep));
  sd_sheet_plan plan;
  int rc = sd_sheet_plan_make(sweep, info, options, &plan);
  char title[2048];
  int64_t damaged_rows = sd_sweep_status_count(sweep, SD_SWEEP_DAMAGED), damaged_cells = 0;
  if (damaged_rows > 0)
    fprintf(stderr,
            "sdbatch export: warning: %s: %lld items with damaged rows are left out of the sheets "
            "(sdbatch inspect --verify lists them)\n",
            path, (long long)damaged_rows);
  input_loader loader = {.reader = reader};
  if (inputs_folder)
    snprintf(loader.folder, sizeof loader.folder, "%s", inputs_folder);
  else if (sd_file_parent_folder(info->job_path, loader.folder, sizeof loader.folder) < 0)
    loader.folder[0] = 0;
  for (int64_t s = 0; rc == 0 && s < plan.n_written; s++) {
    uint8_t *rgb = NULL;
    int64_t damaged = 0;
    char *file = sheet_path(grid, s, plan.n_written);
    if (!file) {
      rc = SD_ERROR("out of memory");
      break;
    }
    rc = sd_sheet_render_inputs(reader, sweep, &plan, s, load_input, &loader, &rgb, title,
                                sizeof title, &damaged);
    if (rc == 0) {
      const sd_png_text texts[] = {{"parameters", title}};
      rc = sd_png_write_rgb(file, rgb, plan.sheet_w, plan.sheet_h, texts, 1);
    }
    damaged_cells += damaged;
    if (rc == 0)
      printf("wrote %s (%dx%d): %s\n", file, plan.sheet_w, plan.sheet_h, title);
    free(rgb);
    free(file);
  }
  if (rc == 0 && plan.n_written < plan.n_sheets)
    printf("note: wrote the first %lld of %lld sheets (one per combination of %s, %s and %s); "
           "--max-sheets raises the limit\n",
           (long long)plan.n_written, (long long)plan.n_sheets, sd_axis_name(plan.fixed[0]),
           sd_axis_name(plan.fixed[1]), sd_axis_name(plan.fixed[2]));
  if (damaged_cells > 0)
    fprintf(stderr,
            "sdbatch export: warning: %s: %lld images could not be read (damaged) and are drawn "
            "as failed cells (sdbatch inspect --verify lists them)\n",
            path, (long long)damaged_cells);
  sd_sweep_free(sweep);
  return rc;
}

int cmd_export(int argc, char **argv) {
  const char *cmd = "export";
  const char *png_dir = NULL, *grid = NULL;
  sd_sheet_options sheet = sd_sheet_options_default();
  int max_sheets = (int)sheet.max_sheets;
  const char *path = NULL, *inputs_folder = NULL;
  bool no_inputs = false;
  const cli_option options[] = {
      CLI_OPTION("png", "DIR", CLI_STRING, &png_dir,
                 "one PNG per done item, DIR/item-000123.png (by item index), with the\n"
                 "parameters in a 'parameters' text chunk (prompt, steps, sampler, CFG\n"
                 "scale, seed, size, model) and the item and job in an 'sdbatch' chunk"),
      CLI_OPTION("grid", "FILE.png", CLI_STRING, &grid,
                 "contact sheets: rows and columns are two sweep axes, labelled with\n"
                 "their values; one sheet per combination of the other axes (FILE.png\n"
                 "when there is one, else FILE-001.png, FILE-002.png, ...). Failed cells\n"
                 "are dark grey with a red cross, pending ones light grey"),
      CLI_OPTION("rows", "AXIS", CLI_CUSTOM, &sheet.rows,
                 "seed (default), prompt, guidance_scale, steps, scheduler, input,\n"
                 "strength or noise_level",
                 .parse = parse_axis),
      CLI_OPTION("cols", "AXIS", CLI_CUSTOM, &sheet.cols,
                 "default: the swept axis with the most values among guidance_scale,\n"
                 "strength, noise_level, steps and scheduler (else prompt, else seed)",
                 .parse = parse_axis),
      CLI_OPTION("max-side", "PX", CLI_INT, &sheet.max_side,
                 "shrink the cells so that no sheet side exceeds PX (default 8192)", .min = 64,
                 .max = 65535),
      CLI_OPTION("max-sheets", "N", CLI_INT, &max_sheets,
                 "write at most the first N sheets (default 100)", .min = 1, .max = 1000000),
      CLI_OPTION("inputs-from", "DIR", CLI_STRING, &inputs_folder,
                 "a job with input images: read them for the sheets' input column from\n"
                 "DIR (default: the job file's folder, as sdbatch run was given it)"),
      CLI_OPTION("no-inputs", NULL, CLI_FLAG, &no_inputs,
                 "no input column (by default a job with input images shows each row's\n"
                 "input, or the sheet's input, in a first column)"),
      {0},
  };
  const cli_command command = {.name = cmd,
                               .usage = export_usage,
                               .options = options,
                               .min_operands = 1,
                               .max_operands = 1,
                               .operand_name = "the output file (OUT.h5)",
                               .operands = &path};
  int parsed = cli_parse(&command, argc, argv, true);
  if (parsed != CLI_PARSED)
    return cli_parse_exit_status(parsed);
  sheet.max_sheets = max_sheets;
  sheet.input_column = !no_inputs;
  if (!png_dir && !grid)
    return cli_usage_error(cmd, "nothing to do: give --png DIR and/or --grid FILE.png");

  sd_output_reader *reader = NULL;
  if (sd_output_reader_open(path, &reader) < 0)
    return cli_report_error(cmd);
  int status = 0;
  if (png_dir && export_pngs(reader, path, png_dir) < 0)
    status = (sd_error_context("%s", path), cli_report_error(cmd));
  if (status == 0 && grid && export_grid(reader, path, grid, &sheet, inputs_folder) < 0)
    status = (sd_error_context("%s", path), cli_report_error(cmd));
  sd_output_reader_close(reader);
  return status;
}
