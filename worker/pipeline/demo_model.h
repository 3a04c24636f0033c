/* Random-weight models in diffusers folder layout: the quick start's built-in demo model (tiny,
 * SD 1.x block structure), a full-size SD 1.5-shaped model for benchmarks, and the untrained
 * starting point of the project's own shapes model (`sdbatch train-demo`, docs/demo-model.md).
 * Their pictures are noise; they exist to run the real code paths without downloading weights. */
#ifndef SD_DEMO_MODEL_H
#define SD_DEMO_MODEL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sd_demo_model_params {
  bool full_size;     /* SD 1.5 shapes (860M-parameter UNet) instead of the tiny model */
  uint64_t seed;      /* of the random weights */
  const char *bpe_gz; /* CLIP BPE file the tokenizer folder is made from */
  bool shapes;        /* the shapes model's architecture (64x64 pictures, a factor-4 VAE, a
                         2-level UNet and a 64-wide CLIP; full_size ignored) */
} sd_demo_model_params;

/* Writes the model folder dir (must not exist, or be empty). The folder is assembled under a
 * temporary name and renamed into place, so a failure leaves nothing half-written. */
int sd_demo_model_write(const char *dir, const sd_demo_model_params *params);

#endif
