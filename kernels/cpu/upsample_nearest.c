/* Nearest-neighbour resize of x (B, C, H, W) to y (B, C, Ho, Wo) with PyTorch's "nearest" source
 * index (F.interpolate(x, size=(Ho, Wo), mode="nearest")), see sd_op_upsample_nearest. The exact
 * 2x case, every UNet and VAE upsampler at sizes divisible by their depth, has its own loop. */
#include "cpu_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ATen's nearest_idx: identity and 2x are special-cased, else min(floor(dst * (in / out)), in - 1)
 * in float32. */
static int64_t source_index(int64_t dst, int64_t in, int64_t out) {
  if (out == in)
    return dst;
  if (out == 2 * in)
    return dst >> 1;
  float scale = (float)in / (float)out;
  int64_t src = (int64_t)floorf((float)dst * scale);
  return src < in - 1 ? src : in - 1;
}

static void upsample_2x(sd_backend *be, const sd_tensor *x, sd_tensor *y) {
  int64_t planes = x->shape[0] * x->shape[1];
  int64_t h = x->shape[2], w = x->shape[3];
  const float *src = x->data;
  float *dst = y->data;
  int threads = planes * h * w > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < planes; p++) {
    for (int64_t i = 0; i < h; i++) {
      const float *in = src + (p * h + i) * w;        /* row i of x */
      float *out = dst + (p * 2 * h + 2 * i) * 2 * w; /* rows 2i, 2i+1 of y */
      for (int64_t j = 0; j < w; j++) {
        out[2 * j] = in[j];
        out[2 * j + 1] = in[j];
      }
      memcpy(out + 2 * w, out, (size_t)(2 * w) * sizeof(float));
    }
  }
}

int sd_cpu_upsample_nearest(sd_backend *be, const sd_tensor *x, sd_tensor *y) {
  int64_t planes = x->shape[0] * x->shape[1];
  int64_t h = x->shape[2], w = x->shape[3], ho = y->shape[2], wo = y->shape[3];
  if (ho == 2 * h && wo == 2 * w) {
    upsample_2x(be, x, y);
    return 0;
  }
  int64_t *cols = malloc((size_t)wo * sizeof *cols); /* source column of each output column */
  if (!cols)
    return SD_ERROR("upsample_nearest: out of memory for %lld column indices", (long long)wo);
  for (int64_t j = 0; j < wo; j++)
    cols[j] = source_index(j, w, wo);
  const float *src = x->data;
  float *dst = y->data;
  int threads = planes * ho * wo > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < planes; p++) {
    for (int64_t i = 0; i < ho; i++) {
      const float *in = src + (p * h + source_index(i, h, ho)) * w;
      float *out = dst + (p * ho + i) * wo;
      for (int64_t j = 0; j < wo; j++)
        out[j] = in[cols[j]];
    }
  }
  free(cols);
  return 0;
}
