/* Parameters after training against a torch fixture: see train_fixture.h. */
#include "train_fixture.h"

#include "grad_fixture.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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
