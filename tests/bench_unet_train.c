/* Time of the UNet's training step on the CPU backend: sd_unet_forward_train + sd_unet_backward
 * (all weight gradients, d(sample), d(context)) on random inputs, best of a few repetitions.
 * Run by hand (not a ctest), e.g.
 *   bench_unet_train tests/fixtures/tiny-sd1 --size 16 --batch 2
 *   sdbatch make-demo-model /tmp/x/demo-full --full-size
 *   bench_unet_train /tmp/x/demo-full --size 64 --batch 1 --reps 2 [--checkpoint]
 * GFLOP/s counts the GEMM-like ops (linear, conv2d, attention and their backwards) as the backend
 * counts them (kernels/ops.h: be->flops). */
#include "test_util.h"

#include "io/model_files.h"
#include "io/weights.h"
#include "model/grads.h"
#include "model/unet.h"
#include "model/unet_train.h"

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

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr,
            "usage: %s MODEL_DIR [--size N] [--batch B] [--reps R] [--checkpoint] "
            "[--threads T]\n",
            argv[0]);
    return 2;
  }
  int size = 64, batch = 1, reps = 2, threads = 0;
  sd_unet_tape_mode mode = SD_UNET_TAPE_FULL;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--size") && i + 1 < argc)
      size = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
      batch = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--checkpoint"))
      mode = SD_UNET_TAPE_CHECKPOINT;
    else {
      fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  sd_model_files *files = NULL;
  sd_backend *be = sd_backend_cpu_create(threads);
  sd_weights *weights = NULL;
  sd_unet *unet = NULL;
  sd_grads *grads = NULL;
  int rc = 1;
  if (!be || sd_model_files_open(argv[1], NULL, NULL, &files) < 0 ||
      sd_weights_upload(be, files->unet_tensors, "unet", &weights) < 0 ||
      sd_unet_create(be, &files->unet, weights, &unet) < 0 ||
      sd_grads_create(be, weights, NULL, NULL, &grads) < 0) {
    fprintf(stderr, "setup: %s\n", sd_error_message());
    goto out;
  }
  const sd_unet_config *cfg = &files->unet;
  sd_dtype dt = be->ops->act_dtype;
  sd_tensor sample = sd_tensor_4d(dt, batch, cfg->in_channels, size, size);
  sd_tensor context = sd_tensor_3d(dt, batch, 77, cfg->cross_attention_dim);
  sd_tensor out = sd_tensor_4d(dt, batch, cfg->out_channels, size, size);
  sd_tensor dout = out, dsample = sample, dcontext = context;
  if (upload_random(be, &sample, 1) < 0 || upload_random(be, &context, 2) < 0 ||
      upload_random(be, &dout, 3) < 0 || sd_tensor_alloc_persistent(be, &out) < 0 ||
      sd_tensor_alloc_persistent(be, &dsample) < 0 ||
      sd_tensor_alloc_persistent(be, &dcontext) < 0) {
    fprintf(stderr, "inputs: %s\n", sd_error_message());
    goto out;
  }
  printf("%s: UNet %zu weights, %.1f MiB of gradients; latent %d x %d, batch %d, %s tape, %d "
         "threads\n",
         argv[1], sd_weights_count(weights), sd_grads_bytes(grads) / 1048576.0, size, size, batch,
         mode == SD_UNET_TAPE_FULL ? "full" : "checkpointed", be->threads);
  double best_f = 1e30, best_b = 1e30;
  uint64_t flops_f = 0, flops_b = 0;
  size_t tape_bytes = 0;
  for (int r = 0; r < reps; r++) {
    sd_unet_tape *tape = NULL;
    uint64_t f0 = be->flops;
    double t0 = now_ms();
    if (sd_unet_forward_train(unet, &sample, 500.0, &context, mode, &out, &tape) < 0) {
      fprintf(stderr, "forward: %s\n", sd_error_message());
      goto out;
    }
    double t1 = now_ms();
    uint64_t f1 = be->flops;
    tape_bytes = sd_unet_tape_bytes(tape);
    int bw = sd_unet_backward(tape, &dout, grads, &dsample, &dcontext);
    double t2 = now_ms();
    sd_unet_tape_free(tape);
    if (bw < 0) {
      fprintf(stderr, "backward: %s\n", sd_error_message());
      goto out;
    }
    flops_f = f1 - f0;
    flops_b = be->flops - f1;
    printf("  rep %d: forward %.0f ms, backward %.0f ms\n", r, t1 - t0, t2 - t1);
    best_f = t1 - t0 < best_f ? t1 - t0 : best_f;
    best_b = t2 - t1 < best_b ? t2 - t1 : best_b;
  }
  printf("forward %.0f ms (%.1f GFLOP, %.1f GFLOP/s), backward %.0f ms (%.1f GFLOP, %.1f GFLOP/s), "
         "step %.0f ms (%.1f GFLOP/s); tape %.1f MiB, arena peak %.1f MiB\n",
         best_f, flops_f / 1e9, flops_f / 1e6 / best_f, best_b, flops_b / 1e9,
         flops_b / 1e6 / best_b, best_f + best_b, (flops_f + flops_b) / 1e6 / (best_f + best_b),
         tape_bytes / 1048576.0, be->arena.peak_bytes / 1048576.0);
  rc = 0;
  sd_tensor_free(be, &sample);
  sd_tensor_free(be, &context);
  sd_tensor_free(be, &out);
  sd_tensor_free(be, &dout);
  sd_tensor_free(be, &dsample);
  sd_tensor_free(be, &dcontext);
out:
  sd_grads_free(grads);
  sd_unet_free(unet);
  sd_weights_free(weights);
  sd_model_files_close(files);
  sd_backend_destroy(be);
  return rc;
}
