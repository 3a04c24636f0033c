/* Gradient fixtures of the model-level backward tests: see grad_fixture.h. */
#include "grad_fixture.h"

#include <math.h>
#include <stdio.h>

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
