/* The band-parallel ops of worker/spatial against the one-rank ops, run under mpirun -n N (ctest:
 * 2, 3 and 4 ranks). Every rank builds the same random whole tensors, runs the plain op on them
 * and the sd_spatial_* op on its band, and compares its band of the whole result:
 *  - nearest upsampling to an odd height, 1x1 convolutions, cut and gather: bit for bit;
 *  - 3x3 convolutions with stride 1 and 2: within 1e-6 (the same products, but OpenBLAS picks
 *    its kernels by problem size and a band's GEMM is narrower than the whole image's: about
 *    1 value in 20 differs in the last bit or two);
 *  - GroupNorm: within 5e-6 (statistics summed in a different grouping: the mean or 1/std may
 *    differ in the last float bit);
 *  - self-attention with gathered K and V, batch 2: within 1e-6 (the same keys; only the query
 *    blocking of the GEMMs may differ).
 * The image is 37 x 23 with 3 levels (37, 19, 10 rows): bands do not divide evenly and the
 * second level is odd. */
#include "test_util.h"

#include "cluster/cluster.h"
#include "cluster/comm.h"
#include "kernels/error.h"
#include "spatial/spatial.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H0     37
#define W0     23
#define LEVELS 3

static sd_backend *be;
static sd_spatial *sp;
static uint32_t seed = 7;

static void die(const char *what) {
  fprintf(stderr, "%s: %s\n", what, sd_error_message());
  exit(2);
}

static sd_tensor tensor4(int64_t b, int64_t c, int64_t h, int64_t w) {
  sd_tensor t = sd_tensor_4d(SD_DTYPE_F32, b, c, h, w);
  if (sd_tensor_alloc(be, &t) < 0)
    die("alloc");
  return t;
}

static sd_tensor random4(int64_t b, int64_t c, int64_t h, int64_t w, float scale, float shift) {
  sd_tensor t = tensor4(b, c, h, w);
  size_t n = (size_t)sd_tensor_numel(&t);
  float *host = malloc(n * sizeof *host);
  sd_test_fill_random(host, n, seed++, scale);
  for (size_t i = 0; i < n; i++)
    host[i] += shift;
  if (sd_tensor_upload_f32(be, &t, host) < 0)
    die("upload");
  free(host);
  return t;
}

static sd_tensor random_vec(int64_t n, float scale) {
  sd_tensor t = random4(1, 1, 1, n, scale, 0.0f);
  return (sd_tensor){t.data, SD_DTYPE_F32, 1, {n}};
}

/* The band of whole at this rank. */
static sd_tensor band_of(const sd_tensor *whole) {
  int64_t rows = sd_spatial_rows(sp, whole->shape[3], 0);
  sd_tensor band = tensor4(whole->shape[0], whole->shape[1], rows, whole->shape[3]);
  if (sd_spatial_cut(be, sp, whole, &band) < 0)
    die("cut");
  return band;
}

/* got (the band) against this rank's band of want (whole). */
static void compare_band(const char *what, const sd_tensor *got, const sd_tensor *want, float tol) {
  sd_tensor cut = band_of(want);
  size_t n = (size_t)sd_tensor_numel(&cut);
  CHECK(sd_tensor_same_shape(got, &cut), "%s: band shape", what);
  if (!sd_tensor_same_shape(got, &cut))
    return;
  float *g = malloc(n * sizeof *g), *w = malloc(n * sizeof *w);
  sd_tensor_download_f32(be, got, g);
  sd_tensor_download_f32(be, &cut, w);
  size_t exact = 0;
  for (size_t i = 0; i < n; i++)
    exact += memcmp(&g[i], &w[i], sizeof g[i]) == 0;
  char label[160];
  snprintf(label, sizeof label, "%s, rank %d of %d (%zu of %zu exact)", what, sd_spatial_rank(sp),
           sd_spatial_size(sp), exact, n);
  if (tol == 0.0f)
    CHECK(exact == n, "%s: want bit-identical", label);
  sd_test_compare_f32(label, g, w, n, tol, tol);
  free(g);
  free(w);
}

static void test_conv(int64_t batch, int64_t c, int64_t k, int level, int stride, int kernel) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int64_t h, w = (W0 + (1 << level) - 1) >> level;
  sd_spatial_band(sp, w, 0, NULL, NULL, &h);
  int64_t ho = stride == 1 ? h : (h + 1) / 2, wo = stride == 1 ? w : (w + 1) / 2;
  int pad = kernel == 3 ? 1 : 0;
  sd_tensor x = random4(batch, c, h, w, 1.0f, 0.0f);
  sd_tensor weight = random4(k, c, kernel, kernel, 0.3f, 0.0f);
  sd_tensor bias = random_vec(k, 0.5f);
  sd_tensor want = tensor4(batch, k, ho, wo);
  if (sd_op_conv2d(be, &x, &weight, &bias, stride, pad, &want) < 0)
    die("conv2d");
  sd_tensor xb = band_of(&x);
  sd_tensor yb = tensor4(batch, k, sd_spatial_rows(sp, wo, 0), wo);
  CHECK(sd_spatial_conv2d(be, sp, &xb, &weight, &bias, stride, pad, &yb) == 0, "spatial conv2d: %s",
        sd_error_message());
  char what[128];
  snprintf(what, sizeof what, "conv2d %lldx%lld stride %d level %d (%lld, %lld, %lld, %lld)",
           (long long)kernel, (long long)kernel, stride, level, (long long)batch, (long long)c,
           (long long)h, (long long)w);
  compare_band(what, &yb, &want, kernel == 1 ? 0.0f : 1e-6f);
  sd_arena_release(be, mark);
}

/* nearest resize of level 2 (10 rows) to level 1 (19 rows), as the UNet's upsamplers do */
static void test_upsample(void) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int64_t h1, h2, w1 = (W0 + 1) / 2, w2 = (W0 + 3) / 4;
  sd_spatial_band(sp, w1, 0, NULL, NULL, &h1);
  sd_spatial_band(sp, w2, 0, NULL, NULL, &h2);
  sd_tensor x = random4(2, 3, h2, w2, 1.0f, 0.0f);
  sd_tensor want = tensor4(2, 3, h1, w1);
  if (sd_op_upsample_nearest(be, &x, &want) < 0)
    die("upsample");
  sd_tensor xb = band_of(&x);
  sd_tensor yb = tensor4(2, 3, sd_spatial_rows(sp, w1, 0), w1);
  CHECK(sd_op_upsample_nearest(be, &xb, &yb) == 0, "upsample band: %s", sd_error_message());
  compare_band("upsample_nearest of bands, 10 -> 19 rows", &yb, &want, 0.0f);
  sd_arena_release(be, mark);
}

static void test_group_norm(int level, bool silu) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int64_t h, w = (W0 + (1 << level) - 1) >> level, c = 32;
  sd_spatial_band(sp, w, 0, NULL, NULL, &h);
  sd_tensor x = random4(2, c, h, w, 2.0f, 3.0f);
  sd_tensor gamma = random_vec(c, 1.5f), beta = random_vec(c, 1.0f);
  sd_tensor want = tensor4(2, c, h, w);
  if (sd_op_group_norm(be, &x, &gamma, &beta, 8, 1e-5f, silu, &want) < 0)
    die("group_norm");
  sd_tensor xb = band_of(&x);
  CHECK(sd_spatial_group_norm(be, sp, &xb, &gamma, &beta, 8, 1e-5f, silu, &xb) == 0,
        "spatial group_norm: %s", sd_error_message());
  char what[96];
  snprintf(what, sizeof what, "group_norm level %d silu %d (in place)", level, silu);
  compare_band(what, &xb, &want, 5e-6f);
  sd_arena_release(be, mark);
}

static void test_attention(int level) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int64_t h, w = (W0 + (1 << level) - 1) >> level, c = 16, heads = 2, batch = 2;
  sd_spatial_band(sp, w, 0, NULL, NULL, &h);
  int64_t rows = sd_spatial_rows(sp, w, 0);
  /* tokens as (B, 1, L, C) so that cut picks the band's rows * w tokens */
  sd_tensor q = random4(batch, 1, h * w, c, 1.0f, 0.0f);
  sd_tensor k = random4(batch, 1, h * w, c, 1.0f, 0.0f);
  sd_tensor v = random4(batch, 1, h * w, c, 1.0f, 0.0f);
  sd_tensor want = tensor4(batch, 1, h * w, c);
  sd_tensor q3 = sd_tensor_3d(SD_DTYPE_F32, batch, h * w, c), k3 = q3, v3 = q3, want3 = q3;
  q3.data = q.data, k3.data = k.data, v3.data = v.data, want3.data = want.data;
  if (sd_op_attention(be, &q3, &k3, &v3, (int)heads, 0.25f, false, &want3) < 0)
    die("attention");
  sd_tensor band[4];
  const sd_tensor *whole[4] = {&q, &k, &v, &want};
  int64_t first;
  sd_spatial_band(sp, w, sd_spatial_rank(sp), &first, NULL, NULL);
  for (int i = 0; i < 4; i++) {
    band[i] = tensor4(batch, 1, rows * w, c);
    sd_op_blend_window(be, whole[i], first * w, 0, &band[i], 0, 0, rows * w, c, SD_BLEND_COPY);
  }
  sd_tensor qb = sd_tensor_3d(SD_DTYPE_F32, batch, rows * w, c), kb = qb, vb = qb, ob = qb;
  qb.data = band[0].data, kb.data = band[1].data, vb.data = band[2].data;
  sd_tensor out = tensor4(batch, 1, rows * w, c);
  ob.data = out.data;
  CHECK(sd_spatial_attention(be, sp, &qb, &kb, &vb, w, (int)heads, 0.25f, &ob) == 0,
        "spatial attention: %s", sd_error_message());
  size_t n = (size_t)sd_tensor_numel(&out);
  float *g = malloc(n * sizeof *g), *x = malloc(n * sizeof *x);
  sd_tensor_download_f32(be, &out, g);
  sd_tensor_download_f32(be, &band[3], x);
  char what[96];
  snprintf(what, sizeof what, "attention with gathered K, V, level %d, rank %d of %d", level,
           sd_spatial_rank(sp), sd_spatial_size(sp));
  sd_test_compare_f32(what, g, x, n, 1e-6f, 1e-6f);
  free(g);
  free(x);
  sd_arena_release(be, mark);
}

static void test_gather(void) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int64_t h, w = (W0 + 1) / 2;
  sd_spatial_band(sp, w, 0, NULL, NULL, &h);
  sd_tensor x = random4(2, 5, h, w, 1.0f, 0.0f);
  sd_tensor xb = band_of(&x);
  sd_tensor back = tensor4(2, 5, h, w);
  CHECK(sd_spatial_gather(be, sp, &xb, &back) == 0, "gather: %s", sd_error_message());
  size_t n = (size_t)sd_tensor_numel(&x);
  float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
  sd_tensor_download_f32(be, &x, a);
  sd_tensor_download_f32(be, &back, b);
  CHECK(memcmp(a, b, n * sizeof *a) == 0, "gather of the bands gives the whole tensor back");
  free(a);
  free(b);
  sd_arena_release(be, mark);
}

static void test_layout(void) {
  /* bands tile every level, scale by 2 between levels, and the coarsest has >= 1 row each */
  int size = sd_spatial_size(sp);
  for (int l = 0; l < LEVELS; l++) {
    int64_t w = (W0 + (1 << l) - 1) >> l, h, next = 0;
    sd_spatial_band(sp, w, 0, NULL, NULL, &h);
    CHECK(h == (H0 + (1 << l) - 1) >> l, "level %d height %lld", l, (long long)h);
    for (int r = 0; r < size; r++) {
      int64_t first, rows;
      CHECK(sd_spatial_band(sp, w, r, &first, &rows, NULL) == 0, "band: %s", sd_error_message());
      CHECK(first == next && rows >= 1, "level %d rank %d: rows [%lld, +%lld) after %lld", l, r,
            (long long)first, (long long)rows, (long long)next);
      next = first + rows;
    }
    CHECK(next == h, "level %d: bands cover %lld of %lld rows", l, (long long)next, (long long)h);
  }
  CHECK(sd_spatial_band(sp, 5, 0, NULL, NULL, NULL) < 0, "a width of no level is an error");
}

int main(void) {
  sd_cluster world;
  if (sd_cluster_init(&world) < 0)
    die("cluster");
  be = sd_backend_cpu_create(1);
  sd_comm *comm = NULL;
  if (!be || sd_comm_split_world(0, world.rank, 60.0, &comm) < 0)
    die("setup");
  if (sd_spatial_create(comm, be, H0, W0, LEVELS, &sp) < 0)
    die("spatial");
  sd_spatial *too_many = NULL;
  CHECK(world.size < 3 || sd_spatial_create(comm, be, 8, 8, 3, &too_many) < 0,
        "2 coarse rows for %d ranks refused", world.size);

  test_layout();
  test_conv(2, 5, 7, 0, 1, 3);
  test_conv(1, 6, 4, 1, 1, 3);
  test_conv(1, 6, 6, 2, 1, 3);
  test_conv(2, 5, 7, 0, 2, 3); /* 37 -> 19 rows */
  test_conv(1, 6, 3, 1, 2, 3); /* 19 -> 10 rows */
  test_conv(2, 5, 7, 1, 1, 1);
  test_upsample();
  test_group_norm(0, true);
  test_group_norm(1, false);
  test_attention(1);
  test_attention(0);
  test_gather();

  sd_spatial_stats st = sd_spatial_get_stats(sp);
  printf("rank %d: %llu bytes sent, %llu halo exchanges, %llu gathers, %llu all-reduces\n",
         world.rank, (unsigned long long)st.bytes_sent, (unsigned long long)st.halo_calls,
         (unsigned long long)st.gather_calls, (unsigned long long)st.reduce_calls);
  sd_spatial_free(sp);
  sd_comm_free(comm);
  sd_backend_destroy(be);
  int status = sd_test_finish();
  sd_cluster_finalize();
  return status;
}
