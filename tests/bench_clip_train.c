/* Time and memory of the CLIP text encoder's training step on the CPU backend:
 * sd_clip_text_forward_train + sd_clip_text_backward (every weight's gradient) on token ids of a
 * prompt padded to 77, best of a few repetitions. Run by hand (not a ctest), e.g.
 *   bench_clip_train tests/fixtures/tiny-sd1/text_encoder --batch 2
 *   bench_clip_train DIR --batch 1 --reps 3     (DIR: a text_encoder folder, config.json and
 *                                                model.safetensors, e.g. SD 1.5's)
 * GFLOP/s counts the GEMM-like ops as the backend counts them (kernels/ops.h: be->flops). */
#include "test_util.h"

#include "io/config_json.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/clip_text.h"
#include "model/clip_text_train.h"
#include "model/grads.h"

#include "error.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The text encoder's weights from dir/model.safetensors into a tensor map. */
static int load_weights(const char *dir, sd_safetensors **file, sd_tensor_map *map) {
  char path[1024];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  SD_TRY(sd_safetensors_open(path, file));
  for (size_t i = 0; i < sd_safetensors_count(*file); i++) {
    const sd_st_tensor *t = sd_safetensors_at(*file, i);
    SD_TRY(sd_tensor_map_put(map, t->name, t->dtype, t->ndim, t->shape, t->data));
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s TEXT_ENCODER_DIR [--batch B] [--reps R] [--threads T]\n", argv[0]);
    return 2;
  }
  int batch = 1, reps = 3, threads = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--batch"))
      batch = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reps"))
      reps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--threads"))
      threads = atoi(argv[i + 1]);
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/config.json", argv[1]);
  sd_clip_config cfg;
  sd_backend *be = sd_backend_cpu_create(threads);
  sd_safetensors *file = NULL;
  sd_tensor_map *map = sd_tensor_map_create();
  sd_weights *weights = NULL;
  sd_clip_text *clip = NULL;
  sd_grads *grads = NULL;
  int32_t *ids = NULL;
  sd_tensor hidden = {0}, dhidden = {0};
  int rc = 1;
  if (!be || !map || sd_clip_config_read(path, &cfg) < 0 || load_weights(argv[1], &file, map) < 0 ||
      sd_weights_upload(be, map, "text_encoder", &weights) < 0 ||
      sd_clip_text_create(be, &cfg, weights, &clip) < 0 ||
      sd_grads_create(be, weights, NULL, NULL, &grads) < 0) {
    fprintf(stderr, "setup: %s\n", sd_error_message());
    goto out;
  }
  const int64_t len = cfg.max_position_embeddings, c = cfg.hidden_size;
  ids = malloc((size_t)(batch * len) * sizeof *ids);
  float *r = malloc((size_t)(batch * len * c) * sizeof *r);
  for (int64_t i = 0; ids && i < batch * len; i++) /* BOS, 10 words, EOS padding */
    ids[i] = i % len == 0 ? 49406 : i % len <= 10 ? (int32_t)(320 + 97 * (i % len)) : 49407;
  hidden = sd_tensor_3d(be->ops->act_dtype, batch, len, c);
  dhidden = hidden;
  if (r)
    sd_test_fill_random(r, (size_t)(batch * len * c), 7, 1.0f);
  if (!ids || !r || sd_tensor_alloc_persistent(be, &hidden) < 0 ||
      sd_tensor_alloc_persistent(be, &dhidden) < 0 || sd_tensor_upload_f32(be, &dhidden, r) < 0) {
    free(r);
    fprintf(stderr, "inputs: %s\n", sd_error_message());
    goto out;
  }
  free(r);
  double best_f = 1e30, best_b = 1e30;
  uint64_t flops_f = 0, flops_b = 0;
  size_t tape_bytes = 0;
  for (int k = 0; k < reps; k++) {
    sd_clip_text_tape *tape = NULL;
    uint64_t f0 = be->flops;
    double t0 = now_ms();
    if (sd_clip_text_forward_train(clip, ids, batch, &hidden, &tape) < 0) {
      fprintf(stderr, "forward: %s\n", sd_error_message());
      goto out;
    }
    double t1 = now_ms();
    uint64_t f1 = be->flops;
    int ok = sd_clip_text_backward(tape, &dhidden, grads) == 0;
    double t2 = now_ms();
    tape_bytes = sd_clip_text_tape_bytes(tape);
    sd_clip_text_tape_free(tape);
    if (!ok) {
      fprintf(stderr, "backward: %s\n", sd_error_message());
      goto out;
    }
    flops_f = f1 - f0;
    flops_b = be->flops - f1;
    best_f = t1 - t0 < best_f ? t1 - t0 : best_f;
    best_b = t2 - t1 < best_b ? t2 - t1 : best_b;
  }
  /* the claim of clip_text_train.h at these shapes: the training forward's output is the
   * inference forward's, bit for bit */
  size_t n = (size_t)sd_tensor_numel(&hidden);
  float *train_out = malloc(n * sizeof *train_out), *infer_out = malloc(n * sizeof *infer_out);
  bool same = train_out && infer_out && sd_tensor_download_f32(be, &hidden, train_out) == 0 &&
              sd_clip_text_forward(clip, ids, batch, &hidden) == 0 &&
              sd_tensor_download_f32(be, &hidden, infer_out) == 0 &&
              memcmp(train_out, infer_out, n * sizeof *train_out) == 0;
  free(train_out);
  free(infer_out);
  printf("%s: batch %d, %d threads: forward (training) %.1f ms (%.2f GFLOP, %.1f GFLOP/s), "
         "backward %.1f ms (%.2f GFLOP, %.1f GFLOP/s); tape %.2f MiB, arena peak %.2f MiB, "
         "gradients %.1f MiB; training forward %s the inference forward\n",
         argv[1], batch, be->threads, best_f, flops_f / 1e9, flops_f / 1e6 / best_f, best_b,
         flops_b / 1e9, flops_b / 1e6 / best_b, tape_bytes / 1048576.0,
         be->arena.peak_bytes / 1048576.0, sd_grads_bytes(grads) / 1048576.0,
         same ? "bit for bit" : "DIFFERS from");
  rc = same ? 0 : 1;
out:
  free(ids);
  if (be) {
    sd_tensor_free(be, &hidden);
    sd_tensor_free(be, &dhidden);
  }
  sd_grads_free(grads);
  sd_clip_text_free(clip);
  sd_weights_free(weights);
  sd_tensor_map_free(map);
  sd_safetensors_close(file);
  sd_backend_destroy(be);
  return rc;
}
