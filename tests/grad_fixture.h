/* Shared by the model-level backward and training tests (test_unet_backward.c,
 * test_clip_backward.c, test_unet_train.c, test_lora_train.c): reading torch-autograd gradient
 * and training fixtures and the figures they are compared by. A fixture gradient is
 * either whole, or (a large weight) whole rows plus four figures of the whole tensor (max |g|,
 * L2 norm, two projections onto +-1 signs), as tests/reference/make_unet_grad_fixtures.py
 * writes them. */
#ifndef SD_TEST_GRAD_FIXTURE_H
#define SD_TEST_GRAD_FIXTURE_H

#include "io/safetensors.h"
#include "ops.h"

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

/* A persistent backend tensor holding the fixture's F32 tensor `name`. */
int sd_grad_fixture_upload(sd_backend *be, const sd_safetensors *f, const char *name, sd_tensor *t);
/* A host float32 copy of a backend tensor (free() it); NULL on failure. */
float *sd_grad_download(sd_backend *be, const sd_tensor *t);

/* One step's batch of a training fixture (make_unet_train_fixtures.py,
 * make_lora_train_fixtures.py): latents.s, noise.s, context.s uploaded, timesteps.s (I32) borrowed
 * from the file. */
typedef struct sd_train_batch {
  sd_tensor latents, noise, context;
  const int32_t *timesteps;
} sd_train_batch;
int sd_train_batch_load(sd_backend *be, const sd_safetensors *f, int step, sd_train_batch *batch);
void sd_train_batch_free(sd_backend *be, sd_train_batch *batch);
/* A step's loss, gradient norm and learning rate against the fixture's loss, grad_norm and lr
 * (torch float32): printed, and checked within loss_tol, norm_tol (relative) and 1e-6. */
void sd_train_check_step(const char *family, const sd_safetensors *f, int step, float loss,
                         float grad_norm, double lr, double loss_tol, double norm_tol);

/* Whether two UNets' forwards of the fixture's latents.0 and context.0 at timestep 500 are equal
 * bit for bit: 1 or 0, or -1 with an error when a forward fails. */
struct sd_unet;
int sd_train_same_forward(sd_backend *be, const sd_safetensors *f, struct sd_unet *a,
                          struct sd_unet *b);

#endif
