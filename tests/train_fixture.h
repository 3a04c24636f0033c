/* Shared by the optimizer-step tests (test_unet_train.c, test_vae_train.c, test_lora_train.c): a
 * UNet training fixture's batches and per-step figures (make_unet_train_fixtures.py,
 * make_lora_train_fixtures.py), and the parameters after a few steps against a torch fixture
 * written by make_unet_train_fixtures.py's add_param (the float64 run's parameters, whole or as
 * rows plus four figures of the change from the start, and gap32.<name>: torch's own float32 run's
 * distance from them). */
#ifndef SD_TEST_TRAIN_FIXTURE_H
#define SD_TEST_TRAIN_FIXTURE_H

#include "io/safetensors.h"
#include "model/grads.h"

#include <stdint.h>

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

/* How far the parameters are from the fixture's, as sd_train_check_params measures them. */
typedef struct sd_train_report {
  double tol;             /* max(param_tol, 2 worst_torch_gap) */
  double worst_torch_gap; /* torch float32's own worst distance over the compared parameters */
  double worst_param, worst_change;
  char worst_param_name[256], worst_change_name[256];
  int checked, sampled, zeros;
} sd_train_report;

/* Host copies of the store's weights (its order), e.g. before training; NULL on failure. Free
 * with sd_grad_free_all (grad_fixture.h). */
float **sd_train_snapshot(sd_backend *be, sd_grads *grads);

/* Adds each gradient's max |g| in the store into grad_max (count of the store) and the largest
 * into *grad_scale (call after every step). */
void sd_train_note_gradients(sd_backend *be, sd_grads *grads, double *grad_max, double *grad_scale);

/* Every trained weight of grads (start: its values before training, host) against the fixture's
 * "<prefix>param.<name>": max |got - want| / max |want| (over the stored rows for a sampled one)
 * within max(param_tol, 2 x torch float32's own worst gap), and a sampled one's change from the
 * start (max, L2, two +-1 projections) within change_tol of its L2 norm. A weight whose gradient
 * stayed at most 1e-6 of grad_scale (0 in exact arithmetic: both sides update it by the sign of
 * their own rounding noise) is counted in zeros and not compared. Failures are failed CHECKs. */
void sd_train_check_params(sd_backend *be, const sd_safetensors *f, const char *prefix,
                           sd_grads *grads, float *const *start, const double *grad_max,
                           double grad_scale, double param_tol, double change_tol,
                           sd_train_report *r);

#endif
