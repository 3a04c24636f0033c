/* Sweeps (the values of each axis among an output file's items) and contact sheets: labelled
 * grids of the images, one sheet per combination of the axes that are neither rows nor
 * columns (see contact_sheet.h). */
#include "contact_sheet.h"

#include "font5x7.h"
#include "kernels/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_BLOCK       4096
#define MIN_CELL         8
#define MAX_LABEL_CHARS  28
#define LABEL_TEXT_BYTES 128
#define TITLE_LINES      2

static const char *const axis_names[SD_AXIS_COUNT] = {
    [SD_AXIS_SCHEDULER] = "scheduler", [SD_AXIS_STEPS] = "steps",
    [SD_AXIS_STRENGTH] = "strength",   [SD_AXIS_NOISE_LEVEL] = "noise_level",
    [SD_AXIS_INPUT] = "input",         [SD_AXIS_PROMPT] = "prompt",
    [SD_AXIS_SEED] = "seed",           [SD_AXIS_GUIDANCE] = "guidance_scale",
};

const char *sd_axis_name(sd_axis axis) {
  return axis >= 0 && axis < SD_AXIS_COUNT ? axis_names[axis] : "none";
}

int sd_axis_parse(const char *name, sd_axis *out) {
  for (int a = 0; a < SD_AXIS_COUNT; a++)
    if (strcmp(name, axis_names[a]) == 0) {
      *out = (sd_axis)a;
      return 0;
    }
  if (strcmp(name, "guidance") == 0 || strcmp(name, "cfg") == 0) {
    *out = SD_AXIS_GUIDANCE;
    return 0;
  }
  return SD_ERROR("unknown axis '%s' (expected seed, prompt, guidance_scale, steps, scheduler, "
                  "input, strength or noise_level)",
                  name);
}

/* One value of an axis; the field used depends on the axis. */
typedef struct axis_value {
  int64_t i; /* prompt index, seed, steps */
  float f;   /* guidance scale */
  char s[SD_OUTPUT_SCHEDULER_LEN];
} axis_value;

struct sd_sweep {
  axis_value *values[SD_AXIS_COUNT]; /* (SD_SWEEP_MAX_VALUES) each, sorted */
  int count[SD_AXIS_COUNT];
  bool truncated[SD_AXIS_COUNT];
  int64_t status_counts[4]; /* pending, done, failed, damaged */
  int64_t known;
  int64_t first_failed[SD_SWEEP_FIRST_FAILURES];
  int n_first_failed;
  int64_t first_damaged[SD_SWEEP_FIRST_FAILURES];
  int n_first_damaged;
};

static axis_value record_value(const sd_output_record *rec, sd_axis axis) {
  axis_value v = {0};
  switch (axis) {
  case SD_AXIS_SCHEDULER:
    memcpy(v.s, rec->scheduler, sizeof v.s);
    break;
  case SD_AXIS_STEPS:
    v.i = rec->steps;
    break;
  case SD_AXIS_PROMPT:
    v.i = rec->prompt_index;
    break;
  case SD_AXIS_SEED:
    v.i = rec->seed;
    break;
  case SD_AXIS_GUIDANCE:
    v.f = rec->guidance_scale;
    break;
  case SD_AXIS_STRENGTH:
    v.f = rec->strength;
    break;
  case SD_AXIS_NOISE_LEVEL:
    v.i = rec->noise_level;
    break;
  case SD_AXIS_INPUT:
    v.i = rec->input_index;
    break;
  default:
    break;
  }
  return v;
}

static int compare_values(sd_axis axis, const axis_value *a, const axis_value *b) {
  if (axis == SD_AXIS_SCHEDULER)
    return strcmp(a->s, b->s);
  if (axis == SD_AXIS_GUIDANCE || axis == SD_AXIS_STRENGTH)
    return (a->f > b->f) - (a->f < b->f);
  return (a->i > b->i) - (a->i < b->i);
}

/* Position of v in the axis's sorted values, or where it would go (*found false). */
static int find_value(const sd_sweep *sweep, sd_axis axis, const axis_value *v, bool *found) {
  int lo = 0, hi = sweep->count[axis];
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    int c = compare_values(axis, &sweep->values[axis][mid], v);
    if (c == 0) {
      *found = true;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = false;
  return lo;
}

static void add_value(sd_sweep *sweep, sd_axis axis, const axis_value *v) {
  bool found;
  int at = find_value(sweep, axis, v, &found);
  if (found)
    return;
  axis_value *values = sweep->values[axis];
  int n = sweep->count[axis];
  if (n == SD_SWEEP_MAX_VALUES) {
    sweep->truncated[axis] = true;
    if (at == n)
      return;
    n--; /* drop the largest */
  }
  memmove(values + at + 1, values + at, (size_t)(n - at) * sizeof *values);
  values[at] = *v;
  sweep->count[axis] = n + 1;
}

void sd_sweep_free(sd_sweep *sweep) {
  if (!sweep)
    return;
  for (int a = 0; a < SD_AXIS_COUNT; a++)
    free(sweep->values[a]);
  free(sweep);
}

int sd_sweep_scan(sd_output_reader *reader, sd_sweep **out) {
  *out = NULL;
  const sd_output_info *info = sd_output_reader_info(reader);
  sd_sweep *sweep = calloc(1, sizeof *sweep);
  sd_output_record *records = malloc(SCAN_BLOCK * sizeof *records);
  if (!sweep || !records)
    goto out_of_memory;
  for (int a = 0; a < SD_AXIS_COUNT; a++)
    if (!(sweep->values[a] = malloc(SD_SWEEP_MAX_VALUES * sizeof(axis_value))))
      goto out_of_memory;
  for (int64_t start = 0; start < info->n_items; start += SCAN_BLOCK) {
    int64_t count = info->n_items - start < SCAN_BLOCK ? info->n_items - start : SCAN_BLOCK;
    if (sd_output_read_records(reader, start, count, records) < 0) {
      sd_sweep_free(sweep);
      free(records);
      return -1;
    }
    for (int64_t i = 0; i < count; i++) {
      const sd_output_record *rec = &records[i];
      if (rec->problem[0]) {
        sweep->status_counts[SD_SWEEP_DAMAGED]++;
        if (sweep->n_first_damaged < SD_SWEEP_FIRST_FAILURES)
          sweep->first_damaged[sweep->n_first_damaged++] = start + i;
        continue;
      }
      int status = rec->status;
      sweep->status_counts[status]++;
      if (status == SD_ITEM_FAILED && sweep->n_first_failed < SD_SWEEP_FIRST_FAILURES)
        sweep->first_failed[sweep->n_first_failed++] = start + i;
      if (status == SD_ITEM_PENDING && !info->metadata_complete)
        continue;
      sweep->known++;
      for (int a = 0; a < SD_AXIS_COUNT; a++) {
        axis_value v = record_value(rec, (sd_axis)a);
        add_value(sweep, (sd_axis)a, &v);
      }
    }
  }
  free(records);
  *out = sweep;
  return 0;
out_of_memory:
  sd_sweep_free(sweep);
  free(records);
  return SD_ERROR("out of memory for a sweep");
}

int64_t sd_sweep_status_count(const sd_sweep *sweep, int status) {
  return status >= 0 && status <= SD_SWEEP_DAMAGED ? sweep->status_counts[status] : 0;
}

int64_t sd_sweep_known_items(const sd_sweep *sweep) {
  return sweep->known;
}

int sd_sweep_axis_count(const sd_sweep *sweep, sd_axis axis) {
  return sweep->count[axis];
}

bool sd_sweep_axis_truncated(const sd_sweep *sweep, sd_axis axis) {
  return sweep->truncated[axis];
}

void sd_sweep_axis_value_text(const sd_sweep *sweep, sd_axis axis, int i, char *buf, size_t size) {
  const axis_value *v = &sweep->values[axis][i];
  if (axis == SD_AXIS_SCHEDULER)
    snprintf(buf, size, "%s", v->s[0] ? v->s : "-");
  else if (axis == SD_AXIS_GUIDANCE || axis == SD_AXIS_STRENGTH)
    snprintf(buf, size, "%g", v->f);
  else
    snprintf(buf, size, "%lld", (long long)v->i);
}

int sd_sweep_first_damaged(const sd_sweep *sweep, const int64_t **indices) {
  *indices = sweep->first_damaged;
  return sweep->n_first_damaged;
}

int sd_sweep_first_failures(const sd_sweep *sweep, const int64_t **indices) {
  *indices = sweep->first_failed;
  return sweep->n_first_failed;
}

sd_sheet_options sd_sheet_options_default(void) {
  return (sd_sheet_options){.rows = SD_AXIS_NONE,
                            .cols = SD_AXIS_NONE,
                            .max_side = 8192,
                            .max_sheets = 100,
                            .input_column = true};
}

/* A row or column label: "seed 42", "cfg 7.5", "20 steps", "euler", "prompt 3". */
static void axis_label(const sd_sweep *sweep, sd_axis axis, int i, char *buf, size_t size) {
  char value[64];
  sd_sweep_axis_value_text(sweep, axis, i, value, sizeof value);
  switch (axis) {
  case SD_AXIS_SEED:
    snprintf(buf, size, "seed %s", value);
    break;
  case SD_AXIS_GUIDANCE:
    snprintf(buf, size, "cfg %s", value);
    break;
  case SD_AXIS_STEPS:
    snprintf(buf, size, "%s steps", value);
    break;
  case SD_AXIS_PROMPT:
    snprintf(buf, size, "prompt %s", value);
    break;
  case SD_AXIS_STRENGTH:
    snprintf(buf, size, "strength %s", value);
    break;
  case SD_AXIS_NOISE_LEVEL:
    snprintf(buf, size, "noise %s", value);
    break;
  case SD_AXIS_INPUT:
    snprintf(buf, size, "input %s", value);
    break;
  default:
    snprintf(buf, size, "%s", value);
    break;
  }
}

static sd_axis default_cols(const sd_sweep *sweep, sd_axis rows) {
  const sd_axis settings[] = {SD_AXIS_GUIDANCE, SD_AXIS_STRENGTH, SD_AXIS_NOISE_LEVEL,
                              SD_AXIS_STEPS, SD_AXIS_SCHEDULER};
  sd_axis best = SD_AXIS_NONE;
  for (int k = 0; k < 5; k++) {
    sd_axis a = settings[k];
    if (a != rows && sweep->count[a] > 1 &&
        (best == SD_AXIS_NONE || sweep->count[a] > sweep->count[best]))
      best = a;
  }
  if (best != SD_AXIS_NONE)
    return best;
  if (rows != SD_AXIS_PROMPT && sweep->count[SD_AXIS_PROMPT] > 1)
    return SD_AXIS_PROMPT;
  if (rows != SD_AXIS_SEED)
    return SD_AXIS_SEED;
  return SD_AXIS_GUIDANCE;
}

/* Sizes for label scale `scale`: margins from the labels, then the cell size that fits. */
static void layout(const sd_sweep *sweep, const sd_output_info *info, int max_side, int scale,
                   sd_sheet_plan *plan) {
  plan->scale = scale;
  plan->gap = 2 * scale;
  int pad = 4 * scale;
  int longest = 0;
  char label[LABEL_TEXT_BYTES];
  for (int r = 0; r < plan->n_rows; r++) {
    axis_label(sweep, plan->rows, r, label, sizeof label);
    int n = sd_font_text_chars(label);
    longest = n > longest ? n : longest;
  }
  longest = longest < MAX_LABEL_CHARS ? longest : MAX_LABEL_CHARS;
  plan->left = pad + longest * SD_FONT_ADVANCE * scale + pad;
  int line = (SD_FONT_H + 3) * scale;
  plan->top = pad + (TITLE_LINES + 1) * line + pad; /* title, column labels */
  int cols = plan->n_cols + plan->input_column;
  double avail_w = max_side - plan->left - pad - (double)(cols - 1) * plan->gap;
  double avail_h = max_side - plan->top - pad - (double)(plan->n_rows - 1) * plan->gap;
  double s = 1.0;
  if (avail_w < (double)cols * info->width)
    s = avail_w / ((double)cols * info->width);
  if (avail_h < (double)plan->n_rows * info->height * s)
    s = avail_h / ((double)plan->n_rows * info->height);
  s = s > 0 ? s : 0;
  plan->cell_w = (int)(info->width * s);
  plan->cell_h = (int)(info->height * s);
  plan->sheet_w = plan->left + cols * plan->cell_w + (cols - 1) * plan->gap + pad;
  plan->sheet_h = plan->top + plan->n_rows * plan->cell_h + (plan->n_rows - 1) * plan->gap + pad;
}

int sd_sheet_plan_make(const sd_sweep *sweep, const sd_output_info *info,
                       const sd_sheet_options *options, sd_sheet_plan *plan) {
  memset(plan, 0, sizeof *plan);
  if (sweep->known == 0)
    return SD_ERROR("no item has metadata yet (nothing done or failed): nothing to lay out");
  if (options->max_side < 64)
    return SD_ERROR("the sheet side limit %d is under 64 pixels", options->max_side);
  sd_axis rows = options->rows, cols = options->cols;
  if (rows == SD_AXIS_NONE)
    rows = cols == SD_AXIS_SEED ? SD_AXIS_PROMPT : SD_AXIS_SEED;
  if (cols == SD_AXIS_NONE)
    cols = default_cols(sweep, rows);
  if (rows == cols)
    return SD_ERROR("rows and columns are the same axis (%s)", sd_axis_name(rows));
  for (int k = 0; k < 2; k++) {
    sd_axis a = k ? cols : rows;
    if (sweep->truncated[a])
      return SD_ERROR("axis %s has more than %d values: too many for %s", sd_axis_name(a),
                      SD_SWEEP_MAX_VALUES, k ? "columns" : "rows");
  }
  plan->rows = rows;
  plan->cols = cols;
  plan->n_rows = sweep->count[rows];
  plan->n_cols = sweep->count[cols];
  plan->n_sheets = 1;
  int k = 0;
  for (int a = 0; a < SD_AXIS_COUNT; a++) {
    if (a == rows || a == cols)
      continue;
    plan->fixed[k++] = (sd_axis)a;
    plan->n_sheets *= sweep->count[a];
  }
  plan->n_written = plan->n_sheets < options->max_sheets ? plan->n_sheets : options->max_sheets;
  /* the inputs beside the outputs: one per row, or the sheet's one in the first row */
  bool input_fixed = rows != SD_AXIS_INPUT && cols != SD_AXIS_INPUT;
  plan->input_column = options->input_column && info->n_inputs > 0 &&
                       sweep->values[SD_AXIS_INPUT][sweep->count[SD_AXIS_INPUT] - 1].i >= 0 &&
                       (rows == SD_AXIS_INPUT || input_fixed);

  /* labels grow with the images (readable on large cells), never past what the cells allow */
  int image_side = info->width < info->height ? info->width : info->height;
  int scale = image_side / 128;
  scale = scale < 1 ? 1 : scale > 4 ? 4 : scale;
  layout(sweep, info, options->max_side, scale, plan);
  while (plan->scale > 1 && (plan->cell_w < plan->scale * 128 || plan->cell_h < plan->scale * 128))
    layout(sweep, info, options->max_side, plan->scale - 1, plan);
  if (plan->cell_w < MIN_CELL || plan->cell_h < MIN_CELL)
    return SD_ERROR("%d rows x %d columns do not fit in %d pixels a side (cells would be %dx%d "
                    "pixels): choose axes with fewer values or a larger limit",
                    plan->n_rows, plan->n_cols, options->max_side, plan->cell_w, plan->cell_h);
  return 0;
}

void sd_sheet_shrink(const uint8_t *src, int w, int h, uint8_t *dst, int dw, int dh,
                     size_t dst_stride) {
  for (int y = 0; y < dh; y++) {
    int y0 = (int)((int64_t)y * h / dh), y1 = (int)((int64_t)(y + 1) * h / dh);
    y1 = y1 > y0 ? y1 : y0 + 1;
    for (int x = 0; x < dw; x++) {
      int x0 = (int)((int64_t)x * w / dw), x1 = (int)((int64_t)(x + 1) * w / dw);
      x1 = x1 > x0 ? x1 : x0 + 1;
      uint32_t sum[3] = {0, 0, 0};
      for (int sy = y0; sy < y1; sy++)
        for (int sx = x0; sx < x1; sx++)
          for (int c = 0; c < 3; c++)
            sum[c] += src[((size_t)sy * w + sx) * 3 + c];
      uint32_t n = (uint32_t)((y1 - y0) * (x1 - x0));
      for (int c = 0; c < 3; c++)
        dst[(size_t)y * dst_stride + (size_t)x * 3 + c] = (uint8_t)((sum[c] + n / 2) / n);
    }
  }
}

static const uint8_t white[3] = {255, 255, 255};
static const uint8_t black[3] = {0, 0, 0};
static const uint8_t pending_grey[3] = {205, 205, 205};
static const uint8_t pending_mark[3] = {120, 120, 120};
static const uint8_t failed_grey[3] = {110, 110, 110};
static const uint8_t failed_mark[3] = {200, 30, 30};

static void fill_rect(uint8_t *rgb, int width, int x, int y, int w, int h, const uint8_t c[3]) {
  for (int yy = y; yy < y + h; yy++)
    for (int xx = x; xx < x + w; xx++)
      memcpy(rgb + ((size_t)yy * width + xx) * 3, c, 3);
}

/* Text centred in a box, at the largest scale up to max_scale that fits; nothing if none does. */
static void draw_centered(uint8_t *rgb, int width, int height, int x, int y, int w, int h,
                          int max_scale, const uint8_t color[3], const char *text) {
  int chars = sd_font_text_chars(text);
  for (int s = max_scale; s >= 1; s--) {
    int tw = chars * SD_FONT_ADVANCE * s - s, th = SD_FONT_H * s;
    if (tw <= w && th <= h) {
      sd_font_draw(rgb, width, height, x + (w - tw) / 2, y + (h - th) / 2, s, color, text, chars);
      return;
    }
  }
}

/* A cell's mark: pending, light grey with a grey diagonal and "pending"; failed, dark grey with a
 * red cross and "failed". */
static void draw_status_cell(uint8_t *rgb, const sd_sheet_plan *p, int x, int y, bool failed) {
  fill_rect(rgb, p->sheet_w, x, y, p->cell_w, p->cell_h, failed ? failed_grey : pending_grey);
  int thick = p->scale;
  int n = p->cell_w > p->cell_h ? p->cell_w : p->cell_h;
  for (int k = 0; k < n; k++) {
    int cx = (int)((int64_t)k * p->cell_w / n), cy = (int)((int64_t)k * p->cell_h / n);
    for (int t = 0; t < thick && cx + t < p->cell_w; t++) {
      memcpy(rgb + ((size_t)(y + cy) * p->sheet_w + x + cx + t) * 3,
             failed ? failed_mark : pending_mark, 3);
      if (failed)
        memcpy(rgb + ((size_t)(y + cy) * p->sheet_w + x + p->cell_w - 1 - cx - t) * 3, failed_mark,
               3);
    }
  }
  draw_centered(rgb, p->sheet_w, p->sheet_h, x, y, p->cell_w, p->cell_h, p->scale,
                failed ? white : black, failed ? "failed" : "pending");
}

/* Value index of each fixed axis for sheet index (mixed radix, the first fixed axis slowest). */
static void sheet_fixed_values(const sd_sweep *sweep, const sd_sheet_plan *p, int64_t index,
                               int values[SD_AXIS_COUNT - 2]) {
  for (int k = SD_AXIS_COUNT - 3; k >= 0; k--) {
    int n = sweep->count[p->fixed[k]];
    values[k] = (int)(index % n);
    index /= n;
  }
}

/* "prompt 0: <text> | 25 steps | euler | rows: seed, columns: guidance_scale": the fixed values
 * first, as they tell the sheets apart. */
static int make_title(sd_output_reader *reader, const sd_sweep *sweep, const sd_sheet_plan *p,
                      const int fixed[SD_AXIS_COUNT - 2], char *title, size_t size) {
  static const sd_axis order[SD_AXIS_COUNT] = {
      SD_AXIS_INPUT,    SD_AXIS_PROMPT,      SD_AXIS_SEED,  SD_AXIS_GUIDANCE,
      SD_AXIS_STRENGTH, SD_AXIS_NOISE_LEVEL, SD_AXIS_STEPS, SD_AXIS_SCHEDULER};
  const sd_output_info *info = sd_output_reader_info(reader);
  size_t len = 0;
  title[0] = 0;
  for (int o = 0; o < SD_AXIS_COUNT; o++)
    for (int k = 0; k < SD_AXIS_COUNT - 2 && len < size; k++) {
      sd_axis axis = p->fixed[k];
      if (axis != order[o])
        continue;
      /* a text-to-image file's input, strength and noise level say nothing */
      bool input_axis =
          axis == SD_AXIS_INPUT || axis == SD_AXIS_STRENGTH || axis == SD_AXIS_NOISE_LEVEL;
      if (input_axis && info->n_inputs == 0)
        continue;
      if (axis == SD_AXIS_NOISE_LEVEL && sweep->values[axis][fixed[k]].i < 0)
        continue;
      char label[LABEL_TEXT_BYTES];
      axis_label(sweep, axis, fixed[k], label, sizeof label);
      char *prompt = NULL;
      if (axis == SD_AXIS_PROMPT)
        SD_TRY(sd_output_read_prompt(reader, sweep->values[SD_AXIS_PROMPT][fixed[k]].i, &prompt));
      int64_t input = sweep->values[SD_AXIS_INPUT][fixed[k]].i;
      if (axis == SD_AXIS_INPUT && input >= 0) {
        sd_output_input row;
        SD_TRY(sd_output_read_input(reader, input, &row));
        prompt = strdup(row.files[SD_OUTPUT_INPUT_IMAGE]);
        sd_output_input_free(&row);
        if (!prompt)
          return SD_ERROR("out of memory");
      }
      int n = snprintf(title + len, size - len, "%s%s%s | ", label, prompt ? ": " : "",
                       prompt ? prompt : "");
      free(prompt);
      len += n > 0 ? (size_t)n : 0;
    }
  if (len < size)
    snprintf(title + len, size - len, "rows: %s, columns: %s", sd_axis_name(p->rows),
             sd_axis_name(p->cols));
  return 0;
}

static void draw_labels(uint8_t *rgb, const sd_sweep *sweep, const sd_sheet_plan *p,
                        const char *title) {
  int s = p->scale, pad = 4 * s, line = (SD_FONT_H + 3) * s;
  int advance = SD_FONT_ADVANCE * s;
  /* the title over TITLE_LINES lines, broken at a space where one is near, the rest cut */
  int fit = (p->sheet_w - 2 * pad) / advance;
  const char *rest = title;
  for (int l = 0; l < TITLE_LINES && *rest && fit > 0; l++) {
    int take = sd_font_text_chars(rest);
    if (take > fit) {
      take = fit;
      for (int k = fit; l + 1 < TITLE_LINES && k > fit / 2; k--)
        if (*sd_font_skip(rest, k) == ' ') {
          take = k + 1;
          break;
        }
    }
    sd_font_draw(rgb, p->sheet_w, p->sheet_h, pad, pad + l * line, s, black, rest, take);
    rest = sd_font_skip(rest, take);
  }
  char label[LABEL_TEXT_BYTES];
  if (p->input_column) {
    int tw = sd_font_text_chars("input") * advance - s;
    sd_font_draw(rgb, p->sheet_w, p->sheet_h, p->left + (p->cell_w - tw) / 2,
                 pad + TITLE_LINES * line, s, black, "input", 5);
  }
  for (int c = 0; c < p->n_cols; c++) {
    axis_label(sweep, p->cols, c, label, sizeof label);
    int x = p->left + (c + p->input_column) * (p->cell_w + p->gap);
    int fit_cell = (p->cell_w + p->gap) / advance;
    int chars = sd_font_text_chars(label);
    int shown = chars < fit_cell ? chars : fit_cell;
    int tw = shown * advance - s;
    sd_font_draw(rgb, p->sheet_w, p->sheet_h, x + (p->cell_w - tw) / 2, pad + TITLE_LINES * line, s,
                 black, label, shown);
  }
  int fit_left = (p->left - 2 * pad) / advance;
  for (int r = 0; r < p->n_rows; r++) {
    axis_label(sweep, p->rows, r, label, sizeof label);
    int y = p->top + r * (p->cell_h + p->gap) + (p->cell_h - SD_FONT_H * s) / 2;
    sd_font_draw(rgb, p->sheet_w, p->sheet_h, pad, y, s, black, label, fit_left);
  }
}

/* Cell (row, col) of the item on sheet index, or false when it is on another sheet. */
static bool item_cell(const sd_sweep *sweep, const sd_sheet_plan *p, const sd_output_record *rec,
                      int64_t index, int *row, int *col) {
  int value_index[SD_AXIS_COUNT];
  for (int a = 0; a < SD_AXIS_COUNT; a++) {
    axis_value v = record_value(rec, (sd_axis)a);
    bool found;
    value_index[a] = find_value(sweep, (sd_axis)a, &v, &found);
    if (!found)
      return false;
  }
  int64_t sheet = 0;
  for (int k = 0; k < SD_AXIS_COUNT - 2; k++)
    sheet = sheet * sweep->count[p->fixed[k]] + value_index[p->fixed[k]];
  if (sheet != index)
    return false;
  *row = value_index[p->rows];
  *col = value_index[p->cols];
  return true;
}

void sd_sheet_scale(const uint8_t *src, int w, int h, uint8_t *dst, int dw, int dh,
                    size_t dst_stride) {
  if (dw <= w && dh <= h) {
    sd_sheet_shrink(src, w, h, dst, dw, dh, dst_stride);
    return;
  }
  for (int y = 0; y < dh; y++) {
    int sy = (int)((int64_t)y * h / dh);
    for (int x = 0; x < dw; x++) {
      int sx = (int)((int64_t)x * w / dw);
      memcpy(dst + (size_t)y * dst_stride + (size_t)x * 3, src + ((size_t)sy * w + sx) * 3, 3);
    }
  }
}

/* The input column: each row's input (rows over inputs), or the sheet's input in the first row. */
static void draw_inputs(uint8_t *rgb, const sd_sweep *sweep, const sd_sheet_plan *p,
                        const int fixed[SD_AXIS_COUNT - 2], sd_sheet_input_loader load_input,
                        void *load_ctx) {
  int fixed_input = 0;
  for (int k = 0; k < SD_AXIS_COUNT - 2; k++)
    if (p->fixed[k] == SD_AXIS_INPUT)
      fixed_input = fixed[k];
  int rows = p->rows == SD_AXIS_INPUT ? p->n_rows : 1;
  for (int r = 0; r < rows; r++) {
    int64_t input = sweep->values[SD_AXIS_INPUT][p->rows == SD_AXIS_INPUT ? r : fixed_input].i;
    int x = p->left, y = p->top + r * (p->cell_h + p->gap);
    uint8_t *cell = rgb + ((size_t)y * p->sheet_w + x) * 3;
    if (input >= 0 && load_input &&
        load_input(load_ctx, input, p->cell_w, p->cell_h, cell, (size_t)p->sheet_w * 3) == 0)
      continue;
    sd_error_clear();
    fill_rect(rgb, p->sheet_w, x, y, p->cell_w, p->cell_h, pending_grey);
    draw_centered(rgb, p->sheet_w, p->sheet_h, x, y, p->cell_w, p->cell_h, p->scale, black,
                  "no input");
  }
}

int sd_sheet_render(sd_output_reader *reader, const sd_sweep *sweep, const sd_sheet_plan *p,
                    int64_t index, uint8_t **out, char *title, size_t title_size,
                    int64_t *n_damaged) {
  return sd_sheet_render_inputs(reader, sweep, p, index, NULL, NULL, out, title, title_size,
                                n_damaged);
}

int sd_sheet_render_inputs(sd_output_reader *reader, const sd_sweep *sweep, const sd_sheet_plan *p,
                           int64_t index, sd_sheet_input_loader load_input, void *load_ctx,
                           uint8_t **out, char *title, size_t title_size, int64_t *n_damaged) {
  *out = NULL;
  if (n_damaged)
    *n_damaged = 0;
  const sd_output_info *info = sd_output_reader_info(reader);
  if (index < 0 || index >= p->n_written)
    return SD_ERROR("sheet %lld outside [0, %lld)", (long long)index, (long long)p->n_written);
  int fixed[SD_AXIS_COUNT - 2];
  sheet_fixed_values(sweep, p, index, fixed);
  SD_TRY(make_title(reader, sweep, p, fixed, title, title_size));

  size_t image_bytes = (size_t)info->width * info->height * 3;
  uint8_t *rgb = malloc((size_t)p->sheet_w * p->sheet_h * 3);
  uint8_t *image = malloc(image_bytes);
  sd_output_record *records = malloc(SCAN_BLOCK * sizeof *records);
  if (!rgb || !image || !records) {
    free(rgb);
    free(image);
    free(records);
    return SD_ERROR("out of memory for a %dx%d sheet", p->sheet_w, p->sheet_h);
  }
  fill_rect(rgb, p->sheet_w, 0, 0, p->sheet_w, p->sheet_h, white);
  for (int r = 0; r < p->n_rows; r++)
    for (int c = 0; c < p->n_cols; c++)
      draw_status_cell(rgb, p, p->left + (c + p->input_column) * (p->cell_w + p->gap),
                       p->top + r * (p->cell_h + p->gap), false);
  draw_labels(rgb, sweep, p, title);
  if (p->input_column)
    draw_inputs(rgb, sweep, p, fixed, load_input, load_ctx);

  for (int64_t start = 0; start < info->n_items; start += SCAN_BLOCK) {
    int64_t count = info->n_items - start < SCAN_BLOCK ? info->n_items - start : SCAN_BLOCK;
    if (sd_output_read_records(reader, start, count, records) < 0)
      goto fail;
    for (int64_t i = 0; i < count; i++) {
      const sd_output_record *rec = &records[i];
      int row, col;
      if (rec->problem[0] || rec->status == SD_ITEM_PENDING ||
          !item_cell(sweep, p, rec, index, &row, &col))
        continue;
      int x = p->left + (col + p->input_column) * (p->cell_w + p->gap),
          y = p->top + row * (p->cell_h + p->gap);
      if (rec->status == SD_ITEM_FAILED) {
        draw_status_cell(rgb, p, x, y, true);
        continue;
      }
      if (sd_output_read_image(reader, start + i, image) < 0) {
        sd_error_clear();
        draw_status_cell(rgb, p, x, y, true);
        if (n_damaged)
          (*n_damaged)++;
        continue;
      }
      sd_sheet_shrink(image, info->width, info->height, rgb + ((size_t)y * p->sheet_w + x) * 3,
                      p->cell_w, p->cell_h, (size_t)p->sheet_w * 3);
    }
  }
  free(image);
  free(records);
  *out = rgb;
  return 0;
fail:
  free(rgb);
  free(image);
  free(records);
  return -1;
}
