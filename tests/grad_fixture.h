/* Shared by the model-level backward tests (test_unet_backward.c, test_clip_backward.c): reading
 * torch-autograd gradient fixtures and the figures they are compared by. A fixture gradient is
 * either whole, or (a large weight) whole rows plus four figures of the whole tensor (max |g|,
 * L2 norm, two projections onto +-1 signs), as tests/reference/make_unet_grad_fixtures.py
 * writes them. */
#ifndef SD_TEST_GRAD_FIXTURE_H
#define SD_TEST_GRAD_FIXTURE_H

#include "io/safetensors.h"

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

#endif
