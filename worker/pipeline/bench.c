/* Stage timings for `sdbatch bench` (see bench.h). */
#include "bench.h"

#include "engine_internal.h"

#include "../io/dpt_files.h"
#include "../model/dpt.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

/* Fills a persistent tensor with a deterministic pattern in about [-1, 1]. */
static int fill_pattern(sd_backend *be, sd_tensor *t) {
  size_t n = (size_t)sd_tensor_numel(t);
  float *host = malloc(n * sizeof *host);
  if (!host)
    return SD_ERROR("out of host memory");
  for (size_t i = 0; i < n; i++)
    host[i] = sinf(0.37f * (float)i) * 0.9f;
  int rc = sd_tensor_upload_f32(be, t, host);
  free(host);
  return rc;
}

typedef int (*stage_fn)(sd_engine *engine, void *ctx);

/* One warm-up call of fn(engine, ctx) on be, then `repeats` timed calls. */
static int time_stage_on(sd_backend *be, sd_engine *engine, stage_fn fn, void *ctx, int repeats,
                         sd_stage_timing *out) {
  memset(out, 0, sizeof *out);
  SD_TRY(fn(engine, ctx));
  SD_TRY(be->ops->synchronize(be));
  double total = 0, best = INFINITY;
  for (int i = 0; i < repeats; i++) {
    uint64_t flops_before = be->flops;
    double start = now_ms();
    SD_TRY(fn(engine, ctx));
    SD_TRY(be->ops->synchronize(be));
    double elapsed = now_ms() - start;
    out->flops_per_call = be->flops - flops_before;
    total += elapsed;
    if (elapsed < best)
      best = elapsed;
  }
  out->calls = repeats;
  out->ms_per_call = total / repeats;
  out->ms_best = best;
  return 0;
}

static int time_stage(sd_engine *engine, stage_fn fn, void *ctx, int repeats,
                      sd_stage_timing *out) {
  return time_stage_on(engine->be, engine, fn, ctx, repeats, out);
}

typedef struct text_ctx {
  const int32_t *ids;
  int rows;
  sd_tensor *hidden;
} text_ctx;

static int run_text(sd_engine *engine, void *ctx) {
  text_ctx *c = ctx;
  return sd_clip_text_forward(engine->clip, c->ids, c->rows, c->hidden);
}

int sd_bench_text_encoder(sd_engine *engine, int rows, int repeats, sd_stage_timing *out) {
  int length = sd_tokenizer_max_length(engine->tokenizer);
  int32_t *ids = malloc((size_t)rows * length * sizeof *ids);
  sd_tensor hidden =
      sd_tensor_3d(engine->be->ops->act_dtype, rows, length, engine->files->clip.hidden_size);
  int rc = -1;
  if (!ids) {
    SD_ERROR("out of host memory");
    goto out;
  }
  for (int r = 0; r < rows; r++)
    if (sd_tokenizer_encode(engine->tokenizer, "a photo of an astronaut riding a horse on mars",
                            ids + (size_t)r * length) < 0)
      goto out;
  if (sd_tensor_alloc_persistent(engine->be, &hidden) < 0)
    goto out;
  text_ctx ctx = {ids, rows, &hidden};
  rc = time_stage(engine, run_text, &ctx, repeats, out);
out:
  sd_tensor_free(engine->be, &hidden);
  free(ids);
  return rc;
}

typedef struct unet_ctx {
  sd_tensor *sample, *context, *out;
  const int32_t *labels; /* (rows) class labels for a UNet with class embeddings, else NULL */
} unet_ctx;

static int run_unet(sd_engine *engine, void *ctx) {
  unet_ctx *c = ctx;
  if (c->labels)
    return sd_unet_forward_labels(engine->unet, c->sample, 500.0, c->labels, c->context, c->out);
  return sd_unet_forward(engine->unet, c->sample, 500.0, c->context, c->out);
}

int sd_bench_unet(sd_engine *engine, int rows, int width, int height, int repeats,
                  sd_stage_timing *out) {
  sd_backend *be = engine->be;
  const sd_model_files *m = engine->files;
  int f = sd_engine_vae_scale_factor(engine);
  sd_dtype dt = be->ops->act_dtype;
  sd_tensor sample = sd_tensor_4d(dt, rows, m->unet.in_channels, height / f, width / f);
  sd_tensor result = sd_tensor_4d(dt, rows, m->unet.out_channels, height / f, width / f);
  sd_tensor context =
      sd_tensor_3d(dt, rows, m->clip.max_position_embeddings, m->unet.cross_attention_dim);
  int rc = -1;
  /* the x4 upscaler's class labels: its default noise level 20 */
  int32_t *labels = NULL;
  if (m->unet.num_class_embeds > 0) {
    labels = malloc((size_t)rows * sizeof *labels);
    if (!labels) {
      SD_ERROR("out of memory");
      goto out;
    }
    for (int r = 0; r < rows; r++)
      labels[r] = m->unet.num_class_embeds > 20 ? 20 : 0;
  }
  if (sd_tensor_alloc_persistent(be, &sample) < 0 || sd_tensor_alloc_persistent(be, &result) < 0 ||
      sd_tensor_alloc_persistent(be, &context) < 0 || fill_pattern(be, &sample) < 0 ||
      fill_pattern(be, &context) < 0)
    goto out;
  unet_ctx ctx = {&sample, &context, &result, labels};
  rc = time_stage(engine, run_unet, &ctx, repeats, out);
out:
  free(labels);
  sd_tensor_free(be, &context);
  sd_tensor_free(be, &result);
  sd_tensor_free(be, &sample);
  return rc;
}

typedef struct vae_ctx {
  sd_tensor *latent, *image;
} vae_ctx;

static int run_vae(sd_engine *engine, void *ctx) {
  vae_ctx *c = ctx;
  return sd_vae_decode(engine->vae, c->latent, c->image);
}

int sd_bench_vae(sd_engine *engine, int images, int width, int height, int repeats,
                 sd_stage_timing *out) {
  sd_backend *be = engine->be;
  const sd_model_files *m = engine->files;
  int f = sd_engine_vae_scale_factor(engine);
  sd_dtype dt = be->ops->act_dtype;
  sd_tensor latent = sd_tensor_4d(dt, images, m->vae.latent_channels, height / f, width / f);
  sd_tensor image = sd_tensor_4d(dt, images, m->vae.out_channels, height, width);
  int rc = -1;
  if (sd_tensor_alloc_persistent(be, &latent) < 0 || sd_tensor_alloc_persistent(be, &image) < 0 ||
      fill_pattern(be, &latent) < 0)
    goto out;
  vae_ctx ctx = {&latent, &image};
  rc = time_stage(engine, run_vae, &ctx, repeats, out);
out:
  sd_tensor_free(be, &image);
  sd_tensor_free(be, &latent);
  return rc;
}

static int run_vae_encoder(sd_engine *engine, void *ctx) {
  vae_ctx *c = ctx;
  return sd_vae_encode(engine->vae, c->image, c->latent);
}

int sd_bench_vae_encoder(sd_engine *engine, int images, int width, int height, int repeats,
                         sd_stage_timing *out) {
  sd_backend *be = engine->be;
  const sd_model_files *m = engine->files;
  int f = sd_engine_vae_scale_factor(engine);
  sd_dtype dt = be->ops->act_dtype;
  sd_tensor image = sd_tensor_4d(dt, images, m->vae.in_channels, height, width);
  sd_tensor moments = sd_tensor_4d(dt, images, 2 * m->vae.latent_channels, height / f, width / f);
  int rc = -1;
  if (sd_tensor_alloc_persistent(be, &image) < 0 || sd_tensor_alloc_persistent(be, &moments) < 0 ||
      fill_pattern(be, &image) < 0)
    goto out;
  vae_ctx ctx = {&moments, &image};
  rc = time_stage(engine, run_vae_encoder, &ctx, repeats, out);
out:
  sd_tensor_free(be, &moments);
  sd_tensor_free(be, &image);
  return rc;
}

typedef struct depth_ctx {
  sd_dpt *model;
  sd_tensor *pixels, *depth;
} depth_ctx;

static int run_depth(sd_engine *engine, void *ctx) {
  (void)engine;
  depth_ctx *c = ctx;
  return sd_dpt_forward(c->model, c->pixels, c->depth);
}

int sd_bench_depth_estimator(sd_backend *be, const char *dir, int repeats, int *side,
                             sd_stage_timing *out) {
  sd_dpt_files *files = NULL;
  sd_weights *weights = NULL;
  sd_dpt *model = NULL;
  sd_tensor pixels = {0}, depth = {0};
  int rc = -1;
  if (sd_dpt_files_open(dir, &files) < 0 ||
      sd_weights_upload(be, files->tensors, "depth_estimator", &weights) < 0 ||
      sd_dpt_create(be, &files->cfg, weights, &model) < 0)
    goto out;
  int64_t s = files->cfg.image_size, oh, ow;
  sd_dpt_output_size(model, s, s, &oh, &ow);
  pixels = sd_tensor_4d(be->ops->act_dtype, 1, files->cfg.num_channels, s, s);
  depth = sd_tensor_3d(be->ops->act_dtype, 1, oh, ow);
  if (sd_tensor_alloc_persistent(be, &pixels) < 0 || sd_tensor_alloc_persistent(be, &depth) < 0 ||
      fill_pattern(be, &pixels) < 0)
    goto out;
  *side = (int)s;
  depth_ctx ctx = {model, &pixels, &depth};
  rc = time_stage_on(be, NULL, run_depth, &ctx, repeats, out);
out:
  sd_tensor_free(be, &depth);
  sd_tensor_free(be, &pixels);
  sd_dpt_free(model);
  sd_weights_free(weights);
  sd_dpt_files_close(files);
  return rc;
}
