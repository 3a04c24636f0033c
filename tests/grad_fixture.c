/* Gradient fixtures of the model-level backward tests: see grad_fixture.h. */
#include "grad_fixture.h"

#include "test_util.h"

#include "error.h"

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

void sd_grad_report_init(sd_grad_report *r, const sd_safetensors *f, sd_grads *grads, double tol,
                         double zero_tol) {
  *r = (sd_grad_report){.tol = tol, .zero_tol = zero_tol};
  for (size_t i = 0; i < sd_grads_count(grads); i++) {
    const char *name = sd_grads_name_at(grads, i);
    const sd_st_tensor *stats = sd_grad_fixture(f, "stats.%s", name);
    const sd_st_tensor *want = sd_grad_fixture(f, "grad.%s", name);
    if (stats)
      r->scale = fmax(r->scale, ((const float *)stats->data)[0]);
    else if (want)
      r->scale = fmax(r->scale, sd_grad_max_abs(want->data, (size_t)sd_grad_st_numel(want)));
  }
}

static void note_zero(sd_grad_report *r, const char *name, const float *got, int64_t n) {
  double err = sd_grad_max_abs(got, (size_t)n) / r->scale;
  r->zeros++;
  r->worst_zero = fmax(r->worst_zero, err);
  CHECK(err <= r->zero_tol, "gradient %s should be 0: max |g| %.3g of the largest", name, err);
}

static void note(sd_grad_report *r, const char *name, double err) {
  r->checked++;
  if (err > r->worst || isnan(err)) {
    r->worst = err;
    snprintf(r->worst_name, sizeof r->worst_name, "%s", name);
  }
  if (!(err <= r->tol)) {
    r->failed++;
    CHECK(0, "gradient %s: error %.3g > %g", name, err, r->tol);
  }
}

void sd_grad_check_parameter(sd_grad_report *r, const sd_safetensors *f, const char *name,
                             const float *got, const sd_tensor *shape) {
  const sd_st_tensor *want = sd_grad_fixture(f, "grad.%s", name);
  const sd_st_tensor *rows = sd_grad_fixture(f, "rows.%s", name);
  const sd_st_tensor *stats = sd_grad_fixture(f, "stats.%s", name);
  int64_t n = sd_tensor_numel(shape);
  if (!CHECK(want, "%s: no fixture gradient for %s", sd_safetensors_path(f), name))
    return;
  if (!rows) {
    if (!CHECK(sd_grad_st_numel(want) == n, "%s: fixture has %lld values, gradient %lld", name,
               (long long)sd_grad_st_numel(want), (long long)n))
      return;
    double want_max = sd_grad_max_abs(want->data, (size_t)n);
    if (want_max < 1e-9 * r->scale)
      note_zero(r, name, got, n);
    else
      note(r, name, sd_grad_rel_error(got, want->data, (size_t)n, want_max));
    return;
  }
  if (!CHECK(stats && stats->ndim == 1 && stats->shape[0] == 4, "%s: stats of %s", name, name))
    return;
  const float *figures = stats->data;
  r->sampled++;
  if (figures[0] < 1e-9 * r->scale)
    note_zero(r, name, got, n);
  else
    note(r, name, sd_grad_sampled_error(got, n, n / shape->shape[0], want, rows, figures));
}

float *sd_grad_download(sd_backend *be, const sd_tensor *t) {
  float *host = malloc((size_t)sd_tensor_numel(t) * sizeof *host);
  if (host && sd_tensor_download_f32(be, t, host) < 0) {
    free(host);
    return NULL;
  }
  return host;
}

float **sd_grad_download_all(sd_backend *be, sd_grads *grads) {
  size_t n = sd_grads_count(grads);
  float **host = calloc(n, sizeof *host);
  for (size_t i = 0; host && i < n; i++)
    if (!(host[i] = sd_grad_download(be, sd_grads_at(grads, i)))) {
      sd_grad_free_all(host, n);
      return NULL;
    }
  return host;
}

void sd_grad_free_all(float **host, size_t count) {
  for (size_t i = 0; host && i < count; i++)
    free(host[i]);
  free(host);
}

bool sd_grad_bits_equal(const float *a, const float *b, size_t n) {
  return a && b && memcmp(a, b, n * sizeof *a) == 0;
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
