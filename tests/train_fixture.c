/* Training fixtures: batches, per-step figures and parameters after training (train_fixture.h). */
#include "train_fixture.h"

#include "grad_fixture.h"
#include "test_util.h"

#include "error.h"
#include "model/unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

float **sd_train_snapshot(sd_backend *be, sd_grads *grads) {
  size_t n = sd_grads_count(grads);
  float **host = calloc(n, sizeof *host);
  for (size_t i = 0; host && i < n; i++)
    if (!(host[i] = sd_grad_download(be, sd_grads_weight_at(grads, i)))) {
      sd_grad_free_all(host, n);
      return NULL;
    }
  return host;
}

void sd_train_note_gradients(sd_backend *be, sd_grads *grads, double *grad_max,
                             double *grad_scale) {
  for (size_t i = 0; i < sd_grads_count(grads); i++) {
    sd_tensor *g = sd_grads_at(grads, i);
    int64_t n = sd_tensor_numel(g);
    float *host = malloc((size_t)n * sizeof *host);
    if (host && sd_tensor_download_f32(be, g, host) == 0)
      for (int64_t k = 0; k < n; k++) {
        grad_max[i] = fmax(grad_max[i], fabs((double)host[k]));
        *grad_scale = fmax(*grad_scale, fabs((double)host[k]));
      }
    free(host);
  }
}

/* How far torch's own float32 run ended from the float64 reference for a parameter. */
static double torch_float32_gap(const sd_safetensors *f, const char *prefix, const char *name) {
  char fmt[64];
  snprintf(fmt, sizeof fmt, "%sgap32.%%s", prefix);
  const sd_st_tensor *gap = sd_grad_fixture(f, fmt, name);
  return gap && gap->dtype == SD_DTYPE_F32 ? ((const float *)gap->data)[0] : 0.0;
}

/* A parameter after training (got (n)) against the fixture. */
static void check_param(const sd_safetensors *f, const char *prefix, const char *name,
                        const float *got, const float *start, int64_t n, double change_tol,
                        sd_train_report *r) {
  char fmt[3][64];
  snprintf(fmt[0], sizeof fmt[0], "%sparam.%%s", prefix);
  snprintf(fmt[1], sizeof fmt[1], "%srows.%%s", prefix);
  snprintf(fmt[2], sizeof fmt[2], "%sstats.%%s", prefix);
  const sd_st_tensor *want = sd_grad_fixture(f, fmt[0], name);
  if (!CHECK(want && want->dtype == SD_DTYPE_F32, "no fixture parameter %s%s", prefix, name))
    return;
  const sd_st_tensor *rows = sd_grad_fixture(f, fmt[1], name);
  const float *w = want->data;
  int64_t stored = (int64_t)(want->bytes / sizeof(float));
  int64_t cols = rows ? stored / rows->shape[0] : n;
  double scale = 0, diff = 0;
  for (int64_t k = 0; k < stored; k++) {
    int64_t at = rows ? (int64_t)((const int32_t *)rows->data)[k / cols] * cols + k % cols : k;
    scale = fmax(scale, fabs((double)w[k]));
    double d = fabs((double)got[at] - (double)w[k]);
    diff = isnan(d) ? INFINITY : fmax(diff, d);
  }
  double err = diff / fmax(scale, 1e-6);
  r->checked++;
  if (err > r->worst_param) {
    r->worst_param = err;
    snprintf(r->worst_param_name, sizeof r->worst_param_name, "%s", name);
  }
  CHECK(err <= r->tol,
        "%s: max |got - exact| / max |exact| = %.3g (tolerance %g; torch float32's own %.3g)", name,
        err, r->tol, torch_float32_gap(f, prefix, name));
  if (!rows)
    return;
  /* the whole tensor's change from the start, as four figures */
  r->sampled++;
  const sd_st_tensor *stats = sd_grad_fixture(f, fmt[2], name);
  if (!CHECK(stats && stats->shape[0] == 4, "no stats for %s", name))
    return;
  double m = 0, l2 = 0, p1 = 0, p2 = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)got[i] - (double)start[i];
    m = fmax(m, fabs(d));
    l2 += d * d;
    p1 += sd_grad_sign_of((uint64_t)i, sd_grad_sign_seeds[0]) * d;
    p2 += sd_grad_sign_of((uint64_t)i, sd_grad_sign_seeds[1]) * d;
  }
  const float *s = stats->data;
  double mine[4] = {m, sqrt(l2), p1, p2};
  double size = fmax(s[1], 1e-12), worst = 0;
  for (int k = 0; k < 4; k++)
    worst = fmax(worst, fabs(mine[k] - s[k]) / size);
  if (worst > r->worst_change) {
    r->worst_change = worst;
    snprintf(r->worst_change_name, sizeof r->worst_change_name, "%s", name);
  }
  CHECK(worst <= change_tol, "%s: the change's figures differ by %.3g of its L2 norm", name, worst);
}

void sd_train_check_params(sd_backend *be, const sd_safetensors *f, const char *prefix,
                           sd_grads *grads, float *const *start, const double *grad_max,
                           double grad_scale, double param_tol, double change_tol,
                           sd_train_report *r) {
  *r = (sd_train_report){0};
  size_t n_params = sd_grads_count(grads);
  for (size_t i = 0; i < n_params; i++)
    if (!grad_max || grad_max[i] > 1e-6 * grad_scale)
      r->worst_torch_gap =
          fmax(r->worst_torch_gap, torch_float32_gap(f, prefix, sd_grads_name_at(grads, i)));
  r->tol = fmax(param_tol, 2 * r->worst_torch_gap);
  for (size_t i = 0; i < n_params; i++) {
    if (grad_max && grad_max[i] <= 1e-6 * grad_scale) {
      r->zeros++;
      continue;
    }
    const sd_tensor *w = sd_grads_weight_at(grads, i);
    int64_t n = sd_tensor_numel(w);
    float *got = malloc((size_t)n * sizeof *got);
    if (CHECK(got && start && start[i] && sd_tensor_download_f32(be, w, got) == 0, "reading %s",
              sd_grads_name_at(grads, i)))
      check_param(f, prefix, sd_grads_name_at(grads, i), got, start[i], n, change_tol, r);
    free(got);
  }
}

int sd_train_batch_load(sd_backend *be, const sd_safetensors *f, int step, sd_train_batch *batch) {
  *batch = (sd_train_batch){0};
  char key[64];
  snprintf(key, sizeof key, "timesteps.%d", step);
  const sd_st_tensor *ts = sd_safetensors_find(f, key);
  if (!ts || ts->dtype != SD_DTYPE_I32)
    return SD_ERROR("%s: no I32 tensor %s", sd_safetensors_path(f), key);
  batch->timesteps = ts->data;
  snprintf(key, sizeof key, "latents.%d", step);
  int rc = sd_grad_fixture_upload(be, f, key, &batch->latents);
  snprintf(key, sizeof key, "noise.%d", step);
  rc = rc ? rc : sd_grad_fixture_upload(be, f, key, &batch->noise);
  snprintf(key, sizeof key, "context.%d", step);
  rc = rc ? rc : sd_grad_fixture_upload(be, f, key, &batch->context);
  if (rc < 0)
    sd_train_batch_free(be, batch);
  return rc;
}

void sd_train_batch_free(sd_backend *be, sd_train_batch *batch) {
  sd_tensor_free(be, &batch->latents);
  sd_tensor_free(be, &batch->noise);
  sd_tensor_free(be, &batch->context);
}

void sd_train_check_step(const char *family, const sd_safetensors *f, int step, float loss,
                         float grad_norm, double lr, double loss_tol, double norm_tol) {
  const sd_st_tensor *tl = sd_grad_fixture(f, "%s", "loss");
  const sd_st_tensor *tn = sd_grad_fixture(f, "%s", "grad_norm");
  const sd_st_tensor *tr = sd_grad_fixture(f, "%s", "lr");
  if (!CHECK(tl && tn && tr && sd_grad_st_numel(tl) > step && sd_grad_st_numel(tn) > step &&
                 sd_grad_st_numel(tr) > step,
             "%s: the fixture's loss, grad_norm, lr of step %d", family, step))
    return;
  float wl = ((const float *)tl->data)[step], wn = ((const float *)tn->data)[step];
  float wlr = ((const float *)tr->data)[step];
  printf("%s step %d: loss %.7f (torch %.7f), grad norm %.7f (torch %.7f), lr %g (torch %g)\n",
         family, step, loss, wl, grad_norm, wn, lr, wlr);
  CHECK(fabs(loss - wl) <= loss_tol * fabs(wl), "%s step %d: loss %.8g vs torch %.8g", family, step,
        loss, wl);
  CHECK(fabs(grad_norm - wn) <= norm_tol * fabs(wn), "%s step %d: gradient norm %.8g vs torch %.8g",
        family, step, grad_norm, wn);
  CHECK(fabs(lr - wlr) <= 1e-6 * fabs(wlr) + 1e-12, "%s step %d: learning rate %g vs torch %g",
        family, step, lr, wlr);
}

int sd_train_same_forward(sd_backend *be, const sd_safetensors *f, sd_unet *unet_a,
                          sd_unet *unet_b) {
  sd_tensor x = {0}, c = {0}, out_a = {0}, out_b = {0};
  float *a = NULL, *b = NULL;
  int rc = sd_grad_fixture_upload(be, f, "latents.0", &x);
  rc = rc ? rc : sd_grad_fixture_upload(be, f, "context.0", &c);
  if (rc == 0) {
    out_a = sd_tensor_make(x.dtype, x.ndim, x.shape);
    out_b = out_a;
    rc = sd_tensor_alloc_persistent(be, &out_a);
    rc = rc ? rc : sd_tensor_alloc_persistent(be, &out_b);
    rc = rc ? rc : sd_unet_forward(unet_a, &x, 500.0, &c, &out_a);
    rc = rc ? rc : sd_unet_forward(unet_b, &x, 500.0, &c, &out_b);
  }
  if (rc == 0) {
    a = sd_grad_download(be, &out_a);
    b = sd_grad_download(be, &out_b);
    rc = !a || !b ? SD_ERROR("downloading the forwards' outputs")
                  : memcmp(a, b, (size_t)sd_tensor_numel(&out_a) * sizeof *a) == 0;
  }
  free(a);
  free(b);
  sd_tensor_free(be, &x);
  sd_tensor_free(be, &c);
  sd_tensor_free(be, &out_a);
  sd_tensor_free(be, &out_b);
  return rc;
}
