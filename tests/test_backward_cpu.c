/* The CPU backend's backward passes, the optimizer, the learning-rate schedules and the MSE loss
 * against two references:
 *  1. torch autograd (tests/fixtures/backward, written by tests/reference/make_backward_fixtures.py
 *     at small odd shapes): every gradient within RTOL_TORCH of torch's, measured per tensor as
 *     max |got - want| / max(max |want|, 1e-6) and printed; parameter gradients are computed a
 *     second time into the same tensors and must then be twice torch's (they accumulate), input
 *     gradients must be unchanged (they are overwritten). AdamW: 5 steps of clip_grad_norm_ +
 *     AdamW with a warmup + cosine schedule, every parameter after every step within RTOL_ADAMW of
 *     torch's by the same measure; the schedules' multipliers within 1e-6.
 *  2. central finite differences of the forward ops (an independent reference that does not
 *     involve torch): L = sum(y * r) for a random r, dL/dx_i = (L(x_i + h) - L(x_i - h)) / 2h
 *     with L summed in double from the float32 forward, every element of every input, within
 *     RTOL_FD by the same measure.
 *  3. larger shapes that split the work into several blocks and run over threads (linear,
 *     conv2d, attention with 2 query blocks, group and layer norm): against naive references in
 *     double (RTOL_TORCH), bit for bit the same on a backend with another thread count, and an
 *     item's input gradient bit for bit the same alone as in the batch.
 * Also: each gradient of the multi-gradient ops computed alone (the others NULL) bit for bit as
 * with all of them, the shape checks of sd_op_*_backward, and the error of a backend without an
 * entry. */
#include "io/safetensors.h"
#include "kernels/error.h"
#include "kernels/ops.h"
#include "test_util.h"
#include "train/loss.h"
#include "train/lr_schedule.h"
#include "train/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RTOL_TORCH    1e-4
#define RTOL_ADAMW    1e-5
#define RTOL_SCHEDULE 1e-6
#define RTOL_FD       1e-3
#define FD_STEP       1e-2f

static sd_backend *be;
static uint32_t seed = 7;

/* max |got - scale * want| / max(max |scale * want|, 1e-6) */
static double rel_error(const float *got, const float *want, size_t n, float scale) {
  double err = 0.0, peak = 0.0;
  for (size_t i = 0; i < n; i++) {
    double w = (double)scale * want[i];
    double d = fabs((double)got[i] - w);
    if (!(d <= err)) /* NaN counts as failure */
      err = d;
    peak = fabs(w) > peak ? fabs(w) : peak;
  }
  return err / (peak > 1e-6 ? peak : 1e-6);
}

static void expect_rel(const char *what, const float *got, const float *want, size_t n, float scale,
                       double tol) {
  double err = rel_error(got, want, n, scale);
  printf("  %-44s rel err %.2e (tol %.0e)\n", what, err, tol);
  CHECK(err <= tol, "%s: relative error %.3e above %.0e", what, err, tol);
}

static void setup_failed(void) {
  fprintf(stderr, "setup failed: %s\n", sd_error_message());
  exit(2);
}

static void check_rc(int rc, const char *what) {
  CHECK(rc == 0, "%s failed: %s", what, sd_error_message());
}

/* An arena tensor of the shape, filled from host (or zeros when host is NULL). */
static sd_tensor make_tensor(int ndim, const int64_t *shape, const float *host) {
  sd_tensor t = sd_tensor_make(SD_DTYPE_F32, ndim, shape);
  if (sd_tensor_alloc(be, &t) < 0)
    setup_failed();
  if (host)
    memcpy(t.data, host, sd_tensor_bytes(&t));
  else
    memset(t.data, 0, sd_tensor_bytes(&t));
  return t;
}

static size_t numel(const sd_tensor *t) {
  return (size_t)sd_tensor_numel(t);
}

/* ---- 1. torch autograd fixtures ---- */

static sd_safetensors *open_fixture(const char *file) {
  char path[512];
  snprintf(path, sizeof path, "%s/backward/%s.safetensors", SD_TEST_FIXTURES, file);
  sd_safetensors *f = NULL;
  if (sd_safetensors_open(path, &f) < 0)
    setup_failed();
  return f;
}

static const sd_st_tensor *fixture(const sd_safetensors *f, const char *name, const char *what) {
  char key[128];
  snprintf(key, sizeof key, "%s.%s", name, what);
  const sd_st_tensor *t = sd_safetensors_find(f, key);
  if (!t || (t->dtype != SD_DTYPE_F32 && t->dtype != SD_DTYPE_I32)) {
    fprintf(stderr, "%s: tensor %s missing or not F32/I32\n", sd_safetensors_path(f), key);
    exit(2);
  }
  return t;
}

/* An arena tensor holding fixture tensor name.what (zeros with `zero`). */
static sd_tensor load(const sd_safetensors *f, const char *name, const char *what, bool zero) {
  const sd_st_tensor *t = fixture(f, name, what);
  return make_tensor(t->ndim, t->shape, zero ? NULL : t->data);
}

/* got against fixture name.what times scale. */
static void expect_fixture(const sd_safetensors *f, const char *name, const char *what,
                           const sd_tensor *got, float scale) {
  const sd_st_tensor *want = fixture(f, name, what);
  char label[96];
  snprintf(label, sizeof label, "%s %s%s", name, what, scale == 1.0f ? "" : " (accumulated x2)");
  CHECK(numel(got) * sizeof(float) == want->bytes, "%s: size differs from the fixture", label);
  if (numel(got) * sizeof(float) == want->bytes)
    expect_rel(label, got->data, want->data, numel(got), scale, RTOL_TORCH);
}

static void torch_linear(void) {
  sd_safetensors *f = open_fixture("linear");
  static const char *const cases[] = {"linear", "linear2d"};
  for (int c = 0; c < 2; c++) {
    sd_arena_mark mark = sd_arena_get_mark(be);
    const char *name = cases[c];
    bool bias = c == 0;
    sd_tensor x = load(f, name, "x", false), w = load(f, name, "w", false);
    sd_tensor dy = load(f, name, "dy", false);
    sd_tensor dx = load(f, name, "x", true), dw = load(f, name, "w", true);
    sd_tensor db = bias ? load(f, name, "b", true) : (sd_tensor){0};
    for (int pass = 1; pass <= 2; pass++) {
      check_rc(sd_op_linear_backward(be, &x, &w, &dy, &dx, &dw, bias ? &db : NULL),
               "linear_backward");
      expect_fixture(f, name, "dx", &dx, 1.0f);
      expect_fixture(f, name, "dw", &dw, (float)pass);
      if (bias)
        expect_fixture(f, name, "db", &db, (float)pass);
    }
    sd_arena_release(be, mark);
  }
  sd_safetensors_close(f);
}

static void torch_activation(void) {
  sd_safetensors *f = open_fixture("activation");
  static const struct {
    const char *name;
    sd_activation act;
  } acts[] = {{"silu", SD_ACT_SILU},
              {"gelu", SD_ACT_GELU},
              {"gelu_tanh", SD_ACT_GELU_TANH},
              {"quick_gelu", SD_ACT_QUICK_GELU},
              {"relu", SD_ACT_RELU}};
  for (int a = 0; a < 5; a++) {
    sd_arena_mark mark = sd_arena_get_mark(be);
    sd_tensor x = load(f, acts[a].name, "x", false), dy = load(f, acts[a].name, "dy", false);
    sd_tensor dx = load(f, acts[a].name, "x", true);
    check_rc(sd_op_activation_backward(be, &x, &dy, acts[a].act, &dx), "activation_backward");
    expect_fixture(f, acts[a].name, "dx", &dx, 1.0f);
    /* in place: dx aliasing dy */
    check_rc(sd_op_activation_backward(be, &x, &dy, acts[a].act, &dy), "activation_backward");
    CHECK(memcmp(dy.data, dx.data, sd_tensor_bytes(&dx)) == 0, "%s: in place differs",
          acts[a].name);
    sd_arena_release(be, mark);
  }
  sd_safetensors_close(f);
}

static void torch_conv2d(void) {
  sd_safetensors *f = open_fixture("conv2d");
  static const struct {
    const char *name;
    int stride, pad;
  } cases[] = {{"s1", 1, 1}, {"s2", 2, 1}, {"k1", 1, 0}};
  for (int c = 0; c < 3; c++) {
    sd_arena_mark mark = sd_arena_get_mark(be);
    const char *name = cases[c].name;
    sd_tensor x = load(f, name, "x", false), w = load(f, name, "w", false);
    sd_tensor dy = load(f, name, "dy", false);
    sd_tensor dx = load(f, name, "x", true), dw = load(f, name, "w", true);
    sd_tensor db = load(f, name, "b", true);
    for (int pass = 1; pass <= 2; pass++) {
      check_rc(sd_op_conv2d_backward(be, &x, &w, &dy, cases[c].stride, cases[c].pad, &dx, &dw, &db),
               "conv2d_backward");
      expect_fixture(f, name, "dx", &dx, 1.0f);
      expect_fixture(f, name, "dw", &dw, (float)pass);
      expect_fixture(f, name, "db", &db, (float)pass);
    }
    sd_arena_release(be, mark);
  }
  sd_safetensors_close(f);
}

static void torch_norms(void) {
  sd_safetensors *f = open_fixture("norm");
  static const char *const cases[] = {"gn", "gn_silu", "ln"};
  for (int c = 0; c < 3; c++) {
    sd_arena_mark mark = sd_arena_get_mark(be);
    const char *name = cases[c];
    sd_tensor x = load(f, name, "x", false), dy = load(f, name, "dy", false);
    sd_tensor gamma = load(f, name, "gamma", false), beta = load(f, name, "beta", false);
    sd_tensor dx = load(f, name, "x", true);
    sd_tensor dgamma = load(f, name, "gamma", true), dbeta = load(f, name, "beta", true);
    for (int pass = 1; pass <= 2; pass++) {
      if (c < 2)
        check_rc(sd_op_group_norm_backward(be, &x, &gamma, &beta, &dy, 2, 1e-5f, c == 1, &dx,
                                           &dgamma, &dbeta),
                 "group_norm_backward");
      else
        check_rc(sd_op_layer_norm_backward(be, &x, &gamma, &dy, 1e-5f, &dx, &dgamma, &dbeta),
                 "layer_norm_backward");
      expect_fixture(f, name, "dx", &dx, 1.0f);
      expect_fixture(f, name, "dgamma", &dgamma, (float)pass);
      expect_fixture(f, name, "dbeta", &dbeta, (float)pass);
    }
    sd_arena_release(be, mark);
  }
  sd_safetensors_close(f);
}

static void torch_attention(void) {
  sd_safetensors *f = open_fixture("attention");
  static const char *const cases[] = {"cross", "causal"};
  for (int c = 0; c < 2; c++) {
    sd_arena_mark mark = sd_arena_get_mark(be);
    const char *name = cases[c];
    sd_tensor q = load(f, name, "q", false), k = load(f, name, "k", false);
    sd_tensor v = load(f, name, "v", false), dout = load(f, name, "dout", false);
    sd_tensor dq = load(f, name, "q", true), dk = load(f, name, "k", true);
    sd_tensor dv = load(f, name, "v", true);
    check_rc(sd_op_attention_backward(be, &q, &k, &v, &dout, 2, 0.5f, c == 1, &dq, &dk, &dv),
             "attention_backward");
    expect_fixture(f, name, "dq", &dq, 1.0f);
    expect_fixture(f, name, "dk", &dk, 1.0f);
    expect_fixture(f, name, "dv", &dv, 1.0f);
    sd_arena_release(be, mark);
  }
  sd_safetensors_close(f);
}

static void torch_misc(void) {
  sd_safetensors *f = open_fixture("misc");
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor x = load(f, "geglu", "x", false), dy = load(f, "geglu", "dy", false);
  sd_tensor dx = load(f, "geglu", "x", true);
  check_rc(sd_op_geglu_backward(be, &x, &dy, &dx), "geglu_backward");
  expect_fixture(f, "geglu", "dx", &dx, 1.0f);

  dy = load(f, "upsample", "dy", false);
  dx = load(f, "upsample", "x", true);
  check_rc(sd_op_upsample_nearest_backward(be, &dy, &dx), "upsample_nearest_backward");
  expect_fixture(f, "upsample", "dx", &dx, 1.0f);

  dy = load(f, "concat", "dy", false);
  sd_tensor da = load(f, "concat", "a", true), db = load(f, "concat", "b", true);
  check_rc(sd_op_concat_channels_backward(be, &dy, &da, &db), "concat_channels_backward");
  expect_fixture(f, "concat", "da", &da, 1.0f);
  expect_fixture(f, "concat", "db", &db, 1.0f);

  dy = load(f, "pad", "dy", false);
  dx = load(f, "pad", "x", true);
  check_rc(sd_op_pad2d_backward(be, &dy, 1, 2, &dx), "pad2d_backward");
  expect_fixture(f, "pad", "dx", &dx, 1.0f);

  dy = load(f, "transpose", "dy", false);
  dx = load(f, "transpose", "x", true);
  check_rc(sd_op_transpose_backward(be, &dy, &dx), "transpose_backward");
  expect_fixture(f, "transpose", "dx", &dx, 1.0f);

  dy = load(f, "bias", "dy", false);
  sd_tensor dv = load(f, "bias", "v", true);
  check_rc(sd_op_add_channel_bias_backward(be, &dy, &dv), "add_channel_bias_backward");
  expect_fixture(f, "bias", "dv", &dv, 1.0f);

  const sd_st_tensor *ids = fixture(f, "embedding", "ids");
  dy = load(f, "embedding", "dy", false);
  sd_tensor dtable = load(f, "embedding", "table", true);
  for (int pass = 1; pass <= 2; pass++) {
    check_rc(sd_op_embedding_backward(be, ids->data, (int64_t)(ids->bytes / sizeof(int32_t)), &dy,
                                      &dtable),
             "embedding_backward");
    expect_fixture(f, "embedding", "dtable", &dtable, (float)pass);
  }

  const sd_st_tensor *mx = fixture(f, "mse", "x"), *target = fixture(f, "mse", "target");
  int64_t n = (int64_t)(mx->bytes / sizeof(float));
  float loss = sd_mse_loss(mx->data, target->data, n);
  expect_rel("mse loss", &loss, fixture(f, "mse", "loss")->data, 1, 1.0f, RTOL_TORCH);
  float *grad = malloc((size_t)n * sizeof(float));
  sd_mse_loss_backward(mx->data, target->data, n, 1.0f, grad);
  expect_rel("mse dx", grad, fixture(f, "mse", "dx")->data, (size_t)n, 1.0f, RTOL_TORCH);
  free(grad);
  sd_arena_release(be, mark);
  sd_safetensors_close(f);
}

/* 5 steps of clip_grad_norm_ + AdamW under warmup + cosine, as the fixture's torch loop. */
static void torch_adamw(void) {
  enum { PARAMS = 3, STEPS = 5 };
  sd_safetensors *f = open_fixture("adamw");
  float *p[PARAMS], *grad[PARAMS], *m[PARAMS], *v[PARAMS];
  int64_t sizes[PARAMS];
  char key[64];
  for (int i = 0; i < PARAMS; i++) {
    snprintf(key, sizeof key, "p%d.init", i);
    const sd_st_tensor *init = fixture(f, "adamw", key);
    sizes[i] = (int64_t)(init->bytes / sizeof(float));
    p[i] = malloc(init->bytes);
    memcpy(p[i], init->data, init->bytes);
    grad[i] = malloc(init->bytes);
    m[i] = calloc((size_t)sizes[i], sizeof(float));
    v[i] = calloc((size_t)sizes[i], sizeof(float));
  }
  const float *want_lr = fixture(f, "adamw", "lr")->data;
  const float *want_norm = fixture(f, "adamw", "total_norm")->data;
  sd_adamw_config cfg = sd_adamw_config_init();
  for (int step = 0; step < STEPS; step++) {
    for (int i = 0; i < PARAMS; i++) {
      snprintf(key, sizeof key, "p%d.grad.%d", i, step);
      memcpy(grad[i], fixture(f, "adamw", key)->data, (size_t)sizes[i] * sizeof(float));
    }
    double lr = 1e-2 * sd_lr_multiplier(SD_LR_COSINE, step, 2, 5);
    float lr_f = (float)lr;
    char label[64];
    snprintf(label, sizeof label, "adamw step %d lr", step);
    expect_rel(label, &lr_f, want_lr + step, 1, 1.0f, RTOL_SCHEDULE);
    float total = sd_clip_grad_norm(PARAMS, grad, sizes, 1.0f);
    snprintf(label, sizeof label, "adamw step %d total grad norm", step);
    expect_rel(label, &total, want_norm + step, 1, 1.0f, RTOL_ADAMW);
    for (int i = 0; i < PARAMS; i++) {
      sd_adamw_step(&cfg, lr, step + 1, p[i], grad[i], m[i], v[i], sizes[i]);
      snprintf(key, sizeof key, "p%d.after.%d", i, step);
      snprintf(label, sizeof label, "adamw step %d p%d", step, i);
      expect_rel(label, p[i], fixture(f, "adamw", key)->data, (size_t)sizes[i], 1.0f, RTOL_ADAMW);
    }
  }
  for (int i = 0; i < PARAMS; i++)
    free(p[i]), free(grad[i]), free(m[i]), free(v[i]);
  sd_safetensors_close(f);
}

static void torch_schedules(void) {
  sd_safetensors *f = open_fixture("schedules");
  static const char *const names[] = {"constant", "constant_with_warmup", "linear", "cosine"};
  for (int s = 0; s < 4; s++) {
    sd_lr_schedule schedule;
    check_rc(sd_lr_schedule_parse(names[s], &schedule), "sd_lr_schedule_parse");
    CHECK(strcmp(sd_lr_schedule_name(schedule), names[s]) == 0, "%s: name", names[s]);
    float got[12];
    for (int step = 0; step < 12; step++)
      got[step] = (float)sd_lr_multiplier(schedule, step, 3, 10);
    char label[64];
    snprintf(label, sizeof label, "schedule %s", names[s]);
    expect_rel(label, got, fixture(f, names[s], "lr")->data, 12, 1.0f, RTOL_SCHEDULE);
  }
  sd_lr_schedule unused;
  CHECK(sd_lr_schedule_parse("cosine_with_restarts", &unused) < 0 &&
            strstr(sd_error_message(), "cosine_with_restarts"),
        "unknown schedule names the name: %s", sd_error_message());
  sd_error_clear();
  sd_safetensors_close(f);
}

/* ---- 2. finite differences ---- */

/* y = forward(inputs); the inputs are perturbed in place (arena memory: no prepared copy). */
typedef void (*forward_fn)(sd_tensor *const *in, sd_tensor *y);

/* L(inputs) = sum y r in double. */
static double loss_at(forward_fn fwd, sd_tensor *const *in, sd_tensor *y, const float *r) {
  fwd(in, y);
  const float *out = y->data;
  double sum = 0.0;
  for (size_t i = 0; i < numel(y); i++)
    sum += (double)out[i] * r[i];
  return sum;
}

/* Every element of in[which] by central differences against grad. */
static void fd_check(const char *what, forward_fn fwd, sd_tensor *const *in, int which,
                     sd_tensor *y, const float *r, const sd_tensor *grad) {
  sd_tensor *t = in[which];
  float *data = t->data;
  size_t n = numel(t);
  float *fd = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) {
    float saved = data[i];
    data[i] = saved + FD_STEP;
    double up = loss_at(fwd, in, y, r);
    data[i] = saved - FD_STEP;
    double down = loss_at(fwd, in, y, r);
    data[i] = saved;
    fd[i] = (float)((up - down) / (2.0 * (double)FD_STEP));
  }
  char label[96];
  snprintf(label, sizeof label, "fd %s", what);
  expect_rel(label, grad->data, fd, n, 1.0f, RTOL_FD);
  free(fd);
}

static sd_tensor random_tensor(int ndim, const int64_t *shape, float scale) {
  sd_tensor t = make_tensor(ndim, shape, NULL);
  sd_test_fill_random(t.data, numel(&t), seed++, scale);
  return t;
}

/* A random upstream gradient r of y's shape (host, caller frees). */
static float *random_dy(const sd_tensor *y) {
  float *r = malloc(numel(y) * sizeof(float));
  sd_test_fill_random(r, numel(y), seed++, 1.0f);
  return r;
}

static sd_tensor upload_dy(const sd_tensor *y, const float *r) {
  return make_tensor(y->ndim, y->shape, r);
}

static void fwd_linear(sd_tensor *const *in, sd_tensor *y) {
  check_rc(sd_op_linear(be, in[0], in[1], in[2], SD_ACT_NONE, y), "linear");
}

static void fd_linear(void) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor x = random_tensor(3, (int64_t[]){2, 3, 4}, 1.0f);
  sd_tensor w = random_tensor(2, (int64_t[]){5, 4}, 0.5f);
  sd_tensor b = random_tensor(1, (int64_t[]){5}, 1.0f);
  sd_tensor y = make_tensor(3, (int64_t[]){2, 3, 5}, NULL);
  sd_tensor *in[] = {&x, &w, &b};
  float *r = random_dy(&y);
  sd_tensor dy = upload_dy(&y, r);
  sd_tensor dx = make_tensor(x.ndim, x.shape, NULL), dw = make_tensor(w.ndim, w.shape, NULL);
  sd_tensor db = make_tensor(b.ndim, b.shape, NULL);
  check_rc(sd_op_linear_backward(be, &x, &w, &dy, &dx, &dw, &db), "linear_backward");
  fd_check("linear dx", fwd_linear, in, 0, &y, r, &dx);
  fd_check("linear dw", fwd_linear, in, 1, &y, r, &dw);
  fd_check("linear db", fwd_linear, in, 2, &y, r, &db);
  free(r);
  sd_arena_release(be, mark);
}

static sd_activation fd_act;
static void fwd_activation(sd_tensor *const *in, sd_tensor *y) {
  check_rc(sd_op_activation(be, in[0], fd_act, y), "activation");
}

static void fd_activation(void) {
  static const sd_activation acts[] = {SD_ACT_SILU, SD_ACT_GELU, SD_ACT_GELU_TANH,
                                       SD_ACT_QUICK_GELU};
  static const char *const names[] = {"silu", "gelu", "gelu_tanh", "quick_gelu"};
  for (int a = 0; a < 4; a++) {
    sd_arena_mark mark = sd_arena_get_mark(be);
    fd_act = acts[a];
    sd_tensor x = random_tensor(2, (int64_t[]){3, 7}, 3.0f);
    sd_tensor y = make_tensor(2, x.shape, NULL);
    sd_tensor *in[] = {&x};
    float *r = random_dy(&y);
    sd_tensor dy = upload_dy(&y, r), dx = make_tensor(2, x.shape, NULL);
    check_rc(sd_op_activation_backward(be, &x, &dy, acts[a], &dx), "activation_backward");
    char label[64];
    snprintf(label, sizeof label, "%s dx", names[a]);
    fd_check(label, fwd_activation, in, 0, &y, r, &dx);
    free(r);
    sd_arena_release(be, mark);
  }
}

static int fd_stride, fd_pad;
static void fwd_conv2d(sd_tensor *const *in, sd_tensor *y) {
  check_rc(sd_op_conv2d(be, in[0], in[1], in[2], fd_stride, fd_pad, y), "conv2d");
}

static void fd_conv2d(void) {
  static const struct {
    int k, stride, pad;
    int64_t h, w;
  } cases[] = {{3, 1, 1, 5, 4}, {3, 2, 1, 5, 6}, {1, 1, 0, 3, 4}};
  for (int c = 0; c < 3; c++) {
    sd_arena_mark mark = sd_arena_get_mark(be);
    fd_stride = cases[c].stride, fd_pad = cases[c].pad;
    int64_t kk = cases[c].k, ho = (cases[c].h + 2 * fd_pad - kk) / fd_stride + 1;
    int64_t wo = (cases[c].w + 2 * fd_pad - kk) / fd_stride + 1;
    sd_tensor x = random_tensor(4, (int64_t[]){2, 2, cases[c].h, cases[c].w}, 1.0f);
    sd_tensor w = random_tensor(4, (int64_t[]){3, 2, kk, kk}, 0.5f);
    sd_tensor b = random_tensor(1, (int64_t[]){3}, 1.0f);
    sd_tensor y = make_tensor(4, (int64_t[]){2, 3, ho, wo}, NULL);
    sd_tensor *in[] = {&x, &w, &b};
    float *r = random_dy(&y);
    sd_tensor dy = upload_dy(&y, r);
    sd_tensor dx = make_tensor(4, x.shape, NULL), dw = make_tensor(4, w.shape, NULL);
    sd_tensor db = make_tensor(1, b.shape, NULL);
    check_rc(sd_op_conv2d_backward(be, &x, &w, &dy, fd_stride, fd_pad, &dx, &dw, &db),
             "conv2d_backward");
    char label[64];
    snprintf(label, sizeof label, "conv2d %lldx%lld stride %d dx", (long long)kk, (long long)kk,
             fd_stride);
    fd_check(label, fwd_conv2d, in, 0, &y, r, &dx);
    snprintf(label, sizeof label, "conv2d %lldx%lld stride %d dw", (long long)kk, (long long)kk,
             fd_stride);
    fd_check(label, fwd_conv2d, in, 1, &y, r, &dw);
    snprintf(label, sizeof label, "conv2d %lldx%lld stride %d db", (long long)kk, (long long)kk,
             fd_stride);
    fd_check(label, fwd_conv2d, in, 2, &y, r, &db);
    free(r);
    sd_arena_release(be, mark);
  }
}

static bool fd_silu;
static void fwd_group_norm(sd_tensor *const *in, sd_tensor *y) {
  check_rc(sd_op_group_norm(be, in[0], in[1], in[2], 2, 1e-5f, fd_silu, y), "group_norm");
}

static void fwd_layer_norm(sd_tensor *const *in, sd_tensor *y) {
  check_rc(sd_op_layer_norm(be, in[0], in[1], in[2], 1e-5f, y), "layer_norm");
}

static void fd_norms(void) {
  for (int c = 0; c < 3; c++) {
    sd_arena_mark mark = sd_arena_get_mark(be);
    bool layer = c == 2;
    fd_silu = c == 1;
    int64_t channels = layer ? 6 : 4;
    sd_tensor x = layer ? random_tensor(3, (int64_t[]){2, 3, 6}, 2.0f)
                        : random_tensor(4, (int64_t[]){2, 4, 2, 3}, 2.0f);
    sd_tensor gamma = random_tensor(1, (int64_t[]){channels}, 0.5f);
    for (int64_t i = 0; i < channels; i++)
      ((float *)gamma.data)[i] += 1.0f;
    sd_tensor beta = random_tensor(1, (int64_t[]){channels}, 0.5f);
    sd_tensor y = make_tensor(x.ndim, x.shape, NULL);
    sd_tensor *in[] = {&x, &gamma, &beta};
    float *r = random_dy(&y);
    sd_tensor dy = upload_dy(&y, r), dx = make_tensor(x.ndim, x.shape, NULL);
    sd_tensor dgamma = make_tensor(1, gamma.shape, NULL), dbeta = make_tensor(1, beta.shape, NULL);
    forward_fn fwd = layer ? fwd_layer_norm : fwd_group_norm;
    if (layer)
      check_rc(sd_op_layer_norm_backward(be, &x, &gamma, &dy, 1e-5f, &dx, &dgamma, &dbeta),
               "layer_norm_backward");
    else
      check_rc(sd_op_group_norm_backward(be, &x, &gamma, &beta, &dy, 2, 1e-5f, fd_silu, &dx,
                                         &dgamma, &dbeta),
               "group_norm_backward");
    const char *name = layer ? "layer_norm" : (fd_silu ? "group_norm silu" : "group_norm");
    char label[64];
    snprintf(label, sizeof label, "%s dx", name);
    fd_check(label, fwd, in, 0, &y, r, &dx);
    snprintf(label, sizeof label, "%s dgamma", name);
    fd_check(label, fwd, in, 1, &y, r, &dgamma);
    snprintf(label, sizeof label, "%s dbeta", name);
    fd_check(label, fwd, in, 2, &y, r, &dbeta);
    free(r);
    sd_arena_release(be, mark);
  }
}

static bool fd_causal;
static void fwd_attention(sd_tensor *const *in, sd_tensor *y) {
  check_rc(sd_op_attention(be, in[0], in[1], in[2], 2, 0.6f, fd_causal, y), "attention");
}

static void fd_attention(void) {
  for (int c = 0; c < 2; c++) {
    sd_arena_mark mark = sd_arena_get_mark(be);
    fd_causal = c == 1;
    int64_t lq = fd_causal ? 4 : 3, lk = 4;
    sd_tensor q = random_tensor(3, (int64_t[]){2, lq, 6}, 1.5f);
    sd_tensor k = random_tensor(3, (int64_t[]){2, lk, 6}, 1.5f);
    sd_tensor v = random_tensor(3, (int64_t[]){2, lk, 6}, 1.0f);
    sd_tensor y = make_tensor(3, q.shape, NULL);
    sd_tensor *in[] = {&q, &k, &v};
    float *r = random_dy(&y);
    sd_tensor dy = upload_dy(&y, r);
    sd_tensor dq = make_tensor(3, q.shape, NULL), dk = make_tensor(3, k.shape, NULL);
    sd_tensor dv = make_tensor(3, v.shape, NULL);
    check_rc(sd_op_attention_backward(be, &q, &k, &v, &dy, 2, 0.6f, fd_causal, &dq, &dk, &dv),
             "attention_backward");
    const char *name = fd_causal ? "attention causal" : "attention";
    char label[64];
    snprintf(label, sizeof label, "%s dq", name);
    fd_check(label, fwd_attention, in, 0, &y, r, &dq);
    snprintf(label, sizeof label, "%s dk", name);
    fd_check(label, fwd_attention, in, 1, &y, r, &dk);
    snprintf(label, sizeof label, "%s dv", name);
    fd_check(label, fwd_attention, in, 2, &y, r, &dv);
    free(r);
    sd_arena_release(be, mark);
  }
}

static void fwd_geglu(sd_tensor *const *in, sd_tensor *y) {
  check_rc(sd_op_geglu(be, in[0], y), "geglu");
}

static void fwd_upsample(sd_tensor *const *in, sd_tensor *y) {
  check_rc(sd_op_upsample_nearest(be, in[0], y), "upsample_nearest");
}

static void fwd_bias(sd_tensor *const *in, sd_tensor *y) {
  check_rc(sd_op_add_channel_bias(be, in[0], in[1], y), "add_channel_bias");
}

static void fwd_concat(sd_tensor *const *in, sd_tensor *y) {
  check_rc(sd_op_concat_channels(be, in[0], in[1], y), "concat_channels");
}

static void fwd_pad(sd_tensor *const *in, sd_tensor *y) {
  check_rc(sd_op_pad2d(be, in[0], 1, 2, 0.0f, y), "pad2d");
}

static void fwd_transpose(sd_tensor *const *in, sd_tensor *y) {
  check_rc(sd_op_transpose(be, in[0], y), "transpose");
}

static const int32_t fd_ids[] = {2, 0, 2, 4, 1, 2};
static void fwd_embedding(sd_tensor *const *in, sd_tensor *y) {
  check_rc(sd_op_embedding(be, in[0], fd_ids, 6, y), "embedding");
}

static void fd_misc(void) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor x = random_tensor(2, (int64_t[]){3, 8}, 2.0f);
  sd_tensor y = make_tensor(2, (int64_t[]){3, 4}, NULL);
  sd_tensor *in[] = {&x, NULL};
  float *r = random_dy(&y);
  sd_tensor dy = upload_dy(&y, r), dx = make_tensor(2, x.shape, NULL);
  check_rc(sd_op_geglu_backward(be, &x, &dy, &dx), "geglu_backward");
  fd_check("geglu dx", fwd_geglu, in, 0, &y, r, &dx);
  free(r);

  x = random_tensor(4, (int64_t[]){2, 2, 2, 3}, 1.0f);
  y = make_tensor(4, (int64_t[]){2, 2, 4, 6}, NULL);
  r = random_dy(&y);
  dy = upload_dy(&y, r), dx = make_tensor(4, x.shape, NULL);
  check_rc(sd_op_upsample_nearest_backward(be, &dy, &dx), "upsample_nearest_backward");
  fd_check("upsample_nearest dx", fwd_upsample, in, 0, &y, r, &dx);
  free(r);

  x = random_tensor(4, (int64_t[]){2, 3, 2, 3}, 1.0f);
  sd_tensor v = random_tensor(2, (int64_t[]){2, 3}, 1.0f);
  y = make_tensor(4, x.shape, NULL);
  sd_tensor *bias_in[] = {&x, &v};
  r = random_dy(&y);
  dy = upload_dy(&y, r);
  sd_tensor dv = make_tensor(2, v.shape, NULL);
  check_rc(sd_op_add_channel_bias_backward(be, &dy, &dv), "add_channel_bias_backward");
  fd_check("add_channel_bias dv", fwd_bias, bias_in, 1, &y, r, &dv);
  free(r);

  sd_tensor a = random_tensor(4, (int64_t[]){2, 1, 2, 3}, 1.0f);
  sd_tensor b = random_tensor(4, (int64_t[]){2, 2, 2, 3}, 1.0f);
  y = make_tensor(4, (int64_t[]){2, 3, 2, 3}, NULL);
  sd_tensor *cat_in[] = {&a, &b};
  r = random_dy(&y);
  dy = upload_dy(&y, r);
  sd_tensor da = make_tensor(4, a.shape, NULL), db = make_tensor(4, b.shape, NULL);
  check_rc(sd_op_concat_channels_backward(be, &dy, &da, &db), "concat_channels_backward");
  fd_check("concat_channels da", fwd_concat, cat_in, 0, &y, r, &da);
  fd_check("concat_channels db", fwd_concat, cat_in, 1, &y, r, &db);
  free(r);

  x = random_tensor(3, (int64_t[]){2, 3, 5}, 1.0f);
  y = make_tensor(3, (int64_t[]){2, 5, 3}, NULL);
  r = random_dy(&y);
  dy = upload_dy(&y, r), dx = make_tensor(3, x.shape, NULL);
  check_rc(sd_op_transpose_backward(be, &dy, &dx), "transpose_backward");
  fd_check("transpose dx", fwd_transpose, in, 0, &y, r, &dx);
  free(r);

  x = random_tensor(4, (int64_t[]){2, 2, 3, 4}, 1.0f);
  y = make_tensor(4, (int64_t[]){2, 2, 5, 7}, NULL);
  r = random_dy(&y);
  dy = upload_dy(&y, r), dx = make_tensor(4, x.shape, NULL);
  check_rc(sd_op_pad2d_backward(be, &dy, 1, 2, &dx), "pad2d_backward");
  fd_check("pad2d dx", fwd_pad, in, 0, &y, r, &dx);
  free(r);

  sd_tensor table = random_tensor(2, (int64_t[]){5, 3}, 1.0f);
  y = make_tensor(2, (int64_t[]){6, 3}, NULL);
  sd_tensor *emb_in[] = {&table};
  r = random_dy(&y);
  dy = upload_dy(&y, r);
  sd_tensor dtable = make_tensor(2, table.shape, NULL);
  check_rc(sd_op_embedding_backward(be, fd_ids, 6, &dy, &dtable), "embedding_backward");
  fd_check("embedding dtable", fwd_embedding, emb_in, 0, &y, r, &dtable);
  free(r);
  sd_arena_release(be, mark);
}

/* ---- 3. larger shapes: naive references, thread counts, batch invariance ---- */

/* Shapes large enough that the ops split their work into several blocks and run over threads:
 * each gradient against a naive double-precision reference written here (RTOL_TORCH), bit for bit
 * the same on a backend of another thread count (be_other), and an item's input gradient bit for
 * bit the same computed alone as in the batch. */
static sd_backend *be_other;

static void expect_same_bits(const char *what, const sd_tensor *a, const sd_tensor *b) {
  CHECK(memcmp(a->data, b->data, sd_tensor_bytes(a)) == 0, "%s: differs between %d and %d threads",
        what, be->threads, be_other->threads);
}

/* Item `item` of batched (B, ...) against alone (1, ...). */
static void expect_item_bits(const char *what, const sd_tensor *batched, int64_t item,
                             const sd_tensor *alone) {
  size_t bytes = sd_tensor_bytes(alone);
  CHECK(memcmp((const char *)batched->data + (size_t)item * bytes, alone->data, bytes) == 0,
        "%s: item %lld alone differs from the batch", what, (long long)item);
}

static void expect_ref(const char *what, const sd_tensor *got, const double *want) {
  size_t n = numel(got);
  float *w = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++)
    w[i] = (float)want[i];
  expect_rel(what, got->data, w, n, 1.0f, RTOL_TORCH);
  free(w);
}

static double *zeros(size_t n) {
  return calloc(n, sizeof(double));
}

static void large_linear(void) {
  const int64_t b = 2, l = 150, k = 130, n = 150, m = b * l;
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor x = random_tensor(3, (int64_t[]){b, l, k}, 1.0f);
  sd_tensor w = random_tensor(2, (int64_t[]){n, k}, 0.3f);
  sd_tensor dy = random_tensor(3, (int64_t[]){b, l, n}, 1.0f);
  sd_tensor dx = make_tensor(3, x.shape, NULL), dw = make_tensor(2, w.shape, NULL);
  sd_tensor db = make_tensor(1, (int64_t[]){n}, NULL);
  check_rc(sd_op_linear_backward(be, &x, &w, &dy, &dx, &dw, &db), "linear_backward");
  const float *hx = x.data, *hw = w.data, *hdy = dy.data;
  double *rx = zeros((size_t)(m * k)), *rw = zeros((size_t)(n * k)), *rb = zeros((size_t)n);
  for (int64_t r = 0; r < m; r++)
    for (int64_t j = 0; j < n; j++) {
      double g = hdy[r * n + j];
      rb[j] += g;
      for (int64_t i = 0; i < k; i++) {
        rx[r * k + i] += g * hw[j * k + i];
        rw[j * k + i] += g * hx[r * k + i];
      }
    }
  expect_ref("large linear dx", &dx, rx);
  expect_ref("large linear dw", &dw, rw);
  expect_ref("large linear db", &db, rb);
  free(rx), free(rw), free(rb);
  sd_tensor dx2 = make_tensor(3, x.shape, NULL), dw2 = make_tensor(2, w.shape, NULL);
  sd_tensor db2 = make_tensor(1, (int64_t[]){n}, NULL);
  check_rc(sd_op_linear_backward(be_other, &x, &w, &dy, &dx2, &dw2, &db2), "linear_backward");
  expect_same_bits("large linear dx", &dx, &dx2);
  expect_same_bits("large linear dw", &dw, &dw2);
  expect_same_bits("large linear db", &db, &db2);
  sd_tensor x1 = sd_tensor_slice0(&x, 1, 1), dy1 = sd_tensor_slice0(&dy, 1, 1);
  sd_tensor dx1 = make_tensor(3, x1.shape, NULL);
  check_rc(sd_op_linear_backward(be, &x1, &w, &dy1, &dx1, NULL, NULL), "linear_backward");
  expect_item_bits("large linear dx", &dx, 1, &dx1);
  sd_arena_release(be, mark);
}

static void large_conv2d(int stride) {
  const int64_t b = 2, c = 32, h = 20, wd = 22, k = 160, kh = 3, pad = 1;
  const int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (wd + 2 * pad - kh) / stride + 1;
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor x = random_tensor(4, (int64_t[]){b, c, h, wd}, 1.0f);
  sd_tensor w = random_tensor(4, (int64_t[]){k, c, kh, kh}, 0.2f);
  sd_tensor dy = random_tensor(4, (int64_t[]){b, k, ho, wo}, 1.0f);
  sd_tensor dx = make_tensor(4, x.shape, NULL), dw = make_tensor(4, w.shape, NULL);
  sd_tensor db = make_tensor(1, (int64_t[]){k}, NULL);
  check_rc(sd_op_conv2d_backward(be, &x, &w, &dy, stride, (int)pad, &dx, &dw, &db),
           "conv2d_backward");
  const float *hx = x.data, *hw = w.data, *hdy = dy.data;
  double *rx = zeros(numel(&x)), *rw = zeros(numel(&w)), *rb = zeros((size_t)k);
  for (int64_t n = 0; n < b; n++)
    for (int64_t o = 0; o < k; o++)
      for (int64_t oh = 0; oh < ho; oh++)
        for (int64_t ow = 0; ow < wo; ow++) {
          double g = hdy[((n * k + o) * ho + oh) * wo + ow];
          rb[o] += g;
          for (int64_t ch = 0; ch < c; ch++)
            for (int64_t i = 0; i < kh; i++)
              for (int64_t j = 0; j < kh; j++) {
                int64_t ih = oh * stride - pad + i, iw = ow * stride - pad + j;
                if (ih < 0 || ih >= h || iw < 0 || iw >= wd)
                  continue;
                int64_t xi = ((n * c + ch) * h + ih) * wd + iw;
                int64_t wi = ((o * c + ch) * kh + i) * kh + j;
                rw[wi] += g * hx[xi];
                rx[xi] += g * hw[wi];
              }
        }
  char what[64];
  snprintf(what, sizeof what, "large conv2d stride %d dx", stride);
  expect_ref(what, &dx, rx);
  snprintf(what, sizeof what, "large conv2d stride %d dw", stride);
  expect_ref(what, &dw, rw);
  snprintf(what, sizeof what, "large conv2d stride %d db", stride);
  expect_ref(what, &db, rb);
  free(rx), free(rw), free(rb);
  sd_tensor dx2 = make_tensor(4, x.shape, NULL), dw2 = make_tensor(4, w.shape, NULL);
  sd_tensor db2 = make_tensor(1, (int64_t[]){k}, NULL);
  check_rc(sd_op_conv2d_backward(be_other, &x, &w, &dy, stride, (int)pad, &dx2, &dw2, &db2),
           "conv2d_backward");
  snprintf(what, sizeof what, "large conv2d stride %d", stride);
  expect_same_bits(what, &dx, &dx2);
  expect_same_bits(what, &dw, &dw2);
  expect_same_bits(what, &db, &db2);
  sd_tensor x1 = sd_tensor_slice0(&x, 1, 1), dy1 = sd_tensor_slice0(&dy, 1, 1);
  sd_tensor dx1 = make_tensor(4, x1.shape, NULL);
  check_rc(sd_op_conv2d_backward(be, &x1, &w, &dy1, stride, (int)pad, &dx1, NULL, NULL),
           "conv2d_backward");
  expect_item_bits(what, &dx, 1, &dx1);
  sd_arena_release(be, mark);
}

/* Naive attention gradients of one (image, head) in double. */
static void ref_attention_head(const float *q, const float *k, const float *v, const float *dout,
                               int64_t lq, int64_t lk, int64_t d, int64_t ld, double scale,
                               bool causal, double *dq, double *dk, double *dv) {
  double *p = zeros((size_t)lk), *dp = zeros((size_t)lk);
  for (int64_t i = 0; i < lq; i++) {
    int64_t keep = causal ? i + 1 : lk;
    double max = -INFINITY, sum = 0.0, dot = 0.0;
    for (int64_t j = 0; j < keep; j++) {
      double s = 0.0;
      for (int64_t e = 0; e < d; e++)
        s += (double)q[i * ld + e] * k[j * ld + e];
      p[j] = s * scale;
      max = p[j] > max ? p[j] : max;
    }
    for (int64_t j = 0; j < keep; j++)
      sum += (p[j] = exp(p[j] - max));
    for (int64_t j = 0; j < keep; j++) {
      p[j] /= sum;
      dp[j] = 0.0;
      for (int64_t e = 0; e < d; e++)
        dp[j] += (double)dout[i * ld + e] * v[j * ld + e];
      dot += p[j] * dp[j];
    }
    for (int64_t j = 0; j < keep; j++) {
      double ds = p[j] * (dp[j] - dot) * scale;
      for (int64_t e = 0; e < d; e++) {
        dq[i * ld + e] += ds * k[j * ld + e];
        dk[j * ld + e] += ds * q[i * ld + e];
        dv[j * ld + e] += p[j] * dout[i * ld + e];
      }
    }
  }
  free(p), free(dp);
}

static void large_attention(bool causal) {
  const int64_t b = 2, heads = 2, d = 8, width = heads * d, lq = 300, lk = causal ? 300 : 60;
  const float scale = 0.35f;
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor q = random_tensor(3, (int64_t[]){b, lq, width}, 1.0f);
  sd_tensor k = random_tensor(3, (int64_t[]){b, lk, width}, 1.0f);
  sd_tensor v = random_tensor(3, (int64_t[]){b, lk, width}, 1.0f);
  sd_tensor dout = random_tensor(3, (int64_t[]){b, lq, width}, 1.0f);
  sd_tensor dq = make_tensor(3, q.shape, NULL), dk = make_tensor(3, k.shape, NULL);
  sd_tensor dv = make_tensor(3, v.shape, NULL);
  check_rc(
      sd_op_attention_backward(be, &q, &k, &v, &dout, (int)heads, scale, causal, &dq, &dk, &dv),
      "attention_backward");
  double *rq = zeros(numel(&q)), *rk = zeros(numel(&k)), *rv = zeros(numel(&v));
  for (int64_t n = 0; n < b; n++)
    for (int64_t h = 0; h < heads; h++) {
      size_t qo = (size_t)(n * lq * width + h * d), ko = (size_t)(n * lk * width + h * d);
      ref_attention_head((const float *)q.data + qo, (const float *)k.data + ko,
                         (const float *)v.data + ko, (const float *)dout.data + qo, lq, lk, d,
                         width, scale, causal, rq + qo, rk + ko, rv + ko);
    }
  const char *name = causal ? "large attention causal" : "large attention";
  char what[64];
  snprintf(what, sizeof what, "%s dq", name);
  expect_ref(what, &dq, rq);
  snprintf(what, sizeof what, "%s dk", name);
  expect_ref(what, &dk, rk);
  snprintf(what, sizeof what, "%s dv", name);
  expect_ref(what, &dv, rv);
  free(rq), free(rk), free(rv);
  sd_tensor dq2 = make_tensor(3, q.shape, NULL), dk2 = make_tensor(3, k.shape, NULL);
  sd_tensor dv2 = make_tensor(3, v.shape, NULL);
  check_rc(sd_op_attention_backward(be_other, &q, &k, &v, &dout, (int)heads, scale, causal, &dq2,
                                    &dk2, &dv2),
           "attention_backward");
  expect_same_bits(name, &dq, &dq2);
  expect_same_bits(name, &dk, &dk2);
  expect_same_bits(name, &dv, &dv2);
  sd_tensor q1 = sd_tensor_slice0(&q, 1, 1), k1 = sd_tensor_slice0(&k, 1, 1);
  sd_tensor v1 = sd_tensor_slice0(&v, 1, 1), dout1 = sd_tensor_slice0(&dout, 1, 1);
  sd_tensor dq1 = make_tensor(3, q1.shape, NULL), dk1 = make_tensor(3, k1.shape, NULL);
  sd_tensor dv1 = make_tensor(3, v1.shape, NULL);
  check_rc(sd_op_attention_backward(be, &q1, &k1, &v1, &dout1, (int)heads, scale, causal, &dq1,
                                    &dk1, &dv1),
           "attention_backward");
  expect_item_bits(name, &dq, 1, &dq1);
  expect_item_bits(name, &dk, 1, &dk1);
  expect_item_bits(name, &dv, 1, &dv1);
  sd_arena_release(be, mark);
}

/* Naive normalization gradients of one group or row x (channels runs of `run` values; gamma,
 * beta and their gradients indexed by the run: channels of a group with run = spatial size, or a
 * row's elements with run = 1), in double. */
static void ref_norm(const float *x, const float *gamma, const float *beta, const float *dy,
                     int64_t channels, int64_t run, double eps, bool silu, double *dx,
                     double *dgamma, double *dbeta) {
  int64_t n = channels * run;
  double mean = 0.0, var = 0.0;
  for (int64_t i = 0; i < n; i++)
    mean += x[i];
  mean /= (double)n;
  for (int64_t i = 0; i < n; i++)
    var += (x[i] - mean) * (x[i] - mean);
  double rstd = 1.0 / sqrt(var / (double)n + eps);
  double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
  for (int64_t i = 0; i < n; i++) {
    int64_t c = i / run;
    double xhat = (x[i] - mean) * rstd;
    double z = xhat * gamma[c] + beta[c];
    double s = 1.0 / (1.0 + exp(-z));
    double dz = dy[i] * (silu ? s * (1.0 + z * (1.0 - s)) : 1.0);
    dgamma[c] += dz * xhat;
    dbeta[c] += dz;
    sum_dxhat += dz * gamma[c];
    sum_dxhat_xhat += dz * gamma[c] * xhat;
    dx[i] = dz; /* dz for now */
  }
  for (int64_t i = 0; i < n; i++) {
    int64_t c = i / run;
    double xhat = (x[i] - mean) * rstd;
    dx[i] = rstd * (dx[i] * gamma[c] - sum_dxhat / (double)n - xhat * sum_dxhat_xhat / (double)n);
  }
}

/* GroupNorm (2 groups of 2 channels of 64 x 80: several 4096-value chunks per group), with and
 * without SiLU; LayerNorm over 400 rows of 96 (25 blocks of rows). */
static void large_norm(int kind) {
  bool layer = kind == 2, silu = kind == 1;
  const int64_t b = 2, c = layer ? 96 : 4, groups = 2;
  int64_t shape[4] = {b, c, 64, 80};
  int64_t layer_shape[3] = {4, 100, c};
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor x = layer ? random_tensor(3, layer_shape, 2.0f) : random_tensor(4, shape, 2.0f);
  sd_tensor dy = make_tensor(x.ndim, x.shape, NULL);
  sd_test_fill_random(dy.data, numel(&dy), seed++, 1.0f);
  sd_tensor gamma = random_tensor(1, (int64_t[]){c}, 0.5f);
  for (int64_t i = 0; i < c; i++)
    ((float *)gamma.data)[i] += 1.0f;
  sd_tensor beta = random_tensor(1, (int64_t[]){c}, 0.5f);
  sd_tensor dx[2], dgamma[2], dbeta[2];
  for (int r = 0; r < 2; r++) {
    dx[r] = make_tensor(x.ndim, x.shape, NULL);
    dgamma[r] = make_tensor(1, gamma.shape, NULL);
    dbeta[r] = make_tensor(1, beta.shape, NULL);
    sd_backend *on = r == 0 ? be : be_other;
    if (layer)
      check_rc(sd_op_layer_norm_backward(on, &x, &gamma, &dy, 1e-5f, &dx[r], &dgamma[r], &dbeta[r]),
               "layer_norm_backward");
    else
      check_rc(sd_op_group_norm_backward(on, &x, &gamma, &beta, &dy, (int)groups, 1e-5f, silu,
                                         &dx[r], &dgamma[r], &dbeta[r]),
               "group_norm_backward");
  }
  double *rx = zeros(numel(&x)), *rg = zeros((size_t)c), *rb = zeros((size_t)c);
  const float *hx = x.data, *hdy = dy.data, *hg = gamma.data, *hb = beta.data;
  if (layer) {
    for (int64_t r = 0; r < (int64_t)numel(&x) / c; r++)
      ref_norm(hx + r * c, hg, hb, hdy + r * c, c, 1, 1e-5, false, rx + r * c, rg, rb);
  } else {
    int64_t gc = c / groups, size = gc * 64 * 80;
    for (int64_t t = 0; t < b * groups; t++) {
      int64_t c0 = t % groups * gc;
      ref_norm(hx + t * size, hg + c0, hb + c0, hdy + t * size, gc, 64 * 80, 1e-5, silu,
               rx + t * size, rg + c0, rb + c0);
    }
  }
  const char *name =
      layer ? "large layer_norm" : (silu ? "large group_norm silu" : "large group_norm");
  char what[64];
  snprintf(what, sizeof what, "%s dx", name);
  expect_ref(what, &dx[0], rx);
  snprintf(what, sizeof what, "%s dgamma", name);
  expect_ref(what, &dgamma[0], rg);
  snprintf(what, sizeof what, "%s dbeta", name);
  expect_ref(what, &dbeta[0], rb);
  free(rx), free(rg), free(rb);
  expect_same_bits(name, &dx[0], &dx[1]);
  expect_same_bits(name, &dgamma[0], &dgamma[1]);
  expect_same_bits(name, &dbeta[0], &dbeta[1]);
  if (!layer) {
    sd_tensor x1 = sd_tensor_slice0(&x, 1, 1), dy1 = sd_tensor_slice0(&dy, 1, 1);
    sd_tensor dx1 = make_tensor(4, x1.shape, NULL);
    check_rc(sd_op_group_norm_backward(be, &x1, &gamma, &beta, &dy1, (int)groups, 1e-5f, silu, &dx1,
                                       NULL, NULL),
             "group_norm_backward");
    expect_item_bits(name, &dx[0], 1, &dx1);
  }
  sd_arena_release(be, mark);
}

static void large_shapes(void) {
  be_other = sd_backend_cpu_create(be->threads == 3 ? 1 : 3);
  if (!be_other)
    setup_failed();
  printf("larger shapes against naive double references (%d threads; bit for bit with %d):\n",
         be->threads, be_other->threads);
  large_linear();
  large_conv2d(1);
  large_conv2d(2);
  large_attention(false);
  large_attention(true);
  for (int kind = 0; kind < 3; kind++)
    large_norm(kind);
  sd_backend_destroy(be_other);
}

/* ---- one gradient at a time ---- */

/* Each gradient of the multi-gradient ops computed alone (the others NULL) equals, bit for bit,
 * the same gradient computed with all of them. */
static void expect_alone(const char *what, const sd_tensor *alone, const sd_tensor *all) {
  CHECK(memcmp(alone->data, all->data, sd_tensor_bytes(all)) == 0,
        "%s computed alone differs from it computed with the other gradients", what);
}

static sd_tensor zeros_like(const sd_tensor *t) {
  return make_tensor(t->ndim, t->shape, NULL);
}

static void one_gradient_at_a_time(void) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor x = random_tensor(3, (int64_t[]){2, 5, 12}, 1.0f);
  sd_tensor w = random_tensor(2, (int64_t[]){6, 12}, 0.5f);
  sd_tensor dy = random_tensor(3, (int64_t[]){2, 5, 6}, 1.0f);
  sd_tensor g[3] = {zeros_like(&x), zeros_like(&w), make_tensor(1, (int64_t[]){6}, NULL)};
  sd_tensor one[3] = {zeros_like(&x), zeros_like(&w), make_tensor(1, (int64_t[]){6}, NULL)};
  check_rc(sd_op_linear_backward(be, &x, &w, &dy, &g[0], &g[1], &g[2]), "linear_backward");
  check_rc(sd_op_linear_backward(be, &x, &w, &dy, &one[0], NULL, NULL), "linear_backward");
  check_rc(sd_op_linear_backward(be, &x, &w, &dy, NULL, &one[1], NULL), "linear_backward");
  check_rc(sd_op_linear_backward(be, &x, &w, &dy, NULL, NULL, &one[2]), "linear_backward");
  expect_alone("linear dx", &one[0], &g[0]);
  expect_alone("linear dw", &one[1], &g[1]);
  expect_alone("linear db", &one[2], &g[2]);

  sd_tensor img = random_tensor(4, (int64_t[]){2, 4, 5, 6}, 1.0f);
  sd_tensor cw = random_tensor(4, (int64_t[]){3, 4, 3, 3}, 0.5f);
  sd_tensor cdy = random_tensor(4, (int64_t[]){2, 3, 5, 6}, 1.0f);
  sd_tensor cg[3] = {zeros_like(&img), zeros_like(&cw), make_tensor(1, (int64_t[]){3}, NULL)};
  sd_tensor cone[3] = {zeros_like(&img), zeros_like(&cw), make_tensor(1, (int64_t[]){3}, NULL)};
  check_rc(sd_op_conv2d_backward(be, &img, &cw, &cdy, 1, 1, &cg[0], &cg[1], &cg[2]),
           "conv2d_backward");
  check_rc(sd_op_conv2d_backward(be, &img, &cw, &cdy, 1, 1, &cone[0], NULL, NULL),
           "conv2d_backward");
  check_rc(sd_op_conv2d_backward(be, &img, &cw, &cdy, 1, 1, NULL, &cone[1], NULL),
           "conv2d_backward");
  check_rc(sd_op_conv2d_backward(be, &img, &cw, &cdy, 1, 1, NULL, NULL, &cone[2]),
           "conv2d_backward");
  expect_alone("conv2d dx", &cone[0], &cg[0]);
  expect_alone("conv2d dw", &cone[1], &cg[1]);
  expect_alone("conv2d db", &cone[2], &cg[2]);

  sd_tensor gamma = random_tensor(1, (int64_t[]){4}, 1.0f),
            beta = random_tensor(1, (int64_t[]){4}, 1.0f);
  sd_tensor ndy = random_tensor(4, img.shape, 1.0f);
  sd_tensor ng[3] = {zeros_like(&img), zeros_like(&gamma), zeros_like(&beta)};
  sd_tensor none[3] = {zeros_like(&img), zeros_like(&gamma), zeros_like(&beta)};
  check_rc(sd_op_group_norm_backward(be, &img, &gamma, &beta, &ndy, 2, 1e-5f, true, &ng[0], &ng[1],
                                     &ng[2]),
           "group_norm_backward");
  check_rc(sd_op_group_norm_backward(be, &img, &gamma, &beta, &ndy, 2, 1e-5f, true, &none[0], NULL,
                                     NULL),
           "group_norm_backward");
  check_rc(sd_op_group_norm_backward(be, &img, &gamma, &beta, &ndy, 2, 1e-5f, true, NULL, &none[1],
                                     &none[2]),
           "group_norm_backward");
  expect_alone("group_norm dx", &none[0], &ng[0]);
  expect_alone("group_norm dgamma", &none[1], &ng[1]);
  expect_alone("group_norm dbeta", &none[2], &ng[2]);

  sd_tensor lgamma = random_tensor(1, (int64_t[]){12}, 1.0f);
  sd_tensor lg[3] = {zeros_like(&x), zeros_like(&lgamma), zeros_like(&lgamma)};
  sd_tensor lone[3] = {zeros_like(&x), zeros_like(&lgamma), zeros_like(&lgamma)};
  sd_tensor ldy = random_tensor(3, x.shape, 1.0f);
  check_rc(sd_op_layer_norm_backward(be, &x, &lgamma, &ldy, 1e-5f, &lg[0], &lg[1], &lg[2]),
           "layer_norm_backward");
  check_rc(sd_op_layer_norm_backward(be, &x, &lgamma, &ldy, 1e-5f, &lone[0], NULL, NULL),
           "layer_norm_backward");
  check_rc(sd_op_layer_norm_backward(be, &x, &lgamma, &ldy, 1e-5f, NULL, &lone[1], NULL),
           "layer_norm_backward");
  check_rc(sd_op_layer_norm_backward(be, &x, &lgamma, &ldy, 1e-5f, NULL, NULL, &lone[2]),
           "layer_norm_backward");
  expect_alone("layer_norm dx", &lone[0], &lg[0]);
  expect_alone("layer_norm dgamma", &lone[1], &lg[1]);
  expect_alone("layer_norm dbeta", &lone[2], &lg[2]);

  sd_tensor q = random_tensor(3, (int64_t[]){2, 5, 8}, 1.0f);
  sd_tensor k = random_tensor(3, (int64_t[]){2, 7, 8}, 1.0f);
  sd_tensor v = random_tensor(3, (int64_t[]){2, 7, 8}, 1.0f);
  sd_tensor dout = random_tensor(3, q.shape, 1.0f);
  sd_tensor ag[3] = {zeros_like(&q), zeros_like(&k), zeros_like(&v)};
  sd_tensor aone[3] = {zeros_like(&q), zeros_like(&k), zeros_like(&v)};
  check_rc(sd_op_attention_backward(be, &q, &k, &v, &dout, 2, 0.5f, false, &ag[0], &ag[1], &ag[2]),
           "attention_backward");
  check_rc(sd_op_attention_backward(be, &q, &k, &v, &dout, 2, 0.5f, false, &aone[0], NULL, NULL),
           "attention_backward");
  check_rc(sd_op_attention_backward(be, &q, &k, &v, &dout, 2, 0.5f, false, NULL, &aone[1], NULL),
           "attention_backward");
  check_rc(sd_op_attention_backward(be, &q, &k, &v, &dout, 2, 0.5f, false, NULL, NULL, &aone[2]),
           "attention_backward");
  expect_alone("attention dq", &aone[0], &ag[0]);
  expect_alone("attention dk", &aone[1], &ag[1]);
  expect_alone("attention dv", &aone[2], &ag[2]);
  sd_arena_release(be, mark);
}

/* ---- shape checks ---- */

static void expect_error(int rc, const char *what, const char *needle) {
  CHECK(rc < 0 && strstr(sd_error_message(), needle),
        "%s: expected an error naming '%s', got %d: %s", what, needle, rc, sd_error_message());
  sd_error_clear();
}

static void shape_checks(void) {
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor x = make_tensor(3, (int64_t[]){2, 3, 4}, NULL);
  sd_tensor w = make_tensor(2, (int64_t[]){5, 4}, NULL);
  sd_tensor dy = make_tensor(3, (int64_t[]){2, 3, 5}, NULL);
  sd_tensor bad_dw = make_tensor(2, (int64_t[]){4, 5}, NULL);
  sd_tensor bad_db = make_tensor(1, (int64_t[]){4}, NULL);
  expect_error(sd_op_linear_backward(be, &x, &w, &dy, NULL, &bad_dw, NULL), "linear dw shape",
               "dw");
  expect_error(sd_op_linear_backward(be, &x, &w, &dy, NULL, NULL, &bad_db), "linear db shape",
               "db");
  expect_error(sd_op_linear_backward(be, &x, &w, &x, NULL, NULL, NULL), "linear dy shape", "dy");
  sd_tensor img = make_tensor(4, (int64_t[]){1, 2, 3, 3}, NULL);
  sd_tensor up = make_tensor(4, (int64_t[]){1, 2, 5, 6}, NULL);
  expect_error(sd_op_upsample_nearest_backward(be, &up, &img), "upsample not 2x", "only 2x");
  expect_error(sd_op_pad2d_backward(be, &img, 0, 1, &up), "pad2d dx larger than dy",
               "does not fit");
  int32_t id = 9;
  sd_tensor table = make_tensor(2, (int64_t[]){4, 3}, NULL);
  sd_tensor row = make_tensor(2, (int64_t[]){1, 3}, NULL);
  expect_error(sd_op_embedding_backward(be, &id, 1, &row, &table), "embedding id", "id 9");
  /* a backend without the entry (the CUDA backend leaves them NULL) */
  sd_backend_ops no_backward = *be->ops;
  no_backward.name = "test";
  no_backward.linear_backward = NULL;
  const sd_backend_ops *saved = be->ops;
  be->ops = &no_backward;
  expect_error(sd_op_linear_backward(be, &x, &w, &dy, NULL, NULL, NULL), "missing entry",
               "op linear_backward: not available on backend test");
  be->ops = saved;
  sd_arena_release(be, mark);
}

/* The VAE trainer's saturation-weighted losses (mean of weight x |x - t| or weight x (x - t)^2):
 * the values against a sum in double, the gradients against central differences of that sum, and
 * all-ones weights against the unweighted losses. */
static void fd_weighted_losses(void) {
  enum { N = 96 };
  float x[N], t[N], w[N], dx[N];
  sd_test_fill_random(x, N, 501, 1.0f);
  sd_test_fill_random(t, N, 502, 1.0f);
  sd_test_fill_random(w, N, 503, 1.0f);
  for (int i = 0; i < N; i++) {
    w[i] = 1.0f + 5.0f * fabsf(w[i]); /* 1 + k saturation */
    if (fabsf(x[i] - t[i]) < 0.1f)    /* keep |x - t| off L1's kink by more than the step */
      x[i] = t[i] + (x[i] >= t[i] ? 0.1f : -0.1f);
  }
  for (int mse = 0; mse <= 1; mse++) {
    const char *name = mse ? "weighted mse" : "weighted l1";
    double sum = 0;
    for (int i = 0; i < N; i++) {
      double d = (double)x[i] - (double)t[i];
      sum += (double)w[i] * (mse ? d * d : fabs(d));
    }
    float want = (float)(sum / N),
          got = mse ? sd_weighted_mse_loss(x, t, w, N) : sd_weighted_l1_loss(x, t, w, N);
    expect_rel(name, &got, &want, 1, 1.0f, 1e-6f);
    if (mse)
      sd_weighted_mse_loss_backward(x, t, w, N, 0.5f, dx);
    else
      sd_weighted_l1_loss_backward(x, t, w, N, 0.5f, dx);
    float fd[N];
    const double h = 0.01;
    for (int i = 0; i < N; i++) {
      double d = (double)x[i] - (double)t[i], up = d + h, down = d - h;
      double f_up = mse ? up * up : fabs(up), f_down = mse ? down * down : fabs(down);
      fd[i] = (float)(0.5 * (double)w[i] * (f_up - f_down) / (2.0 * h) / N);
    }
    char what[64];
    snprintf(what, sizeof what, "%s dx", name);
    expect_rel(what, dx, fd, N, 1.0f, 1e-5f);
    for (int i = 0; i < N; i++)
      w[i] = 1.0f;
    float plain = mse ? sd_mse_loss(x, t, N) : sd_l1_loss(x, t, N);
    got = mse ? sd_weighted_mse_loss(x, t, w, N) : sd_weighted_l1_loss(x, t, w, N);
    snprintf(what, sizeof what, "%s, weights 1", name);
    expect_rel(what, &got, &plain, 1, 1.0f, 1e-6f);
    sd_test_fill_random(w, N, 503, 1.0f);
    for (int i = 0; i < N; i++)
      w[i] = 1.0f + 5.0f * fabsf(w[i]);
  }
}

int main(void) {
  be = sd_backend_cpu_create(0);
  if (!be)
    setup_failed();
  printf("against torch autograd (tests/fixtures/backward):\n");
  torch_linear();
  torch_activation();
  torch_conv2d();
  torch_norms();
  torch_attention();
  torch_misc();
  torch_adamw();
  torch_schedules();
  printf("against central finite differences (step %g):\n", (double)FD_STEP);
  fd_linear();
  fd_activation();
  fd_conv2d();
  fd_norms();
  fd_attention();
  fd_misc();
  fd_weighted_losses();
  large_shapes();
  one_gradient_at_a_time();
  shape_checks();
  sd_backend_destroy(be);
  return sd_test_finish();
}
