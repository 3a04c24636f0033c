/* Batches of items on one rank (render.h). */
#include "render.h"

#include "../kernels/error.h"
#include "../worker/image/image.h"
#include "../worker/pipeline/depth_map.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sd_renderer {
  const sd_job *job;
  bool null_model;
  sd_engine *engine;     /* NULL for the null model */
  sd_image_group *group; /* NULL: this rank renders alone */
  /* the engine's parameters, with the job's adapters; the engine is reopened (LoRAs merged at
   * other scales) when a batch belongs to another LoRA set than the loaded one */
  sd_engine_params params;
  sd_lora_spec loras[SD_RENDER_MAX_ADAPTERS];
  sd_embedding_spec embeddings[SD_RENDER_MAX_ADAPTERS];
  int64_t lora_set; /* loaded; -1 before the first open */
  sd_render_shape shape;
  int capacity;               /* batch_size */
  sd_job_item *job_items;     /* (capacity) */
  sd_txt2img_item *items;     /* (capacity) */
  sd_txt2img_result *results; /* (capacity) */
  sd_image_cond *conds;       /* (capacity) the batch's input, one per item */
  uint8_t *null_rgb;          /* (H, W, 3) */
  float *null_latents;        /* (C, h, w) */
  char description[128];
  char reason[2048];
};

static size_t rgb_bytes(const sd_render_shape *s) {
  return (size_t)s->width * (size_t)s->height * 3;
}

static size_t latent_count(const sd_render_shape *s) {
  return (size_t)s->latent_channels * (size_t)s->latent_h * (size_t)s->latent_w;
}

void sd_null_model_item(int64_t index, const sd_render_shape *shape, uint8_t *rgb, float *latents) {
  uint64_t k = (uint64_t)index * 2654435761u;
  for (int y = 0; y < shape->height; y++)
    for (int x = 0; x < shape->width; x++)
      for (int c = 0; c < 3; c++)
        rgb[((size_t)y * (size_t)shape->width + (size_t)x) * 3 + (size_t)c] =
            (uint8_t)(k + (uint64_t)(x * 3 + y * 5 + c * 85));
  size_t n = latent_count(shape);
  for (size_t i = 0; i < n; i++)
    latents[i] = (float)((k + i) % 1001) / 1000.0f - 0.5f;
}

int sd_render_input_size(const sd_job_input *in, sd_pipeline_kind kind, int factor, int *width,
                         int *height) {
  sd_image image = {0};
  SD_TRY(sd_image_read_rgb(in->image, &image));
  int rc = sd_image_vae_size(in->image, image.width, image.height, factor, width, height);
  sd_image_free(&image);
  if (rc == 0 && kind == SD_PIPELINE_UPSCALE) {
    *width *= factor;
    *height *= factor;
  }
  return rc;
}

float sd_render_item_strength(sd_pipeline_kind kind, double job_strength) {
  if (kind == SD_PIPELINE_UPSCALE || job_strength == SD_JOB_STRENGTH_DEFAULT)
    return kind == SD_PIPELINE_INPAINT || kind == SD_PIPELINE_UPSCALE ? 1.0f : 0.8f;
  return (float)job_strength;
}

int sd_render_item_noise_level(sd_pipeline_kind kind, int job_noise_level) {
  if (kind != SD_PIPELINE_UPSCALE)
    return -1;
  return job_noise_level == SD_JOB_NOISE_LEVEL_DEFAULT ? 20 : job_noise_level;
}

/* Opens the engine with the LoRA scales of set `set`. */
static int open_engine(sd_renderer *r, int64_t set) {
  const sd_job_info *info = sd_job_get_info(r->job);
  double scales[SD_RENDER_MAX_ADAPTERS];
  SD_TRY(sd_job_lora_set(r->job, set, scales));
  for (int i = 0; i < info->n_loras; i++)
    r->loras[i] = (sd_lora_spec){info->loras[i].file, (float)scales[i]};
  sd_engine_close(r->engine);
  r->engine = NULL;
  r->lora_set = -1;
  SD_TRY(sd_engine_open(&r->params, &r->engine));
  r->lora_set = set;
  return 0;
}

int sd_renderer_open(const sd_job *job, const sd_render_shape *shape,
                     const sd_engine_params *engine_params, sd_image_group *group, int batch_size,
                     sd_renderer **out) {
  *out = NULL;
  sd_renderer *r = calloc(1, sizeof *r);
  if (!r)
    return SD_ERROR("out of memory");
  r->job = job;
  r->group = group;
  r->shape = *shape;
  r->capacity = batch_size;
  r->job_items = calloc((size_t)batch_size, sizeof *r->job_items);
  r->items = calloc((size_t)batch_size, sizeof *r->items);
  r->results = calloc((size_t)batch_size, sizeof *r->results);
  r->conds = calloc((size_t)batch_size, sizeof *r->conds);
  if (!r->job_items || !r->items || !r->results || !r->conds)
    goto out_of_memory;
  if (!engine_params) {
    r->null_model = true;
    r->null_rgb = malloc(rgb_bytes(shape));
    r->null_latents = malloc(latent_count(shape) * sizeof(float));
    if (!r->null_rgb || !r->null_latents)
      goto out_of_memory;
    snprintf(r->description, sizeof r->description, "null model");
    *out = r;
    return 0;
  }
  const sd_job_info *info = sd_job_get_info(job);
  if (info->n_loras > SD_RENDER_MAX_ADAPTERS || info->n_embeddings > SD_RENDER_MAX_ADAPTERS) {
    sd_renderer_close(r);
    return SD_ERROR("at most %d LoRAs and %d embeddings", SD_RENDER_MAX_ADAPTERS,
                    SD_RENDER_MAX_ADAPTERS);
  }
  r->params = *engine_params;
  /* a job that gives every image its depth map never runs the model's estimator */
  r->params.no_depth_estimator = info->n_depth_maps > 0;
  for (int i = 0; i < info->n_embeddings; i++)
    r->embeddings[i] = (sd_embedding_spec){info->embeddings[i].file, info->embeddings[i].token};
  r->params.loras = r->loras;
  r->params.lora_count = info->n_loras;
  r->params.embeddings = r->embeddings;
  r->params.embedding_count = info->n_embeddings;
  if (open_engine(r, 0) < 0) {
    sd_renderer_close(r);
    return -1;
  }
  const sd_backend *be = sd_engine_backend(r->engine);
  if (strcmp(be->ops->name, "cpu") == 0)
    snprintf(r->description, sizeof r->description, "cpu, %d thread%s", be->threads,
             be->threads == 1 ? "" : "s");
  else
    snprintf(r->description, sizeof r->description, "%s device %d", be->ops->name,
             engine_params->device_index);
  *out = r;
  return 0;

out_of_memory:
  sd_renderer_close(r);
  return SD_ERROR("out of memory for a batch of %d items of %dx%d", batch_size, shape->width,
                  shape->height);
}

void sd_renderer_close(sd_renderer *r) {
  if (!r)
    return;
  sd_engine_close(r->engine);
  free(r->job_items);
  free(r->items);
  free(r->results);
  free(r->conds);
  free(r->null_rgb);
  free(r->null_latents);
  free(r);
}

const char *sd_renderer_describe(const sd_renderer *r) {
  return r->description;
}

const char *sd_renderer_backend(const sd_renderer *r) {
  return r->null_model ? "null" : sd_engine_backend(r->engine)->ops->name;
}

static int render_null(sd_renderer *r, int n, sd_result_sink sink, void *sink_ctx) {
  for (int i = 0; i < n; i++) {
    sd_null_model_item(r->job_items[i].index, &r->shape, r->null_rgb, r->null_latents);
    sd_item_result res = {r->job_items[i].index, true, r->null_rgb, r->null_latents, ""};
    SD_TRY(sink(sink_ctx, &res));
  }
  return 0;
}

/* Every item of the batch failed with the current error message. */
static int fail_all(sd_renderer *r, int n, sd_result_sink sink, void *sink_ctx) {
  snprintf(r->reason, sizeof r->reason, "%s", sd_error_message());
  for (int i = 0; i < n; i++) {
    sd_item_result res = {r->job_items[i].index, false, NULL, NULL, r->reason};
    SD_TRY(sink(sink_ctx, &res));
  }
  return 0;
}

/* The batch's input (every item has the same) read now, checked to give the job's size, and
 * rendered by the job's pipeline; -1 with an error naming the file for an input that cannot be
 * used (the batch's items then fail with it). */
static int render_with_input(sd_renderer *r, const sd_txt2img_batch *batch, int n) {
  const sd_job_item *first = &r->job_items[0];
  sd_pipeline_kind kind = (sd_pipeline_kind)r->shape.pipeline;
  sd_job_input in;
  SD_TRY(sd_job_input_get(r->job, first->image_index, &in));
  sd_image init = {0}, mask = {0};
  float *depth = NULL;
  int depth_h = 0, depth_w = 0;
  int rc = sd_image_read_rgb(in.image, &init);
  if (rc == 0 && in.mask)
    rc = sd_image_read_rgb(in.mask, &mask);
  if (rc == 0 && in.depth_map)
    rc = sd_depth_map_read(in.depth_map, &depth, &depth_h, &depth_w);
  int factor = sd_engine_vae_scale_factor(r->engine), width = batch->width, height = batch->height;
  if (rc == 0 && !(kind == SD_PIPELINE_INPAINT &&
                   (sd_job_get_info(r->job)->width || sd_job_get_info(r->job)->height))) {
    rc = sd_image_vae_size(in.image, init.width, init.height, factor, &width, &height);
    if (rc == 0 && kind == SD_PIPELINE_UPSCALE) {
      width *= factor;
      height *= factor;
    }
  }
  if (rc == 0 && (width != batch->width || height != batch->height))
    rc = SD_ERROR("input %" PRId64 " '%s' (%dx%d) gives a %dx%d image; this job's images are "
                  "%dx%d (its first input's): every input of a job must give one size%s",
                  first->image_index, in.image, init.width, init.height, width, height,
                  batch->width, batch->height,
                  kind == SD_PIPELINE_INPAINT ? " (or set width and height to resize them all)"
                                              : "");
  if (rc == 0) {
    for (int i = 0; i < n; i++)
      r->conds[i] = (sd_image_cond){&init, in.mask ? &mask : NULL, depth, depth_h, depth_w};
    sd_image_params params = {
        .kind = kind,
        .strength = sd_render_item_strength(kind, first->strength),
        .conds = r->conds,
        .noise_level = sd_render_item_noise_level(kind, first->noise_level),
    };
    rc = sd_render_group(r->engine, r->group, batch, &params, r->items, n, NULL, NULL, r->results);
  }
  sd_image_free(&init);
  sd_image_free(&mask);
  free(depth);
  return rc;
}

static int render_engine(sd_renderer *r, int n, sd_result_sink sink, void *sink_ctx) {
  const sd_job_item *first = &r->job_items[0];
  if (first->lora_set_index != r->lora_set && open_engine(r, first->lora_set_index) < 0)
    return sd_error_context("reopening the model for LoRA set %" PRId64, first->lora_set_index);
  sd_txt2img_batch batch = {
      .width = r->shape.width,
      .height = r->shape.height,
      .steps = first->steps,
      .scheduler = first->scheduler == SD_JOB_SCHEDULER_DEFAULT
                       ? sd_engine_default_scheduler(r->engine)
                       : (sd_scheduler_kind)first->scheduler,
      .karras = first->karras,
      .rng = first->rng,
  };
  for (int i = 0; i < n; i++) {
    r->items[i].prompt = r->job_items[i].prompt;
    r->items[i].negative_prompt = r->job_items[i].negative_prompt;
    r->items[i].seed = r->job_items[i].seed;
    r->items[i].guidance_scale = (float)r->job_items[i].guidance_scale;
  }
  memset(r->results, 0, (size_t)n * sizeof *r->results);
  int rendered = first->image_index < 0 ? sd_render_group(r->engine, r->group, &batch, NULL,
                                                          r->items, n, NULL, NULL, r->results)
                                        : render_with_input(r, &batch, n);
  if (rendered < 0) {
    sd_error_context("rendering");
    return fail_all(r, n, sink, sink_ctx);
  }
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    sd_item_result res = {
        r->job_items[i].index, r->results[i].finite, r->results[i].rgb, r->results[i].latents,
        r->results[i].finite ? "" : "non-finite values (NaN or Inf) in the latents or image"};
    rc = sink(sink_ctx, &res);
  }
  for (int i = 0; i < n; i++)
    sd_txt2img_result_free(&r->results[i]);
  return rc;
}

int sd_renderer_render(sd_renderer *r, const int64_t *indices, int n, sd_result_sink sink,
                       void *sink_ctx) {
  if (n < 1 || n > r->capacity)
    return SD_ERROR("a batch of %d items (1 to %d)", n, r->capacity);
  for (int i = 0; i < n; i++) {
    SD_TRY(sd_job_item_get(r->job, indices[i], &r->job_items[i]));
    if (!sd_job_items_batchable(&r->job_items[0], &r->job_items[i]))
      return SD_ERROR("items %" PRId64 " and %" PRId64 " cannot share a batch", indices[0],
                      indices[i]);
  }
  if (r->null_model)
    return render_null(r, n, sink, sink_ctx);
  return render_engine(r, n, sink, sink_ctx);
}
