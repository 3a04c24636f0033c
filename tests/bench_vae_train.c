/* Time of the VAE's training on the CPU backend: the encoder's and the decoder's training forwards
 * and backwards (every weight's gradient, d(z); d(image) not wanted, as in training) on random
 * images, latents and output gradients, best of a few repetitions, then whole optimizer steps
 * (sd_vae_trainer_step: both halves, the loss, clipping, AdamW). Run by hand (not a ctest), e.g.
 *   bench_vae_train tests/fixtures/tiny-sd1 --size 64 --batch 8
 * GFLOP/s counts the GEMM-like ops as the backend counts them (kernels/ops.h: be->flops). */
#include "test_util.h"

#include "io/model_files.h"
#include "io/weights.h"
#include "model/grads.h"
#include "model/vae.h"
#include "model/vae_train.h"
#include "train/vae_trainer.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int upload_random(sd_backend *be, sd_tensor *t, uint32_t seed) {
  size_t n = (size_t)sd_tensor_numel(t);
  float *host = malloc(n * sizeof *host);
  if (!host)
    return SD_ERROR("out of memory");
  sd_test_fill_random(host, n, seed, 1.0f);
  int rc = sd_tensor_alloc_persistent(be, t);
  if (rc == 0)
    rc = sd_tensor_upload_f32(be, t, host);
  free(host);
  return rc;
}

typedef struct timing {
  double best[4]; /* encoder forward, decoder forward, decoder backward, encoder backward */
  uint64_t flops[4];
  size_t tape_bytes[2]; /* encoder, decoder */
} timing;

/* One forward + backward of both halves, times of each into t (best so far). */
static int pass(sd_backend *be, sd_vae *vae, sd_grads *grads, const sd_tensor *image,
                sd_tensor *moments, const sd_tensor *dmoments, const sd_tensor *z, sd_tensor *out,
                const sd_tensor *dout, sd_tensor *dz, timing *t) {
  sd_vae_tape *enc = NULL, *dec = NULL;
  double ms[5];
  uint64_t fl[5];
  ms[0] = now_ms();
  fl[0] = be->flops;
  int rc = sd_vae_encode_forward_train(vae, image, moments, &enc);
  ms[1] = now_ms();
  fl[1] = be->flops;
  if (rc == 0)
    t->tape_bytes[0] = sd_vae_tape_bytes(enc);
  if (rc == 0)
    rc = sd_vae_decode_forward_train(vae, z, out, &dec);
  ms[2] = now_ms();
  fl[2] = be->flops;
  if (rc == 0)
    rc = sd_vae_decode_backward(dec, dout, grads, dz);
  ms[3] = now_ms();
  fl[3] = be->flops;
  if (rc == 0)
    rc = sd_vae_encode_backward(enc, dmoments, grads, NULL);
  ms[4] = now_ms();
  fl[4] = be->flops;
  if (rc == 0) {
    t->tape_bytes[1] = sd_vae_tape_bytes(dec);
    for (int k = 0; k < 4; k++) {
      t->flops[k] = fl[k + 1] - fl[k];
      if (ms[k + 1] - ms[k] < t->best[k])
        t->best[k] = ms[k + 1] - ms[k];
    }
  }
  sd_vae_tape_free(dec);
  sd_vae_tape_free(enc);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL_DIR [--size N] [--batch B] [--reps R] [--threads T]\n",
            argv[0]);
    return 2;
  }
  int size = 64, batch = 8, reps = 3, threads = 0;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--size") && i + 1 < argc)
      size = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
      batch = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else {
      fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  sd_model_files *files = NULL;
  sd_backend *be = sd_backend_cpu_create(threads);
  sd_weights *weights = NULL;
  sd_vae *vae = NULL;
  sd_grads *grads = NULL;
  sd_vae_trainer *trainer = NULL;
  int rc = 1;
  if (!be || sd_model_files_open(argv[1], NULL, NULL, &files) < 0 ||
      sd_weights_upload(be, files->vae_tensors, "vae", &weights) < 0 ||
      sd_vae_create(be, &files->vae, weights, &vae) < 0 ||
      sd_grads_create(be, weights, NULL, NULL, &grads) < 0) {
    fprintf(stderr, "setup: %s\n", sd_error_message());
    goto out;
  }
  const sd_vae_config *cfg = &files->vae;
  const int factor = 1 << (cfg->num_levels - 1), lat = size / factor;
  sd_dtype dt = be->ops->act_dtype;
  sd_tensor image = sd_tensor_4d(dt, batch, cfg->in_channels, size, size);
  sd_tensor moments = sd_tensor_4d(dt, batch, 2 * cfg->latent_channels, lat, lat);
  sd_tensor z = sd_tensor_4d(dt, batch, cfg->latent_channels, lat, lat);
  sd_tensor out = sd_tensor_4d(dt, batch, cfg->out_channels, size, size);
  sd_tensor dmoments = moments, dout = out, dz = z;
  if (upload_random(be, &image, 1) < 0 || upload_random(be, &z, 2) < 0 ||
      upload_random(be, &dout, 3) < 0 || upload_random(be, &dmoments, 4) < 0 ||
      sd_tensor_alloc_persistent(be, &moments) < 0 || sd_tensor_alloc_persistent(be, &out) < 0 ||
      sd_tensor_alloc_persistent(be, &dz) < 0) {
    fprintf(stderr, "inputs: %s\n", sd_error_message());
    goto out;
  }
  printf("%s: VAE %zu weights, %.1f MiB of gradients; image %d x %d, batch %d, %d threads\n",
         argv[1], sd_weights_count(weights), sd_grads_bytes(grads) / 1048576.0, size, size, batch,
         be->threads);
  timing t = {.best = {1e30, 1e30, 1e30, 1e30}};
  for (int r = 0; r < reps; r++)
    if (pass(be, vae, grads, &image, &moments, &dmoments, &z, &out, &dout, &dz, &t) < 0) {
      fprintf(stderr, "pass: %s\n", sd_error_message());
      goto out;
    }
  static const char *const what[4] = {"encoder forward", "decoder forward", "decoder backward",
                                      "encoder backward"};
  double total = 0;
  for (int k = 0; k < 4; k++) {
    printf("  %-17s %8.1f ms (%.2f GFLOP, %.1f GFLOP/s)\n", what[k], t.best[k], t.flops[k] / 1e9,
           t.flops[k] / 1e6 / t.best[k]);
    total += t.best[k];
  }
  printf("forward + backward %.1f ms; tapes %.1f MiB (encoder) + %.1f MiB (decoder), arena peak "
         "%.1f MiB\n",
         total, t.tape_bytes[0] / 1048576.0, t.tape_bytes[1] / 1048576.0,
         be->arena.peak_bytes / 1048576.0);

  sd_vae_train_config tcfg = sd_vae_train_config_init();
  float *eps = malloc((size_t)sd_tensor_numel(&z) * sizeof *eps);
  if (!eps || sd_vae_trainer_create(be, vae, weights, &tcfg, NULL, NULL, &trainer) < 0) {
    fprintf(stderr, "trainer: %s\n", sd_error_message());
    free(eps);
    goto out;
  }
  sd_test_fill_random(eps, (size_t)sd_tensor_numel(&z), 5, 1.0f);
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    sd_vae_step_report rep;
    double t0 = now_ms();
    if (sd_vae_trainer_step(trainer, &image, eps, NULL, &rep) < 0) {
      fprintf(stderr, "step: %s\n", sd_error_message());
      free(eps);
      goto out;
    }
    double ms = now_ms() - t0;
    best = ms < best ? ms : best;
    printf("  step %d: %.1f ms, loss %.5f\n", r, ms, rep.loss);
  }
  free(eps);
  printf("optimizer step (forward, loss, backward, clipping, AdamW, upload) %.1f ms\n", best);
  rc = 0;
  sd_tensor *all[] = {&image, &moments, &z, &out, &dmoments, &dout, &dz};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    sd_tensor_free(be, all[i]);
out:
  sd_vae_trainer_free(trainer);
  sd_grads_free(grads);
  sd_vae_free(vae);
  sd_weights_free(weights);
  sd_model_files_close(files);
  sd_backend_destroy(be);
  return rc;
}
