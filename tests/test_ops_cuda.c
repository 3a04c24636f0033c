/* The CUDA backend's ops against the CPU backend (the oracle; test_ops_cpu checks it against naive
 * loops) on identical inputs: random values rounded to the CUDA activation dtype, uploaded to
 * both. Runs with F16, BF16 and F32 activations, on odd shapes, SD-sized shapes, unaligned views
 * and both attention paths (fused for head dims <= 160, cuBLAS + softmax beyond, chunked).
 *
 * Tolerance of computed ops: |gpu - cpu| <= tol * max|cpu| + tol * |cpu| with tol 1e-4 (F32),
 * 1e-2 (F16), 3e-2 (BF16). Data movement, lincomb, clamp, blend_window, add_channel_bias and dtype
 * conversions must match exactly: the CPU's float32 result rounded once to the dtype, as the GPU
 * rounds. Batch invariance (ops.h) of linear, conv2d, group_norm and attention: each item of a
 * batch of 3 computed alone must equal the batch's bit for bit. randn_philox: within
 * 2.5e-6 + 1e-6 |cpu| in F32 (the GPU's sine against libm's, as RNG.md measured against torch),
 * plus one ulp of the dtype in F16 / BF16; an item drawn alone equals it in a batch bit for bit.
 * timestep_embedding: within one float32 ulp of the CPU (+ one ulp of the dtype), rows identical.
 * Exits 77 (skipped) when no CUDA device is available. */
#include "kernels/error.h"
#include "kernels/ops.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sd_backend *cpu, *gpu;
static sd_dtype dtype; /* the CUDA backend's activation dtype in this round */
static float tol;      /* relative tolerance of computed ops in this round */
static uint32_t seed = 1;

/* One tensor on each backend, meant to hold the same values. */
typedef struct twin {
  sd_tensor c; /* CPU, float32 */
  sd_tensor g; /* CUDA, dtype */
} twin;

typedef struct twin_mark {
  sd_arena_mark c, g;
} twin_mark;

static void die(const char *what) {
  fprintf(stderr, "setup failed (%s): %s\n", what, sd_error_message());
  exit(2);
}

static void check_rc(int rc, const char *what) {
  CHECK(rc == 0, "%s failed: %s", what, sd_error_message());
}

static twin_mark mark(void) {
  twin_mark m = {sd_arena_get_mark(cpu), sd_arena_get_mark(gpu)};
  return m;
}

static void release(twin_mark m) {
  sd_arena_release(cpu, m.c);
  sd_arena_release(gpu, m.g);
}

/* v rounded to this round's dtype (to nearest even, as uploads do). */
static float round_to_dtype(float v) {
  if (dtype == SD_DTYPE_F16)
    return sd_f16_to_f32(sd_f32_to_f16(v));
  if (dtype == SD_DTYPE_BF16)
    return sd_bf16_to_f32(sd_f32_to_bf16(v));
  return v;
}

static twin twin_empty(int ndim, const int64_t *shape) {
  twin t = {sd_tensor_make(SD_DTYPE_F32, ndim, shape), sd_tensor_make(dtype, ndim, shape)};
  if (sd_tensor_alloc(cpu, &t.c) < 0 || sd_tensor_alloc(gpu, &t.g) < 0)
    die("tensor alloc");
  return t;
}

/* Uploads host values (already representable in dtype) to both tensors. */
static void twin_set(twin *t, const float *host) {
  if (sd_tensor_upload_f32(cpu, &t->c, host) < 0 || sd_tensor_upload_f32(gpu, &t->g, host) < 0)
    die("upload");
}

/* Random values in [offset - scale, offset + scale], rounded to dtype, on both backends. */
static twin twin_random(int ndim, const int64_t *shape, float scale, float offset) {
  twin t = twin_empty(ndim, shape);
  size_t n = (size_t)sd_tensor_numel(&t.c);
  float *host = malloc(n * sizeof(float));
  sd_test_fill_random(host, n, seed++, scale);
  for (size_t i = 0; i < n; i++)
    host[i] = round_to_dtype(host[i] + offset);
  twin_set(&t, host);
  free(host);
  return t;
}

/* A view of rows [first, first + count) of both tensors (outermost dim). */
static twin twin_slice(const twin *t, int64_t first, int64_t count) {
  twin s = {sd_tensor_slice0(&t->c, first, count), sd_tensor_slice0(&t->g, first, count)};
  return s;
}

static float *download(sd_backend *be, const sd_tensor *t) {
  size_t n = (size_t)sd_tensor_numel(t);
  float *host = malloc((n ? n : 1) * sizeof(float));
  if (sd_tensor_download_f32(be, t, host) < 0)
    die("download");
  return host;
}

/* Compares the CUDA tensor with the CPU one: exactly (after rounding the CPU's values to dtype)
 * or within tol. */
static void compare(const char *what, const twin *t, bool exact) {
  size_t n = (size_t)sd_tensor_numel(&t->c);
  float *want = download(cpu, &t->c);
  float *got = download(gpu, &t->g);
  char label[192];
  snprintf(label, sizeof label, "[%s] %s", sd_dtype_name(dtype), what);
  if (exact) {
    for (size_t i = 0; i < n; i++)
      want[i] = round_to_dtype(want[i]);
    sd_test_compare_f32(label, got, want, n, 0.0f, 0.0f);
  } else {
    float amax = 0.0f;
    for (size_t i = 0; i < n; i++)
      amax = fabsf(want[i]) > amax ? fabsf(want[i]) : amax;
    sd_test_compare_f32(label, got, want, n, tol * amax, tol);
  }
  free(want);
  free(got);
}

/* ---- host <-> device ---------------------------------------------------------------------- */

/* Uploads from F32, F16 and BF16 host data into a dtype tensor and downloads as float32: exact,
 * over magnitudes from subnormal to large, and over more values than one conversion chunk. */
static void test_conversions(void) {
  twin_mark m = mark();
  const int64_t n = ((int64_t)1 << 24) + 1001;
  float *values = malloc((size_t)n * sizeof(float));
  uint16_t *half = malloc((size_t)n * sizeof(uint16_t));
  float *want = malloc((size_t)n * sizeof(float));
  sd_test_fill_random(values, (size_t)n, seed++, 1.0f);
  for (int64_t i = 0; i < n; i++)
    values[i] = ldexpf(values[i], (int)(i % 44) - 28); /* |v| < 2^15: finite in F16 */
  sd_tensor t = sd_tensor_make(dtype, 1, &n);
  if (sd_tensor_alloc(gpu, &t) < 0)
    die("alloc");

  check_rc(sd_tensor_upload(gpu, &t, SD_DTYPE_F32, values), "upload F32");
  for (int64_t i = 0; i < n; i++)
    want[i] = round_to_dtype(values[i]);
  float *got = download(gpu, &t);
  char what[96];
  snprintf(what, sizeof what, "[%s] upload from F32, download (exact)", sd_dtype_name(dtype));
  sd_test_compare_f32(what, got, want, (size_t)n, 0.0f, 0.0f);
  free(got);

  for (int from_bf16 = 0; from_bf16 < 2; from_bf16++) {
    sd_dtype src = from_bf16 ? SD_DTYPE_BF16 : SD_DTYPE_F16;
    for (int64_t i = 0; i < n; i++) {
      half[i] = from_bf16 ? sd_f32_to_bf16(values[i]) : sd_f32_to_f16(values[i]);
      float exact = from_bf16 ? sd_bf16_to_f32(half[i]) : sd_f16_to_f32(half[i]);
      want[i] = round_to_dtype(exact);
    }
    check_rc(sd_tensor_upload(gpu, &t, src, half), "upload 16-bit");
    got = download(gpu, &t);
    snprintf(what, sizeof what, "[%s] upload from %s, download (exact)", sd_dtype_name(dtype),
             sd_dtype_name(src));
    sd_test_compare_f32(what, got, want, (size_t)n, 0.0f, 0.0f);
    free(got);
  }

  /* integers convert like the CPU backend's upload does; nothing converts into I32 */
  const int32_t ints[3] = {-7, 0, 2049};
  sd_tensor small = sd_tensor_slice0(&t, 0, 3);
  check_rc(sd_tensor_upload(gpu, &small, SD_DTYPE_I32, ints), "upload I32");
  got = download(gpu, &small);
  float want_ints[3] = {-7.0f, 0.0f, round_to_dtype(2049.0f)};
  snprintf(what, sizeof what, "[%s] upload from I32 (exact)", sd_dtype_name(dtype));
  sd_test_compare_f32(what, got, want_ints, 3, 0.0f, 0.0f);
  free(got);
  sd_tensor ints_tensor = sd_tensor_1d(SD_DTYPE_I32, 3);
  if (sd_tensor_alloc(gpu, &ints_tensor) < 0)
    die("alloc");
  sd_error_clear();
  CHECK(sd_tensor_upload(gpu, &ints_tensor, SD_DTYPE_F32, want_ints) == -1 && *sd_error_message(),
        "upload converted F32 host data into an I32 tensor");
  free(values);
  free(half);
  free(want);
  release(m);
}

/* ---- compute ops -------------------------------------------------------------------------- */

/* unaligned: x is a view one row (K values) into a larger tensor, so with K odd its address is
 * only 2- or 4-byte aligned. */
static void linear_case(int64_t m0, int64_t m1, int64_t k, int64_t n, sd_activation act,
                        bool with_bias, bool unaligned) {
  twin_mark m = mark();
  int64_t rows = m0 * m1, skip = unaligned ? 1 : 0;
  twin x_rows = twin_random(2, (int64_t[]){rows + skip, k}, 1.0f, 0.0f);
  twin x_view = twin_slice(&x_rows, skip, rows); /* (M, K) */
  twin x;                                        /* (m0, m1, K) */
  if (sd_tensor_reshape(&x_view.c, 3, (int64_t[]){m0, m1, k}, &x.c) < 0 ||
      sd_tensor_reshape(&x_view.g, 3, (int64_t[]){m0, m1, k}, &x.g) < 0)
    die("reshape");
  twin w = twin_random(2, (int64_t[]){n, k}, 0.3f, 0.0f);
  twin b = twin_random(1, (int64_t[]){n}, 1.0f, 0.0f);
  twin y = twin_empty(3, (int64_t[]){m0, m1, n});
  check_rc(sd_op_linear(cpu, &x.c, &w.c, with_bias ? &b.c : NULL, act, &y.c), "cpu linear");
  check_rc(sd_op_linear(gpu, &x.g, &w.g, with_bias ? &b.g : NULL, act, &y.g), "cuda linear");
  char what[128];
  snprintf(what, sizeof what, "linear M %lld K %lld N %lld act %d bias %d%s", (long long)rows,
           (long long)k, (long long)n, (int)act, with_bias, unaligned ? " unaligned x" : "");
  compare(what, &y, false);
  release(m);
}

static void test_linear(void) {
  static const sd_activation acts[] = {SD_ACT_NONE, SD_ACT_SILU, SD_ACT_GELU, SD_ACT_GELU_TANH,
                                       SD_ACT_QUICK_GELU};
  for (int a = 0; a < 5; a++)
    for (int with_bias = 0; with_bias < 2; with_bias++)
      linear_case(3, 7, 45 + 30 * a, 29 + a, acts[a], with_bias, false);
  /* SD-sized (transformer ff, CLIP mlp, time embedding), fused epilogues on real kernels */
  linear_case(2, 150, 320, 640, SD_ACT_NONE, true, false);
  linear_case(2, 150, 320, 640, SD_ACT_GELU_TANH, true, false);
  linear_case(2, 150, 320, 640, SD_ACT_GELU_TANH, false, false);
  linear_case(2, 77, 768, 3072, SD_ACT_QUICK_GELU, true, false);
  linear_case(1, 2, 320, 1280, SD_ACT_SILU, true, false);
  /* views at odd offsets */
  linear_case(2, 5, 33, 40, SD_ACT_NONE, true, true);
  linear_case(2, 64, 321, 256, SD_ACT_GELU, true, true);
}

static void conv2d_case(int64_t batch, int64_t c, int64_t h, int64_t w, int64_t k, int64_t kh,
                        int64_t kw, int stride, int pad, bool with_bias, bool unaligned) {
  twin_mark m = mark();
  int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
  twin x_full = twin_random(4, (int64_t[]){batch + (unaligned ? 1 : 0), c, h, w}, 1.0f, 0.0f);
  twin x = unaligned ? twin_slice(&x_full, 1, batch) : x_full;
  twin wt = twin_random(4, (int64_t[]){k, c, kh, kw}, 0.3f, 0.0f);
  twin b = twin_random(1, (int64_t[]){k}, 1.0f, 0.0f);
  twin y = twin_empty(4, (int64_t[]){batch, k, ho, wo});
  check_rc(sd_op_conv2d(cpu, &x.c, &wt.c, with_bias ? &b.c : NULL, stride, pad, &y.c),
           "cpu conv2d");
  check_rc(sd_op_conv2d(gpu, &x.g, &wt.g, with_bias ? &b.g : NULL, stride, pad, &y.g),
           "cuda conv2d");
  char what[160];
  snprintf(what, sizeof what, "conv2d (%lld, %lld, %lld, %lld) -> %lld, %lldx%lld s%d p%d%s%s",
           (long long)batch, (long long)c, (long long)h, (long long)w, (long long)k, (long long)kh,
           (long long)kw, stride, pad, with_bias ? " bias" : "", unaligned ? " unaligned x" : "");
  compare(what, &y, false);
  release(m);
}

static void test_conv2d(void) {
  conv2d_case(2, 5, 9, 7, 6, 3, 3, 1, 1, true, false);
  conv2d_case(2, 5, 9, 7, 6, 3, 3, 2, 1, true, false);
  conv2d_case(1, 3, 8, 8, 4, 3, 3, 2, 0, false, false);
  conv2d_case(2, 11, 6, 10, 7, 1, 1, 1, 0, true, false);
  conv2d_case(2, 11, 6, 10, 7, 1, 1, 2, 0, false, false);
  conv2d_case(1, 4, 5, 5, 3, 1, 1, 1, 1, true, false);
  conv2d_case(1, 6, 7, 9, 5, 2, 3, 1, 2, true, false);
  conv2d_case(1, 64, 130, 128, 3, 3, 3, 1, 1, true, false);
  /* SD-sized: conv_in, a resnet conv, a downsampler, a shortcut */
  conv2d_case(2, 4, 32, 32, 320, 3, 3, 1, 1, true, false);
  conv2d_case(2, 320, 16, 16, 320, 3, 3, 1, 1, true, false);
  conv2d_case(2, 320, 16, 16, 320, 3, 3, 2, 1, true, false);
  conv2d_case(2, 320, 16, 16, 640, 1, 1, 1, 0, true, false);
  /* a view at an odd byte offset */
  conv2d_case(2, 5, 9, 7, 6, 3, 3, 1, 1, true, true);
}

static void group_norm_case(int64_t batch, int64_t c, int64_t h, int64_t w, int groups, bool silu,
                            bool alias) {
  twin_mark m = mark();
  twin x = twin_random(4, (int64_t[]){batch, c, h, w}, 2.0f, 3.0f); /* mean far from zero */
  twin g = twin_random(1, (int64_t[]){c}, 1.5f, 0.0f);
  twin bt = twin_random(1, (int64_t[]){c}, 1.0f, 0.0f);
  twin y = alias ? x : twin_empty(4, (int64_t[]){batch, c, h, w});
  check_rc(sd_op_group_norm(cpu, &x.c, &g.c, &bt.c, groups, 1e-5f, silu, &y.c), "cpu group_norm");
  check_rc(sd_op_group_norm(gpu, &x.g, &g.g, &bt.g, groups, 1e-5f, silu, &y.g), "cuda group_norm");
  char what[128];
  snprintf(what, sizeof what, "group_norm (%lld, %lld, %lld, %lld) groups %d silu %d alias %d",
           (long long)batch, (long long)c, (long long)h, (long long)w, groups, silu, alias);
  compare(what, &y, false);
  release(m);
}

static void test_group_norm(void) {
  for (int silu = 0; silu < 2; silu++)
    for (int alias = 0; alias < 2; alias++)
      group_norm_case(2, 12, 5, 7, 4, silu, alias);
  group_norm_case(2, 320, 8, 8, 32, true, false);
  /* groups of 18432 values: several statistics blocks per group */
  group_norm_case(1, 64, 96, 96, 32, true, false);
  group_norm_case(1, 128, 256, 256, 32, false, true);
}

/* group_norm_sums (host doubles) and group_norm_apply (host statistics) against the CPU ops on
 * the same inputs: sums to the tolerance of the dtype, then the affine step with the same
 * statistics. */
static void group_norm_parts_case(int64_t batch, int64_t c, int64_t h, int64_t w, int groups,
                                  bool silu) {
  twin_mark m = mark();
  twin x = twin_random(4, (int64_t[]){batch, c, h, w}, 2.0f, 3.0f);
  twin g = twin_random(1, (int64_t[]){c}, 1.5f, 0.0f);
  twin bt = twin_random(1, (int64_t[]){c}, 1.0f, 0.0f);
  twin y = twin_empty(4, (int64_t[]){batch, c, h, w});
  int64_t bg = batch * groups, n = c / groups * h * w;
  double *cs = malloc((size_t)bg * 4 * sizeof *cs), *gs = cs + 2 * bg;
  float *center = malloc((size_t)bg * 3 * sizeof *center), *stats = center + bg;
  check_rc(sd_op_group_norm_sums(cpu, &x.c, groups, NULL, cs), "cpu group_norm_sums");
  for (int64_t k = 0; k < bg; k++)
    center[k] = (float)(cs[2 * k] / (double)n);
  check_rc(sd_op_group_norm_sums(cpu, &x.c, groups, center, cs), "cpu group_norm_sums");
  check_rc(sd_op_group_norm_sums(gpu, &x.g, groups, center, gs), "cuda group_norm_sums");
  for (int64_t k = 0; k < bg; k++) {
    /* the device holds x in the round's dtype: deviations to its rounding */
    double scale = sqrt(cs[2 * k + 1] / (double)n);
    CHECK(fabs(gs[2 * k] - cs[2 * k]) <= tol * (double)n * (scale + 3.0) &&
              fabs(gs[2 * k + 1] - cs[2 * k + 1]) <= 4.0 * tol * (cs[2 * k + 1] + (double)n * 9.0),
          "group_norm_sums (%s) group %lld: %.9g %.9g, cpu %.9g %.9g", sd_dtype_name(dtype),
          (long long)k, gs[2 * k], gs[2 * k + 1], cs[2 * k], cs[2 * k + 1]);
    stats[2 * k] = center[k];
    stats[2 * k + 1] = (float)(1.0 / sqrt(cs[2 * k + 1] / (double)n + 1e-5));
  }
  check_rc(sd_op_group_norm_apply(cpu, &x.c, &g.c, &bt.c, groups, stats, silu, &y.c),
           "cpu group_norm_apply");
  check_rc(sd_op_group_norm_apply(gpu, &x.g, &g.g, &bt.g, groups, stats, silu, &y.g),
           "cuda group_norm_apply");
  char what[128];
  snprintf(what, sizeof what, "group_norm_apply (%lld, %lld, %lld, %lld) groups %d silu %d",
           (long long)batch, (long long)c, (long long)h, (long long)w, groups, silu);
  compare(what, &y, false);
  free(cs);
  free(center);
  release(m);
}

static void test_group_norm_parts(void) {
  group_norm_parts_case(2, 12, 5, 7, 4, false);
  group_norm_parts_case(1, 64, 96, 96, 32, true);
}

static void layer_norm_case(int64_t b, int64_t l, int64_t c, bool alias) {
  twin_mark m = mark();
  twin x = twin_random(3, (int64_t[]){b, l, c}, 2.0f, 1.0f);
  twin g = twin_random(1, (int64_t[]){c}, 1.5f, 0.0f);
  twin bt = twin_random(1, (int64_t[]){c}, 1.0f, 0.0f);
  twin y = alias ? x : twin_empty(3, (int64_t[]){b, l, c});
  check_rc(sd_op_layer_norm(cpu, &x.c, &g.c, &bt.c, 1e-5f, &y.c), "cpu layer_norm");
  check_rc(sd_op_layer_norm(gpu, &x.g, &g.g, &bt.g, 1e-5f, &y.g), "cuda layer_norm");
  char what[96];
  snprintf(what, sizeof what, "layer_norm (%lld, %lld, %lld) alias %d", (long long)b, (long long)l,
           (long long)c, alias);
  compare(what, &y, false);
  release(m);
}

static void test_layer_norm(void) {
  layer_norm_case(3, 5, 37, false);
  layer_norm_case(3, 5, 37, true);
  layer_norm_case(2, 77, 768, false);
  layer_norm_case(2, 64, 1280, true);
}

static void attention_case(int64_t batch, int64_t lq, int64_t lk, int heads, int64_t d,
                           bool causal) {
  twin_mark m = mark();
  int64_t width = heads * d;
  float scale = 1.0f / sqrtf((float)d);
  twin q = twin_random(3, (int64_t[]){batch, lq, width}, 2.0f, 0.0f);
  twin k = twin_random(3, (int64_t[]){batch, lk, width}, 2.0f, 0.0f);
  twin v = twin_random(3, (int64_t[]){batch, lk, width}, 1.0f, 0.0f);
  twin o = twin_empty(3, (int64_t[]){batch, lq, width});
  check_rc(sd_op_attention(cpu, &q.c, &k.c, &v.c, heads, scale, causal, &o.c), "cpu attention");
  check_rc(sd_op_attention(gpu, &q.g, &k.g, &v.g, heads, scale, causal, &o.g), "cuda attention");
  char what[128];
  snprintf(what, sizeof what, "attention B %lld Lq %lld Lk %lld heads %d D %lld causal %d",
           (long long)batch, (long long)lq, (long long)lk, heads, (long long)d, causal);
  compare(what, &o, false);
  release(m);
}

static void test_attention(void) {
  /* fused kernel: the CPU test's cases, then SD's head dims over several key tiles */
  attention_case(2, 13, 77, 3, 8, false);
  attention_case(1, 77, 77, 2, 4, true);
  attention_case(2, 300, 50, 2, 80, false);
  attention_case(1, 261, 261, 2, 40, true);
  attention_case(1, 5, 1, 1, 16, false);
  attention_case(2, 64, 77, 5, 64, false);
  attention_case(1, 100, 99, 2, 5, false);
  attention_case(2, 77, 77, 12, 64, true);
  attention_case(2, 1024, 1024, 8, 40, false);
  attention_case(2, 256, 77, 8, 160, false);
  attention_case(1, 200, 200, 2, 100, true);
  /* cuBLAS + softmax path for head dims > 160; the last two span several query chunks */
  attention_case(1, 300, 300, 1, 512, false);
  attention_case(2, 70, 70, 2, 192, true);
  attention_case(1, 3000, 4000, 1, 192, false);
  attention_case(1, 4500, 4500, 1, 192, true);
}

static void test_activation(void) {
  static const sd_activation acts[] = {SD_ACT_SILU, SD_ACT_GELU, SD_ACT_GELU_TANH,
                                       SD_ACT_QUICK_GELU, SD_ACT_RELU};
  for (int a = 0; a < 5; a++)
    for (int alias = 0; alias < 2; alias++) {
      twin_mark m = mark();
      twin x = twin_random(2, (int64_t[]){3, 1000}, 8.0f, 0.0f);
      twin y = alias ? x : twin_empty(2, (int64_t[]){3, 1000});
      check_rc(sd_op_activation(cpu, &x.c, acts[a], &y.c), "cpu activation");
      check_rc(sd_op_activation(gpu, &x.g, acts[a], &y.g), "cuda activation");
      char what[64];
      snprintf(what, sizeof what, "activation %d alias %d", (int)acts[a], alias);
      compare(what, &y, false);
      release(m);
    }
}

static void test_geglu(void) {
  twin_mark m = mark();
  twin x = twin_random(3, (int64_t[]){2, 9, 42}, 4.0f, 0.0f);
  twin y = twin_empty(3, (int64_t[]){2, 9, 21});
  check_rc(sd_op_geglu(cpu, &x.c, &y.c), "cpu geglu");
  check_rc(sd_op_geglu(gpu, &x.g, &y.g), "cuda geglu");
  compare("geglu (2, 9, 42)", &y, false);
  release(m);
}

static void test_lincomb(void) {
  const float coeffs[SD_LINCOMB_MAX] = {0.7071067f, -1.3333333f, 0.1f, 3.0000001f};
  const int64_t count = 70001;
  for (int n = 1; n <= SD_LINCOMB_MAX; n++)
    for (int alias = -1; alias < n; alias++) {
      twin_mark m = mark();
      twin xs[SD_LINCOMB_MAX];
      const sd_tensor *pc[SD_LINCOMB_MAX], *pg[SD_LINCOMB_MAX];
      for (int i = 0; i < n; i++) {
        xs[i] = twin_random(1, &count, 3.0f, 0.0f);
        pc[i] = &xs[i].c;
        pg[i] = &xs[i].g;
      }
      twin y = alias >= 0 ? xs[alias] : twin_empty(1, &count);
      check_rc(sd_op_lincomb(cpu, n, coeffs, pc, &y.c), "cpu lincomb");
      check_rc(sd_op_lincomb(gpu, n, coeffs, pg, &y.g), "cuda lincomb");
      char what[64];
      snprintf(what, sizeof what, "lincomb n %d into input %d (exact)", n, alias);
      compare(what, &y, true);
      release(m);
    }
}

static void test_data_movement(void) {
  twin_mark m = mark();
  const int64_t batch = 2, c = 5, h = 3, w = 7, cb = 3;
  twin x = twin_random(4, (int64_t[]){batch, c, h, w}, 1.0f, 0.0f);
  twin v = twin_random(2, (int64_t[]){batch, c}, 1.0f, 0.0f);
  twin b = twin_random(4, (int64_t[]){batch, cb, h, w}, 1.0f, 0.0f);

  twin y = twin_empty(4, (int64_t[]){batch, c, h, w});
  check_rc(sd_op_add_channel_bias(cpu, &x.c, &v.c, &y.c), "cpu add_channel_bias");
  check_rc(sd_op_add_channel_bias(gpu, &x.g, &v.g, &y.g), "cuda add_channel_bias");
  compare("add_channel_bias (exact)", &y, true);

  twin up = twin_empty(4, (int64_t[]){batch, c, 2 * h, 2 * w});
  check_rc(sd_op_upsample_nearest(cpu, &x.c, &up.c), "cpu upsample");
  check_rc(sd_op_upsample_nearest(gpu, &x.g, &up.g), "cuda upsample");
  compare("upsample_nearest 2x (exact)", &up, true);
  twin odd_up = twin_empty(4, (int64_t[]){batch, c, 2 * h - 1, 2 * w + 1});
  check_rc(sd_op_upsample_nearest(cpu, &x.c, &odd_up.c), "cpu upsample to an odd size");
  check_rc(sd_op_upsample_nearest(gpu, &x.g, &odd_up.g), "cuda upsample to an odd size");
  compare("upsample_nearest (2H - 1, 2W + 1) (exact)", &odd_up, true);

  twin cat = twin_empty(4, (int64_t[]){batch, c + cb, h, w});
  check_rc(sd_op_concat_channels(cpu, &x.c, &b.c, &cat.c), "cpu concat");
  check_rc(sd_op_concat_channels(gpu, &x.g, &b.g, &cat.g), "cuda concat");
  compare("concat_channels (exact)", &cat, true);

  static const int64_t shapes[][3] = {{2, 5, 21}, {2, 67, 45}, {1, 320, 1024}, {3, 1, 33}};
  for (int s = 0; s < 4; s++) {
    const int64_t *sh = shapes[s];
    twin tx = twin_random(3, sh, 1.0f, 0.0f);
    twin ty = twin_empty(3, (int64_t[]){sh[0], sh[2], sh[1]});
    check_rc(sd_op_transpose(cpu, &tx.c, &ty.c), "cpu transpose");
    check_rc(sd_op_transpose(gpu, &tx.g, &ty.g), "cuda transpose");
    char what[64];
    snprintf(what, sizeof what, "transpose (%lld, %lld, %lld) (exact)", (long long)sh[0],
             (long long)sh[1], (long long)sh[2]);
    compare(what, &ty, true);
  }

  twin table = twin_random(2, (int64_t[]){11, 6}, 1.0f, 0.0f);
  const int32_t ids[5] = {10, 0, 3, 3, 7};
  for (int round = 0; round <= 16; round++) { /* more calls than staging slots */
    int64_t count = round % 2 ? 4 : 5;
    const int32_t *first = ids + round % 2;
    twin emb = twin_empty(2, (int64_t[]){count, 6});
    check_rc(sd_op_embedding(cpu, &table.c, first, count, &emb.c), "cpu embedding");
    check_rc(sd_op_embedding(gpu, &table.g, first, count, &emb.g), "cuda embedding");
    if (round == 0 || round == 15 || round == 16)
      compare("embedding (exact)", &emb, true);
  }

  twin ba = twin_random(4, (int64_t[]){2, 3, 5, 7}, 2.0f, 0.0f);
  twin bb = twin_random(4, (int64_t[]){2, 3, 5, 7}, 2.0f, 0.0f);
  twin bm = twin_random(4, (int64_t[]){2, 1, 5, 7}, 0.5f, 0.5f);
  twin blended = twin_empty(4, (int64_t[]){2, 3, 5, 7});
  check_rc(sd_op_mask_blend(cpu, &ba.c, &bb.c, &bm.c, &blended.c), "cpu mask_blend");
  check_rc(sd_op_mask_blend(gpu, &ba.g, &bb.g, &bm.g, &blended.g), "cuda mask_blend");
  compare("mask_blend (exact)", &blended, true);

  check_rc(sd_op_clamp(cpu, &x.c, -0.5f, 0.25f, &y.c), "cpu clamp");
  check_rc(sd_op_clamp(gpu, &x.g, -0.5f, 0.25f, &y.g), "cuda clamp");
  compare("clamp (exact)", &y, true);
  float nan_in[2] = {NAN, 5.0f};
  twin pair = twin_empty(1, (int64_t[]){2});
  twin_set(&pair, nan_in);
  check_rc(sd_op_clamp(gpu, &pair.g, -1.0f, 1.0f, &pair.g), "cuda clamp in place");
  float *out = download(gpu, &pair.g);
  CHECK(isnan(out[0]) && out[1] == 1.0f, "[%s] clamp: NaN passes, 5 -> 1 (got %g, %g)",
        sd_dtype_name(dtype), out[0], out[1]);
  free(out);
  release(m);
}

/* interpolate, max_pool2d, pad2d and conv_transpose2d (DPT and its BiT backbone). Pooling and
 * padding move values and must match exactly; interpolate and conv_transpose2d are computed. */
static void test_resampling(void) {
  static const int64_t sizes[][4] = {
      {5, 7, 10, 14}, {48, 40, 6, 5}, {7, 9, 13, 4}, {24, 24, 96, 96}};
  for (int mode = 0; mode < 2; mode++)
    for (int ac = 0; ac < 2; ac++)
      for (int s = 0; s < 4; s++) {
        twin_mark m = mark();
        const int64_t *sz = sizes[s];
        sd_interp_mode im = mode ? SD_INTERP_BICUBIC : SD_INTERP_BILINEAR;
        twin x = twin_random(4, (int64_t[]){2, 3, sz[0], sz[1]}, 1.0f, 0.0f);
        twin y = twin_empty(4, (int64_t[]){2, 3, sz[2], sz[3]});
        check_rc(sd_op_interpolate(cpu, &x.c, im, ac, &y.c), "cpu interpolate");
        check_rc(sd_op_interpolate(gpu, &x.g, im, ac, &y.g), "cuda interpolate");
        char what[128];
        snprintf(what, sizeof what, "interpolate %s align_corners %d (%lld, %lld) -> (%lld, %lld)",
                 mode ? "bicubic" : "bilinear", ac, (long long)sz[0], (long long)sz[1],
                 (long long)sz[2], (long long)sz[3]);
        compare(what, &y, false);
        release(m);
      }
  twin_mark m = mark();
  twin x = twin_random(4, (int64_t[]){2, 5, 11, 10}, 1.0f, 0.0f);
  twin pooled = twin_empty(4, (int64_t[]){2, 5, 6, 5});
  check_rc(sd_op_max_pool2d(cpu, &x.c, 3, 2, 1, &pooled.c), "cpu max_pool2d");
  check_rc(sd_op_max_pool2d(gpu, &x.g, 3, 2, 1, &pooled.g), "cuda max_pool2d");
  compare("max_pool2d 3x3 stride 2 pad 1 (exact)", &pooled, true);
  twin padded = twin_empty(4, (int64_t[]){2, 5, 14, 11});
  check_rc(sd_op_pad2d(cpu, &x.c, 2, 0, -0.5f, &padded.c), "cpu pad2d");
  check_rc(sd_op_pad2d(gpu, &x.g, 2, 0, -0.5f, &padded.g), "cuda pad2d");
  compare("pad2d (2, 1, 0, 1) (exact)", &padded, true);
  static const int cases[][6] = {/* C, K, kernel, stride, pad, H */
                                 {7, 5, 4, 4, 0, 6},
                                 {9, 4, 2, 2, 0, 5},
                                 {3, 6, 3, 2, 1, 7},
                                 {256, 96, 4, 4, 0, 12}};
  for (int i = 0; i < 4; i++) {
    const int *cs = cases[i];
    int64_t ho = (int64_t)(cs[5] - 1) * cs[3] - 2 * cs[4] + cs[2];
    twin cx = twin_random(4, (int64_t[]){2, cs[0], cs[5], cs[5] + 1}, 1.0f, 0.0f);
    twin cw = twin_random(4, (int64_t[]){cs[0], cs[1], cs[2], cs[2]}, 0.3f, 0.0f);
    twin cb = twin_random(1, (int64_t[]){cs[1]}, 1.0f, 0.0f);
    twin cy = twin_empty(4, (int64_t[]){2, cs[1], ho, ho + cs[3]});
    check_rc(sd_op_conv_transpose2d(cpu, &cx.c, &cw.c, &cb.c, cs[3], cs[4], &cy.c),
             "cpu conv_transpose2d");
    check_rc(sd_op_conv_transpose2d(gpu, &cx.g, &cw.g, &cb.g, cs[3], cs[4], &cy.g),
             "cuda conv_transpose2d");
    char what[128];
    snprintf(what, sizeof what, "conv_transpose2d C %d K %d kernel %d stride %d pad %d", cs[0],
             cs[1], cs[2], cs[3], cs[4]);
    compare(what, &cy, false);
  }
  release(m);
}

/* Windows at odd offsets in each mode over a batch of 2, onto equal random destinations. */
static void test_blend_window(void) {
  static const struct {
    int64_t x_row, x_col, y_row, y_col, rows, cols;
    sd_blend_mode mode;
    const char *what;
  } cases[] = {
      {5, 7, 3, 11, 20, 30, SD_BLEND_COPY, "blend_window copy (exact)"},
      {21, 1, 0, 13, 16, 40, SD_BLEND_ROWS, "blend_window rows (exact)"},
      {2, 25, 0, 0, 29, 16, SD_BLEND_COLS, "blend_window cols (exact)"},
      {0, 0, 0, 0, 37, 41, SD_BLEND_COLS, "blend_window cols, whole x (exact)"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    twin_mark m = mark();
    twin x = twin_random(4, (int64_t[]){2, 3, 37, 41}, 1.0f, 0.0f);
    twin y = twin_random(4, (int64_t[]){2, 3, 38, 53}, 1.0f, 0.0f);
    check_rc(sd_op_blend_window(cpu, &x.c, cases[k].x_row, cases[k].x_col, &y.c, cases[k].y_row,
                                cases[k].y_col, cases[k].rows, cases[k].cols, cases[k].mode),
             "cpu blend_window");
    check_rc(sd_op_blend_window(gpu, &x.g, cases[k].x_row, cases[k].x_col, &y.g, cases[k].y_row,
                                cases[k].y_col, cases[k].rows, cases[k].cols, cases[k].mode),
             "cuda blend_window");
    compare(cases[k].what, &y, true);
    release(m);
  }
}

/* ---- batch invariance ---------------------------------------------------------------------- */

/* An op with one activation input on the CUDA backend, its other arguments in ctx. */
typedef int (*gpu_op)(const sd_tensor *x, sd_tensor *y, const void *ctx);

/* ops.h: item i of a batch must come out bit for bit as when it runs alone. Runs op on a batch
 * (x_shape[0] items, random values) and then on each item alone in freshly allocated tensors with
 * the same values, and compares exactly. Only the CUDA backend is involved. */
static void check_batch_invariance(const char *what, int ndim, const int64_t *x_shape,
                                   const int64_t *y_shape, gpu_op op, const void *ctx) {
  sd_arena_mark m = sd_arena_get_mark(gpu);
  int64_t items = x_shape[0];
  sd_tensor x = sd_tensor_make(dtype, ndim, x_shape), y = sd_tensor_make(dtype, ndim, y_shape);
  if (sd_tensor_alloc(gpu, &x) < 0 || sd_tensor_alloc(gpu, &y) < 0)
    die("tensor alloc");
  size_t x_item = (size_t)(sd_tensor_numel(&x) / items);
  size_t y_item = (size_t)(sd_tensor_numel(&y) / items);
  float *host = malloc(x_item * (size_t)items * sizeof(float));
  sd_test_fill_random(host, x_item * (size_t)items, seed++, 1.0f);
  for (size_t i = 0; i < x_item * (size_t)items; i++)
    host[i] = round_to_dtype(host[i]);
  if (sd_tensor_upload_f32(gpu, &x, host) < 0)
    die("upload");
  check_rc(op(&x, &y, ctx), what);
  float *batch = download(gpu, &y);

  int64_t one_x[SD_MAX_DIMS], one_y[SD_MAX_DIMS];
  memcpy(one_x, x_shape, (size_t)ndim * sizeof(int64_t));
  memcpy(one_y, y_shape, (size_t)ndim * sizeof(int64_t));
  one_x[0] = one_y[0] = 1;
  for (int64_t i = 0; i < items; i++) {
    sd_arena_mark item_mark = sd_arena_get_mark(gpu);
    sd_tensor xi = sd_tensor_make(dtype, ndim, one_x), yi = sd_tensor_make(dtype, ndim, one_y);
    if (sd_tensor_alloc(gpu, &xi) < 0 || sd_tensor_alloc(gpu, &yi) < 0)
      die("tensor alloc");
    if (sd_tensor_upload_f32(gpu, &xi, host + (size_t)i * x_item) < 0)
      die("upload");
    check_rc(op(&xi, &yi, ctx), what);
    float *alone = download(gpu, &yi);
    char label[192];
    snprintf(label, sizeof label, "[%s] %s: item %lld of %lld alone = in the batch (exact)",
             sd_dtype_name(dtype), what, (long long)i, (long long)items);
    sd_test_compare_f32(label, alone, batch + (size_t)i * y_item, y_item, 0.0f, 0.0f);
    free(alone);
    sd_arena_release(gpu, item_mark);
  }
  free(batch);
  free(host);
  sd_arena_release(gpu, m);
}

typedef struct linear_args {
  const sd_tensor *w, *b;
  sd_activation act;
} linear_args;

static int run_linear(const sd_tensor *x, sd_tensor *y, const void *ctx) {
  const linear_args *a = ctx;
  return sd_op_linear(gpu, x, a->w, a->b, a->act, y);
}

/* x (3, L, K) (or (3, K) when rows is 0: three items of one row, like time embeddings). */
static void linear_invariance_case(int64_t rows, int64_t k, int64_t n, sd_activation act,
                                   bool with_bias) {
  twin_mark m = mark();
  twin w = twin_random(2, (int64_t[]){n, k}, 0.3f, 0.0f);
  twin b = twin_random(1, (int64_t[]){n}, 1.0f, 0.0f);
  linear_args args = {&w.g, with_bias ? &b.g : NULL, act};
  char what[128];
  snprintf(what, sizeof what, "linear batch invariance L %lld K %lld N %lld act %d bias %d",
           (long long)rows, (long long)k, (long long)n, (int)act, with_bias);
  if (rows)
    check_batch_invariance(what, 3, (int64_t[]){3, rows, k}, (int64_t[]){3, rows, n}, run_linear,
                           &args);
  else
    check_batch_invariance(what, 2, (int64_t[]){3, k}, (int64_t[]){3, n}, run_linear, &args);
  release(m);
}

typedef struct conv_args {
  const sd_tensor *w, *b;
  int stride, pad;
} conv_args;

static int run_conv2d(const sd_tensor *x, sd_tensor *y, const void *ctx) {
  const conv_args *a = ctx;
  return sd_op_conv2d(gpu, x, a->w, a->b, a->stride, a->pad, y);
}

/* Images of C * H * W values in multiples of 16 bytes, so that every image of the batch starts as
 * aligned as a fresh tensor (what conv2d.cu asks for invariance). */
static void conv2d_invariance_case(int64_t c, int64_t h, int64_t w, int64_t k, int64_t kernel,
                                   int stride, int pad) {
  twin_mark m = mark();
  int64_t ho = (h + 2 * pad - kernel) / stride + 1, wo = (w + 2 * pad - kernel) / stride + 1;
  twin wt = twin_random(4, (int64_t[]){k, c, kernel, kernel}, 0.3f, 0.0f);
  twin b = twin_random(1, (int64_t[]){k}, 1.0f, 0.0f);
  conv_args args = {&wt.g, &b.g, stride, pad};
  char what[128];
  snprintf(what, sizeof what,
           "conv2d batch invariance (3, %lld, %lld, %lld) -> %lld, %lldx%lld s%d", (long long)c,
           (long long)h, (long long)w, (long long)k, (long long)kernel, (long long)kernel, stride);
  check_batch_invariance(what, 4, (int64_t[]){3, c, h, w}, (int64_t[]){3, k, ho, wo}, run_conv2d,
                         &args);
  release(m);
}

typedef struct group_norm_args {
  const sd_tensor *gamma, *beta;
  int groups;
} group_norm_args;

static int run_group_norm(const sd_tensor *x, sd_tensor *y, const void *ctx) {
  const group_norm_args *a = ctx;
  return sd_op_group_norm(gpu, x, a->gamma, a->beta, a->groups, 1e-5f, true, y);
}

typedef struct attention_args {
  int heads;
} attention_args;

/* self-attention: q = k = v = x */
static int run_attention(const sd_tensor *x, sd_tensor *y, const void *ctx) {
  const attention_args *a = ctx;
  float scale = 1.0f / sqrtf((float)(x->shape[2] / a->heads));
  return sd_op_attention(gpu, x, x, x, a->heads, scale, false, y);
}

static void test_batch_invariance(void) {
  /* linear: odd sizes, CLIP's mlp, a transformer ff_out with a long K at the UNet's smallest
   * level (split-K territory), a projection of many rows, time embeddings (2-D) */
  linear_invariance_case(7, 45, 29, SD_ACT_GELU_TANH, true);
  linear_invariance_case(77, 768, 3072, SD_ACT_QUICK_GELU, true);
  linear_invariance_case(64, 5120, 1280, SD_ACT_NONE, true);
  linear_invariance_case(4096, 320, 320, SD_ACT_NONE, false);
  linear_invariance_case(0, 320, 1280, SD_ACT_SILU, true);
  linear_invariance_case(0, 1280, 1280, SD_ACT_NONE, true);
  /* conv2d: odd sizes, conv_in, a resnet conv, a downsampler, a deep level */
  conv2d_invariance_case(8, 9, 7, 6, 3, 1, 1);
  conv2d_invariance_case(4, 32, 32, 320, 3, 1, 1);
  conv2d_invariance_case(320, 16, 16, 320, 3, 1, 1);
  conv2d_invariance_case(320, 16, 16, 320, 3, 2, 1);
  conv2d_invariance_case(640, 8, 8, 640, 3, 1, 1);
  /* group_norm: groups split into several statistics blocks */
  twin_mark m = mark();
  twin g = twin_random(1, (int64_t[]){128}, 1.5f, 0.0f);
  twin bt = twin_random(1, (int64_t[]){128}, 1.0f, 0.0f);
  group_norm_args gn = {&g.g, &bt.g, 32};
  check_batch_invariance("group_norm batch invariance (3, 128, 128, 128) groups 32", 4,
                         (int64_t[]){3, 128, 128, 128}, (int64_t[]){3, 128, 128, 128},
                         run_group_norm, &gn);
  release(m);
  /* attention: the fused kernel and the GEMM path (several query chunks for a batch of 3) */
  attention_args heads8 = {8}, heads1 = {1};
  check_batch_invariance("attention batch invariance (3, 256, 8 x 40)", 3, (int64_t[]){3, 256, 320},
                         (int64_t[]){3, 256, 320}, run_attention, &heads8);
  check_batch_invariance("attention batch invariance (3, 2500, 1 x 512)", 3,
                         (int64_t[]){3, 2500, 512}, (int64_t[]){3, 2500, 512}, run_attention,
                         &heads1);
}

/* torch.randn of per-item generators (seeds, 64-bit seeds, later offsets) on both backends, and
 * the torch values of seed 42 (RNG.md) on the GPU. */
static void test_randn_philox(void) {
  twin_mark m = mark();
  const int64_t shape[4] = {3, 4, 37, 29};
  const uint64_t seeds[3] = {42, 2024, 0x123456789abcdef0ull};
  const uint64_t offsets[3] = {0, 12, (uint64_t)5 << 33};
  twin t = twin_empty(4, shape);
  check_rc(sd_op_randn_philox(cpu, seeds, offsets, &t.c), "cpu randn_philox");
  check_rc(sd_op_randn_philox(gpu, seeds, offsets, &t.g), "cuda randn_philox");
  size_t n = (size_t)sd_tensor_numel(&t.c);
  float *want = download(cpu, &t.c);
  float *got = download(gpu, &t.g);
  float ulp = dtype == SD_DTYPE_F16 ? 0x1p-10f : (dtype == SD_DTYPE_BF16 ? 0x1p-7f : 0.0f);
  for (size_t i = 0; i < n; i++)
    want[i] = round_to_dtype(want[i]);
  char label[96];
  snprintf(label, sizeof label, "[%s] randn_philox (3, 4, 37, 29)", sd_dtype_name(dtype));
  sd_test_compare_f32(label, got, want, n, 2.5e-6f, 1e-6f + ulp);

  twin one = twin_empty(4, (int64_t[]){1, 4, 37, 29});
  check_rc(sd_op_randn_philox(gpu, &seeds[1], &offsets[1], &one.g), "cuda randn_philox item 1");
  float *alone = download(gpu, &one.g);
  size_t per_item = n / 3;
  CHECK(memcmp(alone, got + per_item, per_item * sizeof(float)) == 0,
        "[%s] randn_philox: item 1 alone differs from item 1 in the batch", sd_dtype_name(dtype));

  if (dtype == SD_DTYPE_F32) {
    static const float torch_want[4] = {0.19401880f, 2.16137362f, -0.17205022f, 0.84906012f};
    twin facts = twin_empty(4, (int64_t[]){1, 4, 16, 16});
    const uint64_t zero = 0;
    check_rc(sd_op_randn_philox(gpu, &seeds[0], &zero, &facts.g), "cuda randn_philox seed 42");
    float *first = download(gpu, &facts.g);
    sd_test_compare_f32("[F32] randn_philox seed 42 (torch on a GPU)", first, torch_want, 4,
                        2.5e-6f, 1e-6f);
    free(first);
  }
  free(alone);
  free(want);
  free(got);
  release(m);
}

/* diffusers' timestep projection of one timestep for a batch of 3 on both backends (the CPU's is
 * the UNet's former host computation bit for bit, test_ops_cpu): every row of the GPU's equals
 * the CPU's within one float32 ulp (the device's double exp, sin and cos against libm's, each
 * rounded to float32) plus one ulp of the dtype, the rows are identical, and a batch of 1 equals
 * row 0 bit for bit. */
static void test_timestep_embedding(void) {
  static const int64_t dims[2] = {320, 7};
  static const double timesteps[3] = {0.0, 500.5, 999.0};
  float ulp = dtype == SD_DTYPE_F16 ? 0x1p-10f : (dtype == SD_DTYPE_BF16 ? 0x1p-7f : 0.0f);
  for (int d = 0; d < 2; d++)
    for (int k = 0; k < 3; k++) {
      twin_mark m = mark();
      int64_t dim = dims[d];
      bool flip = k != 1;
      float shift = (float)(k % 2);
      twin t = twin_empty(2, (int64_t[]){3, dim});
      twin one = twin_empty(2, (int64_t[]){1, dim});
      check_rc(sd_op_timestep_embedding(cpu, timesteps[k], flip, shift, 10000.0, &t.c),
               "cpu timestep_embedding");
      check_rc(sd_op_timestep_embedding(gpu, timesteps[k], flip, shift, 10000.0, &t.g),
               "cuda timestep_embedding");
      check_rc(sd_op_timestep_embedding(gpu, timesteps[k], flip, shift, 10000.0, &one.g),
               "cuda timestep_embedding batch 1");
      size_t n = (size_t)(3 * dim);
      float *want = download(cpu, &t.c);
      float *got = download(gpu, &t.g);
      float *alone = download(gpu, &one.g);
      for (size_t i = 0; i < n; i++)
        want[i] = round_to_dtype(want[i]);
      char label[128];
      snprintf(label, sizeof label, "[%s] timestep_embedding (3, %lld) t %g flip %d shift %g",
               sd_dtype_name(dtype), (long long)dim, timesteps[k], flip, shift);
      sd_test_compare_f32(label, got, want, n, 1e-7f, 0x1p-23f + ulp);
      for (int b = 1; b < 3; b++)
        CHECK(memcmp(got, got + b * dim, (size_t)dim * sizeof(float)) == 0,
              "%s: row %d differs from row 0", label, b);
      CHECK(memcmp(alone, got, (size_t)dim * sizeof(float)) == 0,
            "%s: a batch of 1 differs from row 0", label);
      free(want);
      free(got);
      free(alone);
      release(m);
    }
}

static void run_round(sd_dtype round_dtype, float round_tol) {
  dtype = round_dtype;
  tol = round_tol;
  gpu = sd_backend_cuda_create(0, dtype);
  CHECK(gpu != NULL, "creating the CUDA backend with %s activations: %s", sd_dtype_name(dtype),
        sd_error_message());
  if (!gpu)
    return;
  CHECK(gpu->ops->act_dtype == dtype && gpu->ops->weight_dtype == dtype,
        "backend reports act %s, weight %s", sd_dtype_name(gpu->ops->act_dtype),
        sd_dtype_name(gpu->ops->weight_dtype));
  test_conversions();
  test_linear();
  test_conv2d();
  test_group_norm();
  test_group_norm_parts();
  test_layer_norm();
  test_attention();
  test_activation();
  test_geglu();
  test_lincomb();
  test_data_movement();
  test_blend_window();
  test_resampling();
  test_batch_invariance();
  test_randn_philox();
  test_timestep_embedding();
  check_rc(gpu->ops->synchronize(gpu), "synchronize");
  sd_backend_destroy(gpu);
  gpu = NULL;
}

int main(void) {
  sd_backend *probe = sd_backend_cuda_create(0, SD_DTYPE_F16);
  if (!probe) {
    printf("skipped: %s\n", sd_error_message());
    return 77;
  }
  sd_backend_destroy(probe);
  cpu = sd_backend_cpu_create(0);
  if (!cpu)
    die("cpu backend");

  sd_error_clear();
  CHECK(sd_backend_cuda_create(1 << 20, SD_DTYPE_F16) == NULL && *sd_error_message(),
        "created a backend on device 1048576");
  CHECK(sd_backend_cuda_create(0, SD_DTYPE_I32) == NULL, "created a backend computing in I32");

  run_round(SD_DTYPE_F32, 1e-4f);
  run_round(SD_DTYPE_F16, 1e-2f);
  run_round(SD_DTYPE_BF16, 3e-2f);
  sd_backend_destroy(cpu);
  return sd_test_finish();
}
