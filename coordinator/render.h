/* Rendering a batch of a job's items on one rank: the engine (opened once per rank) or, for
 * the coordinator benchmark, the null model (a pattern computed from the item index, no model
 * loaded). Each item's result goes to a sink: the output file when rank 0 renders itself, a
 * message to rank 0 on a worker. An item the engine fails on, or whose output has NaN/Inf, is
 * returned as failed with the reason; the run goes on. */
#ifndef SD_RUN_RENDER_H
#define SD_RUN_RENDER_H

#include "../jobs/job.h"
#include "../worker/pipeline/engine.h"

#include <stdbool.h>
#include <stdint.h>

/* Most LoRAs / embeddings of a job (the job schema's limit). */
#define SD_RENDER_MAX_ADAPTERS 32

/* Sizes every item of a job has, settled by rank 0 from the job and the model's configs. */
typedef struct sd_render_shape {
  int width, height;   /* pixels */
  int latent_channels; /* latents (latent_channels, latent_h, latent_w) */
  int latent_h, latent_w;
  int32_t pipeline; /* sd_pipeline_kind: TXT2IMG, or the one a job with images runs */
} sd_render_shape;

/* The output size diffusers gives input `in` in pipeline kind (the image's size rounded down to a
 * multiple of the VAE factor; for the x4 upscaler, to a multiple of 4 and times 4): reads the
 * image. -1 with an error naming the file when it cannot be read or is too small. */
int sd_render_input_size(const sd_job_input *in, sd_pipeline_kind kind, int factor, int *width,
                         int *height);
/* The strength and noise level an item renders with: the job's, or the pipeline's default
 * (strength 0.8 for image-to-image and depth-to-image, 1 for inpainting and the upscaler's whole
 * schedule; noise level 20 for the upscaler, -1 for pipelines without one). */
float sd_render_item_strength(sd_pipeline_kind kind, double job_strength);
int sd_render_item_noise_level(sd_pipeline_kind kind, int job_noise_level);

/* One item's result. rgb and latents are valid only during the sink call. */
typedef struct sd_item_result {
  int64_t index;
  bool done;            /* false: failed */
  const uint8_t *rgb;   /* (H, W, 3) when done */
  const float *latents; /* (C, h, w) when done */
  const char *reason;   /* why it failed; "" when done */
} sd_item_result;

/* Returns 0, or -1 (with error) to stop the batch. */
typedef int (*sd_result_sink)(void *ctx, const sd_item_result *result);

typedef struct sd_renderer sd_renderer;

/* engine_params NULL: the null model. group: the ranks this one renders each batch with
 * (sd_render_group; every rank of the group makes the same calls), NULL alone; ignored by the
 * null model. batch_size: the most items one call renders. The job's
 * LoRAs and embeddings are added to engine_params; a batch of another LoRA set than the loaded
 * one reopens the engine with that set's scales (LoRAs are merged into the weights). */
int sd_renderer_open(const sd_job *job, const sd_render_shape *shape,
                     const sd_engine_params *engine_params, sd_image_group *group, int batch_size,
                     sd_renderer **out);
void sd_renderer_close(sd_renderer *r);
/* "cpu, 4 threads", "cuda device 1", "null model" */
const char *sd_renderer_describe(const sd_renderer *r);
/* The engine's backend ("cpu", "cuda"), or "null" for the null model. */
const char *sd_renderer_backend(const sd_renderer *r);

/* Renders items indices[0 .. n) (n <= batch_size, all batchable with the first) and hands each
 * result to sink, in order. Item failures are results; -1 only when the sink fails or the
 * indices are wrong. */
int sd_renderer_render(sd_renderer *r, const int64_t *indices, int n, sd_result_sink sink,
                       void *sink_ctx);

/* The null model's image (H, W, 3) and latents (C, h, w) of item index: a pattern that differs
 * for every index. */
void sd_null_model_item(int64_t index, const sd_render_shape *shape, uint8_t *rgb, float *latents);

#endif
