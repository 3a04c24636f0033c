/* The CLIP text encoder's backward (worker/model/clip_text_train.h) against torch autograd: the
 * tiny SD 1.x (quick_gelu) and SD 2.x (gelu) fixture text encoders, two prompts padded to 77 as
 * the pipelines pad them, loss = sum(last_hidden_state * R)
 * (tests/fixtures/clip-grad-*.safetensors, tests/reference/make_clip_grad_fixtures.py). Checks:
 *  - the training forward's output equals sd_clip_text_forward's bit for bit, and torch's within
 *    1e-5;
 *  - every parameter gradient within GRAD_TOL of torch's (float64) gradient:
 *    max |got - want| / max(max |want|, 1e-6) per tensor; the token embedding, which the fixture
 *    holds as the rows of the ids used plus spread rows, also by its whole-tensor max |g|, L2 norm
 *    and two +-1 projections (relative to the L2 norm); the k_proj biases, zero in exact
 *    arithmetic, below ZERO_TOL of the largest gradient;
 *  - a second backward on the same tape doubles every gradient (accumulation);
 *  - a store filtered to the token embedding (textual inversion's choice) gets the full store's
 *    gradient bit for bit, the other weights frozen;
 *  - the arena is back where it was after sd_clip_text_tape_free;
 *  - all of it on a two-thread and a one-thread backend, the gradients the same bits. */
#include "grad_fixture.h"
#include "test_util.h"

#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/clip_text.h"
#include "model/clip_text_train.h"
#include "model/grads.h"

#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GRAD_TOL        1e-4
#define ZERO_TOL        1e-6
#define HIDDEN_ATOL     1e-5f
#define TOKEN_EMBEDDING "text_model.embeddings.token_embedding.weight"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void check_parameters(const char *family, const sd_safetensors *f, sd_grads *grads,
                             float *const *got) {
  sd_grad_report r;
  sd_grad_report_init(&r, f, grads, GRAD_TOL, ZERO_TOL);
  for (size_t i = 0; i < sd_grads_count(grads); i++)
    sd_grad_check_parameter(&r, f, sd_grads_name_at(grads, i), got[i], sd_grads_at(grads, i));
  fprintf(stderr,
          "     %s: %d parameter gradients, worst %.2e (%s); %d zero in exact arithmetic, at "
          "most %.1e of the largest gradient %.3f\n",
          family, r.checked + r.zeros, r.worst, r.worst_name, r.zeros, r.worst_zero, r.scale);
  CHECK(r.failed == 0 && r.checked + r.zeros == (int)sd_grads_count(grads),
        "%s: %d parameter gradients off", family, r.failed);
}

/* A second backward on the same tape: every gradient twice the first's (rounding aside). */
static void check_accumulation(const char *family, sd_backend *be, sd_clip_text_tape *tape,
                               const sd_tensor *dhidden, sd_grads *grads, float *const *once) {
  const bool ok = sd_clip_text_backward(tape, dhidden, grads) == 0;
  if (!CHECK(ok, "%s: second backward: %s", family, sd_error_message()))
    return;
  float **twice = sd_grad_download_all(be, grads);
  double worst = 0;
  for (size_t i = 0; twice && i < sd_grads_count(grads); i++) {
    const size_t n = (size_t)sd_tensor_numel(sd_grads_at(grads, i));
    const double m = sd_grad_max_abs(once[i], n);
    for (size_t k = 0; m > 0 && k < n; k++)
      worst = fmax(worst, fabs((double)twice[i][k] - 2.0 * once[i][k]) / (2.0 * m));
  }
  fprintf(stderr, "     %s: two backwards = 2 x one within %.1e\n", family, worst);
  CHECK(twice && worst <= 1e-6, "%s: accumulation: two backwards off 2x by %.3g", family, worst);
  sd_grad_free_all(twice, sd_grads_count(grads));
}

static bool token_embedding_only(const char *name, void *user) {
  (void)user;
  return strcmp(name, TOKEN_EMBEDDING) == 0;
}

/* Textual inversion's store: only the token embedding; its gradient as in the full store. */
static void check_frozen(const char *family, sd_backend *be, sd_clip_text_tape *tape,
                         const sd_tensor *dhidden, const sd_weights *weights, sd_grads *all,
                         float *const *once) {
  sd_grads *some = NULL;
  const bool ok = sd_grads_create(be, weights, token_embedding_only, NULL, &some) == 0 &&
                  sd_clip_text_backward(tape, dhidden, some) == 0;
  CHECK(ok, "%s: backward into a filtered store: %s", family, sd_error_message());
  size_t full = 0;
  while (full < sd_grads_count(all) && strcmp(sd_grads_name_at(all, full), TOKEN_EMBEDDING))
    full++;
  float *got = ok && sd_grads_count(some) == 1 ? sd_grad_download(be, sd_grads_at(some, 0)) : NULL;
  CHECK(got && full < sd_grads_count(all) &&
            sd_grad_bits_equal(got, once[full], (size_t)sd_tensor_numel(sd_grads_at(some, 0))),
        "%s: the token embedding's gradient alone differs from the full store's", family);
  free(got);
  sd_grads_free(some);
}

/* Host copies of a store's gradients after one backward. */
typedef struct host_grads {
  float **values; /* (count) each gradient's values, NULL when the run failed */
  int64_t *numel; /* (count) */
  size_t count;
} host_grads;

static void host_grads_free(host_grads *h) {
  sd_grad_free_all(h->values, h->count);
  free(h->numel);
}

/* Runs the whole check on a backend of `threads` threads and hands back the
 * gradients after one backward in *kept (values NULL on failure). */
static void test_model(const char *family, int threads, host_grads *kept) {
  char folder[512], path[512];
  snprintf(folder, sizeof folder, "%s/tiny-%s", SD_TEST_FIXTURES, family);
  snprintf(path, sizeof path, "%s/clip-grad-%s.safetensors", SD_TEST_FIXTURES, family);
  sd_model_files *files = NULL;
  sd_safetensors *f = NULL;
  sd_backend *be = sd_backend_cpu_create(threads);
  sd_weights *weights = NULL;
  sd_clip_text *clip = NULL;
  sd_grads *grads = NULL;
  *kept = (host_grads){0};
  sd_clip_text_tape *tape = NULL;
  sd_tensor hidden = {0}, hidden_ref = {0}, dhidden = {0};
  float *got = NULL, *ref = NULL, **once = NULL;

  bool ok = be && sd_model_files_open(folder, NULL, NULL, &files) == 0 &&
            sd_safetensors_open(path, &f) == 0 &&
            sd_weights_upload(be, files->clip_tensors, "text_encoder", &weights) == 0 &&
            sd_clip_text_create(be, &files->clip, weights, &clip) == 0 &&
            sd_grads_create(be, weights, NULL, NULL, &grads) == 0;
  const sd_st_tensor *ids = f ? sd_grad_fixture(f, "ids", "") : NULL;
  const sd_st_tensor *want_hidden = f ? sd_grad_fixture(f, "hidden", "") : NULL;
  const sd_st_tensor *r = f ? sd_grad_fixture(f, "dhidden", "") : NULL;
  ok = ok && ids && ids->dtype == SD_DTYPE_I32 && ids->ndim == 2 && want_hidden && r;
  if (!CHECK(ok, "%s: setup: %s (%s)", family, sd_error_message(), sd_error_location()))
    goto out;
  const int batch = (int)ids->shape[0];
  hidden = sd_tensor_make(be->ops->act_dtype, r->ndim, r->shape);
  hidden_ref = dhidden = hidden;
  ok = sd_tensor_alloc_persistent(be, &hidden) == 0 &&
       sd_tensor_alloc_persistent(be, &hidden_ref) == 0 &&
       sd_tensor_alloc_persistent(be, &dhidden) == 0 &&
       sd_tensor_upload_f32(be, &dhidden, r->data) == 0 &&
       sd_clip_text_forward(clip, ids->data, batch, &hidden_ref) == 0;
  if (!CHECK(ok, "%s: inference forward: %s", family, sd_error_message()))
    goto out;

  const sd_arena_mark base = sd_arena_get_mark(be);
  ok = sd_clip_text_forward_train(clip, ids->data, batch, &hidden, &tape) == 0;
  if (!CHECK(ok, "%s: training forward: %s (%s)", family, sd_error_message(), sd_error_location()))
    goto out;
  const size_t n = (size_t)sd_tensor_numel(&hidden);
  got = sd_grad_download(be, &hidden);
  ref = sd_grad_download(be, &hidden_ref);
  CHECK(sd_grad_bits_equal(got, ref, n), "%s: training forward differs from sd_clip_text_forward's",
        family);
  char what[64];
  snprintf(what, sizeof what, "%s hidden vs torch", family);
  sd_test_compare_f32(what, got, want_hidden->data, n, HIDDEN_ATOL, HIDDEN_ATOL);

  const double t0 = now_ms();
  ok = sd_clip_text_backward(tape, &dhidden, grads) == 0;
  const double t1 = now_ms();
  if (!CHECK(ok, "%s: backward: %s (%s)", family, sd_error_message(), sd_error_location()))
    goto out;
  fprintf(stderr, "     %s (%d threads): tape %.1f KiB for batch %d, backward %.1f ms\n", family,
          be->threads, sd_clip_text_tape_bytes(tape) / 1024.0, batch, t1 - t0);
  once = sd_grad_download_all(be, grads);
  if (CHECK(once, "%s: download gradients", family)) {
    check_parameters(family, f, grads, once);
    check_accumulation(family, be, tape, &dhidden, grads, once);
    check_frozen(family, be, tape, &dhidden, weights, grads, once);
  }
  /* a dhidden of another batch is refused, naming it */
  sd_tensor half = sd_tensor_slice0(&dhidden, 0, 1);
  sd_error_clear();
  CHECK(sd_clip_text_backward(tape, &half, grads) < 0 && strstr(sd_error_message(), "dhidden"),
        "%s: a (1, L, C) dhidden for batch 2 was not refused clearly: %s", family,
        sd_error_message());
  sd_clip_text_tape_free(tape);
  tape = NULL;
  CHECK(be->arena.used_bytes == base.used_bytes, "%s: %zu arena bytes left after the tape", family,
        be->arena.used_bytes - base.used_bytes);

out:
  sd_clip_text_tape_free(tape);
  kept->numel = once ? calloc(sd_grads_count(grads), sizeof *kept->numel) : NULL;
  if (kept->numel) {
    kept->values = once;
    kept->count = sd_grads_count(grads);
    for (size_t i = 0; i < kept->count; i++)
      kept->numel[i] = sd_tensor_numel(sd_grads_at(grads, i));
  } else {
    sd_grad_free_all(once, grads ? sd_grads_count(grads) : 0);
  }
  free(got);
  free(ref);
  if (be) {
    sd_tensor_free(be, &hidden);
    sd_tensor_free(be, &hidden_ref);
    sd_tensor_free(be, &dhidden);
  }
  sd_grads_free(grads);
  sd_clip_text_free(clip);
  sd_weights_free(weights);
  sd_safetensors_close(f);
  sd_model_files_close(files);
  sd_backend_destroy(be);
}

/* A two-thread backend's gradients and a one-thread backend's: the same bits (the ops' results
 * do not depend on the thread count). */
static void test_family(const char *family) {
  host_grads many, one;
  size_t differ = 0;
  test_model(family, 2, &many);
  test_model(family, 1, &one);
  const bool ran = many.values && one.values && many.count == one.count;
  for (size_t i = 0; ran && i < many.count; i++)
    differ += !sd_grad_bits_equal(many.values[i], one.values[i], (size_t)many.numel[i]);
  CHECK(ran && differ == 0,
        "%s: %zu gradients differ between a two-thread and a one-thread backend", family, differ);
  host_grads_free(&many);
  host_grads_free(&one);
}

int main(void) {
  test_family("sd1");
  test_family("sd2");
  return sd_test_finish();
}
