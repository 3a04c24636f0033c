/* The taps of torch's F.interpolate (mode "bilinear" or "bicubic") along one axis, as ATen's CPU
 * kernel (UpSampleKernel.cpp, HelperInterpLinear / HelperInterpCubic) computes them in float32 for
 * float tensors: which source indices an output position reads and with which weights. One
 * implementation for the host (kernels/cpu/interpolate.c) and the CUDA kernel: plain C, and
 * __host__ __device__ when nvcc compiles it. The source coordinate is computed one rounded float32
 * operation at a time (each through double, which rounds float32 products and sums exactly once),
 * so no compiler can fuse it into an FMA and move an index across a floor() boundary. */
#ifndef SD_INTERPOLATE_H
#define SD_INTERPOLATE_H

#include "ops.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __CUDACC__
#define SD_INTERP_FN static inline __host__ __device__
#else
#define SD_INTERP_FN static inline
#endif

/* Taps per axis of each mode. */
#define SD_INTERP_MAX_TAPS 4

SD_INTERP_FN float sd_interp_mul(float a, float b) {
  return (float)((double)a * (double)b);
}

SD_INTERP_FN float sd_interp_add(float a, float b) {
  return (float)((double)a + (double)b);
}

/* Keys' cubic convolution kernel with A = -0.75 (ATen's cubic_convolution1 for |x| <= 1 and
 * cubic_convolution2 for 1 < |x| < 2). */
SD_INTERP_FN float sd_interp_cubic1(float x) {
  const float a = -0.75f;
  return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
}

SD_INTERP_FN float sd_interp_cubic2(float x) {
  const float a = -0.75f;
  return ((a * x - 5.0f * a) * x + 8.0f * a) * x - 4.0f * a;
}

/* The taps of output position o (0 <= o < out) of an axis resized from `in` to `out`: fills
 * idx[] (source indices in [0, in)) and w[] and returns their number (2 or 4). */
SD_INTERP_FN int sd_interp_taps(sd_interp_mode mode, bool align_corners, int64_t in, int64_t out,
                                int64_t o, int64_t *idx, float *w) {
  bool cubic = mode == SD_INTERP_BICUBIC;
  float src;
  if (align_corners) {
    float scale = out > 1 ? (float)((double)(float)(in - 1) / (double)(float)(out - 1)) : 0.0f;
    src = sd_interp_mul(scale, (float)o);
  } else {
    float scale = (float)((double)(float)in / (double)(float)out);
    src = sd_interp_add(sd_interp_mul(scale, sd_interp_add((float)o, 0.5f)), -0.5f);
    if (!cubic && src < 0.0f)
      src = 0.0f;
  }
  int64_t i = (int64_t)floorf(src);
  i = i < in - 1 ? i : in - 1;
  float t = src - (float)i;
  t = t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t);
  if (!cubic) {
    idx[0] = i;
    idx[1] = i + (i < in - 1 ? 1 : 0);
    w[0] = 1.0f - t;
    w[1] = t;
    return 2;
  }
  w[0] = sd_interp_cubic2(t + 1.0f);
  w[1] = sd_interp_cubic1(t);
  w[2] = sd_interp_cubic1(1.0f - t);
  w[3] = sd_interp_cubic2(1.0f - t + 1.0f);
  for (int j = 0; j < 4; j++) {
    int64_t k = i - 1 + j;
    idx[j] = k < 0 ? 0 : (k > in - 1 ? in - 1 : k);
  }
  return 4;
}

#endif
