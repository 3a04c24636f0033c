/* torch's CPU interpolate(mode="bilinear" | "bicubic", antialias=True, align_corners=False) on a
 * uint8 image, what torchvision's resize(..., antialias=True) runs for uint8 tensors on the CPU
 * (aten/src/ATen/native/cpu/UpSampleKernel.cpp: separable_upsample_generic_Nd_kernel_impl, and
 * its AVX2 twin UpSampleKernelAVXAntialias.h, which does the same integer arithmetic):
 *  - per axis, coefficients in double as PIL computes them (support 1 or 2 times the reduction
 *    factor, weights normalised to sum 1), but the cubic is written as torch writes it
 *    (cubic_convolution1/2, a = -0.5) and the rounding to fixed point differs from PIL's: int16
 *    weights with a per-axis precision, the largest number of fractional bits (at most 22) that
 *    keeps the axis' largest weight below 2^15 (14 bits when a weight is near 1);
 *  - a horizontal pass over every input row when the width changes, then a vertical pass when
 *    the height changes; each output is (2^(p-1) + sum w * x) >> p clamped to 0..255;
 *  - the same size on both axes gives a copy (torchvision returns the image unchanged).
 * Same coefficients, same integer arithmetic, so the same pixels. */
#include "image.h"
#include "image_internal.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PRECISION 22

typedef struct torch_filter {
  double (*weight)(double x);
  int interp_size; /* taps without antialiasing: 2 (linear) or 4 (cubic) */
} torch_filter;

/* HelperInterpLinear::aa_filter */
static double linear_weight(double x) {
  x = fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

/* HelperInterpCubic::aa_filter with a = -0.5 (PIL's; torch uses -0.75 only without antialias),
 * through cubic_convolution1 / cubic_convolution2 as torch writes them. */
static double cubic_weight(double x) {
  const double a = -0.5;
  x = fabs(x);
  if (x < 1.0)
    return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2.0)
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0.0;
}

/* One axis: output i reads inputs bounds[2i] .. bounds[2i] + bounds[2i+1] - 1 with the int16
 * weights kk[i * ksize ..], in fixed point with `precision` fractional bits. */
typedef struct torch_axis {
  int ksize;
  int precision;
  int *bounds; /* (out_size, 2) */
  int16_t *kk; /* (out_size, ksize) */
} torch_axis;

static void torch_axis_free(torch_axis *a) {
  free(a->bounds);
  free(a->kk);
}

/* _compute_indices_min_size_weights_aa for output i: the bounds and the normalised double
 * weights w (ksize, zero past the bounds); returns the largest weight (0 when they sum to 0). */
static double axis_weights(const torch_filter *f, int in_size, double scale, double support,
                           int ksize, int i, int *xmin_out, int *xsize_out, double *w) {
  double center = scale * (i + 0.5);
  double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  int64_t xmin = (int64_t)(center - support + 0.5);
  if (xmin < 0)
    xmin = 0;
  int64_t xmax = (int64_t)(center + support + 0.5);
  int64_t xsize = (xmax < in_size ? xmax : in_size) - xmin;
  xsize = xsize < 0 ? 0 : xsize > ksize ? ksize : xsize;
  double total = 0.0;
  for (int64_t j = 0; j < xsize; j++) {
    w[j] = f->weight(((double)(j + xmin) - center + 0.5) * invscale);
    total += w[j];
  }
  double w_max = 0.0;
  if (total != 0.0)
    for (int64_t j = 0; j < xsize; j++) {
      w[j] /= total;
      w_max = w[j] > w_max ? w[j] : w_max;
    }
  for (int64_t j = xsize; j < ksize; j++)
    w[j] = 0.0;
  *xmin_out = (int)xmin;
  *xsize_out = (int)xsize;
  return w_max;
}

/* _compute_index_ranges_int16_weights: the axis' double weights, its precision, then each
 * weight w as (int16)(w 2^p rounded half away from zero). */
static int torch_axis_make(const torch_filter *f, int in_size, int out_size, torch_axis *a) {
  double scale = (double)in_size / out_size;
  double support = scale >= 1.0 ? (f->interp_size * 0.5) * scale : f->interp_size * 0.5;
  int ksize = (int)ceil(support) * 2 + 1;
  a->ksize = ksize;
  a->bounds = malloc((size_t)out_size * 2 * sizeof *a->bounds);
  a->kk = malloc((size_t)out_size * ksize * sizeof *a->kk);
  double *w = malloc((size_t)out_size * ksize * sizeof *w);
  if (!a->bounds || !a->kk || !w) {
    free(w);
    torch_axis_free(a);
    return SD_ERROR("out of memory for resampling coefficients");
  }
  double w_max = 0.0;
  for (int i = 0; i < out_size; i++) {
    double m = axis_weights(f, in_size, scale, support, ksize, i, &a->bounds[2 * i],
                            &a->bounds[2 * i + 1], w + (size_t)i * ksize);
    w_max = m > w_max ? m : w_max;
  }
  int p = 0;
  while (p < MAX_PRECISION && (int)(0.5 + w_max * (1 << (p + 1))) < (1 << 15))
    p++;
  a->precision = p;
  for (size_t k = 0; k < (size_t)out_size * ksize; k++) {
    double v = w[k] * (1 << p);
    a->kk[k] = (int16_t)(v < 0 ? (int)(-0.5 + v) : (int)(0.5 + v));
  }
  free(w);
  return 0;
}

static uint8_t clamp8(int32_t sum, int precision) {
  int32_t v = sum >> precision;
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* basic_loop_aa_horizontal<uint8_t>: out (rows, out_w, ch) from in (rows, in_w, ch). */
static void torch_pass_horizontal(const uint8_t *in, int in_w, int ch, int rows,
                                  const torch_axis *a, int out_w, uint8_t *out) {
  for (int y = 0; y < rows; y++) {
    const uint8_t *line = in + (size_t)y * in_w * ch;
    for (int xx = 0; xx < out_w; xx++) {
      int xmin = a->bounds[2 * xx], xsize = a->bounds[2 * xx + 1];
      const int16_t *k = a->kk + (size_t)xx * a->ksize;
      for (int c = 0; c < ch; c++) {
        int32_t sum = 1 << (a->precision - 1);
        for (int x = 0; x < xsize; x++)
          sum += line[(size_t)(xmin + x) * ch + c] * k[x];
        out[((size_t)y * out_w + xx) * ch + c] = clamp8(sum, a->precision);
      }
    }
  }
}

/* basic_loop_aa_vertical<uint8_t>: out (out_h, w, ch) from in (.., w, ch). */
static void torch_pass_vertical(const uint8_t *in, int w, int ch, const torch_axis *a, int out_h,
                                uint8_t *out) {
  size_t row = (size_t)w * ch;
  for (int yy = 0; yy < out_h; yy++) {
    int ymin = a->bounds[2 * yy], ysize = a->bounds[2 * yy + 1];
    const int16_t *k = a->kk + (size_t)yy * a->ksize;
    for (size_t i = 0; i < row; i++) {
      int32_t sum = 1 << (a->precision - 1);
      for (int y = 0; y < ysize; y++)
        sum += in[(size_t)(ymin + y) * row + i] * k[y];
      out[(size_t)yy * row + i] = clamp8(sum, a->precision);
    }
  }
}

static int filter_of(sd_resample kind, torch_filter *f) {
  if (kind == SD_RESAMPLE_BILINEAR) {
    *f = (torch_filter){linear_weight, 2};
    return 0;
  }
  if (kind == SD_RESAMPLE_BICUBIC) {
    *f = (torch_filter){cubic_weight, 4};
    return 0;
  }
  return SD_ERROR("torch's antialiased resize: filter %d is not bilinear or bicubic", (int)kind);
}

/* separable_upsample_generic_Nd_kernel_impl: the width, then the height. */
static int torch_resample(const sd_image *in, int width, int height, const torch_filter *f,
                          sd_image *out) {
  int ch = in->channels;
  bool need_h = width != in->width, need_v = height != in->height;
  torch_axis horiz = {0}, vert = {0};
  uint8_t *temp = NULL;
  int rc = need_h ? torch_axis_make(f, in->width, width, &horiz) : 0;
  if (rc == 0 && need_v)
    rc = torch_axis_make(f, in->height, height, &vert);
  if (rc == 0)
    rc = sd_image_alloc(out, width, height, ch);
  if (rc < 0)
    goto out;
  if (!need_v) {
    torch_pass_horizontal(in->data, in->width, ch, height, &horiz, width, out->data);
  } else if (!need_h) {
    torch_pass_vertical(in->data, width, ch, &vert, height, out->data);
  } else {
    temp = malloc((size_t)width * in->height * ch);
    if (!temp) {
      rc = SD_ERROR("out of memory for a resampling pass");
      goto out;
    }
    torch_pass_horizontal(in->data, in->width, ch, in->height, &horiz, width, temp);
    torch_pass_vertical(temp, width, ch, &vert, height, out->data);
  }
out:
  if (rc < 0)
    sd_image_free(out);
  torch_axis_free(&horiz);
  torch_axis_free(&vert);
  free(temp);
  return rc;
}

int sd_image_resize_torch_aa(const sd_image *in, int width, int height, sd_resample kind,
                             sd_image *out) {
  memset(out, 0, sizeof *out);
  if (in->channels != 1 && in->channels != 3)
    return SD_ERROR("resize: %d channels (expected 1 or 3)", in->channels);
  if (width < 1 || height < 1)
    return SD_ERROR("resize: target size %dx%d is empty", width, height);
  torch_filter f;
  SD_TRY(filter_of(kind, &f));
  if (width == in->width && height == in->height) {
    SD_TRY(sd_image_alloc(out, width, height, in->channels));
    memcpy(out->data, in->data, (size_t)width * height * in->channels);
    return 0;
  }
  return torch_resample(in, width, height, &f, out);
}
