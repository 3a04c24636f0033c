/* PIL's Image.resize for "RGB" and "L" images with a convolution filter (Pillow's
 * libImaging/Resample.c): coefficients per output pixel in double from the filter over its
 * support (scaled by the reduction factor), normalised to sum 1, rounded to fixed point with 22
 * fractional bits; a horizontal pass over the rows the vertical pass needs, then a vertical
 * pass; each output is (sum + 2^21) >> 22 clipped to 0..255. Same coefficients, same integer
 * arithmetic, so the same pixels. */
#include "image.h"
#include "image_internal.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

typedef struct resample_filter {
  double (*weight)(double x);
  double support;
} resample_filter;

static double box_weight(double x) {
  return x > -0.5 && x <= 0.5 ? 1.0 : 0.0;
}

static double bilinear_weight(double x) {
  x = fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

static double hamming_weight(double x) {
  x = fabs(x);
  if (x == 0.0)
    return 1.0;
  if (x >= 1.0)
    return 0.0;
  x = x * M_PI;
  return sin(x) / x * (0.54f + 0.46f * cos(x)); /* 0.54f, 0.46f: float constants as in PIL */
}

static double bicubic_weight(double x) {
  const double a = -0.5;
  x = fabs(x);
  if (x < 1.0)
    return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0)
    return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

static double sinc(double x) {
  if (x == 0.0)
    return 1.0;
  x = x * M_PI;
  return sin(x) / x;
}

static double lanczos_weight(double x) {
  return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0;
}

static int filter_of(sd_resample kind, resample_filter *f) {
  switch (kind) {
  case SD_RESAMPLE_BOX:
    *f = (resample_filter){box_weight, 0.5};
    return 0;
  case SD_RESAMPLE_BILINEAR:
    *f = (resample_filter){bilinear_weight, 1.0};
    return 0;
  case SD_RESAMPLE_HAMMING:
    *f = (resample_filter){hamming_weight, 1.0};
    return 0;
  case SD_RESAMPLE_BICUBIC:
    *f = (resample_filter){bicubic_weight, 2.0};
    return 0;
  case SD_RESAMPLE_LANCZOS:
    *f = (resample_filter){lanczos_weight, 3.0};
    return 0;
  }
  return SD_ERROR("unknown resampling filter %d", (int)kind);
}

int sd_resample_parse(const char *name, sd_resample *out) {
  static const struct {
    const char *name;
    sd_resample kind;
  } names[] = {{"box", SD_RESAMPLE_BOX},
               {"bilinear", SD_RESAMPLE_BILINEAR},
               {"hamming", SD_RESAMPLE_HAMMING},
               {"bicubic", SD_RESAMPLE_BICUBIC},
               {"lanczos", SD_RESAMPLE_LANCZOS}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(name, names[i].name) == 0) {
      *out = names[i].kind;
      return 0;
    }
  return SD_ERROR("unknown resampling filter '%s' (expected box, bilinear, hamming, bicubic or "
                  "lanczos)",
                  name);
}

/* Coefficients of one axis (PIL's precompute_coeffs + normalize_coeffs_8bpc): for output pixel
 * i, inputs bounds[2i] .. bounds[2i] + bounds[2i+1] - 1 with fixed-point weights
 * kk[i * ksize + j]. Returns ksize, or -1. */
typedef struct axis_coeffs {
  int ksize;
  int *bounds; /* (out_size, 2) */
  int32_t *kk; /* (out_size, ksize) */
} axis_coeffs;

static void axis_coeffs_free(axis_coeffs *c) {
  free(c->bounds);
  free(c->kk);
}

static int axis_coeffs_make(int in_size, float in0, float in1, int out_size,
                            const resample_filter *f, axis_coeffs *c) {
  double scale = (double)(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = f->support * filterscale;
  int ksize = (int)ceil(support) * 2 + 1;
  c->ksize = ksize;
  c->bounds = malloc((size_t)out_size * 2 * sizeof *c->bounds);
  c->kk = calloc((size_t)out_size * ksize, sizeof *c->kk);
  double *k = malloc((size_t)ksize * sizeof *k);
  if (!c->bounds || !c->kk || !k) {
    free(k);
    axis_coeffs_free(c);
    return SD_ERROR("out of memory for resampling coefficients");
  }
  double inv_filterscale = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; xx++) {
    double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0)
      xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size)
      xmax = in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; x++) {
      double w = f->weight((x + xmin - center + 0.5) * inv_filterscale);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; x++) {
      double v = ww != 0.0 ? k[x] / ww : k[x];
      c->kk[(size_t)xx * ksize + x] =
          v < 0 ? (int)(-0.5 + v * (1 << PRECISION_BITS)) : (int)(0.5 + v * (1 << PRECISION_BITS));
    }
    c->bounds[2 * xx] = xmin;
    c->bounds[2 * xx + 1] = xmax;
  }
  free(k);
  return 0;
}

static uint8_t clip8(int64_t sum) {
  int64_t v = sum >> PRECISION_BITS;
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* out (rows, out_w, ch) from rows first_row .. of in (.., in_w, ch), along x. */
static void pass_horizontal(const uint8_t *in, int in_w, int ch, int first_row, int rows,
                            const axis_coeffs *c, int out_w, uint8_t *out) {
  for (int y = 0; y < rows; y++) {
    const uint8_t *line = in + (size_t)(y + first_row) * in_w * ch;
    for (int xx = 0; xx < out_w; xx++) {
      int xmin = c->bounds[2 * xx], xmax = c->bounds[2 * xx + 1];
      const int32_t *k = c->kk + (size_t)xx * c->ksize;
      for (int b = 0; b < ch; b++) {
        int32_t ss = 1 << (PRECISION_BITS - 1);
        for (int x = 0; x < xmax; x++)
          ss += line[(size_t)(x + xmin) * ch + b] * k[x];
        out[((size_t)y * out_w + xx) * ch + b] = clip8(ss);
      }
    }
  }
}

/* out (out_h, w, ch) from in (.., w, ch), along y; bounds relative to in's first row. */
static void pass_vertical(const uint8_t *in, int w, int ch, const axis_coeffs *c, int out_h,
                          uint8_t *out) {
  for (int yy = 0; yy < out_h; yy++) {
    int ymin = c->bounds[2 * yy], ymax = c->bounds[2 * yy + 1];
    const int32_t *k = c->kk + (size_t)yy * c->ksize;
    for (size_t i = 0; i < (size_t)w * ch; i++) {
      int32_t ss = 1 << (PRECISION_BITS - 1);
      for (int y = 0; y < ymax; y++)
        ss += in[(size_t)(y + ymin) * w * ch + i] * k[y];
      out[(size_t)yy * w * ch + i] = clip8(ss);
    }
  }
}

/* PIL's ImagingResampleInner over the whole of in. Pillow 13 runs the horizontal pass first
 * (over only the rows the vertical pass reads), except when the height shrinks by more rows than
 * twice the columns the width shrinks by (in->height - height > 2 (in->width - width), which
 * holds whenever the width grows and the height shrinks): then the vertical pass runs first. The
 * order changes the rounding of the intermediate image, so it is followed. */
static int resample(const sd_image *in, int width, int height, const resample_filter *f,
                    sd_image *out) {
  int ch = in->channels;
  bool need_h = width != in->width, need_v = height != in->height;
  int shrink_h = in->height - height, shrink_w = in->width - width;
  bool vertical_first = need_h && need_v && shrink_h > 0 && shrink_h > 2 * shrink_w;
  axis_coeffs vert = {0}, horiz = {0};
  uint8_t *temp = NULL;
  int rc = axis_coeffs_make(in->height, 0, (float)in->height, height, f, &vert);
  if (rc == 0)
    rc = axis_coeffs_make(in->width, 0, (float)in->width, width, f, &horiz);
  if (rc == 0)
    rc = sd_image_alloc(out, width, height, ch);
  if (rc < 0)
    goto out;
  if (!need_h || !need_v) {
    if (need_h)
      pass_horizontal(in->data, in->width, ch, 0, height, &horiz, width, out->data);
    else
      pass_vertical(in->data, width, ch, &vert, height, out->data);
    goto out;
  }
  if (vertical_first) {
    temp = malloc((size_t)in->width * height * ch);
    if (!temp) {
      rc = SD_ERROR("out of memory for a resampling pass");
      goto out;
    }
    pass_vertical(in->data, in->width, ch, &vert, height, temp);
    pass_horizontal(temp, in->width, ch, 0, height, &horiz, width, out->data);
    goto out;
  }
  int first_row = vert.bounds[0];
  int last_row = vert.bounds[2 * height - 2] + vert.bounds[2 * height - 1];
  for (int i = 0; i < height; i++)
    vert.bounds[2 * i] -= first_row;
  temp = malloc((size_t)width * (last_row - first_row) * ch);
  if (!temp) {
    rc = SD_ERROR("out of memory for a resampling pass");
    goto out;
  }
  pass_horizontal(in->data, in->width, ch, first_row, last_row - first_row, &horiz, width, temp);
  pass_vertical(temp, width, ch, &vert, height, out->data);
out:
  if (rc < 0)
    sd_image_free(out);
  axis_coeffs_free(&vert);
  axis_coeffs_free(&horiz);
  free(temp);
  return rc;
}

int sd_image_resize(const sd_image *in, int width, int height, sd_resample kind, sd_image *out) {
  memset(out, 0, sizeof *out);
  if (in->channels != 1 && in->channels != 3)
    return SD_ERROR("resize: %d channels (expected 1 or 3)", in->channels);
  if (width < 1 || height < 1)
    return SD_ERROR("resize: target size %dx%d is empty", width, height);
  resample_filter f;
  SD_TRY(filter_of(kind, &f));
  if (width == in->width && height == in->height) {
    SD_TRY(sd_image_alloc(out, width, height, in->channels));
    memcpy(out->data, in->data, (size_t)width * height * in->channels);
    return 0;
  }
  return resample(in, width, height, &f, out);
}

int sd_image_to_luma(const sd_image *rgb, sd_image *out) {
  memset(out, 0, sizeof *out);
  if (rgb->channels != 3)
    return SD_ERROR("convert to L: %d channels (expected RGB)", rgb->channels);
  SD_TRY(sd_image_alloc(out, rgb->width, rgb->height, 1));
  size_t n = (size_t)rgb->width * rgb->height;
  for (size_t i = 0; i < n; i++) {
    const uint8_t *p = rgb->data + 3 * i;
    out->data[i] = (uint8_t)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
  }
  return 0;
}
