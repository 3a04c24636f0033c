/* The VAE's backward (worker/model/vae_train.h) against torch autograd: the tiny SD1 VAE
 * (tests/fixtures/tiny-sd1/vae), batch 2, a 32 x 40 image and a 4 x 5 latent, loss
 * sum(w_dec * decode(z)) + sum(w_enc * moments(image)) for fixed random w
 * (tests/fixtures/vae-grad-sd1.safetensors, tests/reference/make_vae_grad_fixtures.py). Checks:
 *  - each training forward's output equals the inference forward's (sd_vae_decode,
 *    sd_vae_encode) bit for bit, and torch's within OUT_ATOL;
 *  - d(z), d(image) and every parameter gradient within GRAD_TOL of torch's float64 gradient:
 *    max |got - want| / max |want| per tensor (sampled large weights: the rows and four
 *    whole-tensor figures, grad_fixture.h); gradients 0 in exact arithmetic below ZERO_TOL of the
 *    largest gradient;
 *  - second backwards on the same tapes double every parameter gradient and leave d(z) and
 *    d(image) as they were; backwards without the input gradient give the same weight gradients;
 *  - a one-thread backend gives every gradient, d(z) and d(image) bit for bit;
 *  - the arena is back where it was after the tapes are freed; a tape of the other half, a
 *    gradient of the wrong shape and an image that is not a multiple of 8 are refused. */
#include "grad_fixture.h"
#include "test_util.h"

#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/grads.h"
#include "model/vae.h"
#include "model/vae_train.h"

#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GRAD_TOL 1e-4
#define ZERO_TOL 1e-6
#define OUT_ATOL 1e-5f

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A persistent tensor shaped like `like`. */
static int alloc_like(sd_backend *be, const sd_tensor *like, sd_tensor *t) {
  *t = *like;
  t->data = NULL;
  return sd_tensor_alloc_persistent(be, t);
}

/* An input gradient against the fixture's. */
static void check_input_gradient(sd_backend *be, const sd_safetensors *f, const char *name,
                                 const sd_tensor *got_t) {
  const sd_st_tensor *want = sd_grad_fixture(f, "%s", name);
  float *got = sd_grad_download(be, got_t);
  size_t n = (size_t)sd_tensor_numel(got_t);
  if (CHECK(got && want && sd_grad_st_numel(want) == (int64_t)n, "%s: fixture or download", name)) {
    double err = sd_grad_rel_error(got, want->data, n, sd_grad_max_abs(want->data, n));
    fprintf(stderr, "     %s: %.2e (tol %g)\n", name, err, GRAD_TOL);
    CHECK(err <= GRAD_TOL, "%s off by %.3g", name, err);
  }
  free(got);
}

/* The training forward's output against the inference forward's (bits) and torch's. */
static void check_output(sd_backend *be, const char *what, const sd_tensor *got_t,
                         const sd_tensor *ref_t, const sd_st_tensor *want) {
  size_t n = (size_t)sd_tensor_numel(got_t);
  float *got = sd_grad_download(be, got_t), *ref = sd_grad_download(be, ref_t);
  CHECK(sd_grad_bits_equal(got, ref, n), "%s: training forward differs from the inference forward",
        what);
  fprintf(stderr, "     %s: training forward = inference forward bit for bit: %s\n", what,
          sd_grad_bits_equal(got, ref, n) ? "yes" : "no");
  if (CHECK(got && want && sd_grad_st_numel(want) == (int64_t)n, "%s: torch output", what))
    sd_test_compare_f32(what, got, want->data, n, OUT_ATOL, OUT_ATOL);
  free(got);
  free(ref);
}

typedef struct vae_case {
  sd_backend *be;
  sd_weights *weights;
  sd_vae *vae;
  sd_grads *grads;
  sd_tensor z, image, w_dec, w_enc;   /* inputs and the outputs' gradients */
  sd_tensor decoded, moments;         /* training forwards' outputs */
  sd_tensor decoded_ref, moments_ref; /* inference forwards' */
  sd_tensor dz, dimage;
  sd_vae_tape *enc_tape, *dec_tape; /* the encoder's below the decoder's on the arena */
} vae_case;

static int backwards(vae_case *c, bool inputs) {
  SD_TRY(sd_vae_decode_backward(c->dec_tape, &c->w_dec, c->grads, inputs ? &c->dz : NULL));
  return sd_vae_encode_backward(c->enc_tape, &c->w_enc, c->grads, inputs ? &c->dimage : NULL);
}

/* Second backwards: every parameter gradient 2x the first (up to the rounding of the sum), the
 * input gradients unchanged (overwritten); then backwards without input gradients from zero: the
 * same parameter gradients bit for bit. */
static void check_accumulation(vae_case *c, float *const *once) {
  float *dz_once = sd_grad_download(c->be, &c->dz),
        *dimage_once = sd_grad_download(c->be, &c->dimage);
  int ok = backwards(c, true) == 0;
  CHECK(ok, "second backward: %s", sd_error_message());
  float **twice = ok ? sd_grad_download_all(c->be, c->grads) : NULL;
  double worst = 0;
  for (size_t i = 0; twice && i < sd_grads_count(c->grads); i++) {
    size_t n = (size_t)sd_tensor_numel(sd_grads_at(c->grads, i));
    double scale = fmax(2.0 * sd_grad_max_abs(once[i], n), 1e-30);
    for (size_t k = 0; k < n; k++)
      worst = fmax(worst, fabs((double)twice[i][k] - 2.0 * once[i][k]) / scale);
  }
  fprintf(stderr, "     two backwards = 2 x one within %.1e\n", worst);
  CHECK(twice && worst <= 1e-6, "accumulation: two backwards off 2x by %.3g", worst);
  float *dz = sd_grad_download(c->be, &c->dz), *dimage = sd_grad_download(c->be, &c->dimage);
  CHECK(sd_grad_bits_equal(dz, dz_once, (size_t)sd_tensor_numel(&c->dz)) &&
            sd_grad_bits_equal(dimage, dimage_once, (size_t)sd_tensor_numel(&c->dimage)),
        "d(z) / d(image) changed on a second backward (must be overwritten)");
  sd_grad_free_all(twice, sd_grads_count(c->grads));

  ok = sd_grads_zero(c->grads) == 0 && backwards(c, false) == 0;
  CHECK(ok, "backward without input gradients: %s", sd_error_message());
  float **again = ok ? sd_grad_download_all(c->be, c->grads) : NULL;
  size_t differ = 0;
  for (size_t i = 0; again && i < sd_grads_count(c->grads); i++)
    differ +=
        !sd_grad_bits_equal(again[i], once[i], (size_t)sd_tensor_numel(sd_grads_at(c->grads, i)));
  CHECK(again && differ == 0, "%zu gradients differ without the input gradients", differ);
  sd_grad_free_all(again, sd_grads_count(c->grads));
  free(dz_once);
  free(dimage_once);
  free(dz);
  free(dimage);
}

static void check_refusals(vae_case *c) {
  sd_error_clear();
  CHECK(sd_vae_decode_backward(c->enc_tape, &c->w_enc, c->grads, NULL) < 0 &&
            strstr(sd_error_message(), "recorded by the encoder"),
        "decode backward on the encoder's tape not refused clearly: %s", sd_error_message());
  sd_error_clear();
  CHECK(sd_vae_encode_backward(c->enc_tape, &c->w_dec, c->grads, NULL) < 0 &&
            strstr(sd_error_message(), "gradient is"),
        "a gradient of the wrong shape not refused clearly: %s", sd_error_message());
  sd_tensor odd = sd_tensor_4d(c->be->ops->act_dtype, 1, 3, 30, 40), moments = odd;
  sd_vae_tape *tape = NULL;
  sd_arena_mark mark = sd_arena_get_mark(c->be);
  if (sd_tensor_alloc(c->be, &odd) == 0 && sd_tensor_alloc(c->be, &moments) == 0) {
    sd_error_clear();
    CHECK(sd_vae_encode_forward_train(c->vae, &odd, &moments, &tape) < 0 && !tape &&
              strstr(sd_error_message(), "multiples of 8"),
          "a 30 x 40 image not refused clearly: %s", sd_error_message());
  }
  sd_arena_release(c->be, mark);
}

/* The model, its gradient store and the inputs on a backend of `threads` threads (0: default). */
static int case_open(vae_case *c, int threads, const sd_model_files *files,
                     const sd_safetensors *f) {
  *c = (vae_case){.be = sd_backend_cpu_create(threads)};
  if (!c->be)
    return SD_ERROR("no CPU backend");
  SD_TRY(sd_weights_upload(c->be, files->vae_tensors, "vae", &c->weights));
  SD_TRY(sd_vae_create(c->be, &files->vae, c->weights, &c->vae));
  SD_TRY(sd_grads_create(c->be, c->weights, NULL, NULL, &c->grads));
  SD_TRY(sd_grad_fixture_upload(c->be, f, "z", &c->z));
  SD_TRY(sd_grad_fixture_upload(c->be, f, "image", &c->image));
  SD_TRY(sd_grad_fixture_upload(c->be, f, "w_dec", &c->w_dec));
  SD_TRY(sd_grad_fixture_upload(c->be, f, "w_enc", &c->w_enc));
  SD_TRY(alloc_like(c->be, &c->w_dec, &c->decoded));
  SD_TRY(alloc_like(c->be, &c->w_dec, &c->decoded_ref));
  SD_TRY(alloc_like(c->be, &c->w_enc, &c->moments));
  SD_TRY(alloc_like(c->be, &c->w_enc, &c->moments_ref));
  SD_TRY(alloc_like(c->be, &c->z, &c->dz));
  return alloc_like(c->be, &c->image, &c->dimage);
}

static void case_close(vae_case *c) {
  sd_vae_tape_free(c->dec_tape);
  sd_vae_tape_free(c->enc_tape);
  sd_tensor *all[] = {&c->z,       &c->image,       &c->w_dec, &c->w_enc,  &c->decoded,
                      &c->moments, &c->decoded_ref, &c->dz,    &c->dimage, &c->moments_ref};
  for (size_t i = 0; c->be && i < sizeof all / sizeof *all; i++)
    sd_tensor_free(c->be, all[i]);
  sd_grads_free(c->grads);
  sd_vae_free(c->vae);
  sd_weights_free(c->weights);
  sd_backend_destroy(c->be);
}

/* The same forwards and backwards on a one-thread backend: every gradient, d(z) and d(image) bit
 * for bit as with the default backend's `threads` (the ops' results do not depend on the thread
 * count). */
static void check_threads(int threads, const sd_model_files *files, const sd_safetensors *f,
                          float *const *once, const float *dz_once, const float *dimage_once) {
  vae_case one;
  int ok = case_open(&one, 1, files, f) == 0 &&
           sd_vae_encode_forward_train(one.vae, &one.image, &one.moments, &one.enc_tape) == 0 &&
           sd_vae_decode_forward_train(one.vae, &one.z, &one.decoded, &one.dec_tape) == 0 &&
           backwards(&one, true) == 0;
  CHECK(ok, "one-thread backward: %s", sd_error_message());
  if (ok) {
    size_t differ = 0, n = sd_grads_count(one.grads);
    float **got = sd_grad_download_all(one.be, one.grads);
    for (size_t i = 0; got && i < n; i++)
      differ +=
          !sd_grad_bits_equal(got[i], once[i], (size_t)sd_tensor_numel(sd_grads_at(one.grads, i)));
    sd_grad_free_all(got, n);
    float *dz = sd_grad_download(one.be, &one.dz), *dimage = sd_grad_download(one.be, &one.dimage);
    differ += !sd_grad_bits_equal(dz, dz_once, (size_t)sd_tensor_numel(&one.dz));
    differ += !sd_grad_bits_equal(dimage, dimage_once, (size_t)sd_tensor_numel(&one.dimage));
    free(dz);
    free(dimage);
    fprintf(stderr, "     1 thread vs %d: %zu of %zu gradients differ\n", threads, differ, n + 2);
    CHECK(differ == 0, "%zu gradients differ between 1 thread and %d", differ, threads);
  }
  case_close(&one);
}

int main(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/vae-grad-sd1.safetensors", SD_TEST_FIXTURES);
  sd_model_files *files = NULL;
  sd_safetensors *f = NULL;
  vae_case c = {0};
  float **once = NULL, *dz_once = NULL, *dimage_once = NULL;
  int ok = sd_model_files_open(SD_TEST_FIXTURES "/tiny-sd1", NULL, NULL, &files) == 0 &&
           sd_safetensors_open(path, &f) == 0 && case_open(&c, 0, files, f) == 0;
  CHECK(ok, "setup: %s (%s)", sd_error_message(), sd_error_location());
  if (!ok)
    goto out;
  CHECK(sd_grads_count(c.grads) == 180, "%zu gradients for the tiny VAE's 180 weights",
        sd_grads_count(c.grads));

  ok = sd_vae_decode(c.vae, &c.z, &c.decoded_ref) == 0 &&
       sd_vae_encode(c.vae, &c.image, &c.moments_ref) == 0;
  CHECK(ok, "inference forwards: %s", sd_error_message());
  sd_arena_mark base = sd_arena_get_mark(c.be);
  double t0 = now_ms();
  ok = ok && sd_vae_encode_forward_train(c.vae, &c.image, &c.moments, &c.enc_tape) == 0;
  double t1 = now_ms();
  size_t enc_bytes = ok ? sd_vae_tape_bytes(c.enc_tape) : 0;
  ok = ok && sd_vae_decode_forward_train(c.vae, &c.z, &c.decoded, &c.dec_tape) == 0;
  double t2 = now_ms();
  CHECK(ok, "training forwards: %s (%s)", sd_error_message(), sd_error_location());
  if (!ok)
    goto out;
  size_t dec_bytes = sd_vae_tape_bytes(c.dec_tape);
  check_output(c.be, "decoder image", &c.decoded, &c.decoded_ref,
               sd_grad_fixture(f, "image_dec", ""));
  check_output(c.be, "encoder moments", &c.moments, &c.moments_ref,
               sd_grad_fixture(f, "moments", ""));

  double t3 = now_ms();
  ok = sd_vae_decode_backward(c.dec_tape, &c.w_dec, c.grads, &c.dz) == 0;
  double t4 = now_ms();
  ok = ok && sd_vae_encode_backward(c.enc_tape, &c.w_enc, c.grads, &c.dimage) == 0;
  double t5 = now_ms();
  CHECK(ok, "backwards: %s (%s)", sd_error_message(), sd_error_location());
  if (!ok)
    goto out;
  fprintf(stderr,
          "     encoder: forward %.1f ms, backward %.1f ms, tape %.1f KiB; decoder: forward %.1f "
          "ms, backward %.1f ms, tape %.1f KiB (%d threads)\n",
          t1 - t0, t5 - t4, enc_bytes / 1024.0, t2 - t1, t4 - t3, dec_bytes / 1024.0,
          c.be->threads);

  check_input_gradient(c.be, f, "dz", &c.dz);
  check_input_gradient(c.be, f, "dimage", &c.dimage);
  dz_once = sd_grad_download(c.be, &c.dz);
  dimage_once = sd_grad_download(c.be, &c.dimage);
  once = sd_grad_download_all(c.be, c.grads);
  if (CHECK(once, "download gradients")) {
    sd_grad_report r;
    sd_grad_report_init(&r, f, c.grads, GRAD_TOL, ZERO_TOL);
    for (size_t i = 0; i < sd_grads_count(c.grads); i++)
      sd_grad_check_parameter(&r, f, sd_grads_name_at(c.grads, i), once[i],
                              sd_grads_at(c.grads, i));
    fprintf(stderr,
            "     %d parameter gradients (%d from sampled rows + whole-tensor figures), worst "
            "%.2e (%s), %d failed; %d zero in exact arithmetic, at most %.1e of the largest "
            "gradient %.3f\n",
            r.checked + r.zeros, r.sampled, r.worst, r.worst_name, r.failed, r.zeros, r.worst_zero,
            r.scale);
    check_accumulation(&c, once);
  }
  check_refusals(&c);
  sd_vae_tape_free(c.dec_tape);
  sd_vae_tape_free(c.enc_tape);
  c.dec_tape = c.enc_tape = NULL;
  CHECK(c.be->arena.used_bytes == base.used_bytes, "%zu arena bytes left after the tapes",
        c.be->arena.used_bytes - base.used_bytes);

  if (once && c.be->threads != 1)
    check_threads(c.be->threads, files, f, once, dz_once, dimage_once);

out:
  sd_grad_free_all(once, c.grads ? sd_grads_count(c.grads) : 0);
  free(dz_once);
  free(dimage_once);
  case_close(&c);
  sd_safetensors_close(f);
  sd_model_files_close(files);
  return sd_test_finish();
}
