/* The UNet's backward (worker/model/unet_train.h) against torch autograd: the tiny SD 1.x (conv
 * proj_in/out, 4 heads) and SD 2.x (linear proj_in/out, 2 and 4 heads) fixture UNets, batch 2,
 * loss = F.mse_loss(unet(sample, t, context), target) (tests/fixtures/unet-grad-*.safetensors,
 * tests/reference/make_unet_grad_fixtures.py). Checks:
 *  - the training forward's output equals sd_unet_forward's bit for bit (full and checkpointed
 *    tapes), and torch's within 1e-5; the loss within 1e-5 relative;
 *  - d(sample), d(context) and every parameter gradient within GRAD_TOL of torch's (float64)
 *    gradient: max |got - want| / max(max |want|, 1e-6) per tensor; for a gradient the fixture
 *    holds as sampled rows (a large weight), the rows alike and the whole tensor's max |g|, L2
 *    norm and two +-1 projections within GRAD_TOL (relative to the L2 norm); a gradient that is 0
 *    in exact arithmetic (the fixture's max below 1e-9 of the model's largest gradient) must be
 *    below ZERO_TOL of that largest gradient;
 *  - a second backward on the same tape doubles every parameter gradient (accumulation) and
 *    leaves d(sample), d(context) as they were (overwritten);
 *  - a store filtered to the attention projections (LoRA's choice) gets the full store's
 *    gradients bit for bit for them (the other weights frozen: NULL to the ops);
 *  - the checkpointed tape gives the full tape's gradients bit for bit, in less memory;
 *  - a one-thread backend gives every gradient bit for bit as the default one;
 *  - the arena is back where it was after sd_unet_tape_free; latents that are not multiples of
 *    2^(levels - 1) and the x4 upscaler's UNet (class labels) are refused. */
#include "grad_fixture.h"
#include "test_util.h"

#include "io/config_json.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/grads.h"
#include "model/unet.h"
#include "model/unet_train.h"
#include "train/loss.h"

#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GRAD_TOL 1e-4
#define ZERO_TOL 1e-6
#define OUT_ATOL 1e-5f
#define LOSS_TOL 1e-5

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The check of a sampled gradient sees an error outside its stored rows: one element of the
 * largest sampled gradient, in a row the fixture lacks, off by 1% of the tensor's max |g| must
 * fail; the figure of 0.1% is printed (the detection floor for a single element). */
static void check_sampled_detection(const char *family, const sd_safetensors *f, sd_grads *grads,
                                    float *const *got) {
  size_t pick = 0;
  int64_t most = 0;
  for (size_t i = 0; i < sd_grads_count(grads); i++) {
    int64_t n = sd_tensor_numel(sd_grads_at(grads, i));
    if (sd_grad_fixture(f, "rows.%s", sd_grads_name_at(grads, i)) && n > most) {
      most = n;
      pick = i;
    }
  }
  const char *name = sd_grads_name_at(grads, pick);
  const sd_st_tensor *want = sd_grad_fixture(f, "grad.%s", name),
                     *rows = sd_grad_fixture(f, "rows.%s", name);
  const sd_st_tensor *stats = sd_grad_fixture(f, "stats.%s", name);
  if (!CHECK(most > 0 && want && rows && stats, "%s: no sampled gradient", family))
    return;
  const float *figures = stats->data;
  int64_t cols = most / sd_grads_at(grads, pick)->shape[0];
  int64_t row = ((const int32_t *)rows->data)[0] + 1; /* rows are spaced, the next is not kept */
  float *copy = malloc((size_t)most * sizeof *copy);
  if (!copy)
    return;
  double err[2];
  const double off[2] = {1e-2, 1e-3};
  for (int k = 0; k < 2; k++) {
    memcpy(copy, got[pick], (size_t)most * sizeof *copy);
    copy[row * cols + cols / 2] += (float)(off[k] * figures[0]);
    err[k] = sd_grad_sampled_error(copy, most, cols, want, rows, figures);
  }
  free(copy);
  fprintf(stderr,
          "     %s: %s, one value outside the stored rows off by 1%% / 0.1%% of max |g|: figure "
          "%.1e / %.1e\n",
          family, name, err[0], err[1]);
  CHECK(err[0] > GRAD_TOL, "%s: a 1%% error outside the stored rows of %s went unseen (%.3g)",
        family, name, err[0]);
}

/* Every parameter gradient (host copies, in the store's order) against the fixture. */
static void check_parameters(const char *family, const sd_safetensors *f, sd_grads *grads,
                             float *const *got) {
  sd_grad_report r;
  sd_grad_report_init(&r, f, grads, GRAD_TOL, ZERO_TOL);
  for (size_t i = 0; i < sd_grads_count(grads); i++)
    sd_grad_check_parameter(&r, f, sd_grads_name_at(grads, i), got[i], sd_grads_at(grads, i));
  fprintf(stderr,
          "     %s: %d parameter gradients (%d from sampled rows + whole-tensor figures), worst "
          "%.2e (%s); %d zero in exact arithmetic, at most %.1e of the largest gradient %.3f\n",
          family, r.checked + r.zeros, r.sampled, r.worst, r.worst_name, r.zeros, r.worst_zero,
          r.scale);
  CHECK(r.failed == 0, "%s: %d parameter gradients off", family, r.failed);
  check_sampled_detection(family, f, grads, got);
}

/* Two backwards on one tape: parameter gradients 2x (rounding of the sums aside), input
 * gradients as after one. */
static void check_accumulation(const char *family, sd_backend *be, sd_unet_tape *tape,
                               const sd_tensor *dout, sd_grads *grads, float *const *once,
                               sd_tensor *dsample, sd_tensor *dcontext, const float *dsample_once,
                               const float *dcontext_once) {
  int ok = sd_unet_backward(tape, dout, grads, dsample, dcontext) == 0;
  CHECK(ok, "%s: second backward: %s", family, sd_error_message());
  if (!ok)
    return;
  float **twice = sd_grad_download_all(be, grads);
  double worst = 0;
  for (size_t i = 0; twice && i < sd_grads_count(grads); i++) {
    size_t n = (size_t)sd_tensor_numel(sd_grads_at(grads, i));
    float *doubled = malloc(n * sizeof *doubled);
    for (size_t k = 0; doubled && k < n; k++)
      doubled[k] = 2.0f * once[i][k];
    double m = doubled ? sd_grad_max_abs(doubled, n) : 0;
    if (doubled && m > 0)
      worst = fmax(worst, sd_grad_rel_error(twice[i], doubled, n, m));
    free(doubled);
  }
  fprintf(stderr, "     %s: two backwards = 2 x one within %.1e\n", family, worst);
  CHECK(twice && worst <= 1e-6, "%s: accumulation: two backwards off 2x by %.3g", family, worst);
  float *ds = sd_grad_download(be, dsample), *dc = sd_grad_download(be, dcontext);
  CHECK(sd_grad_bits_equal(ds, dsample_once, (size_t)sd_tensor_numel(dsample)) &&
            sd_grad_bits_equal(dc, dcontext_once, (size_t)sd_tensor_numel(dcontext)),
        "%s: d(sample) / d(context) changed on a second backward (must be overwritten)", family);
  free(ds);
  free(dc);
  sd_grad_free_all(twice, sd_grads_count(grads));
}

/* A LoRA-style store: only the attention projections get gradients. */
static bool attention_projection(const char *name, void *user) {
  (void)user;
  return strstr(name, ".to_q.") || strstr(name, ".to_k.") || strstr(name, ".to_v.") ||
         strstr(name, ".to_out.0.");
}

/* A store with a filter: the backward fills only its gradients (the others are frozen, NULL to
 * the ops), each equal bit for bit to the same gradient in the full store. */
static void check_frozen(const char *family, sd_backend *be, sd_unet_tape *tape,
                         const sd_tensor *dout, const sd_weights *weights, sd_grads *all,
                         float *const *once) {
  sd_grads *some = NULL;
  int ok = sd_grads_create(be, weights, attention_projection, NULL, &some) == 0 &&
           sd_unet_backward(tape, dout, some, NULL, NULL) == 0;
  CHECK(ok, "%s: backward into a filtered store: %s", family, sd_error_message());
  size_t count = ok ? sd_grads_count(some) : 0, differ = 0;
  for (size_t i = 0; i < count; i++) {
    const char *name = sd_grads_name_at(some, i);
    size_t j = 0;
    while (j < sd_grads_count(all) && strcmp(sd_grads_name_at(all, j), name) != 0)
      j++;
    float *got = sd_grad_download(be, sd_grads_at(some, i));
    differ += j == sd_grads_count(all) ||
              !sd_grad_bits_equal(got, once[j], (size_t)sd_tensor_numel(sd_grads_at(some, i)));
    free(got);
  }
  /* 11 transformers (2 + 2 down, 1 mid, 3 + 3 up), each to_q, to_k, to_v, to_out.0 weight and
   * bias in attn1 and attn2 */
  CHECK(ok && count == 11 * 10 && differ == 0,
        "%s: filtered store: %zu gradients (want 110), %zu differ from the full store's", family,
        count, differ);
  fprintf(stderr, "     %s: attention projections only: %zu gradients, equal to the full store's\n",
          family, count);
  sd_grads_free(some);
}

/* The checkpointed tape: same output and gradients bit for bit, less memory. */
static void check_checkpoint(const char *family, sd_backend *be, sd_unet *unet,
                             const sd_tensor *sample, double t, const sd_tensor *context,
                             sd_tensor *out, const float *out_full, const sd_tensor *dout,
                             sd_grads *grads, float *const *once, size_t full_bytes) {
  sd_unet_tape *tape = NULL;
  int ok =
      sd_grads_zero(grads) == 0 &&
      sd_unet_forward_train(unet, sample, t, context, SD_UNET_TAPE_CHECKPOINT, out, &tape) == 0;
  CHECK(ok, "%s: checkpointed forward: %s", family, sd_error_message());
  if (!ok)
    return;
  size_t bytes = sd_unet_tape_bytes(tape);
  float *got = sd_grad_download(be, out);
  CHECK(sd_grad_bits_equal(got, out_full, (size_t)sd_tensor_numel(out)),
        "%s: checkpointed forward output differs from the full tape's", family);
  free(got);
  ok = sd_unet_backward(tape, dout, grads, NULL, NULL) == 0;
  CHECK(ok, "%s: checkpointed backward: %s", family, sd_error_message());
  sd_unet_tape_free(tape);
  if (!ok)
    return;
  float **again = sd_grad_download_all(be, grads);
  size_t differ = 0;
  for (size_t i = 0; again && i < sd_grads_count(grads); i++)
    differ +=
        !sd_grad_bits_equal(again[i], once[i], (size_t)sd_tensor_numel(sd_grads_at(grads, i)));
  CHECK(again && differ == 0, "%s: %zu gradients differ between checkpointed and full tapes",
        family, differ);
  fprintf(stderr, "     %s: tape %.1f KiB full, %.1f KiB checkpointed; gradients equal: %s\n",
          family, full_bytes / 1024.0, bytes / 1024.0, differ == 0 ? "yes" : "no");
  CHECK(bytes < full_bytes, "%s: checkpointed tape not smaller", family);
  sd_grad_free_all(again, sd_grads_count(grads));
}

static void check_refusals(const char *family, sd_backend *be, sd_unet *unet,
                           const sd_tensor *context) {
  sd_tensor sample = sd_tensor_4d(be->ops->act_dtype, context->shape[0], 4, 18, 16);
  sd_tensor out = sample;
  sd_unet_tape *tape = NULL;
  int ok =
      sd_tensor_alloc_persistent(be, &sample) == 0 && sd_tensor_alloc_persistent(be, &out) == 0;
  if (ok) {
    sd_error_clear();
    CHECK(sd_unet_forward_train(unet, &sample, 1.0, context, SD_UNET_TAPE_FULL, &out, &tape) < 0 &&
              !tape && strstr(sd_error_message(), "multiple of 4"),
          "%s: an 18 x 16 latent was not refused clearly: %s", family, sd_error_message());
  }
  sd_tensor_free(be, &sample);
  sd_tensor_free(be, &out);
}

/* The same step on a one-thread backend: every gradient, d(sample) and d(context) equal bit for
 * bit to those of the default backend (`threads` threads): the ops' results do not depend on the
 * thread count. */
static void check_threads(const char *family, int threads, const sd_model_files *files,
                          const float *sample, const float *context, double t, const float *dout,
                          float *const *once, sd_grads *all, const float *ds_once,
                          const float *dc_once, const sd_tensor *sample_shape,
                          const sd_tensor *context_shape) {
  sd_backend *be = sd_backend_cpu_create(1);
  sd_weights *weights = NULL;
  sd_unet *unet = NULL;
  sd_grads *grads = NULL;
  sd_unet_tape *tape = NULL;
  sd_tensor x = *sample_shape, c = *context_shape, out = *sample_shape, dy = *sample_shape;
  sd_tensor dx = *sample_shape, dc = *context_shape;
  sd_tensor *all_t[] = {&x, &c, &out, &dy, &dx, &dc};
  for (size_t i = 0; i < sizeof all_t / sizeof *all_t; i++)
    all_t[i]->data = NULL;
  int ok = be && sd_weights_upload(be, files->unet_tensors, "unet", &weights) == 0 &&
           sd_unet_create(be, &files->unet, weights, &unet) == 0 &&
           sd_grads_create(be, weights, NULL, NULL, &grads) == 0;
  for (size_t i = 0; ok && i < sizeof all_t / sizeof *all_t; i++)
    ok = sd_tensor_alloc_persistent(be, all_t[i]) == 0;
  ok = ok && sd_tensor_upload_f32(be, &x, sample) == 0 &&
       sd_tensor_upload_f32(be, &c, context) == 0 && sd_tensor_upload_f32(be, &dy, dout) == 0 &&
       sd_unet_forward_train(unet, &x, t, &c, SD_UNET_TAPE_FULL, &out, &tape) == 0 &&
       sd_unet_backward(tape, &dy, grads, &dx, &dc) == 0;
  CHECK(ok, "%s: one-thread backward: %s", family, sd_error_message());
  if (ok) {
    size_t differ = 0;
    for (size_t i = 0; i < sd_grads_count(grads); i++) {
      float *got = sd_grad_download(be, sd_grads_at(grads, i));
      differ += strcmp(sd_grads_name_at(grads, i), sd_grads_name_at(all, i)) != 0 ||
                !sd_grad_bits_equal(got, once[i], (size_t)sd_tensor_numel(sd_grads_at(grads, i)));
      free(got);
    }
    float *got_dx = sd_grad_download(be, &dx), *got_dc = sd_grad_download(be, &dc);
    differ += !sd_grad_bits_equal(got_dx, ds_once, (size_t)sd_tensor_numel(&dx));
    differ += !sd_grad_bits_equal(got_dc, dc_once, (size_t)sd_tensor_numel(&dc));
    free(got_dx);
    free(got_dc);
    fprintf(stderr, "     %s: 1 thread vs %d: %zu of %zu gradients differ\n", family, threads,
            differ, sd_grads_count(grads) + 2);
    CHECK(differ == 0, "%s: %zu gradients differ between 1 thread and the default", family, differ);
  }
  sd_unet_tape_free(tape);
  for (size_t i = 0; be && i < sizeof all_t / sizeof *all_t; i++)
    sd_tensor_free(be, all_t[i]);
  sd_grads_free(grads);
  sd_unet_free(unet);
  sd_weights_free(weights);
  sd_backend_destroy(be);
}

/* The default backend's thread count, fixed by the first backend: creating the one-thread backend
 * sets OpenMP's default for the process, which a later sd_backend_cpu_create(0) would take. */
static int default_threads;

static void test_model(const char *family) {
  char folder[512], path[512];
  snprintf(folder, sizeof folder, "%s/tiny-%s", SD_TEST_FIXTURES, family);
  snprintf(path, sizeof path, "%s/unet-grad-%s.safetensors", SD_TEST_FIXTURES, family);
  sd_model_files *files = NULL;
  sd_safetensors *f = NULL;
  sd_backend *be = sd_backend_cpu_create(default_threads);
  sd_weights *weights = NULL;
  sd_unet *unet = NULL;
  sd_grads *grads = NULL;
  sd_unet_tape *tape = NULL;
  if (be && !default_threads)
    default_threads = be->threads;
  sd_tensor sample = {0}, context = {0}, out = {0}, out_ref = {0}, dout = {0}, dsample = {0},
            dcontext = {0};
  float *out_host = NULL, *out_ref_host = NULL, *dout_host = NULL, *ds = NULL, *dc = NULL;
  float **once = NULL;

  int ok = be && sd_model_files_open(folder, NULL, NULL, &files) == 0 &&
           sd_safetensors_open(path, &f) == 0 &&
           sd_weights_upload(be, files->unet_tensors, "unet", &weights) == 0 &&
           sd_unet_create(be, &files->unet, weights, &unet) == 0 &&
           sd_grads_create(be, weights, NULL, NULL, &grads) == 0 &&
           sd_grad_fixture_upload(be, f, "sample", &sample) == 0 &&
           sd_grad_fixture_upload(be, f, "context", &context) == 0;
  const sd_st_tensor *timestep = f ? sd_grad_fixture(f, "timestep", "") : NULL;
  const sd_st_tensor *target = f ? sd_grad_fixture(f, "target", "") : NULL;
  const sd_st_tensor *want_out = f ? sd_grad_fixture(f, "out", "") : NULL;
  const sd_st_tensor *want_loss = f ? sd_grad_fixture(f, "loss", "") : NULL;
  ok = ok && timestep && target && want_out && want_loss;
  CHECK(ok, "%s: setup: %s (%s)", family, sd_error_message(), sd_error_location());
  if (!ok)
    goto out;
  CHECK(sd_grads_count(grads) == sd_weights_count(weights) && sd_grads_count(grads) == 494,
        "%s: %zu gradients for %zu weights", family, sd_grads_count(grads),
        sd_weights_count(weights));
  double t = ((const float *)timestep->data)[0];
  out = sample;
  out.data = NULL;
  out_ref = dout = dsample = out;
  dcontext = context;
  dcontext.data = NULL;
  ok = sd_tensor_alloc_persistent(be, &out) == 0 && sd_tensor_alloc_persistent(be, &out_ref) == 0 &&
       sd_tensor_alloc_persistent(be, &dout) == 0 &&
       sd_tensor_alloc_persistent(be, &dsample) == 0 &&
       sd_tensor_alloc_persistent(be, &dcontext) == 0;
  CHECK(ok, "%s: allocation: %s", family, sd_error_message());
  if (!ok)
    goto out;
  size_t n = (size_t)sd_tensor_numel(&out);

  /* inference forward, then the training forward: the same bits */
  ok = sd_unet_forward(unet, &sample, t, &context, &out_ref) == 0;
  CHECK(ok, "%s: forward: %s", family, sd_error_message());
  sd_arena_mark base = sd_arena_get_mark(be);
  double t0 = now_ms();
  uint64_t flops0 = be->flops;
  ok = ok && sd_unet_forward_train(unet, &sample, t, &context, SD_UNET_TAPE_FULL, &out, &tape) == 0;
  double t1 = now_ms();
  uint64_t flops1 = be->flops;
  CHECK(ok, "%s: training forward: %s (%s)", family, sd_error_message(), sd_error_location());
  if (!ok)
    goto out;
  size_t full_bytes = sd_unet_tape_bytes(tape);
  out_host = sd_grad_download(be, &out);
  out_ref_host = sd_grad_download(be, &out_ref);
  CHECK(sd_grad_bits_equal(out_host, out_ref_host, n),
        "%s: training forward output differs from sd_unet_forward's", family);
  char what[64];
  snprintf(what, sizeof what, "%s out vs torch", family);
  sd_test_compare_f32(what, out_host, want_out->data, n, OUT_ATOL, OUT_ATOL);

  /* loss and its gradient (worker/train), then the backward */
  float loss = sd_mse_loss(out_host, target->data, (int64_t)n);
  float want_l = ((const float *)want_loss->data)[0];
  double loss_err = fabs((double)loss - want_l) / fabs(want_l);
  fprintf(stderr, "     %s: loss %.7f, torch %.7f (relative %.1e)\n", family, loss, want_l,
          loss_err);
  CHECK(loss_err <= LOSS_TOL, "%s: loss off by %.3g", family, loss_err);
  dout_host = malloc(n * sizeof *dout_host);
  sd_mse_loss_backward(out_host, target->data, (int64_t)n, 1.0f, dout_host);
  ok = sd_tensor_upload_f32(be, &dout, dout_host) == 0;
  double t2 = now_ms();
  ok = ok && sd_unet_backward(tape, &dout, grads, &dsample, &dcontext) == 0;
  double t3 = now_ms();
  CHECK(ok, "%s: backward: %s (%s)", family, sd_error_message(), sd_error_location());
  if (!ok)
    goto out;
  fprintf(stderr,
          "     %s: forward %.1f ms (%.2f GFLOP), backward %.1f ms (%.2f GFLOP), tape %.1f KiB\n",
          family, t1 - t0, (flops1 - flops0) / 1e9, t3 - t2, (be->flops - flops1) / 1e9,
          full_bytes / 1024.0);

  ds = sd_grad_download(be, &dsample);
  dc = sd_grad_download(be, &dcontext);
  const sd_st_tensor *want_ds = sd_grad_fixture(f, "dsample", ""),
                     *want_dc = sd_grad_fixture(f, "dcontext", "");
  if (CHECK(ds && dc && want_ds && want_dc, "%s: input gradients", family)) {
    size_t nc = (size_t)sd_tensor_numel(&dcontext);
    double e_s = sd_grad_rel_error(ds, want_ds->data, n, sd_grad_max_abs(want_ds->data, n));
    double e_c = sd_grad_rel_error(dc, want_dc->data, nc, sd_grad_max_abs(want_dc->data, nc));
    fprintf(stderr, "     %s: d(sample) %.2e, d(context) %.2e\n", family, e_s, e_c);
    CHECK(e_s <= GRAD_TOL && e_c <= GRAD_TOL, "%s: d(sample) %.3g, d(context) %.3g", family, e_s,
          e_c);
  }
  once = sd_grad_download_all(be, grads);
  if (CHECK(once, "%s: download gradients", family)) {
    check_parameters(family, f, grads, once);
    check_accumulation(family, be, tape, &dout, grads, once, &dsample, &dcontext, ds, dc);
    check_frozen(family, be, tape, &dout, weights, grads, once);
  }
  sd_unet_tape_free(tape);
  tape = NULL;
  CHECK(be->arena.used_bytes == base.used_bytes, "%s: %zu arena bytes left after the tape", family,
        be->arena.used_bytes - base.used_bytes);
  if (once)
    check_checkpoint(family, be, unet, &sample, t, &context, &out, out_host, &dout, grads, once,
                     full_bytes);
  check_refusals(family, be, unet, &context);
  if (once && ds && dc && be->threads != 1)
    check_threads(family, be->threads, files, sd_grad_fixture(f, "sample", "")->data,
                  sd_grad_fixture(f, "context", "")->data, t, dout_host, once, grads, ds, dc,
                  &sample, &context);

out:
  sd_unet_tape_free(tape);
  sd_grad_free_all(once, grads ? sd_grads_count(grads) : 0);
  free(out_host);
  free(out_ref_host);
  free(dout_host);
  free(ds);
  free(dc);
  sd_tensor *all[] = {&sample, &context, &out, &out_ref, &dout, &dsample, &dcontext};
  for (size_t i = 0; be && i < sizeof all / sizeof *all; i++)
    sd_tensor_free(be, all[i]);
  sd_grads_free(grads);
  sd_unet_free(unet);
  sd_weights_free(weights);
  sd_safetensors_close(f);
  sd_model_files_close(files);
  sd_backend_destroy(be);
}

/* The x4 upscaler's UNet (class labels, only_cross_attention: tests/fixtures/upscaler-unet) is
 * refused by the training forward, naming why. */
static void check_upscaler_refused(void) {
  const char *dir = SD_TEST_FIXTURES "/upscaler-unet";
  char path[512];
  sd_unet_config cfg;
  sd_backend *be = sd_backend_cpu_create(default_threads);
  sd_safetensors *file = NULL;
  sd_tensor_map *map = sd_tensor_map_create();
  sd_weights *weights = NULL;
  sd_unet *unet = NULL;
  sd_unet_tape *tape = NULL;
  snprintf(path, sizeof path, "%s/config.json", dir);
  int ok = be && map && sd_unet_config_read(path, &cfg) == 0;
  snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
  ok = ok && sd_safetensors_open(path, &file) == 0;
  for (size_t i = 0; ok && i < sd_safetensors_count(file); i++) {
    const sd_st_tensor *t = sd_safetensors_at(file, i);
    ok = sd_tensor_map_put(map, t->name, t->dtype, t->ndim, t->shape, t->data) == 0;
  }
  ok = ok && sd_weights_upload(be, map, "unet", &weights) == 0 &&
       sd_unet_create(be, &cfg, weights, &unet) == 0;
  CHECK(ok, "upscaler setup: %s", sd_error_message());
  sd_dtype dt = be ? be->ops->act_dtype : SD_DTYPE_F32;
  sd_tensor sample = sd_tensor_4d(dt, 1, cfg.in_channels, 8, 8);
  sd_tensor out = sd_tensor_4d(dt, 1, cfg.out_channels, 8, 8);
  sd_tensor context = sd_tensor_3d(dt, 1, 77, cfg.cross_attention_dim);
  ok = ok && sd_tensor_alloc_persistent(be, &sample) == 0 &&
       sd_tensor_alloc_persistent(be, &out) == 0 && sd_tensor_alloc_persistent(be, &context) == 0;
  if (ok) {
    sd_error_clear();
    CHECK(sd_unet_forward_train(unet, &sample, 20.0, &context, SD_UNET_TAPE_FULL, &out, &tape) <
                  0 &&
              !tape && strstr(sd_error_message(), "class labels"),
          "upscaler UNet not refused clearly: %s", sd_error_message());
    fprintf(stderr, "     upscaler UNet refused: %s\n", sd_error_message());
  }
  if (be) {
    sd_tensor_free(be, &sample);
    sd_tensor_free(be, &out);
    sd_tensor_free(be, &context);
  }
  sd_unet_free(unet);
  sd_weights_free(weights);
  sd_tensor_map_free(map);
  sd_safetensors_close(file);
  sd_backend_destroy(be);
}

int main(void) {
  test_model("sd1");
  test_model("sd2");
  check_upscaler_refused();
  return sd_test_finish();
}
