/* Micro-benchmark of the CPU backend's hot ops at SD 1.5 UNet sizes (64x64 latents, batch 2),
 * forward and backward (docs/training.md): prints the best of a few runs as milliseconds and
 * GFLOP/s (GB/s for the memory-bound ops).
 * Not a test; run by hand: bench_ops_cpu [repeats [name-filter [bf16]]] ("" filters nothing;
 * bf16: linear and conv2d take bfloat16 inputs, where the CPU has AVX512_BF16 or AMX). */
#include "kernels/error.h"
#include "kernels/ops.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static sd_backend *be;
static int repeats = 3;
static const char *filter; /* run only the benchmarks whose name contains this */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static sd_tensor make(int ndim, const int64_t *shape, uint32_t seed) {
  sd_tensor t = sd_tensor_make(SD_DTYPE_F32, ndim, shape);
  if (sd_tensor_alloc(be, &t) < 0) {
    fprintf(stderr, "bench: %s\n", sd_error_message());
    exit(1);
  }
  sd_test_fill_random(t.data, (size_t)sd_tensor_numel(&t), seed, 1.0f);
  return t;
}

/* A weight as the model has it: persistent memory written by upload, so that the backend may keep
 * a prepared copy (the CPU backend's blocked convolution weights). Free with sd_tensor_free. */
static sd_tensor make_weight(int ndim, const int64_t *shape, uint32_t seed) {
  sd_tensor t = sd_tensor_make(SD_DTYPE_F32, ndim, shape);
  size_t n = (size_t)sd_tensor_numel(&t);
  float *host = malloc(n * sizeof(float));
  if (!host || sd_tensor_alloc_persistent(be, &t) < 0) {
    fprintf(stderr, "bench: out of memory\n");
    exit(1);
  }
  sd_test_fill_random(host, n, seed, 0.1f);
  if (sd_tensor_upload_f32(be, &t, host) < 0) {
    fprintf(stderr, "bench: %s\n", sd_error_message());
    exit(1);
  }
  free(host);
  return t;
}

typedef int (*bench_fn)(void *ctx);

/* Best wall time of `repeats` runs after one warm-up; amount is FLOP or bytes. */
static void run(const char *name, bench_fn fn, void *ctx, double amount, const char *unit) {
  if (filter && !strstr(name, filter))
    return;
  double best = 1e30;
  for (int r = 0; r <= repeats; r++) {
    double t0 = now_s();
    if (fn(ctx) < 0) {
      fprintf(stderr, "%s: %s\n", name, sd_error_message());
      exit(1);
    }
    double dt = now_s() - t0;
    if (r > 0 && dt < best)
      best = dt;
  }
  printf("%-44s %9.2f ms %8.1f %s\n", name, best * 1e3, amount / best * 1e-9, unit);
  fflush(stdout);
}

typedef struct {
  sd_tensor x, w, b, y, q, k, v, gamma, beta;
  sd_tensor dx, dw, db, dk, dv; /* gradients of the backward benchmarks; y holds dy */
  int heads, stride, pad;
  sd_activation act;
} op_args;

static int do_linear(void *ctx) {
  op_args *a = ctx;
  return sd_op_linear(be, &a->x, &a->w, &a->b, a->act, &a->y);
}

static int do_linear_backward(void *ctx) {
  op_args *a = ctx;
  return sd_op_linear_backward(be, &a->x, &a->w, &a->y, &a->dx, &a->dw, &a->db);
}

static int do_conv_backward(void *ctx) {
  op_args *a = ctx;
  return sd_op_conv2d_backward(be, &a->x, &a->w, &a->y, a->stride, a->pad, &a->dx, &a->dw, &a->db);
}

static int do_attention_backward(void *ctx) {
  op_args *a = ctx;
  return sd_op_attention_backward(be, &a->q, &a->k, &a->v, &a->y, a->heads, 0.158113883f, false,
                                  &a->dx, &a->dk, &a->dv);
}

static int do_group_norm_backward(void *ctx) {
  op_args *a = ctx;
  return sd_op_group_norm_backward(be, &a->x, &a->gamma, &a->beta, &a->y, 32, 1e-5f, true, &a->dx,
                                   &a->dw, &a->db);
}

static int do_conv(void *ctx) {
  op_args *a = ctx;
  return sd_op_conv2d(be, &a->x, &a->w, &a->b, a->stride, a->pad, &a->y);
}

static int do_attention(void *ctx) {
  op_args *a = ctx;
  return sd_op_attention(be, &a->q, &a->k, &a->v, a->heads, 0.158113883f, false, &a->y);
}

static int do_group_norm(void *ctx) {
  op_args *a = ctx;
  return sd_op_group_norm(be, &a->x, &a->gamma, &a->beta, 32, 1e-5f, true, &a->y);
}

static int do_layer_norm(void *ctx) {
  op_args *a = ctx;
  return sd_op_layer_norm(be, &a->x, &a->gamma, &a->beta, 1e-5f, &a->y);
}

static int do_geglu(void *ctx) {
  op_args *a = ctx;
  return sd_op_geglu(be, &a->x, &a->y);
}

static int do_add(void *ctx) {
  op_args *a = ctx;
  return sd_op_add(be, &a->x, &a->y, &a->y);
}

static int do_transpose(void *ctx) {
  op_args *a = ctx;
  return sd_op_transpose(be, &a->x, &a->y);
}

/* x (B, L, K) . w (N, K)^T: the model passes sequences as (B, L, C), one sgemm per item */
static void bench_linear(int64_t batch, int64_t len, int64_t k, int64_t n, sd_activation act) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  op_args a = {.x = make(3, (int64_t[]){batch, len, k}, 1),
               .w = make_weight(2, (int64_t[]){n, k}, 2),
               .b = make(1, (int64_t[]){n}, 3),
               .y = make(3, (int64_t[]){batch, len, n}, 4),
               .act = act};
  char name[96];
  snprintf(name, sizeof name, "linear M %lld (%lldx%lld) K %lld N %lld%s", (long long)(batch * len),
           (long long)batch, (long long)len, (long long)k, (long long)n,
           act == SD_ACT_NONE ? "" : " +gelu");
  run(name, do_linear, &a, 2.0 * (double)(batch * len * n * k), "GFLOP/s");
  if (act == SD_ACT_NONE) {
    a.dx = make(3, a.x.shape, 5), a.dw = make(2, a.w.shape, 6), a.db = make(1, a.b.shape, 7);
    strncat(name, " backward", sizeof name - strlen(name) - 1);
    run(name, do_linear_backward, &a, 4.0 * (double)(batch * len * n * k), "GFLOP/s");
  }
  sd_tensor_free(be, &a.w);
  sd_arena_release(be, mark);
}

static void bench_conv(int64_t batch, int64_t c, int64_t k, int64_t hw, int64_t ks, int stride) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int pad = (int)ks / 2;
  int64_t ho = (hw + 2 * pad - ks) / stride + 1;
  op_args a = {.x = make(4, (int64_t[]){batch, c, hw, hw}, 1),
               .w = make_weight(4, (int64_t[]){k, c, ks, ks}, 2),
               .b = make(1, (int64_t[]){k}, 3),
               .y = make(4, (int64_t[]){batch, k, ho, ho}, 4),
               .stride = stride,
               .pad = pad};
  char name[96];
  snprintf(name, sizeof name, "conv2d B %lld %lld->%lld %lldx%lld k%lld s%d", (long long)batch,
           (long long)c, (long long)k, (long long)hw, (long long)hw, (long long)ks, stride);
  run(name, do_conv, &a, 2.0 * (double)(batch * k * c * ks * ks * ho * ho), "GFLOP/s");
  a.dx = make(4, a.x.shape, 5), a.dw = make(4, a.w.shape, 6), a.db = make(1, a.b.shape, 7);
  strncat(name, " backward", sizeof name - strlen(name) - 1);
  run(name, do_conv_backward, &a, 4.0 * (double)(batch * k * c * ks * ks * ho * ho), "GFLOP/s");
  sd_tensor_free(be, &a.w);
  sd_arena_release(be, mark);
}

static void bench_attention(int64_t batch, int heads, int64_t lq, int64_t lk, int64_t d) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int64_t width = heads * d;
  op_args a = {.q = make(3, (int64_t[]){batch, lq, width}, 1),
               .k = make(3, (int64_t[]){batch, lk, width}, 2),
               .v = make(3, (int64_t[]){batch, lk, width}, 3),
               .y = make(3, (int64_t[]){batch, lq, width}, 4),
               .heads = heads};
  char name[96];
  snprintf(name, sizeof name, "attention B*H %lld Lq %lld Lk %lld D %lld",
           (long long)(batch * heads), (long long)lq, (long long)lk, (long long)d);
  run(name, do_attention, &a, 4.0 * (double)(batch * heads * lq * lk * d), "GFLOP/s");
  a.dx = make(3, a.q.shape, 5), a.dk = make(3, a.k.shape, 6), a.dv = make(3, a.v.shape, 7);
  strncat(name, " backward", sizeof name - strlen(name) - 1);
  run(name, do_attention_backward, &a, 10.0 * (double)(batch * heads * lq * lk * d), "GFLOP/s");
  sd_arena_release(be, mark);
}

static void bench_memory_ops(void) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  int64_t batch = 2, c = 320, hw = 4096;
  double bytes = 2.0 * 4.0 * (double)(batch * c * hw); /* one read, one write */
  op_args a = {.x = make(3, (int64_t[]){batch, c, hw}, 1),
               .y = make(3, (int64_t[]){batch, c, hw}, 2),
               .gamma = make(1, (int64_t[]){c}, 3),
               .beta = make(1, (int64_t[]){c}, 4)};
  run("group_norm+silu (2, 320, 64x64)", do_group_norm, &a, bytes, "GB/s");
  op_args gb = a;
  gb.dx = make(3, a.x.shape, 8), gb.dw = make(1, a.gamma.shape, 9);
  gb.db = make(1, a.beta.shape, 10);
  run("group_norm+silu (2, 320, 64x64) backward", do_group_norm_backward, &gb, 1.5 * bytes, "GB/s");
  run("add (2, 320, 64x64)", do_add, &a, 1.5 * bytes, "GB/s");
  sd_tensor t = make(3, (int64_t[]){batch, hw, c}, 5);
  op_args tr = {.x = a.x, .y = t};
  run("transpose (2, 320, 4096)", do_transpose, &tr, bytes, "GB/s");
  op_args ln = {.x = t, .y = t, .gamma = a.gamma, .beta = a.beta};
  run("layer_norm (2, 4096, 320)", do_layer_norm, &ln, bytes, "GB/s");
  op_args gg = {.x = make(3, (int64_t[]){batch, hw, 2 * 1280}, 6),
                .y = make(3, (int64_t[]){batch, hw, 1280}, 7)};
  run("geglu (2, 4096, 2560)", do_geglu, &gg, 1.5 * 4.0 * (double)(batch * hw * 2560), "GB/s");
  sd_arena_release(be, mark);
}

int main(int argc, char **argv) {
  if (argc > 1)
    repeats = atoi(argv[1]) > 0 ? atoi(argv[1]) : 1;
  if (argc > 2 && argv[2][0])
    filter = argv[2];
  bool bf16 = argc > 3 && strcmp(argv[3], "bf16") == 0;
  be = sd_backend_cpu_create_precision(0, bf16 ? SD_DTYPE_BF16 : SD_DTYPE_F32);
  if (!be) {
    fprintf(stderr, "cpu backend: %s\n", sd_error_message());
    return 1;
  }
  printf("cpu backend, %d threads, %s inputs to linear and conv2d, best of %d\n", be->threads,
         bf16 ? "bf16" : "fp32", repeats);
  bench_linear(2, 4096, 320, 320, SD_ACT_NONE);
  bench_linear(2, 2048, 1280, 1280, SD_ACT_NONE);
  bench_linear(2, 4096, 320, 2560, SD_ACT_NONE);
  bench_linear(2, 4096, 1280, 320, SD_ACT_NONE);
  bench_linear(2, 4096, 320, 320, SD_ACT_GELU);
  bench_linear(2, 77, 768, 320, SD_ACT_NONE);
  bench_linear(2, 1, 1280, 1280, SD_ACT_NONE);
  bench_conv(2, 320, 320, 64, 3, 1);
  bench_conv(2, 640, 640, 32, 3, 1);
  bench_conv(2, 1280, 1280, 8, 3, 1);
  bench_conv(2, 320, 320, 64, 3, 2);
  bench_conv(2, 320, 320, 64, 1, 1);
  bench_conv(1, 128, 128, 512, 3, 1);
  bench_attention(2, 8, 4096, 4096, 40);
  bench_attention(2, 8, 4096, 77, 40);
  bench_attention(2, 8, 1024, 1024, 80);
  bench_memory_ops();
  sd_backend_destroy(be);
  return 0;
}
