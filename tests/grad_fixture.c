/* Gradient fixtures of the model-level backward tests: see grad_fixture.h. */
#include "grad_fixture.h"

#include "test_util.h"

#include "error.h"
#include "model/unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const uint64_t sd_grad_sign_seeds[2] = {1, 2};

double sd_grad_sign_of(uint64_t i, uint64_t seed) {
  uint64_t z = ((i + 1) * 0x9E3779B97F4A7C15ull) ^ seed;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (z >> 63) ? -1.0 : 1.0;
}

const sd_st_tensor *sd_grad_fixture(const sd_safetensors *f, const char *fmt, const char *name) {
  char key[512];
  snprintf(key, sizeof key, fmt, name);
  const sd_st_tensor *t = sd_safetensors_find(f, key);
  return t && (t->dtype == SD_DTYPE_F32 || t->dtype == SD_DTYPE_I32) ? t : NULL;
}

int64_t sd_grad_st_numel(const sd_st_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}

double sd_grad_max_abs(const float *x, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++)
    m = fmax(m, fabs((double)x[i]));
  return m;
}

double sd_grad_rel_error(const float *got, const float *want, size_t n, double scale) {
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - (double)want[i]);
    worst = isnan(d) ? INFINITY : fmax(worst, d);
  }
  return worst / fmax(scale, 1e-6);
}

double sd_grad_sampled_error(const float *got, int64_t n, int64_t cols, const sd_st_tensor *want,
                             const sd_st_tensor *rows, const float *figures) {
  const int32_t *picked = rows->data;
  double err = 0;
  for (int64_t k = 0; k < rows->shape[0]; k++)
    err = fmax(err, sd_grad_rel_error(got + picked[k] * cols, (const float *)want->data + k * cols,
                                      (size_t)cols, figures[0]));
  double sq = 0, proj[2] = {0, 0};
  for (int64_t i = 0; i < n; i++) {
    sq += (double)got[i] * got[i];
    for (int k = 0; k < 2; k++)
      proj[k] += sd_grad_sign_of((uint64_t)i, sd_grad_sign_seeds[k]) * got[i];
  }
  err = fmax(err, fabs(sd_grad_max_abs(got, (size_t)n) - figures[0]) / figures[0]);
  err = fmax(err, fabs(sqrt(sq) - figures[1]) / figures[1]);
  for (int k = 0; k < 2; k++)
    err = fmax(err, fabs(proj[k] - figures[2 + k]) / figures[1]);
  return err;
}

int sd_grad_fixture_upload(sd_backend *be, const sd_safetensors *f, const char *name,
                           sd_tensor *t) {
  const sd_st_tensor *st = sd_grad_fixture(f, "%s", name);
  if (!st || st->dtype != SD_DTYPE_F32)
    return SD_ERROR("%s: no float32 tensor %s", sd_safetensors_path(f), name);
  *t = sd_tensor_make(be->ops->act_dtype, st->ndim, st->shape);
  SD_TRY(sd_tensor_alloc_persistent(be, t));
  return sd_tensor_upload_f32(be, t, st->data);
}

float *sd_grad_download(sd_backend *be, const sd_tensor *t) {
  float *host = malloc((size_t)sd_tensor_numel(t) * sizeof *host);
  if (host && sd_tensor_download_f32(be, t, host) < 0) {
    free(host);
    return NULL;
  }
  return host;
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
