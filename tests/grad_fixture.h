/* Shared by the model-level backward and training tests (test_unet_backward.c,
 * test_clip_backward.c, test_vae_backward.c, and through train_fixture.h test_unet_train.c,
 * test_vae_train.c, test_lora_train.c): reading torch-autograd gradient fixtures and the figures
 * they are compared by. A fixture gradient is
 * either whole, or (a large weight) whole rows plus four figures of the whole tensor (max |g|,
 * L2 norm, two projections onto +-1 signs), as tests/reference/make_unet_grad_fixtures.py
 * writes them. */
#ifndef SD_TEST_GRAD_FIXTURE_H
#define SD_TEST_GRAD_FIXTURE_H

#include "io/safetensors.h"
#include "model/grads.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The seeds of the two +-1 projections (SIGN_SEEDS in make_unet_grad_fixtures.py). */
extern const uint64_t sd_grad_sign_seeds[2];

/* +-1 for flat index i, as sign_of in make_unet_grad_fixtures.py (splitmix64's finalizer). */
double sd_grad_sign_of(uint64_t i, uint64_t seed);

/* The F32 or I32 tensor named fmt % name in f; NULL when absent or of another dtype. */
const sd_st_tensor *sd_grad_fixture(const sd_safetensors *f, const char *fmt, const char *name);
int64_t sd_grad_st_numel(const sd_st_tensor *t);

double sd_grad_max_abs(const float *x, size_t n);
/* max |got - want| / max(scale, 1e-6); a NaN gives infinity. */
double sd_grad_rel_error(const float *got, const float *want, size_t n, double scale);

/* The figure of a gradient got (n values, rows of cols) that the fixture holds as rows `rows` of
 * `want` plus figures (max |g|, L2 norm, two projections) of the whole tensor: the rows against
 * the whole tensor's max |g|, the figures against the L2 norm. */
double sd_grad_sampled_error(const float *got, int64_t n, int64_t cols, const sd_st_tensor *want,
                             const sd_st_tensor *rows, const float *figures);

/* Host and backend copies: a malloc'd host copy of t (free() it; NULL on failure); host copies of
 * every gradient of a store (its order; NULL on failure), freed by sd_grad_free_all (count of the
 * store); whether two host arrays are equal bit for bit (false when either is NULL); a persistent
 * backend tensor holding the fixture's F32 tensor `name`. */
float *sd_grad_download(sd_backend *be, const sd_tensor *t);
float **sd_grad_download_all(sd_backend *be, sd_grads *grads);
void sd_grad_free_all(float **host, size_t count);
bool sd_grad_bits_equal(const float *a, const float *b, size_t n);
int sd_grad_fixture_upload(sd_backend *be, const sd_safetensors *f, const char *name, sd_tensor *t);

/* The figures of a model's parameter gradients against a fixture, gathered by
 * sd_grad_check_parameter. */
typedef struct sd_grad_report {
  double tol;      /* a gradient's figure must be at most this */
  double zero_tol; /* max |g| / scale of a gradient that is 0 in exact arithmetic */
  double scale;    /* the largest max |g| of the fixture's gradients of the store's weights */
  double worst;    /* the largest figure of the non-zero gradients */
  char worst_name[256];
  double worst_zero; /* the largest max |g| / scale of the zero ones */
  int checked, sampled, zeros, failed;
} sd_grad_report;

/* A report for the weights of `grads` against fixture f. */
void sd_grad_report_init(sd_grad_report *r, const sd_safetensors *f, sd_grads *grads, double tol,
                         double zero_tol);
/* One parameter gradient (host copy `got` of `shape`'s shape) against the fixture's
 * "grad.<name>" (whole, or rows + figures): its figure is max |got - want| / max |want|, or
 * sd_grad_sampled_error; a gradient whose fixture is below 1e-9 of the scale (0 in exact
 * arithmetic) must have max |got| <= zero_tol scale. A failure is a failed CHECK (test_util.h). */
void sd_grad_check_parameter(sd_grad_report *r, const sd_safetensors *f, const char *name,
                             const float *got, const sd_tensor *shape);

#endif
