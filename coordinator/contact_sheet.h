/* Sweeps and contact sheets of an output file: the distinct values each axis (prompt, seed,
 * guidance scale, steps, scheduler; input, strength and noise level in schema 3) takes among the
 * file's items, and labelled grids of the
 * images (rows = one axis, columns = another, one sheet per combination of the others) that
 * `sdbatch export --grid` writes and `sdbatch inspect` summarises. */
#ifndef SD_CONTACT_SHEET_H
#define SD_CONTACT_SHEET_H

#include "output.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Axes in the job's item order (slowest first), see jobs/job.h. */
typedef enum sd_axis {
  SD_AXIS_SCHEDULER = 0,
  SD_AXIS_STEPS,
  SD_AXIS_STRENGTH,
  SD_AXIS_NOISE_LEVEL,
  SD_AXIS_INPUT,
  SD_AXIS_PROMPT,
  SD_AXIS_SEED,
  SD_AXIS_GUIDANCE,
  SD_AXIS_COUNT,
  SD_AXIS_NONE = -1,
} sd_axis;

/* Distinct values kept per axis; beyond, the smallest are kept and the axis is truncated. */
#define SD_SWEEP_MAX_VALUES 4096
/* Failed items whose index a sweep keeps (the first ones). */
#define SD_SWEEP_FIRST_FAILURES 8

/* "scheduler", "steps", "strength", "noise_level", "input", "prompt", "seed", "guidance_scale" */
const char *sd_axis_name(sd_axis axis);
/* Parses an axis name (also "guidance" and "cfg"); -1 with an error listing the names. */
int sd_axis_parse(const char *name, sd_axis *out);

typedef struct sd_sweep sd_sweep;

/* Reads the status and metadata of every item (in blocks) and collects each axis's values among
 * the items whose metadata is known (all items when metadata_complete, else those done or
 * failed), sorted (schedulers by name). */
int sd_sweep_scan(sd_output_reader *reader, sd_sweep **out);
void sd_sweep_free(sd_sweep *sweep);

/* Items counted by status; SD_SWEEP_DAMAGED counts the rows that failed the reader's checks
 * (sd_output_record.problem), which are in no other count and no axis. */
#define SD_SWEEP_DAMAGED 3
int64_t sd_sweep_status_count(const sd_sweep *sweep, int status);
/* Items whose metadata was known (and so counted in the axes). */
int64_t sd_sweep_known_items(const sd_sweep *sweep);
int sd_sweep_axis_count(const sd_sweep *sweep, sd_axis axis);
bool sd_sweep_axis_truncated(const sd_sweep *sweep, sd_axis axis);
/* Value i of the axis as text: "7.5", "42", "euler", and for prompts the index ("3"). */
void sd_sweep_axis_value_text(const sd_sweep *sweep, sd_axis axis, int i, char *buf, size_t size);
/* Indices of the first failed items (up to SD_SWEEP_FIRST_FAILURES); returns how many. */
int sd_sweep_first_failures(const sd_sweep *sweep, const int64_t **indices);
/* Indices of the first damaged rows (up to SD_SWEEP_FIRST_FAILURES); returns how many. */
int sd_sweep_first_damaged(const sd_sweep *sweep, const int64_t **indices);

/* How to lay out contact sheets. */
typedef struct sd_sheet_options {
  sd_axis rows, cols; /* SD_AXIS_NONE: the default (below) */
  int max_side;       /* pixels, cells are shrunk to keep each side within it */
  int64_t max_sheets; /* sheets written at most (the first ones) */
  /* A first column showing each row's input image, when the file has inputs and the input is
   * the rows' axis or fixed on each sheet (sd_sheet_render then needs an input loader). */
  bool input_column;
} sd_sheet_options;

/* Defaults: rows seed, columns the default axis, max_side 8192, max_sheets 100. */
sd_sheet_options sd_sheet_options_default(void);

/* The layout of the sheets of a sweep. */
typedef struct sd_sheet_plan {
  sd_axis rows, cols;
  sd_axis fixed[SD_AXIS_COUNT - 2]; /* the other axes, one combination of them per sheet */
  int64_t n_sheets;                 /* combinations of the fixed axes */
  int64_t n_written;                /* min(n_sheets, max_sheets) */
  int n_rows, n_cols;
  int cell_w, cell_h;   /* pixels of one cell (the images, shrunk when needed) */
  int scale;            /* label font scale */
  int input_column;     /* 1 when the first column shows the inputs (sd_sheet_options) */
  int left, top, gap;   /* margins and gap, pixels */
  int sheet_w, sheet_h; /* pixels */
} sd_sheet_plan;

/* Chooses the axes (defaults: columns the swept axis with the most values among guidance scale,
 * steps and scheduler, else prompt, else seed; rows seed, or prompt when the columns are seeds)
 * and the sizes. Fails when rows equal columns, an axis used for rows or columns is truncated,
 * or the cells would fall under 8 pixels. */
int sd_sheet_plan_make(const sd_sweep *sweep, const sd_output_info *info,
                       const sd_sheet_options *options, sd_sheet_plan *plan);

/* Renders sheet index (< n_written) into a malloc'ed rgb (sheet_h, sheet_w, 3); title gets the
 * fixed axes' values (for the PNG's text and the caller's listing). Done cells show the image,
 * failed ones a dark grey cell with a red cross, pending (or never seen) ones a light grey cell
 * with "pending". An item whose row is damaged is left out (its cell stays pending); one whose
 * image cannot be read (a damaged chunk) gets a failed cell and is counted in *n_damaged (may be
 * NULL). */
int sd_sheet_render(sd_output_reader *reader, const sd_sweep *sweep, const sd_sheet_plan *plan,
                    int64_t index, uint8_t **rgb, char *title, size_t title_size,
                    int64_t *n_damaged);

/* Draws input `input` (a row of the file's inputs) into a cell of w x h pixels at rgb (rows of
 * stride bytes); 0, or -1 when it cannot (the cell then says "no input"). */
typedef int (*sd_sheet_input_loader)(void *ctx, int64_t input, int w, int h, uint8_t *rgb,
                                     size_t stride);

/* sd_sheet_render with the input column drawn by load_input (NULL: every input cell says "no
 * input"). */
int sd_sheet_render_inputs(sd_output_reader *reader, const sd_sweep *sweep,
                           const sd_sheet_plan *plan, int64_t index,
                           sd_sheet_input_loader load_input, void *load_ctx, uint8_t **rgb,
                           char *title, size_t title_size, int64_t *n_damaged);

/* Scales src (h, w, 3) to dst (dh, dw, 3): sd_sheet_shrink where it shrinks, nearest pixel where
 * it grows (each axis on its own). */
void sd_sheet_scale(const uint8_t *src, int w, int h, uint8_t *dst, int dw, int dh,
                    size_t dst_stride);

/* Shrinks src (h, w, 3) into dst (dh, dw, 3) by averaging, for each destination pixel, the
 * source pixels [x * w / dw, (x + 1) * w / dw) x [y * h / dh, (y + 1) * h / dh) (integer
 * division; at least one), rounded to nearest. dw <= w, dh <= h. dst_stride: bytes per dst row. */
void sd_sheet_shrink(const uint8_t *src, int w, int h, uint8_t *dst, int dw, int dh,
                     size_t dst_stride);

#endif
