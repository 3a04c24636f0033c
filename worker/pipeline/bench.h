/* Timing the engine's stages for `sdbatch bench`: each stage on random inputs of the real shapes,
 * after a warm-up call, with the backend synchronised around the timed region. */
#ifndef SD_BENCH_H
#define SD_BENCH_H

#include "engine.h"

#include <stdint.h>

typedef struct sd_stage_timing {
  double ms_per_call; /* mean over the timed calls */
  double ms_best;
  uint64_t flops_per_call; /* GEMM-like FLOPs (linear, conv2d, attention) */
  int calls;
} sd_stage_timing;

/* Text encoder on rows sequences. */
int sd_bench_text_encoder(sd_engine *engine, int rows, int repeats, sd_stage_timing *out);
/* One UNet call on (rows, C, height/f, width/f) latents with rows contexts. */
int sd_bench_unet(sd_engine *engine, int rows, int width, int height, int repeats,
                  sd_stage_timing *out);
/* VAE decode of images latents to width x height. */
int sd_bench_vae(sd_engine *engine, int images, int width, int height, int repeats,
                 sd_stage_timing *out);
/* The depth estimator in dir (a depth model's depth_estimator/: DPTForDepthEstimation) on be,
 * one image at the size the model takes (its image_size square); *side gets that size. */
int sd_bench_depth_estimator(sd_backend *be, const char *dir, int repeats, int *side,
                             sd_stage_timing *out);

/* VAE encoder (img2img, inpainting) of images width x height. */
int sd_bench_vae_encoder(sd_engine *engine, int images, int width, int height, int repeats,
                         sd_stage_timing *out);

#endif
