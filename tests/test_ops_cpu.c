/* The CPU backend's ops against naive references written here (plain loops, double sums) on
 * random inputs with odd shapes, plus the shape checks of sd_op_* and batch invariance (an
 * item's output bit for bit the same alone and in a batch). Everything runs with the default
 * thread count and with 3 threads. Tolerance for computed ops: |got - want| <= 1e-5 + 1e-4 |want|;
 * data movement ops and lincomb must match exactly, and so must randn_philox against worker/rng's
 * host stream (sd_rng_randn, itself checked against torch in test_rng). timestep_embedding:
 * within 1.5e-4 of diffusers' formula in double, and bit for bit the UNet's former host
 * projection. Where the CPU has AVX512_BF16 or AMX, linear and conv2d run again with bfloat16
 * inputs against references on the same bfloat16-rounded inputs (same tolerance), with batch
 * invariance; a persistent conv2d weight is checked through re-upload and free (the backend
 * keeps a prepared copy of it). */
#include "kernels/error.h"
#include "kernels/ops.h"
#include "rng/rng.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATOL 1e-5f
#define RTOL 1e-4f

static sd_backend *be;
static uint32_t seed = 1;
/* The backend takes bfloat16 inputs to linear and conv2d (sd_backend_cpu_create_precision): their
 * references then use inputs rounded to bfloat16 as the backend rounds them (to nearest even),
 * so the products are exact and only the float32 sums differ, as in float32. */
static bool bf16_inputs;

/* h rounded to bfloat16 in place when the backend computes so. */
static void round_like_backend(float *h, size_t n) {
  if (bf16_inputs)
    for (size_t i = 0; i < n; i++)
      h[i] = sd_bf16_to_f32(sd_f32_to_bf16(h[i]));
}

/* An arena tensor of the given shape filled with random values in [-scale, scale]; host copy in
 * *host (caller frees). */
static sd_tensor random_tensor(int ndim, const int64_t *shape, float scale, float **host) {
  sd_tensor t = sd_tensor_make(SD_DTYPE_F32, ndim, shape);
  size_t n = (size_t)sd_tensor_numel(&t);
  float *h = malloc(n * sizeof(float));
  sd_test_fill_random(h, n, seed++, scale);
  if (sd_tensor_alloc(be, &t) < 0 || sd_tensor_upload_f32(be, &t, h) < 0) {
    fprintf(stderr, "setup failed: %s\n", sd_error_message());
    exit(2);
  }
  *host = h;
  return t;
}

static sd_tensor empty_tensor(int ndim, const int64_t *shape) {
  sd_tensor t = sd_tensor_make(SD_DTYPE_F32, ndim, shape);
  if (sd_tensor_alloc(be, &t) < 0) {
    fprintf(stderr, "setup failed: %s\n", sd_error_message());
    exit(2);
  }
  return t;
}

/* Downloads t and compares with want (tolerance atol, rtol). */
static void expect(const char *what, const sd_tensor *t, const float *want, float atol,
                   float rtol) {
  size_t n = (size_t)sd_tensor_numel(t);
  float *got = malloc(n * sizeof(float));
  CHECK(sd_tensor_download_f32(be, t, got) == 0, "%s: download", what);
  sd_test_compare_f32(what, got, want, n, atol, rtol);
  free(got);
}

static void check_rc(int rc, const char *what) {
  CHECK(rc == 0, "%s failed: %s", what, sd_error_message());
}

static double ref_activate(double x, sd_activation act) {
  switch (act) {
  case SD_ACT_SILU:
    return x / (1.0 + exp(-x));
  case SD_ACT_GELU:
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
  case SD_ACT_GELU_TANH:
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
  case SD_ACT_QUICK_GELU:
    return x / (1.0 + exp(-1.702 * x));
  case SD_ACT_RELU:
    return x > 0.0 ? x : 0.0;
  case SD_ACT_NONE:
    break;
  }
  return x;
}

/* Shapes (m0, m1, K, N) per activation: small ones run on one thread; (2, 150, 200, 70) splits
 * rows over threads, (1, 40, 300, 200) splits columns. */
static const int64_t linear_shapes[][4] = {
    {3, 7, 45, 29}, {3, 7, 75, 30}, {2, 150, 200, 70}, {1, 40, 300, 200}, {3, 7, 165, 33}};

static void test_linear(void) {
  static const sd_activation acts[] = {SD_ACT_NONE, SD_ACT_SILU, SD_ACT_GELU, SD_ACT_GELU_TANH,
                                       SD_ACT_QUICK_GELU};
  for (int a = 0; a < 5; a++) {
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      sd_arena_mark mark = sd_arena_get_mark(be);
      const int64_t *shape = linear_shapes[(a + 2 * with_bias) % 5];
      int64_t m0 = shape[0], m1 = shape[1], k = shape[2], n = shape[3];
      float *hx, *hw, *hb = NULL;
      sd_tensor x = random_tensor(3, (int64_t[]){m0, m1, k}, 1.0f, &hx);
      sd_tensor w = random_tensor(2, (int64_t[]){n, k}, 0.3f, &hw);
      sd_tensor b;
      if (with_bias)
        b = random_tensor(1, (int64_t[]){n}, 1.0f, &hb);
      sd_tensor y = empty_tensor(3, (int64_t[]){m0, m1, n});
      check_rc(sd_op_linear(be, &x, &w, with_bias ? &b : NULL, acts[a], &y), "linear");
      round_like_backend(hx, (size_t)(m0 * m1 * k));
      round_like_backend(hw, (size_t)(n * k));
      float *want = malloc((size_t)(m0 * m1 * n) * sizeof(float));
      for (int64_t r = 0; r < m0 * m1; r++)
        for (int64_t j = 0; j < n; j++) {
          double s = hb ? hb[j] : 0.0;
          for (int64_t i = 0; i < k; i++)
            s += (double)hx[r * k + i] * hw[j * k + i];
          want[r * n + j] = (float)ref_activate(s, acts[a]);
        }
      char what[128];
      snprintf(what, sizeof what, "linear (%lld, %lld, %lld) x (%lld, %lld)^T act %d bias %d",
               (long long)m0, (long long)m1, (long long)k, (long long)n, (long long)k, a,
               with_bias);
      expect(what, &y, want, ATOL, RTOL);
      free(want), free(hx), free(hw), free(hb);
      sd_arena_release(be, mark);
    }
  }
}

/* want (B, K, Ho, Wo) = conv(x (B, C, H, W), w (K, C, kh, kw)) + b (K) in double; b may be NULL. */
static void ref_conv2d(const float *hx, const float *hw, const float *hb, int64_t batch, int64_t c,
                       int64_t h, int64_t w, int64_t k, int64_t kh, int64_t kw, int stride, int pad,
                       float *want) {
  int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
  for (int64_t n = 0; n < batch; n++)
    for (int64_t o = 0; o < k; o++)
      for (int64_t i = 0; i < ho; i++)
        for (int64_t j = 0; j < wo; j++) {
          double s = hb ? hb[o] : 0.0;
          for (int64_t ci = 0; ci < c; ci++)
            for (int64_t u = 0; u < kh; u++)
              for (int64_t v = 0; v < kw; v++) {
                int64_t ii = i * stride - pad + u, jj = j * stride - pad + v;
                if (ii < 0 || ii >= h || jj < 0 || jj >= w)
                  continue;
                s += (double)hx[((n * c + ci) * h + ii) * w + jj] *
                     hw[((o * c + ci) * kh + u) * kw + v];
              }
          want[((n * k + o) * ho + i) * wo + j] = (float)s;
        }
}

static void test_conv2d_case_tol(int64_t batch, int64_t c, int64_t h, int64_t w, int64_t k,
                                 int64_t kh, int64_t kw, int stride, int pad, bool with_bias,
                                 float atol) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
  float *hx, *hw, *hb = NULL;
  sd_tensor x = random_tensor(4, (int64_t[]){batch, c, h, w}, 1.0f, &hx);
  sd_tensor wt = random_tensor(4, (int64_t[]){k, c, kh, kw}, 0.3f, &hw);
  sd_tensor b;
  if (with_bias)
    b = random_tensor(1, (int64_t[]){k}, 1.0f, &hb);
  sd_tensor y = empty_tensor(4, (int64_t[]){batch, k, ho, wo});
  check_rc(sd_op_conv2d(be, &x, &wt, with_bias ? &b : NULL, stride, pad, &y), "conv2d");
  round_like_backend(hx, (size_t)sd_tensor_numel(&x));
  round_like_backend(hw, (size_t)sd_tensor_numel(&wt));
  float *want = malloc((size_t)sd_tensor_numel(&y) * sizeof(float));
  ref_conv2d(hx, hw, hb, batch, c, h, w, k, kh, kw, stride, pad, want);
  char what[128];
  snprintf(what, sizeof what, "conv2d (%lld, %lld, %lld, %lld) -> %lld, %lldx%lld s%d p%d",
           (long long)batch, (long long)c, (long long)h, (long long)w, (long long)k, (long long)kh,
           (long long)kw, stride, pad);
  expect(what, &y, want, atol, RTOL);
  free(want), free(hx), free(hw), free(hb);
  sd_arena_release(be, mark);
}

static void test_conv2d_case(int64_t batch, int64_t c, int64_t h, int64_t w, int64_t k, int64_t kh,
                             int64_t kw, int stride, int pad, bool with_bias) {
  test_conv2d_case_tol(batch, c, h, w, k, kh, kw, stride, pad, with_bias, ATOL);
}

/* A persistent weight, as the model's: the backend may keep a prepared copy of it (the CPU
 * backend's blocked convolution weights), which must follow a new upload into the same tensor and
 * must not outlive the tensor (a new weight at a reused address). */
static void test_conv2d_persistent_weight(void) {
  const int64_t batch = 2, c = 24, h = 10, w = 9, k = 20;
  sd_arena_mark mark = sd_arena_get_mark(be);
  float *hx, *hb;
  sd_tensor x = random_tensor(4, (int64_t[]){batch, c, h, w}, 1.0f, &hx);
  sd_tensor b = random_tensor(1, (int64_t[]){k}, 1.0f, &hb);
  round_like_backend(hx, (size_t)sd_tensor_numel(&x));
  sd_tensor y = empty_tensor(4, (int64_t[]){batch, k, h, w});
  size_t wn = (size_t)(k * c * 9), yn = (size_t)sd_tensor_numel(&y);
  float *hw = malloc(wn * sizeof(float)), *want = malloc(yn * sizeof(float));
  const char *steps[3] = {"first upload", "second upload into the same tensor",
                          "a new tensor after free"};
  sd_tensor wt = sd_tensor_4d(SD_DTYPE_F32, k, c, 3, 3);
  for (int step = 0; step < 3; step++) {
    if (step != 1) {
      sd_tensor_free(be, &wt);
      check_rc(sd_tensor_alloc_persistent(be, &wt), "persistent weight");
    }
    sd_test_fill_random(hw, wn, seed++, 0.3f);
    check_rc(sd_tensor_upload_f32(be, &wt, hw), "weight upload");
    round_like_backend(hw, wn);
    for (int run = 0; run < 2; run++) { /* the second run uses what the first prepared */
      check_rc(sd_op_conv2d(be, &x, &wt, &b, 1, 1, &y), "conv2d");
      ref_conv2d(hx, hw, hb, batch, c, h, w, k, 3, 3, 1, 1, want);
      char what[128];
      snprintf(what, sizeof what, "conv2d with a persistent weight, %s, run %d", steps[step],
               run + 1);
      expect(what, &y, want, ATOL, RTOL);
    }
  }
  sd_tensor_free(be, &wt);
  free(hx), free(hb), free(hw), free(want);
  sd_arena_release(be, mark);
}

static void test_conv2d(void) {
  test_conv2d_case(2, 5, 9, 7, 6, 3, 3, 1, 1, true);
  test_conv2d_case(2, 5, 9, 7, 6, 3, 3, 2, 1, true);
  test_conv2d_case(1, 3, 8, 8, 4, 3, 3, 2, 0, false);
  test_conv2d_case(2, 11, 6, 10, 7, 1, 1, 1, 0, true);
  test_conv2d_case(2, 11, 6, 10, 7, 1, 1, 2, 0, false);
  test_conv2d_case(1, 4, 5, 5, 3, 1, 1, 1, 1, true);
  test_conv2d_case(1, 6, 7, 9, 5, 2, 3, 1, 2, true);
  test_conv2d_case(2, 32, 33, 31, 24, 3, 3, 2, 1, true);
  test_conv2d_case(2, 40, 24, 20, 36, 1, 1, 1, 0, true);
  /* im2col larger than the scratch bound: processed in column chunks */
  test_conv2d_case(1, 64, 130, 128, 3, 3, 3, 1, 1, true);
  /* a wide 3x3 layer (256 -> 272 channels, 32 x 36, as the SD UNet's 32 x 32 level): Winograd
   * where the CPU has its kernel (AVX-512). Sums of 2304 products of values up to 1 and 0.3:
   * the direct kernel is off by up to 4.6e-5 here, oneDNN's Winograd kernel by 8.0e-5 (1 and 2
   * threads), so 2.5e-4 absolute (outputs up to ~20) */
  test_conv2d_case_tol(1, 256, 32, 36, 272, 3, 3, 1, 1, true, 2.5e-4f);
  /* a large 3x3 layer (64 -> 80 channels, 128 x 132): Winograd where the CPU has its kernel
   * (AVX-512). Sums of 576 products of values up to 1 and 0.3 (outputs up to ~10): the direct
   * kernel is off by up to 1.3e-5 here, oneDNN's Winograd kernels by 5.7e-6 (2x3, 2 threads) to
   * 2.0e-5 (4x3, 1 thread), so 5e-5 absolute */
  test_conv2d_case_tol(1, 64, 128, 132, 80, 3, 3, 1, 1, true, 5e-5f);
  char kernels[512];
  sd_backend_kernels(be, kernels, sizeof kernels);
  const char *conv = strstr(kernels, "conv2d");
  printf("ok   kernels so far: %s\n", conv ? conv : kernels);
  if (!bf16_inputs && __builtin_cpu_supports("avx512f"))
    CHECK(strstr(kernels, "wino") != NULL,
          "an AVX-512 CPU ran the large float32 3x3 layer without Winograd: %s", kernels);
}

/* (B, C, H, W, groups): one small, one large enough to run over threads */
static const int64_t group_norm_shapes[][5] = {{2, 12, 5, 7, 4}, {2, 64, 23, 30, 32}};

static void test_group_norm(void) {
  for (int silu = 0; silu < 2; silu++)
    for (int alias = 0; alias < 2; alias++) {
      sd_arena_mark mark = sd_arena_get_mark(be);
      const int64_t *shape = group_norm_shapes[(silu + alias) % 2];
      int64_t batch = shape[0], c = shape[1], h = shape[2], w = shape[3], groups = shape[4];
      float eps = silu ? 1e-5f : 0.25f; /* a large eps shows whether it sits inside the sqrt */
      float *hx, *hg, *hb;
      sd_tensor x = random_tensor(4, (int64_t[]){batch, c, h, w}, 2.0f, &hx);
      for (size_t i = 0; i < (size_t)(batch * c * h * w); i++)
        hx[i] += 3.0f; /* mean far from zero */
      check_rc(sd_tensor_upload_f32(be, &x, hx), "upload");
      sd_tensor g = random_tensor(1, (int64_t[]){c}, 1.5f, &hg);
      sd_tensor bt = random_tensor(1, (int64_t[]){c}, 1.0f, &hb);
      sd_tensor y = alias ? x : empty_tensor(4, (int64_t[]){batch, c, h, w});
      check_rc(sd_op_group_norm(be, &x, &g, &bt, (int)groups, eps, silu, &y), "group_norm");
      int64_t cg = c / groups, hw = h * w;
      float *want = malloc((size_t)(batch * c * hw) * sizeof(float));
      for (int64_t n = 0; n < batch; n++)
        for (int64_t gi = 0; gi < groups; gi++) {
          const float *blk = hx + (n * c + gi * cg) * hw;
          double mean = 0.0, var = 0.0;
          for (int64_t i = 0; i < cg * hw; i++)
            mean += blk[i];
          mean /= (double)(cg * hw);
          for (int64_t i = 0; i < cg * hw; i++)
            var += (blk[i] - mean) * (blk[i] - mean);
          var /= (double)(cg * hw);
          for (int64_t ci = 0; ci < cg; ci++)
            for (int64_t p = 0; p < hw; p++) {
              int64_t ch = gi * cg + ci;
              double v = (blk[ci * hw + p] - mean) / sqrt(var + eps) * hg[ch] + hb[ch];
              want[(n * c + ch) * hw + p] = (float)(silu ? ref_activate(v, SD_ACT_SILU) : v);
            }
        }
      char what[128];
      snprintf(what, sizeof what, "group_norm (%lld, %lld, %lld, %lld) / %lld silu %d alias %d",
               (long long)batch, (long long)c, (long long)h, (long long)w, (long long)groups, silu,
               alias);
      expect(what, &y, want, ATOL, RTOL);
      free(want), free(hx), free(hg), free(hb);
      sd_arena_release(be, mark);
    }
}

/* group_norm_sums against double sums on the host (with and without a center), and
 * group_norm_apply with the statistics of those sums against group_norm itself. */
static void test_group_norm_parts(void) {
  for (int silu = 0; silu < 2; silu++) {
    sd_arena_mark mark = sd_arena_get_mark(be);
    const int64_t *shape = group_norm_shapes[silu];
    int64_t batch = shape[0], c = shape[1], h = shape[2], w = shape[3], groups = shape[4];
    int64_t cg = c / groups, n = cg * h * w, bg = batch * groups;
    float *hx, *hg, *hb;
    sd_tensor x = random_tensor(4, (int64_t[]){batch, c, h, w}, 2.0f, &hx);
    for (size_t i = 0; i < (size_t)(batch * c * h * w); i++)
      hx[i] += 3.0f; /* mean far from zero */
    check_rc(sd_tensor_upload_f32(be, &x, hx), "upload");
    sd_tensor g = random_tensor(1, (int64_t[]){c}, 1.5f, &hg);
    sd_tensor bt = random_tensor(1, (int64_t[]){c}, 1.0f, &hb);
    double *sums = malloc((size_t)bg * 2 * sizeof *sums);
    float *center = malloc((size_t)bg * sizeof *center);
    float *stats = malloc((size_t)bg * 2 * sizeof *stats);
    check_rc(sd_op_group_norm_sums(be, &x, (int)groups, NULL, sums), "group_norm_sums");
    for (int64_t k = 0; k < bg; k++) {
      double want = 0.0, want2 = 0.0;
      for (int64_t i = 0; i < n; i++) {
        want += hx[k * n + i];
        want2 += (double)hx[k * n + i] * hx[k * n + i];
      }
      CHECK(fabs(sums[2 * k] - want) <= 1e-6 * fabs(want) &&
                fabs(sums[2 * k + 1] - want2) <= 1e-6 * want2,
            "group_norm_sums group %lld: %.9g %.9g, want %.9g %.9g", (long long)k, sums[2 * k],
            sums[2 * k + 1], want, want2);
      center[k] = (float)(sums[2 * k] / (double)n);
    }
    check_rc(sd_op_group_norm_sums(be, &x, (int)groups, center, sums), "group_norm_sums centred");
    const float eps = 1e-5f;
    for (int64_t k = 0; k < bg; k++) {
      double want = 0.0, want2 = 0.0, want_abs = 0.0;
      for (int64_t i = 0; i < n; i++) {
        float d = hx[k * n + i] - center[k];
        want += d;
        want2 += (double)d * d;
        want_abs += fabs(d);
      }
      /* the op sums runs of d in float (in an order its vectorization chooses): a sum that
       * cancels to near 0 is only as exact as its terms' magnitudes, so its error is measured
       * against sum |d| (1e-6: about 16 float ulps of it) */
      CHECK(fabs(sums[2 * k] - want) <= 1e-6 * want_abs &&
                fabs(sums[2 * k + 1] - want2) <= 1e-6 * want2,
            "group_norm_sums centred group %lld: %.9g %.9g, want %.9g %.9g", (long long)k,
            sums[2 * k], sums[2 * k + 1], want, want2);
      stats[2 * k] = center[k];
      stats[2 * k + 1] = (float)(1.0 / sqrt(sums[2 * k + 1] / (double)n + (double)eps));
    }
    sd_tensor y = empty_tensor(4, (int64_t[]){batch, c, h, w});
    sd_tensor want = empty_tensor(4, (int64_t[]){batch, c, h, w});
    check_rc(sd_op_group_norm_apply(be, &x, &g, &bt, (int)groups, stats, silu, &y),
             "group_norm_apply");
    check_rc(sd_op_group_norm(be, &x, &g, &bt, (int)groups, eps, silu, &want), "group_norm");
    float *hwant = malloc((size_t)(batch * c * h * w) * sizeof *hwant);
    check_rc(sd_tensor_download_f32(be, &want, hwant), "download");
    char what[128];
    snprintf(what, sizeof what, "group_norm_sums + apply (%lld, %lld, %lld, %lld) / %lld silu %d",
             (long long)batch, (long long)c, (long long)h, (long long)w, (long long)groups, silu);
    expect(what, &y, hwant, ATOL, RTOL);
    /* in place */
    check_rc(sd_op_group_norm_apply(be, &x, &g, &bt, (int)groups, stats, silu, &x),
             "group_norm_apply in place");
    float *hy = malloc((size_t)(batch * c * h * w) * sizeof *hy);
    check_rc(sd_tensor_download_f32(be, &y, hy), "download");
    expect("group_norm_apply in place", &x, hy, 0.0f, 0.0f);
    free(hx), free(hg), free(hb), free(sums), free(center), free(stats), free(hwant), free(hy);
    sd_arena_release(be, mark);
  }
}

static void test_layer_norm(void) {
  for (int alias = 0; alias < 2; alias++) {
    sd_arena_mark mark = sd_arena_get_mark(be);
    /* the in-place case is large enough to run over threads */
    int64_t r0 = alias ? 2 : 3, r1 = alias ? 77 : 5, c = alias ? 320 : 37, rows = r0 * r1;
    float *hx, *hg, *hb;
    sd_tensor x = random_tensor(3, (int64_t[]){r0, r1, c}, 2.0f, &hx);
    sd_tensor g = random_tensor(1, (int64_t[]){c}, 1.5f, &hg);
    sd_tensor bt = random_tensor(1, (int64_t[]){c}, 1.0f, &hb);
    sd_tensor y = alias ? x : empty_tensor(3, (int64_t[]){r0, r1, c});
    float eps = alias ? 1e-5f : 0.25f; /* a large eps shows whether it sits inside the sqrt */
    check_rc(sd_op_layer_norm(be, &x, &g, &bt, eps, &y), "layer_norm");
    float *want = malloc((size_t)(rows * c) * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
      double mean = 0.0, var = 0.0;
      for (int64_t i = 0; i < c; i++)
        mean += hx[r * c + i];
      mean /= (double)c;
      for (int64_t i = 0; i < c; i++)
        var += (hx[r * c + i] - mean) * (hx[r * c + i] - mean);
      var /= (double)c;
      for (int64_t i = 0; i < c; i++)
        want[r * c + i] = (float)((hx[r * c + i] - mean) / sqrt(var + eps) * hg[i] + hb[i]);
    }
    expect(alias ? "layer_norm in place" : "layer_norm", &y, want, ATOL, RTOL);
    free(want), free(hx), free(hg), free(hb);
    sd_arena_release(be, mark);
  }
}

static void test_attention_case(int64_t batch, int64_t lq, int64_t lk, int heads, int64_t d,
                                bool causal) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int64_t width = heads * d;
  float scale = 1.0f / sqrtf((float)d);
  float *hq, *hk, *hv;
  sd_tensor q = random_tensor(3, (int64_t[]){batch, lq, width}, 2.0f, &hq);
  sd_tensor k = random_tensor(3, (int64_t[]){batch, lk, width}, 2.0f, &hk);
  sd_tensor v = random_tensor(3, (int64_t[]){batch, lk, width}, 1.0f, &hv);
  sd_tensor o = empty_tensor(3, (int64_t[]){batch, lq, width});
  check_rc(sd_op_attention(be, &q, &k, &v, heads, scale, causal, &o), "attention");
  float *want = malloc((size_t)(batch * lq * width) * sizeof(float));
  double *p = malloc((size_t)lk * sizeof(double));
  for (int64_t n = 0; n < batch; n++)
    for (int h = 0; h < heads; h++)
      for (int64_t i = 0; i < lq; i++) {
        const float *qi = hq + (n * lq + i) * width + h * d;
        double max = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j < lk; j++) {
          const float *kj = hk + (n * lk + j) * width + h * d;
          double s = 0.0;
          for (int64_t e = 0; e < d; e++)
            s += (double)qi[e] * kj[e];
          p[j] = causal && j > i ? -INFINITY : s * scale;
          max = p[j] > max ? p[j] : max;
        }
        for (int64_t j = 0; j < lk; j++) {
          p[j] = exp(p[j] - max);
          sum += p[j];
        }
        for (int64_t e = 0; e < d; e++) {
          double acc = 0.0;
          for (int64_t j = 0; j < lk; j++)
            acc += p[j] * hv[(n * lk + j) * width + h * d + e];
          want[(n * lq + i) * width + h * d + e] = (float)(acc / sum);
        }
      }
  char what[128];
  snprintf(what, sizeof what, "attention B %lld Lq %lld Lk %lld heads %d D %lld causal %d",
           (long long)batch, (long long)lq, (long long)lk, heads, (long long)d, causal);
  expect(what, &o, want, ATOL, RTOL);
  free(p), free(want), free(hq), free(hk), free(hv);
  sd_arena_release(be, mark);
}

static void test_attention(void) {
  test_attention_case(2, 13, 77, 3, 8, false);
  test_attention_case(1, 77, 77, 2, 4, true);
  test_attention_case(2, 300, 50, 2, 80, false);
  test_attention_case(1, 261, 261, 2, 40, true);
  test_attention_case(1, 5, 1, 1, 16, false);
  test_attention_case(2, 64, 77, 5, 64, false);
}

static void test_activation(void) {
  static const sd_activation acts[] = {SD_ACT_SILU, SD_ACT_GELU, SD_ACT_GELU_TANH,
                                       SD_ACT_QUICK_GELU, SD_ACT_RELU};
  for (int a = 0; a < 5; a++)
    for (int alias = 0; alias < 2; alias++) {
      sd_arena_mark mark = sd_arena_get_mark(be);
      int64_t n = alias ? 3 * 33335 : 3 * 1001; /* the larger runs over threads */
      float *hx;
      sd_tensor x = random_tensor(2, (int64_t[]){3, n / 3}, 8.0f, &hx);
      sd_tensor y = alias ? x : empty_tensor(2, (int64_t[]){3, n / 3});
      check_rc(sd_op_activation(be, &x, acts[a], &y), "activation");
      float *want = malloc((size_t)n * sizeof(float));
      for (int64_t i = 0; i < n; i++)
        want[i] = (float)ref_activate(hx[i], acts[a]);
      char what[64];
      snprintf(what, sizeof what, "activation %d alias %d", (int)acts[a], alias);
      expect(what, &y, want, ATOL, RTOL);
      free(want), free(hx);
      sd_arena_release(be, mark);
    }
}

static void test_geglu_case(int64_t l, int64_t n) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int64_t rows = 2 * l;
  float *hx;
  sd_tensor x = random_tensor(3, (int64_t[]){2, l, 2 * n}, 4.0f, &hx);
  sd_tensor y = empty_tensor(3, (int64_t[]){2, l, n});
  check_rc(sd_op_geglu(be, &x, &y), "geglu");
  float *want = malloc((size_t)(rows * n) * sizeof(float));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < n; j++)
      want[r * n + j] =
          (float)(hx[r * 2 * n + j] * ref_activate(hx[r * 2 * n + n + j], SD_ACT_GELU));
  char what[64];
  snprintf(what, sizeof what, "geglu (2, %lld, %lld)", (long long)l, (long long)(2 * n));
  expect(what, &y, want, ATOL, RTOL);
  free(want), free(hx);
  sd_arena_release(be, mark);
}

static void test_geglu(void) {
  test_geglu_case(9, 21);
  test_geglu_case(77, 330);
}

/* The float32 expression the contract states, one rounding per product and per sum. */
static float ref_lincomb(int n, const float *c, float *const *x, size_t e) {
  volatile float acc = c[0] * x[0][e];
  for (int i = 1; i < n; i++) {
    volatile float term = c[i] * x[i][e];
    acc = acc + term;
  }
  return acc;
}

static void test_lincomb(void) {
  const float coeffs[SD_LINCOMB_MAX] = {0.7071067f, -1.3333333f, 0.1f, 3.0000001f};
  for (int n = 1; n <= SD_LINCOMB_MAX; n++)
    for (int alias = -1; alias < n; alias++) {
      sd_arena_mark mark = sd_arena_get_mark(be);
      int64_t count = 70001;
      float *host[SD_LINCOMB_MAX];
      sd_tensor xs[SD_LINCOMB_MAX];
      const sd_tensor *ptrs[SD_LINCOMB_MAX];
      for (int i = 0; i < n; i++) {
        xs[i] = random_tensor(1, &count, 3.0f, &host[i]);
        ptrs[i] = &xs[i];
      }
      sd_tensor y = alias >= 0 ? xs[alias] : empty_tensor(1, &count);
      check_rc(sd_op_lincomb(be, n, coeffs, ptrs, &y), "lincomb");
      float *want = malloc((size_t)count * sizeof(float));
      for (size_t e = 0; e < (size_t)count; e++)
        want[e] = ref_lincomb(n, coeffs, host, e);
      char what[64];
      snprintf(what, sizeof what, "lincomb n %d into input %d (exact)", n, alias);
      expect(what, &y, want, 0.0f, 0.0f);
      free(want);
      for (int i = 0; i < n; i++)
        free(host[i]);
      sd_arena_release(be, mark);
    }
}

/* The blend_window contract as naive loops: weights float32(1 - t), float32(t) with t in double,
 * one rounding per product and for the sum. */
static void ref_blend_window(const float *x, const int64_t xs[4], const int64_t xo[2], float *y,
                             const int64_t ys[4], const int64_t yo[2], int64_t rows, int64_t cols,
                             sd_blend_mode mode) {
  for (int64_t p = 0; p < xs[0] * xs[1]; p++)
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++) {
        float s = x[(p * xs[2] + xo[0] + r) * xs[3] + xo[1] + c];
        float *d = &y[(p * ys[2] + yo[0] + r) * ys[3] + yo[1] + c];
        if (mode == SD_BLEND_COPY) {
          *d = s;
          continue;
        }
        double t = mode == SD_BLEND_ROWS ? (double)r / (double)rows : (double)c / (double)cols;
        volatile float a = s * (float)(1.0 - t);
        volatile float b = *d * (float)t;
        *d = a + b;
      }
}

/* Windows inside both tensors at odd offsets, in each mode, over a batch of 2; everything outside
 * the window stays; then windows that leave a tensor and aliasing are refused. */
static void test_blend_window(void) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  const int64_t xs[4] = {2, 3, 137, 141}, ys[4] = {2, 3, 129, 153}; /* > 1 thread's work */
  static const struct {
    int64_t xo[2], yo[2], rows, cols;
    sd_blend_mode mode;
    const char *what;
  } cases[] = {
      {{5, 7}, {3, 11}, 120, 130, SD_BLEND_COPY, "blend_window copy (exact)"},
      {{21, 1}, {0, 13}, 100, 140, SD_BLEND_ROWS, "blend_window rows (exact)"},
      {{2, 25}, {0, 0}, 129, 116, SD_BLEND_COLS, "blend_window cols (exact)"},
      {{136, 140}, {128, 152}, 1, 1, SD_BLEND_ROWS, "blend_window 1x1 corner (exact)"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    float *hx, *hy;
    sd_tensor x = random_tensor(4, xs, 1.0f, &hx);
    sd_tensor y = random_tensor(4, ys, 1.0f, &hy);
    check_rc(sd_op_blend_window(be, &x, cases[k].xo[0], cases[k].xo[1], &y, cases[k].yo[0],
                                cases[k].yo[1], cases[k].rows, cases[k].cols, cases[k].mode),
             cases[k].what);
    ref_blend_window(hx, xs, cases[k].xo, hy, ys, cases[k].yo, cases[k].rows, cases[k].cols,
                     cases[k].mode);
    expect(cases[k].what, &y, hy, 0.0f, 0.0f);
    free(hx);
    free(hy);
  }
  float *hx, *hy;
  sd_tensor x = random_tensor(4, xs, 1.0f, &hx);
  sd_tensor y = random_tensor(4, ys, 1.0f, &hy);
  sd_error_clear();
  CHECK(sd_op_blend_window(be, &x, 130, 0, &y, 0, 0, 8, 4, SD_BLEND_COPY) == -1 &&
            *sd_error_message(),
        "blend_window accepted rows 130..138 of x with 137 rows");
  CHECK(sd_op_blend_window(be, &x, 0, 0, &y, 0, 150, 4, 4, SD_BLEND_COPY) == -1,
        "blend_window accepted columns 150..154 of y with 153 columns");
  CHECK(sd_op_blend_window(be, &x, 0, 0, &x, 8, 8, 4, 4, SD_BLEND_COPY) == -1,
        "blend_window accepted y aliasing x");
  sd_tensor other = empty_tensor(4, (int64_t[]){2, 4, 129, 153});
  CHECK(sd_op_blend_window(be, &x, 0, 0, &other, 0, 0, 4, 4, SD_BLEND_COPY) == -1,
        "blend_window accepted 3 channels onto 4");
  free(hx);
  free(hy);
  sd_arena_release(be, mark);
}

/* torch's "nearest" source index (ATen nearest_idx): out = 2 * in is i / 2 exactly, otherwise
 * min(floor(i * s), in - 1) with the float32 scale s = in / out. */
static int64_t nearest_source(int64_t i, int64_t in, int64_t out) {
  if (out == 2 * in)
    return i / 2;
  int64_t src = (int64_t)floorf((float)i * ((float)in / (float)out));
  return src < in - 1 ? src : in - 1;
}

/* upsample_nearest of x (B, C, H, W) to (Ho, Wo) against a naive gather; rows_want / cols_want,
 * when given, are torch's source indices (F.interpolate(size=..., mode="nearest")). */
static void test_upsample_case(int64_t batch, int64_t c, int64_t h, int64_t w, int64_t ho,
                               int64_t wo, const int64_t *rows_want, const int64_t *cols_want) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  float *hx;
  sd_tensor x = random_tensor(4, (int64_t[]){batch, c, h, w}, 1.0f, &hx);
  sd_tensor y = empty_tensor(4, (int64_t[]){batch, c, ho, wo});
  char what[96];
  snprintf(what, sizeof what, "upsample_nearest (%lld, %lld) -> (%lld, %lld)", (long long)h,
           (long long)w, (long long)ho, (long long)wo);
  check_rc(sd_op_upsample_nearest(be, &x, &y), what);
  for (int64_t i = 0; rows_want && i < ho; i++)
    CHECK(nearest_source(i, h, ho) == rows_want[i], "%s: row %lld from %lld, torch %lld", what,
          (long long)i, (long long)nearest_source(i, h, ho), (long long)rows_want[i]);
  for (int64_t j = 0; cols_want && j < wo; j++)
    CHECK(nearest_source(j, w, wo) == cols_want[j], "%s: column %lld from %lld, torch %lld", what,
          (long long)j, (long long)nearest_source(j, w, wo), (long long)cols_want[j]);
  float *want = malloc((size_t)(batch * c * ho * wo) * sizeof *want);
  for (int64_t p = 0; p < batch * c; p++)
    for (int64_t i = 0; i < ho; i++)
      for (int64_t j = 0; j < wo; j++)
        want[(p * ho + i) * wo + j] =
            hx[(p * h + nearest_source(i, h, ho)) * w + nearest_source(j, w, wo)];
  expect(what, &y, want, 0.0f, 0.0f);
  free(want);
  free(hx);
  sd_arena_release(be, mark);
}

static void test_upsample_nearest(void) {
  /* torch: 5 -> 9 and 7 -> 15, the UNet's odd-latent case (the skip is 2H - 1 or 2H + 1) */
  static const int64_t rows_5_9[9] = {0, 0, 1, 1, 2, 2, 3, 3, 4};
  static const int64_t cols_7_15[15] = {0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6};
  test_upsample_case(1, 2, 5, 7, 9, 15, rows_5_9, cols_7_15);
  test_upsample_case(2, 5, 3, 7, 6, 14, NULL, NULL);     /* exact 2x */
  test_upsample_case(2, 5, 4, 7, 7, 7, NULL, NULL);      /* 4 -> 7, identity columns */
  test_upsample_case(1, 3, 3, 5, 2, 11, NULL, NULL);     /* shrinking rows */
  test_upsample_case(2, 37, 21, 25, 42, 50, NULL, NULL); /* 2x over threads */
  test_upsample_case(2, 37, 21, 25, 41, 49, NULL, NULL); /* odd over threads */
}

/* torch's source coordinate of output position o (float32 arithmetic, as ATen's
 * area_pixel_compute_source_index), then its floor capped at in - 1 and the fraction clamped to
 * [0, 1]: what decides the taps. */
static void ref_interp_source(bool cubic, bool align_corners, int64_t in, int64_t out, int64_t o,
                              int64_t *index, double *frac) {
  volatile float scale, src; /* volatile: one rounding per operation, no FMA */
  if (align_corners) {
    scale = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    src = scale * (float)o;
  } else {
    scale = (float)in / (float)out;
    volatile float shifted = (float)o + 0.5f;
    volatile float product = scale * shifted;
    src = product - 0.5f;
    if (!cubic && src < 0.0f)
      src = 0.0f;
  }
  int64_t i = (int64_t)floorf(src);
  *index = i < in - 1 ? i : in - 1;
  double t = (double)src - (double)*index;
  *frac = t < 0.0 ? 0.0 : (t > 1.0 ? 1.0 : t);
}

/* Keys' cubic kernel, A = -0.75, at distance d. */
static double ref_cubic(double d) {
  const double a = -0.75;
  d = fabs(d);
  if (d <= 1.0)
    return ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0;
  if (d < 2.0)
    return ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a;
  return 0.0;
}

/* Taps of one axis in double: 2 (bilinear) or 4 (bicubic) clamped indices and weights. */
static int ref_interp_taps(bool cubic, bool align_corners, int64_t in, int64_t out, int64_t o,
                           int64_t *idx, double *w) {
  int64_t i;
  double t;
  ref_interp_source(cubic, align_corners, in, out, o, &i, &t);
  if (!cubic) {
    idx[0] = i;
    idx[1] = i < in - 1 ? i + 1 : i;
    w[0] = 1.0 - t;
    w[1] = t;
    return 2;
  }
  for (int j = 0; j < 4; j++) {
    int64_t k = i - 1 + j;
    idx[j] = k < 0 ? 0 : (k > in - 1 ? in - 1 : k);
    w[j] = ref_cubic(t - (double)(j - 1));
  }
  return 4;
}

static void test_interpolate_case(int64_t batch, int64_t c, int64_t h, int64_t w, int64_t ho,
                                  int64_t wo, sd_interp_mode mode, bool align_corners) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  bool cubic = mode == SD_INTERP_BICUBIC;
  float *hx;
  sd_tensor x = random_tensor(4, (int64_t[]){batch, c, h, w}, 1.0f, &hx);
  sd_tensor y = empty_tensor(4, (int64_t[]){batch, c, ho, wo});
  char what[128];
  snprintf(what, sizeof what, "interpolate %s align_corners %d (%lld, %lld) -> (%lld, %lld)",
           cubic ? "bicubic" : "bilinear", (int)align_corners, (long long)h, (long long)w,
           (long long)ho, (long long)wo);
  check_rc(sd_op_interpolate(be, &x, mode, align_corners, &y), what);
  float *want = malloc((size_t)(batch * c * ho * wo) * sizeof *want);
  for (int64_t p = 0; p < batch * c; p++)
    for (int64_t i = 0; i < ho; i++) {
      int64_t ri[4], ci[4];
      double rw[4], cw[4];
      int taps = ref_interp_taps(cubic, align_corners, h, ho, i, ri, rw);
      for (int64_t j = 0; j < wo; j++) {
        ref_interp_taps(cubic, align_corners, w, wo, j, ci, cw);
        double s = 0.0;
        for (int r = 0; r < taps; r++)
          for (int q = 0; q < taps; q++)
            s += rw[r] * cw[q] * hx[(p * h + ri[r]) * w + ci[q]];
        want[(p * ho + i) * wo + j] = (float)s;
      }
    }
  expect(what, &y, want, ATOL, RTOL);
  free(want);
  free(hx);
  sd_arena_release(be, mark);
}

static void test_interpolate(void) {
  for (int mode = 0; mode < 2; mode++)
    for (int ac = 0; ac < 2; ac++) {
      sd_interp_mode m = mode ? SD_INTERP_BICUBIC : SD_INTERP_BILINEAR;
      test_interpolate_case(2, 3, 5, 7, 10, 14, m, ac);   /* 2x (DPT's fusion and head) */
      test_interpolate_case(1, 2, 48, 40, 6, 5, m, ac);   /* shrinking (depth map -> latent) */
      test_interpolate_case(1, 2, 7, 9, 13, 4, m, ac);    /* up one axis, down the other */
      test_interpolate_case(2, 1, 1, 6, 3, 1, m, ac);     /* sides of 1 */
      test_interpolate_case(1, 3, 6, 6, 6, 6, m, ac);     /* identity size */
      test_interpolate_case(2, 9, 40, 44, 81, 87, m, ac); /* over threads */
    }
  /* bilinear with align_corners at exactly 2x reads the source corners */
  sd_arena_mark mark = sd_arena_get_mark(be);
  float *hx;
  sd_tensor x = random_tensor(4, (int64_t[]){1, 1, 3, 4}, 1.0f, &hx);
  sd_tensor y = empty_tensor(4, (int64_t[]){1, 1, 6, 8});
  check_rc(sd_op_interpolate(be, &x, SD_INTERP_BILINEAR, true, &y), "interpolate corners");
  float got[48];
  check_rc(sd_tensor_download_f32(be, &y, got), "download");
  CHECK(got[0] == hx[0] && got[7] == hx[3] && got[40] == hx[8] && got[47] == hx[11],
        "interpolate with align_corners does not keep the corners");
  free(hx);
  sd_arena_release(be, mark);
}

static void test_max_pool2d_case(int64_t batch, int64_t c, int64_t h, int64_t w, int kernel,
                                 int stride, int pad) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int64_t ho = (h + 2 * pad - kernel) / stride + 1, wo = (w + 2 * pad - kernel) / stride + 1;
  float *hx;
  sd_tensor x = random_tensor(4, (int64_t[]){batch, c, h, w}, 1.0f, &hx);
  hx[1] = NAN; /* propagates into every window that holds it */
  check_rc(sd_tensor_upload_f32(be, &x, hx), "upload");
  sd_tensor y = empty_tensor(4, (int64_t[]){batch, c, ho, wo});
  char what[128];
  snprintf(what, sizeof what, "max_pool2d (%lld, %lld) kernel %d stride %d pad %d", (long long)h,
           (long long)w, kernel, stride, pad);
  check_rc(sd_op_max_pool2d(be, &x, kernel, stride, pad, &y), what);
  size_t n = (size_t)(batch * c * ho * wo);
  float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
  for (int64_t p = 0; p < batch * c; p++)
    for (int64_t i = 0; i < ho; i++)
      for (int64_t j = 0; j < wo; j++) {
        float best = -INFINITY;
        bool nan = false;
        for (int u = 0; u < kernel; u++)
          for (int v = 0; v < kernel; v++) {
            int64_t ii = i * stride - pad + u, jj = j * stride - pad + v;
            if (ii < 0 || ii >= h || jj < 0 || jj >= w)
              continue;
            float val = hx[(p * h + ii) * w + jj];
            nan |= isnan(val);
            best = val > best ? val : best;
          }
        want[(p * ho + i) * wo + j] = nan ? NAN : best;
      }
  check_rc(sd_tensor_download_f32(be, &y, got), "download");
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    bad += !(isnan(want[i]) ? isnan(got[i]) : got[i] == want[i]);
  CHECK(bad == 0, "%s: %zu of %zu values differ from the naive maximum", what, bad, n);
  free(want), free(got), free(hx);
  sd_arena_release(be, mark);
}

static void test_max_pool2d(void) {
  test_max_pool2d_case(2, 3, 9, 8, 3, 2, 1);
  test_max_pool2d_case(1, 2, 10, 7, 3, 2, 0); /* BiT: after its own "same" padding */
  test_max_pool2d_case(2, 3, 5, 6, 2, 2, 0);
  test_max_pool2d_case(1, 4, 6, 5, 3, 1, 1);
  test_max_pool2d_case(2, 64, 48, 48, 3, 2, 1); /* over threads */
}

static void test_pad2d_case(int64_t batch, int64_t c, int64_t h, int64_t w, int64_t top,
                            int64_t bottom, int64_t left, int64_t right, float value) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int64_t ho = top + h + bottom, wo = left + w + right;
  float *hx;
  sd_tensor x = random_tensor(4, (int64_t[]){batch, c, h, w}, 1.0f, &hx);
  sd_tensor y = empty_tensor(4, (int64_t[]){batch, c, ho, wo});
  char what[128];
  snprintf(what, sizeof what, "pad2d (%lld, %lld) by %lld %lld %lld %lld", (long long)h,
           (long long)w, (long long)top, (long long)bottom, (long long)left, (long long)right);
  check_rc(sd_op_pad2d(be, &x, top, left, value, &y), what);
  float *want = malloc((size_t)(batch * c * ho * wo) * sizeof *want);
  for (int64_t p = 0; p < batch * c; p++)
    for (int64_t i = 0; i < ho; i++)
      for (int64_t j = 0; j < wo; j++) {
        int64_t si = i - top, sj = j - left;
        want[(p * ho + i) * wo + j] =
            si >= 0 && si < h && sj >= 0 && sj < w ? hx[(p * h + si) * w + sj] : value;
      }
  expect(what, &y, want, 0.0f, 0.0f);
  free(want), free(hx);
  sd_arena_release(be, mark);
}

static void test_pad2d(void) {
  test_pad2d_case(2, 3, 5, 6, 0, 1, 0, 1, 0.0f); /* the VAE encoder's / BiT's (0, 1, 0, 1) */
  test_pad2d_case(1, 2, 4, 4, 2, 3, 2, 3, -1.5f);
  test_pad2d_case(2, 2, 3, 5, 0, 0, 0, 0, 0.0f);
  test_pad2d_case(2, 40, 30, 31, 1, 2, 3, 0, 0.25f); /* over threads */
}

static void test_conv_transpose2d_case(int64_t batch, int64_t c, int64_t h, int64_t w, int64_t k,
                                       int64_t kh, int64_t kw, int stride, int pad,
                                       bool with_bias) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int64_t ho = (h - 1) * stride - 2 * pad + kh, wo = (w - 1) * stride - 2 * pad + kw;
  float *hx, *hw, *hb = NULL;
  sd_tensor x = random_tensor(4, (int64_t[]){batch, c, h, w}, 1.0f, &hx);
  sd_tensor wt = random_tensor(4, (int64_t[]){c, k, kh, kw}, 0.3f, &hw);
  sd_tensor b;
  if (with_bias)
    b = random_tensor(1, (int64_t[]){k}, 1.0f, &hb);
  sd_tensor y = empty_tensor(4, (int64_t[]){batch, k, ho, wo});
  char what[128];
  snprintf(what, sizeof what,
           "conv_transpose2d (%lld, %lld, %lld) -> %lld, kernel %lldx%lld stride %d pad %d",
           (long long)c, (long long)h, (long long)w, (long long)k, (long long)kh, (long long)kw,
           stride, pad);
  check_rc(sd_op_conv_transpose2d(be, &x, &wt, with_bias ? &b : NULL, stride, pad, &y), what);
  double *acc = calloc((size_t)(batch * k * ho * wo), sizeof *acc);
  for (int64_t n = 0; n < batch; n++) /* scatter form: each input value into its window */
    for (int64_t ci = 0; ci < c; ci++)
      for (int64_t i = 0; i < h; i++)
        for (int64_t j = 0; j < w; j++)
          for (int64_t o = 0; o < k; o++)
            for (int64_t u = 0; u < kh; u++)
              for (int64_t v = 0; v < kw; v++) {
                int64_t oi = i * stride - pad + u, oj = j * stride - pad + v;
                if (oi >= 0 && oi < ho && oj >= 0 && oj < wo)
                  acc[((n * k + o) * ho + oi) * wo + oj] +=
                      (double)hx[((n * c + ci) * h + i) * w + j] *
                      hw[((ci * k + o) * kh + u) * kw + v];
              }
  size_t total = (size_t)(batch * k * ho * wo);
  float *want = malloc(total * sizeof *want);
  for (size_t e = 0; e < total; e++)
    want[e] = (float)(acc[e] + (hb ? hb[(e / (size_t)(ho * wo)) % (size_t)k] : 0.0));
  expect(what, &y, want, ATOL, RTOL);
  free(acc), free(want), free(hx), free(hw), free(hb);
  sd_arena_release(be, mark);
}

static void test_conv_transpose2d(void) {
  test_conv_transpose2d_case(2, 5, 3, 4, 6, 4, 4, 4, 0, true);     /* DPT's reassemble 4x */
  test_conv_transpose2d_case(1, 7, 5, 3, 3, 2, 2, 2, 0, false);    /* and 2x */
  test_conv_transpose2d_case(2, 3, 4, 5, 4, 3, 3, 2, 1, true);     /* overlapping taps, padding */
  test_conv_transpose2d_case(1, 2, 3, 3, 5, 3, 2, 1, 0, true);     /* stride 1 */
  test_conv_transpose2d_case(2, 64, 12, 12, 32, 4, 4, 4, 0, true); /* over threads */
}

static void test_data_movement(int64_t batch, int64_t c, int64_t h, int64_t w, int64_t cb) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  fprintf(stderr, "data movement ops, x (%lld, %lld, %lld, %lld):\n", (long long)batch,
          (long long)c, (long long)h, (long long)w);
  float *hx, *hv, *hb;
  sd_tensor x = random_tensor(4, (int64_t[]){batch, c, h, w}, 1.0f, &hx);
  sd_tensor v = random_tensor(2, (int64_t[]){batch, c}, 1.0f, &hv);
  sd_tensor b = random_tensor(4, (int64_t[]){batch, cb, h, w}, 1.0f, &hb);
  size_t numel = (size_t)(batch * c * h * w);

  sd_tensor y = empty_tensor(4, (int64_t[]){batch, c, h, w});
  check_rc(sd_op_add_channel_bias(be, &x, &v, &y), "add_channel_bias");
  float *want = malloc(4 * numel * sizeof(float));
  for (size_t i = 0; i < numel; i++)
    want[i] = hx[i] + hv[i / (size_t)(h * w)];
  expect("add_channel_bias", &y, want, 0.0f, 0.0f);

  sd_tensor cat = empty_tensor(4, (int64_t[]){batch, c + cb, h, w});
  check_rc(sd_op_concat_channels(be, &x, &b, &cat), "concat_channels");
  for (int64_t n = 0; n < batch; n++)
    for (int64_t ch = 0; ch < c + cb; ch++)
      for (int64_t p = 0; p < h * w; p++)
        want[((n * (c + cb)) + ch) * h * w + p] =
            ch < c ? hx[(n * c + ch) * h * w + p] : hb[(n * cb + ch - c) * h * w + p];
  expect("concat_channels", &cat, want, 0.0f, 0.0f);

  /* (B, M, N) = (2, 5, 21) -> (2, 21, 5), and a shape larger than one tile */
  sd_tensor x3, t = empty_tensor(3, (int64_t[]){batch, h * w, c});
  check_rc(sd_tensor_reshape(&x, 3, (int64_t[]){batch, c, h * w}, &x3), "reshape");
  check_rc(sd_op_transpose(be, &x3, &t), "transpose");
  for (int64_t n = 0; n < batch; n++)
    for (int64_t i = 0; i < c; i++)
      for (int64_t j = 0; j < h * w; j++)
        want[(n * h * w + j) * c + i] = hx[(n * c + i) * h * w + j];
  expect("transpose", &t, want, 0.0f, 0.0f);
  float *hbig;
  sd_tensor big = random_tensor(3, (int64_t[]){2, 67, 45}, 1.0f, &hbig);
  sd_tensor bigt = empty_tensor(3, (int64_t[]){2, 45, 67});
  check_rc(sd_op_transpose(be, &big, &bigt), "transpose");
  float *want_big = malloc(2 * 67 * 45 * sizeof(float));
  for (int64_t n = 0; n < 2; n++)
    for (int64_t i = 0; i < 67; i++)
      for (int64_t j = 0; j < 45; j++)
        want_big[(n * 45 + j) * 67 + i] = hbig[(n * 67 + i) * 45 + j];
  expect("transpose (2, 67, 45)", &bigt, want_big, 0.0f, 0.0f);

  float *htable;
  sd_tensor table = random_tensor(2, (int64_t[]){11, 6}, 1.0f, &htable);
  const int32_t ids[4] = {10, 0, 3, 3};
  sd_tensor emb = empty_tensor(2, (int64_t[]){4, 6});
  check_rc(sd_op_embedding(be, &table, ids, 4, &emb), "embedding");
  for (int i = 0; i < 4; i++)
    memcpy(want + i * 6, htable + ids[i] * 6, 6 * sizeof(float));
  expect("embedding", &emb, want, 0.0f, 0.0f);

  check_rc(sd_op_clamp(be, &x, -0.5f, 0.25f, &y), "clamp");
  for (size_t i = 0; i < numel; i++)
    want[i] = hx[i] < -0.5f ? -0.5f : (hx[i] > 0.25f ? 0.25f : hx[i]);
  expect("clamp", &y, want, 0.0f, 0.0f);
  float nan_in[2] = {NAN, 5.0f}, nan_out[2];
  sd_tensor pair = empty_tensor(1, (int64_t[]){2});
  check_rc(sd_tensor_upload_f32(be, &pair, nan_in), "upload");
  check_rc(sd_op_clamp(be, &pair, -1.0f, 1.0f, &pair), "clamp in place");
  check_rc(sd_tensor_download_f32(be, &pair, nan_out), "download");
  CHECK(isnan(nan_out[0]) && nan_out[1] == 1.0f, "clamp: NaN passes, 5 -> 1 (got %g, %g)",
        nan_out[0], nan_out[1]);

  /* mask_blend: (1 - m) a + m b per pixel, the mask broadcast over channels; y aliasing b */
  float *ha, *hb2, *hm;
  sd_tensor ba = random_tensor(4, (int64_t[]){2, 3, 5, 7}, 2.0f, &ha);
  sd_tensor bb = random_tensor(4, (int64_t[]){2, 3, 5, 7}, 2.0f, &hb2);
  sd_tensor bm = random_tensor(4, (int64_t[]){2, 1, 5, 7}, 1.0f, &hm);
  for (int i = 0; i < 2 * 35; i++)
    hm[i] = i % 3 == 0 ? 0.0f : (i % 3 == 1 ? 1.0f : fabsf(hm[i]));
  check_rc(sd_tensor_upload_f32(be, &bm, hm), "upload mask");
  float *want_blend = malloc(2 * 3 * 35 * sizeof *want_blend);
  for (int item = 0; item < 2; item++)
    for (int c = 0; c < 3; c++)
      for (int p = 0; p < 35; p++) {
        int i = (item * 3 + c) * 35 + p;
        float m = hm[item * 35 + p];
        float keep = (1.0f - m) * ha[i], take = m * hb2[i];
        want_blend[i] = keep + take;
      }
  check_rc(sd_op_mask_blend(be, &ba, &bb, &bm, &bb), "mask_blend (y aliases b)");
  expect("mask_blend", &bb, want_blend, 0.0f, 0.0f);
  free(ha), free(hb2), free(hm), free(want_blend);

  free(want), free(want_big), free(hx), free(hv), free(hb), free(hbig), free(htable);
  sd_arena_release(be, mark);
}

/* Batch invariance: an item's output must be bit for bit the same whether the op runs on it
 * alone or inside a batch (the engine renders an item identically in any batch). Each case
 * runs on a batch of inputs, then on each item copied into tensors of its own, and compares
 * the bytes. */
typedef int (*batched_op)(const void *ctx, const sd_tensor *const *ins, sd_tensor *out);

static void check_invariance(const char *what, batched_op op, const void *ctx, int n_ins,
                             const sd_tensor *in_shapes, const sd_tensor *out_shape) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor ins[3], out = *out_shape;
  const sd_tensor *in_ptrs[3];
  float *host_in[3];
  for (int i = 0; i < n_ins; i++) {
    ins[i] = random_tensor(in_shapes[i].ndim, in_shapes[i].shape, 2.0f, &host_in[i]);
    in_ptrs[i] = &ins[i];
  }
  out = empty_tensor(out_shape->ndim, out_shape->shape);
  check_rc(op(ctx, in_ptrs, &out), what);
  int64_t batch = out.shape[0];
  size_t out_item = (size_t)(sd_tensor_numel(&out) / batch);
  float *batched = malloc((size_t)sd_tensor_numel(&out) * sizeof(float));
  float *alone = malloc(out_item * sizeof(float));
  check_rc(sd_tensor_download_f32(be, &out, batched), "download");
  int differing = 0;
  for (int64_t item = 0; item < batch; item++) {
    sd_arena_mark item_mark = sd_arena_get_mark(be);
    sd_tensor item_ins[3];
    const sd_tensor *item_ptrs[3];
    for (int i = 0; i < n_ins; i++) {
      item_ins[i] = ins[i];
      item_ins[i].shape[0] = 1;
      size_t in_item = (size_t)sd_tensor_numel(&item_ins[i]);
      check_rc(sd_tensor_alloc(be, &item_ins[i]), "alloc");
      check_rc(sd_tensor_upload_f32(be, &item_ins[i], host_in[i] + (size_t)item * in_item),
               "upload");
      item_ptrs[i] = &item_ins[i];
    }
    sd_tensor item_out = out;
    item_out.shape[0] = 1;
    check_rc(sd_tensor_alloc(be, &item_out), "alloc");
    check_rc(op(ctx, item_ptrs, &item_out), what);
    check_rc(sd_tensor_download_f32(be, &item_out, alone), "download");
    if (memcmp(alone, batched + (size_t)item * out_item, out_item * sizeof(float)) != 0)
      differing++;
    sd_arena_release(be, item_mark);
  }
  CHECK(differing == 0, "%s: %d of %lld items differ alone and in a batch", what, differing,
        (long long)batch);
  fprintf(stderr, "%s %s: batch of %lld, each item alone bit for bit\n",
          differing ? "FAIL" : "ok  ", what, (long long)batch);
  free(batched), free(alone);
  for (int i = 0; i < n_ins; i++)
    free(host_in[i]);
  sd_arena_release(be, mark);
}

typedef struct {
  sd_tensor w, b, gamma, beta;
  sd_activation act;
  int stride, pad, heads;
} op_ctx;

static int run_linear(const void *ctx, const sd_tensor *const *ins, sd_tensor *out) {
  const op_ctx *c = ctx;
  return sd_op_linear(be, ins[0], &c->w, &c->b, c->act, out);
}

static int run_conv2d(const void *ctx, const sd_tensor *const *ins, sd_tensor *out) {
  const op_ctx *c = ctx;
  return sd_op_conv2d(be, ins[0], &c->w, &c->b, c->stride, c->pad, out);
}

static int run_attention(const void *ctx, const sd_tensor *const *ins, sd_tensor *out) {
  const op_ctx *c = ctx;
  return sd_op_attention(be, ins[0], ins[1], ins[2], c->heads, 0.3f, false, out);
}

static int run_group_norm(const void *ctx, const sd_tensor *const *ins, sd_tensor *out) {
  const op_ctx *c = ctx;
  return sd_op_group_norm(be, ins[0], &c->gamma, &c->beta, 4, 1e-5f, true, out);
}

static int run_layer_norm(const void *ctx, const sd_tensor *const *ins, sd_tensor *out) {
  const op_ctx *c = ctx;
  return sd_op_layer_norm(be, ins[0], &c->gamma, &c->beta, 1e-5f, out);
}

static int run_activation(const void *ctx, const sd_tensor *const *ins, sd_tensor *out) {
  const op_ctx *c = ctx;
  return sd_op_activation(be, ins[0], c->act, out);
}

static int run_geglu(const void *ctx, const sd_tensor *const *ins, sd_tensor *out) {
  (void)ctx;
  return sd_op_geglu(be, ins[0], out);
}

static int run_lincomb(const void *ctx, const sd_tensor *const *ins, sd_tensor *out) {
  (void)ctx;
  const float coeffs[3] = {0.3f, -1.7f, 0.9f};
  return sd_op_lincomb(be, 3, coeffs, ins, out);
}

static void test_batch_invariance(void) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  float *h[4];
  char what[128];
  /* linear: (B, K) rows, short and long sequences, tiny and SD-sized weights */
  static const int64_t linear_cases[][4] = {
      /* B, L (0: 2-D x), K, N */
      {5, 0, 32, 128}, {4, 0, 1280, 320}, {3, 12, 48, 64}, {3, 0, 320, 1280}, {4, 7, 32, 32},
      {3, 77, 64, 64}, {2, 77, 768, 768}, {3, 48, 32, 96}, {2, 300, 96, 40},  {5, 3, 40, 24}};
  for (size_t i = 0; i < sizeof linear_cases / sizeof linear_cases[0]; i++) {
    const int64_t *lc = linear_cases[i];
    op_ctx c = {.w = random_tensor(2, (int64_t[]){lc[3], lc[2]}, 0.3f, &h[0]),
                .b = random_tensor(1, (int64_t[]){lc[3]}, 1.0f, &h[1]),
                .act = i % 2 ? SD_ACT_GELU : SD_ACT_SILU};
    sd_tensor x = lc[1] ? sd_tensor_3d(SD_DTYPE_F32, lc[0], lc[1], lc[2])
                        : sd_tensor_2d(SD_DTYPE_F32, lc[0], lc[2]);
    sd_tensor y = lc[1] ? sd_tensor_3d(SD_DTYPE_F32, lc[0], lc[1], lc[3])
                        : sd_tensor_2d(SD_DTYPE_F32, lc[0], lc[3]);
    char x_shape[64];
    snprintf(what, sizeof what, "linear x %s N %lld", sd_tensor_shape_str(&x, x_shape, 64),
             (long long)lc[3]);
    check_invariance(what, run_linear, &c, 1, &x, &y);
    free(h[0]), free(h[1]);
  }
  /* conv2d: B, C, H, W, K, kernel, stride, pad */
  static const int64_t conv_cases[][8] = {
      {3, 32, 16, 12, 32, 3, 1, 1},   {3, 4, 16, 12, 32, 3, 1, 1},   {2, 64, 8, 6, 64, 3, 2, 1},
      {3, 32, 16, 12, 64, 1, 1, 0},   {2, 40, 40, 40, 24, 3, 1, 1},  {5, 8, 9, 7, 4, 3, 1, 1},
      {2, 64, 128, 128, 64, 3, 1, 1}, {2, 256, 32, 32, 256, 3, 1, 1}}; /* the last two Winograd
                                                                      (AVX-512) */
  for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) {
    const int64_t *cc = conv_cases[i];
    op_ctx c = {.w = random_tensor(4, (int64_t[]){cc[4], cc[1], cc[5], cc[5]}, 0.3f, &h[0]),
                .b = random_tensor(1, (int64_t[]){cc[4]}, 1.0f, &h[1]),
                .stride = (int)cc[6],
                .pad = (int)cc[7]};
    int64_t ho = (cc[2] + 2 * cc[7] - cc[5]) / cc[6] + 1,
            wo = (cc[3] + 2 * cc[7] - cc[5]) / cc[6] + 1;
    sd_tensor x = sd_tensor_4d(SD_DTYPE_F32, cc[0], cc[1], cc[2], cc[3]);
    sd_tensor y = sd_tensor_4d(SD_DTYPE_F32, cc[0], cc[4], ho, wo);
    snprintf(what, sizeof what, "conv2d x (%lld, %lld, %lld, %lld) -> %lld, %lldx%lld s%lld",
             (long long)cc[0], (long long)cc[1], (long long)cc[2], (long long)cc[3],
             (long long)cc[4], (long long)cc[5], (long long)cc[5], (long long)cc[6]);
    check_invariance(what, run_conv2d, &c, 1, &x, &y);
    free(h[0]), free(h[1]);
  }
  /* attention: self (Lq = Lk) and cross (Lk = 77) */
  {
    op_ctx c = {.heads = 2};
    sd_tensor qkv[3] = {sd_tensor_3d(SD_DTYPE_F32, 3, 300, 64),
                        sd_tensor_3d(SD_DTYPE_F32, 3, 77, 64),
                        sd_tensor_3d(SD_DTYPE_F32, 3, 77, 64)};
    check_invariance("attention q (3, 300, 64), k v (3, 77, 64)", run_attention, &c, 3, qkv,
                     &qkv[0]);
    sd_tensor self[3] = {sd_tensor_3d(SD_DTYPE_F32, 2, 192, 32),
                         sd_tensor_3d(SD_DTYPE_F32, 2, 192, 32),
                         sd_tensor_3d(SD_DTYPE_F32, 2, 192, 32)};
    check_invariance("attention (2, 192, 32)", run_attention, &c, 3, self, &self[0]);
  }
  /* normalizations and elementwise ops; items of sizes that are not multiples of a vector */
  {
    op_ctx c = {.gamma = random_tensor(1, (int64_t[]){36}, 1.0f, &h[0]),
                .beta = random_tensor(1, (int64_t[]){36}, 1.0f, &h[1]),
                .act = SD_ACT_GELU};
    sd_tensor img = sd_tensor_4d(SD_DTYPE_F32, 3, 36, 13, 11);
    check_invariance("group_norm (3, 36, 13, 11)", run_group_norm, &c, 1, &img, &img);
    sd_tensor seq = sd_tensor_3d(SD_DTYPE_F32, 3, 77, 36);
    check_invariance("layer_norm (3, 77, 36)", run_layer_norm, &c, 1, &seq, &seq);
    sd_tensor odd = sd_tensor_3d(SD_DTYPE_F32, 3, 77, 163);
    check_invariance("activation gelu (3, 77, 163)", run_activation, &c, 1, &odd, &odd);
    sd_tensor wide = sd_tensor_3d(SD_DTYPE_F32, 3, 77, 326);
    check_invariance("geglu (3, 77, 326)", run_geglu, &c, 1, &wide, &odd);
    sd_tensor three[3] = {odd, odd, odd};
    check_invariance("lincomb of 3 (3, 77, 163)", run_lincomb, &c, 3, three, &odd);
    free(h[0]), free(h[1]);
  }
  sd_arena_release(be, mark);
}

/* item's expected numbers: sd_rng_randn of a cuda-kind generator seeded with `seed` after
 * offset / 4 earlier draws of n values. */
static void rng_reference(uint64_t seed, uint64_t offset, size_t n, float *out) {
  sd_rng rng;
  sd_rng_init(&rng, SD_RNG_CUDA, seed);
  if (offset <= 64) {
    for (uint64_t k = 0; k < offset / 4; k++)
      CHECK(sd_rng_randn(&rng, out, n) == 0, "rng draw");
  } else {
    rng.philox_offset = offset;
  }
  CHECK(sd_rng_randn(&rng, out, n) == 0, "rng draw");
}

/* out (B, ...) from sd_op_randn_philox equals each item's sd_rng_randn draw bit for bit. */
static void check_randn_philox(int ndim, const int64_t *shape, const uint64_t *seeds,
                               const uint64_t *offsets) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor out = empty_tensor(ndim, shape);
  int64_t batch = shape[0];
  size_t per_item = (size_t)(sd_tensor_numel(&out) / batch);
  float *want = malloc((size_t)batch * per_item * sizeof(float));
  for (int64_t b = 0; b < batch; b++)
    rng_reference(seeds[b], offsets[b], per_item, want + (size_t)b * per_item);
  check_rc(sd_op_randn_philox(be, seeds, offsets, &out), "randn_philox");
  char shape_buf[96], what[256];
  snprintf(what, sizeof what, "randn_philox %s, seed %llu offset %llu (exact)",
           sd_tensor_shape_str(&out, shape_buf, sizeof shape_buf), (unsigned long long)seeds[0],
           (unsigned long long)offsets[0]);
  expect(what, &out, want, 0.0f, 0.0f);
  free(want);
  sd_arena_release(be, mark);
}

static void test_randn_philox(void) {
  static const uint64_t seeds[] = {0, 42, 2024, 0x123456789abcdef0ull};
  static const uint64_t offsets[] = {0, 4, 40, (uint64_t)3 << 34};
  static const int64_t shapes[][4] = {{1, 4, 16, 16}, {1, 3, 5, 7}, {1, 4, 96, 96}};
  for (int s = 0; s < 4; s++)
    for (int k = 0; k < 3; k++)
      check_randn_philox(4, shapes[k], &seeds[s], &offsets[s]);
  /* a batch: every item its own generator, as if drawn alone */
  const uint64_t batch_seeds[3] = {42, 7, ((uint64_t)1 << 40) + 3};
  const uint64_t batch_offsets[3] = {0, 8, 4};
  check_randn_philox(4, (int64_t[]){3, 4, 9, 11}, batch_seeds, batch_offsets);
  check_randn_philox(2, (int64_t[]){3, 20000}, batch_seeds, batch_offsets);

  /* torch's own numbers for seed 42 (RNG.md; libm's sine against the GPU's, see test_rng) */
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor out = empty_tensor(4, (int64_t[]){1, 4, 16, 16});
  const uint64_t seed42 = 42, offset0 = 0, offset2 = 2;
  check_rc(sd_op_randn_philox(be, &seed42, &offset0, &out), "randn_philox seed 42");
  float got[1024];
  static const float torch_want[4] = {0.19401880f, 2.16137362f, -0.17205022f, 0.84906012f};
  CHECK(sd_tensor_download_f32(be, &out, got) == 0, "download");
  sd_test_compare_f32("randn_philox seed 42 (torch on a GPU)", got, torch_want, 4, 2.5e-6f, 1e-6f);
  sd_error_clear();
  CHECK(sd_op_randn_philox(be, &seed42, &offset2, &out) == -1 && *sd_error_message(),
        "randn_philox accepted offset 2");
  sd_arena_release(be, mark);
}

/* worker/model/unet.c's host time projection as it was before the timestep_embedding op
 * (sd_unet_time_proj at commit 9bbfa1d, max_period 10000), kept here verbatim: the op must
 * reproduce it bit for bit so that the UNet's results do not move. */
static void former_unet_time_proj(int dim, bool flip_sin_to_cos, float freq_shift, double timestep,
                                  float *out) {
  int half = dim / 2;
  float t = (float)timestep;
  float neg_log_period = (float)-log(10000.0);
  float denom = (float)half - freq_shift;
  for (int i = 0; i < half; i++) {
    float exponent = neg_log_period * (float)i / denom;
    float arg = t * (float)exp((double)exponent);
    float s = (float)sin((double)arg), c = (float)cos((double)arg);
    out[i] = flip_sin_to_cos ? c : s;
    out[half + i] = flip_sin_to_cos ? s : c;
  }
  if (dim % 2)
    out[dim - 1] = 0.0f;
}

/* out (B, dim) from sd_op_timestep_embedding: every row against diffusers'
 * get_timestep_embedding in double (float32 rounding of t * f moves the argument by up to
 * ~1e-4 at t = 999, hence atol 1.5e-4) and, for max_period 10000, bit for bit against the former
 * host projection. */
static void check_timestep_embedding(int64_t batch, int64_t dim, bool flip, float shift,
                                     double max_period, double t) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor out = empty_tensor(2, (int64_t[]){batch, dim});
  check_rc(sd_op_timestep_embedding(be, t, flip, shift, max_period, &out), "timestep_embedding");
  size_t n = (size_t)(batch * dim);
  float *got = malloc(n * sizeof(float)), *naive = malloc(n * sizeof(float));
  float *former = malloc(n * sizeof(float));
  CHECK(sd_tensor_download_f32(be, &out, got) == 0, "download");
  int64_t half = dim / 2;
  for (int64_t b = 0; b < batch; b++) {
    float *row = naive + b * dim;
    for (int64_t i = 0; i < half; i++) {
      double arg = t * exp(-log(max_period) * (double)i / ((double)half - shift));
      row[flip ? half + i : i] = (float)sin(arg);
      row[flip ? i : half + i] = (float)cos(arg);
    }
    if (dim % 2)
      row[dim - 1] = 0.0f;
    former_unet_time_proj((int)dim, flip, shift, t, former + b * dim);
  }
  char what[160];
  snprintf(what, sizeof what, "timestep_embedding (%lld, %lld) t %g flip %d shift %g period %g",
           (long long)batch, (long long)dim, t, flip, shift, max_period);
  sd_test_compare_f32(what, got, naive, n, 1.5e-4f, 0.0f);
  if (max_period == 10000.0) {
    snprintf(what, sizeof what,
             "timestep_embedding (%lld, %lld) t %g flip %d shift %g: former "
             "host projection (exact)",
             (long long)batch, (long long)dim, t, flip, shift);
    sd_test_compare_f32(what, got, former, n, 0.0f, 0.0f);
  }
  free(got);
  free(naive);
  free(former);
  sd_arena_release(be, mark);
}

static void test_timestep_embedding(void) {
  static const double timesteps[] = {0.0, 1.0, 37.25, 500.5, 981.0, 999.0};
  static const int64_t dims[] = {320, 7, 2, 192};
  for (int d = 0; d < 4; d++)
    for (int k = 0; k < 6; k++)
      for (int flip = 0; flip < 2; flip++)
        for (int shift = 0; shift < 2; shift++)
          if (dims[d] / 2 != shift)
            check_timestep_embedding(3, dims[d], flip, (float)shift, 10000.0, timesteps[k]);
  check_timestep_embedding(1, 320, true, 0.0f, 10000.0, 999.0);
  check_timestep_embedding(2, 64, false, 1.0f, 100.0, 250.0);

  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor two = empty_tensor(2, (int64_t[]){1, 2});
  sd_tensor flat = empty_tensor(1, (int64_t[]){320});
  sd_error_clear();
  CHECK(sd_op_timestep_embedding(be, 1.0, true, 1.0f, 10000.0, &two) == -1 && *sd_error_message(),
        "timestep_embedding accepted dim / 2 == freq_shift");
  CHECK(sd_op_timestep_embedding(be, 1.0, true, 0.0f, 10000.0, &flat) == -1,
        "timestep_embedding accepted a 1-D out");
  CHECK(sd_op_timestep_embedding(be, 1.0, true, 0.0f, 0.0, &two) == -1,
        "timestep_embedding accepted max_period 0");
  sd_arena_release(be, mark);
}

/* sd_op_* return -1 with a message on mismatched shapes, before reaching the backend. */
static void test_rejects(void) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  float *h[9];
  sd_tensor x = random_tensor(2, (int64_t[]){4, 6}, 1.0f, &h[0]);
  sd_tensor w = random_tensor(2, (int64_t[]){5, 7}, 1.0f, &h[1]);
  sd_tensor y = empty_tensor(2, (int64_t[]){4, 5});
  sd_error_clear();
  CHECK(sd_op_linear(be, &x, &w, NULL, SD_ACT_NONE, &y) == -1 && *sd_error_message(),
        "linear accepted K 6 vs weight K 7");
  sd_tensor img = random_tensor(4, (int64_t[]){1, 4, 8, 8}, 1.0f, &h[2]);
  sd_tensor cw = random_tensor(4, (int64_t[]){3, 4, 3, 3}, 1.0f, &h[3]);
  sd_tensor cy = empty_tensor(4, (int64_t[]){1, 3, 8, 8});
  CHECK(sd_op_conv2d(be, &img, &cw, NULL, 2, 1, &cy) == -1, "conv2d accepted a wrong Ho, Wo");
  sd_tensor gamma = random_tensor(1, (int64_t[]){4}, 1.0f, &h[4]);
  CHECK(sd_op_group_norm(be, &img, &gamma, &gamma, 3, 1e-5f, false, &img) == -1,
        "group_norm accepted 4 channels in 3 groups");
  sd_tensor q = random_tensor(3, (int64_t[]){1, 5, 12}, 1.0f, &h[5]);
  sd_tensor kv = random_tensor(3, (int64_t[]){1, 7, 12}, 1.0f, &h[6]);
  sd_tensor o = empty_tensor(3, (int64_t[]){1, 5, 12});
  CHECK(sd_op_attention(be, &q, &kv, &kv, 5, 1.0f, false, &o) == -1,
        "attention accepted 12 channels in 5 heads");
  CHECK(sd_op_attention(be, &q, &kv, &kv, 2, 1.0f, true, &o) == -1,
        "attention accepted causal with Lq != Lk");
  CHECK(sd_op_geglu(be, &q, &o) == -1, "geglu accepted y (.., 12) for x (.., 12)");
  CHECK(sd_op_transpose(be, &q, &o) == -1, "transpose accepted y of x's shape");
  sd_tensor table = random_tensor(2, (int64_t[]){3, 12}, 1.0f, &h[7]);
  const int32_t bad_ids[2] = {1, 3};
  sd_tensor emb = empty_tensor(2, (int64_t[]){2, 12});
  CHECK(sd_op_embedding(be, &table, bad_ids, 2, &emb) == -1, "embedding accepted id 3 of 3");
  sd_tensor up = empty_tensor(4, (int64_t[]){1, 3, 16, 16});
  CHECK(sd_op_upsample_nearest(be, &img, &up) == -1, "upsample accepted 3 channels for 4");
  sd_tensor flat = empty_tensor(4, (int64_t[]){1, 4, 0, 16});
  CHECK(sd_op_upsample_nearest(be, &img, &flat) == -1, "upsample accepted an output of 0 rows");
  CHECK(sd_op_interpolate(be, &img, SD_INTERP_BICUBIC, false, &flat) == -1,
        "interpolate accepted an output of 0 rows");
  CHECK(sd_op_interpolate(be, &img, SD_INTERP_BILINEAR, false, &up) == -1,
        "interpolate accepted 3 channels for 4");
  sd_tensor pooled = empty_tensor(4, (int64_t[]){1, 4, 4, 4});
  CHECK(sd_op_max_pool2d(be, &img, 3, 2, 2, &pooled) == -1, "max_pool2d accepted pad 2 > 3 / 2");
  CHECK(sd_op_max_pool2d(be, &img, 3, 2, 0, &pooled) == -1, "max_pool2d accepted a wrong Ho");
  CHECK(sd_op_pad2d(be, &img, 1, 0, 0.0f, &img) == -1, "pad2d accepted an output too small");
  CHECK(sd_op_pad2d(be, &img, -1, 0, 0.0f, &up) == -1, "pad2d accepted a negative pad");
  sd_tensor tw = random_tensor(4, (int64_t[]){4, 3, 2, 2}, 1.0f, &h[8]);
  sd_tensor ty = empty_tensor(4, (int64_t[]){1, 3, 17, 16});
  CHECK(sd_op_conv_transpose2d(be, &img, &tw, NULL, 2, 0, &ty) == -1,
        "conv_transpose2d accepted a wrong Ho");
  CHECK(sd_op_conv_transpose2d(be, &img, &cw, NULL, 2, 0, &ty) == -1,
        "conv_transpose2d accepted a weight (K, C, ..) for (C, K, ..)");
  for (int i = 0; i < 9; i++)
    free(h[i]);
  sd_arena_release(be, mark);
}

int main(void) {
  /* the default thread count, then an odd one that splits work unevenly */
  const int thread_counts[2] = {0, 3};
  for (int t = 0; t < 2; t++) {
    be = sd_backend_cpu_create(thread_counts[t]);
    if (!be) {
      fprintf(stderr, "cpu backend: %s\n", sd_error_message());
      return 1;
    }
    fprintf(stderr, "== cpu backend with %d threads\n", be->threads);
    test_linear();
    test_conv2d();
    test_conv2d_persistent_weight();
    test_group_norm();
    test_group_norm_parts();
    test_layer_norm();
    test_attention();
    test_activation();
    test_geglu();
    test_lincomb();
    test_data_movement(2, 5, 3, 7, 3);
    test_upsample_nearest();
    test_interpolate();
    test_max_pool2d();
    test_pad2d();
    test_conv_transpose2d();
    test_data_movement(2, 37, 21, 25, 19); /* large enough to run over threads */
    test_blend_window();
    test_randn_philox();
    test_timestep_embedding();
    test_batch_invariance();
    test_rejects();
    sd_backend_destroy(be);
  }
  /* bfloat16 inputs to linear and conv2d, where the CPU has AVX512_BF16 or AMX */
  be = sd_backend_cpu_create_precision(0, SD_DTYPE_BF16);
  if (be) {
    fprintf(stderr, "== cpu backend with %d threads, bf16 linear and conv2d inputs\n", be->threads);
    bf16_inputs = true;
    test_linear();
    test_conv2d();
    test_conv2d_persistent_weight();
    test_batch_invariance();
    sd_backend_destroy(be);
  } else {
    fprintf(stderr, "skip bf16 linear and conv2d: %s\n", sd_error_message());
  }
  return sd_test_finish();
}
