/* Text-to-image, as diffusers' StableDiffusionPipeline: encode prompts (with negative prompts for
 * classifier-free guidance), draw each item's initial latent from its own generator, run the
 * scheduler loop with the UNet on [uncond, cond] batches, decode with the VAE, round to uint8. */
#include "engine_internal.h"

#include "../../cluster/comm.h"
#include "../../kernels/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int sd_txt2img_check(const sd_engine *engine, const sd_txt2img_batch *batch) {
  return sd_txt2img_check_model(engine->files, batch);
}

/* The size, steps and scheduler rules every pipeline shares. */
static int check_batch(const sd_model_files *model, const sd_txt2img_batch *batch) {
  int factor = 1 << (model->vae.num_levels - 1);
  /* the UNet resizes its up-sampled maps to the skips' sizes, so odd latent sides are fine */
  if (batch->width <= 0 || batch->height <= 0 || batch->width % factor || batch->height % factor)
    return SD_ERROR("width and height must be positive multiples of %d (got %dx%d)", factor,
                    batch->width, batch->height);
  if (batch->width > 8192 || batch->height > 8192)
    return SD_ERROR("width and height must be at most 8192 (got %dx%d)", batch->width,
                    batch->height);
  if (batch->steps < 1 || batch->steps > model->scheduler.num_train_timesteps)
    return SD_ERROR("steps must be between 1 and %d (got %d)", model->scheduler.num_train_timesteps,
                    batch->steps);
  if (batch->karras && !sd_scheduler_supports_karras(batch->scheduler))
    return SD_ERROR("scheduler %s has no Karras sigma schedule",
                    sd_scheduler_kind_name(batch->scheduler));
  return 0;
}

int sd_txt2img_check_model(const sd_model_files *model, const sd_txt2img_batch *batch) {
  return sd_render_check_model(model, batch, false);
}

int sd_render_check_model(const sd_model_files *model, const sd_txt2img_batch *batch,
                          bool image_conditioned) {
  SD_TRY(check_batch(model, batch));
  if (!image_conditioned && model->unet.in_channels != model->vae.latent_channels)
    return SD_ERROR(
        "this model's UNet takes %d input channels (an inpainting, depth or upscaler model); "
        "txt2img needs %d",
        model->unet.in_channels, model->vae.latent_channels);
  return 0;
}

int sd_render_check(const sd_engine *engine, const sd_txt2img_batch *batch,
                    const sd_image_params *image) {
  if (!image)
    return sd_txt2img_check(engine, batch);
  SD_TRY(check_batch(engine->files, batch));
  sd_pipeline_kind kind;
  SD_TRY(sd_pipeline_choose(engine->files, true, image->kind == SD_PIPELINE_INPAINT,
                            image->kind == SD_PIPELINE_DEPTH, &kind));
  if (kind != image->kind)
    return SD_ERROR("the %s pipeline cannot run this model", sd_pipeline_kind_name(image->kind));
  if (kind == SD_PIPELINE_UPSCALE) {
    if (image->strength != 1.0f)
      return SD_ERROR("the x4 upscaler runs the whole schedule: it has no strength");
    int most = sd_engine_max_noise_level(engine);
    if (image->noise_level < 0 || image->noise_level > most)
      return SD_ERROR("noise level %d: this upscaler takes 0 to %d (its max_noise_level)",
                      image->noise_level, most);
    return 0;
  }
  if (!(image->strength >= 0.0f && image->strength <= 1.0f))
    return SD_ERROR("strength must be in [0, 1] (got %g)", (double)image->strength);
  if ((int)(batch->steps * (double)image->strength) < 1)
    return SD_ERROR("strength %g with %d steps runs no step (diffusers needs steps x strength "
                    ">= 1)",
                    (double)image->strength, batch->steps);
  return 0;
}

int sd_vae_tiling_parse(const char *name, sd_vae_tiling *out) {
  static const sd_vae_tiling kinds[3] = {SD_VAE_TILING_AUTO, SD_VAE_TILING_ON, SD_VAE_TILING_OFF};
  for (int i = 0; i < 3; i++)
    if (!strcmp(name, sd_vae_tiling_name(kinds[i]))) {
      *out = kinds[i];
      return 0;
    }
  return SD_ERROR("unknown VAE tiling '%s' (expected auto, on or off)", name);
}

const char *sd_vae_tiling_name(sd_vae_tiling tiling) {
  switch (tiling) {
  case SD_VAE_TILING_ON:
    return "on";
  case SD_VAE_TILING_OFF:
    return "off";
  default:
    return "auto";
  }
}

/* Whether a batch decodes in tiles (of the VAE's sample_size), see sd_vae_tiling. */
static bool decode_tiled(const sd_engine *engine, const sd_txt2img_batch *batch) {
  const sd_model_files *model = engine->files;
  if (engine->vae_tiling != SD_VAE_TILING_AUTO)
    return engine->vae_tiling == SD_VAE_TILING_ON;
  return batch->width > 2 * model->vae.sample_size || batch->height > 2 * model->vae.sample_size;
}

typedef struct noise_source {
  sd_rng *rngs; /* one generator per item, all of one kind */
  int items;
  size_t per_item;      /* elements per item */
  float *host;          /* (items, per_item): the cpu kind's draws */
  uint64_t *seeds;      /* (items): the cuda kind's generators for sd_op_randn_philox */
  uint64_t *offsets;    /* (items) */
  const sd_spatial *sp; /* NULL, or the decomposition whose bands the draws are cut to */
  int64_t height;       /* of the whole latent, for the cut */
} noise_source;

/* out (n, C, h, w) = each item's next torch.randn draw. The cuda kind draws on the backend
 * (sd_op_randn_philox, nothing crosses from the host but seeds and offsets); the cpu kind
 * (MT19937) draws on the host and uploads. */
static int draw_noise(noise_source *src, sd_backend *be, sd_tensor *out) {
  if (src->rngs[0].kind == SD_RNG_CUDA) {
    for (int i = 0; i < src->items; i++)
      SD_TRY(sd_rng_philox_next(&src->rngs[i], &src->seeds[i], &src->offsets[i]));
    return sd_op_randn_philox(be, src->seeds, src->offsets, out);
  }
  for (int i = 0; i < src->items; i++)
    SD_TRY(sd_rng_randn(&src->rngs[i], src->host + (size_t)i * src->per_item, src->per_item));
  return sd_tensor_upload_f32(be, out, src->host);
}

/* out (n, C, rows, w): this rank's band of the whole draw, so that every band holds the numbers
 * one rank would have there (each rank draws the whole latent: a few hundred KB). */
static int draw_noise_band(noise_source *src, sd_backend *be, sd_tensor *out) {
  if (!src->sp)
    return draw_noise(src, be, out);
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor whole = *out; /* (n, C, h, w) */
  whole.shape[2] = src->height;
  int rc = sd_tensor_alloc(be, &whole);
  if (rc == 0)
    rc = draw_noise(src, be, &whole);
  if (rc == 0)
    rc = sd_spatial_cut(be, src->sp, &whole, out);
  sd_arena_release(be, mark);
  return rc;
}

/* Fills noise (n, C, h, w) with each item's next torch.randn draw (ancestral samplers). */
static int fill_noise(void *ctx, sd_backend *be, sd_tensor *noise) {
  return draw_noise_band(ctx, be, noise);
}

/* ids (L) of a prompt, multi-vector embedding tokens expanded as diffusers does. */
static int encode_prompt(const sd_engine *engine, const char *prompt, int32_t *ids) {
  char *expanded;
  SD_TRY(sd_engine_expand_prompt(engine, prompt, &expanded));
  int rc = sd_tokenizer_encode(engine->tokenizer, expanded, ids);
  free(expanded);
  return rc;
}

/* ids (rows, L): [negatives..., prompts...] with CFG, [prompts...] without. */
static int tokenize_batch(const sd_engine *engine, const sd_txt2img_item *items, int n, bool cfg,
                          int32_t *ids) {
  int length = sd_tokenizer_max_length(engine->tokenizer);
  for (int i = 0; i < n; i++) {
    int32_t *cond = ids + (size_t)((cfg ? n : 0) + i) * length;
    if (encode_prompt(engine, items[i].prompt, cond) < 0)
      return sd_error_context("prompt of item %d", i);
    if (cfg && encode_prompt(engine, items[i].negative_prompt ? items[i].negative_prompt : "",
                             ids + (size_t)i * length) < 0)
      return sd_error_context("negative prompt of item %d", i);
  }
  return 0;
}

/* guided (n, C, h, w) from noise_pred (2n, C, h, w) = [uncond; cond], per item:
 * uncond + g * (cond - uncond), evaluated as diffusers does; cond alone when g <= 1. */
static int apply_guidance(sd_backend *be, const sd_txt2img_item *items, int n,
                          const sd_tensor *noise_pred, sd_tensor *guided) {
  for (int i = 0; i < n; i++) {
    sd_tensor uncond = sd_tensor_slice0(noise_pred, i, 1);
    sd_tensor cond = sd_tensor_slice0(noise_pred, n + i, 1);
    sd_tensor out = sd_tensor_slice0(guided, i, 1);
    if (items[i].guidance_scale <= 1.0f) {
      SD_TRY(sd_op_copy(be, &cond, &out));
      continue;
    }
    const float diff_coeffs[2] = {1.0f, -1.0f};
    const sd_tensor *diff_inputs[2] = {&cond, &uncond};
    SD_TRY(sd_op_lincomb(be, 2, diff_coeffs, diff_inputs, &out));
    const float guide_coeffs[2] = {1.0f, items[i].guidance_scale};
    const sd_tensor *guide_inputs[2] = {&uncond, &out};
    SD_TRY(sd_op_lincomb(be, 2, guide_coeffs, guide_inputs, &out));
  }
  return 0;
}

/* diffusers' postprocess: (x / 2 + 0.5).clamp(0, 1), * 255, round half to even, as uint8;
 * image (C, H, W) planar float -> (H, W, C) interleaved. */
static bool image_to_rgb(const float *image, int channels, int height, int width, uint8_t *rgb) {
  bool finite = true;
  size_t plane = (size_t)height * width;
  for (int c = 0; c < 3; c++) {
    const float *src = image + (size_t)(c < channels ? c : channels - 1) * plane;
    for (size_t p = 0; p < plane; p++) {
      float v = src[p];
      if (isnan(v)) { /* NaN would survive the clamp; the item is reported failed anyway */
        finite = false;
        v = -1.0f;
      } else if (isinf(v)) {
        finite = false;
      }
      float x = v / 2.0f + 0.5f;
      x = x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x);
      float scaled = x * 255.0f;
      rgb[p * 3 + c] = (uint8_t)nearbyintf(scaled);
    }
  }
  return finite;
}

int sd_txt2img(sd_engine *engine, const sd_txt2img_batch *batch, const sd_txt2img_item *items,
               int n, sd_progress_fn progress, void *progress_ctx, sd_txt2img_result *results) {
  return sd_render_group(engine, NULL, batch, NULL, items, n, progress, progress_ctx, results);
}

int sd_render(sd_engine *engine, const sd_txt2img_batch *batch, const sd_image_params *cond_params,
              const sd_txt2img_item *items, int n, sd_progress_fn progress, void *progress_ctx,
              sd_txt2img_result *results) {
  return sd_render_group(engine, NULL, batch, cond_params, items, n, progress, progress_ctx,
                         results);
}

int sd_txt2img_group(sd_engine *engine, sd_image_group *group, const sd_txt2img_batch *batch,
                     const sd_txt2img_item *items, int n, sd_progress_fn progress,
                     void *progress_ctx, sd_txt2img_result *results) {
  return sd_render_group(engine, group, batch, NULL, items, n, progress, progress_ctx, results);
}

/* The decompositions of a spatial group: the UNet's latent levels and the VAE's image levels. */
typedef struct group_layout {
  sd_spatial *unet; /* NULL without spatial parallelism */
  sd_spatial *vae;  /* NULL also when the VAE decodes in tiles (every rank decodes whole) */
  int cfg_half;     /* -1: both halves here; 0 / 1: this rank's UNet runs the uncond / cond half */
  uint64_t bytes_before; /* sent over the group's communicators before this call */
} group_layout;

static int layout_create(sd_engine *engine, const sd_image_group *group,
                         const sd_txt2img_batch *batch, bool cfg, group_layout *out) {
  const sd_model_files *model = engine->files;
  int factor = sd_engine_vae_scale_factor(engine);
  *out = (group_layout){NULL, NULL, -1, 0};
  if (!group)
    return 0;
  out->bytes_before = (group->spatial ? sd_comm_bytes_sent(group->spatial) : 0) +
                      (group->cfg ? sd_comm_bytes_sent(group->cfg) : 0);
  if (group->cfg) {
    if (sd_comm_size(group->cfg) != 2)
      return SD_ERROR("CFG parallelism needs 2 ranks, not %d", sd_comm_size(group->cfg));
    if (cfg)
      out->cfg_half = sd_comm_rank(group->cfg);
  }
  if (!group->spatial || sd_comm_size(group->spatial) == 1)
    return 0;
  if (sd_spatial_create(group->spatial, engine->be, batch->height / factor, batch->width / factor,
                        model->unet.num_levels, &out->unet) < 0)
    return sd_error_context("spatial UNet");
  if (!decode_tiled(engine, batch) &&
      sd_spatial_create(group->spatial, engine->be, batch->height, batch->width,
                        model->vae.num_levels, &out->vae) < 0)
    return sd_error_context("spatial VAE");
  return 0;
}

static void layout_finish(group_layout *layout, sd_image_group *group) {
  if (group) {
    group->bytes_sent = 0 - layout->bytes_before;
    group->comm_seconds = 0.0;
    sd_spatial *sps[2] = {layout->unet, layout->vae};
    for (int i = 0; i < 2; i++)
      if (sps[i]) {
        sd_spatial_stats st = sd_spatial_get_stats(sps[i]);
        group->comm_seconds += st.comm_seconds;
      }
    if (group->spatial)
      group->bytes_sent += sd_comm_bytes_sent(group->spatial);
    if (group->cfg)
      group->bytes_sent += sd_comm_bytes_sent(group->cfg);
  }
  sd_spatial_free(layout->unet);
  sd_spatial_free(layout->vae);
}

/* noise_pred (2n, ...) = [uncond; cond] from this rank's half (n, ...) and its partner's. */
static int join_halves(sd_backend *be, sd_image_group *group, const sd_tensor *half,
                       sd_tensor *noise_pred, double *seconds) {
  size_t bytes[2] = {sd_tensor_bytes(half), sd_tensor_bytes(half)};
  SD_TRY(be->ops->synchronize(be));
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = sd_comm_allgatherv(group->cfg, half->data, noise_pred->data, bytes);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  *seconds += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  return rc < 0 ? sd_error_context("CFG halves") : 0;
}

/* The whole image (n, C, H, W) from the final latents (n, C, h, w) / scaling_factor: decoded by
 * bands over the spatial group and gathered, or whole (tiled or not) on every rank. */
static int decode_image(sd_engine *engine, const sd_txt2img_batch *batch, const group_layout *lay,
                        const sd_tensor *scaled, sd_tensor *image) {
  sd_backend *be = engine->be;
  if (decode_tiled(engine, batch))
    return sd_vae_decode_tiled(engine->vae, scaled, engine->files->vae.sample_size, image);
  if (!lay->vae)
    return sd_vae_decode(engine->vae, scaled, image);
  int factor = sd_engine_vae_scale_factor(engine);
  int64_t n = scaled->shape[0], w = scaled->shape[3];
  int64_t rows = sd_spatial_rows(lay->vae, w, 0);
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor z = sd_tensor_4d(scaled->dtype, n, scaled->shape[1], rows, w);
  sd_tensor band = sd_tensor_4d(image->dtype, n, image->shape[1], factor * rows, image->shape[3]);
  int rc = sd_tensor_alloc(be, &z);
  if (rc == 0)
    rc = sd_tensor_alloc(be, &band);
  if (rc == 0)
    rc = sd_spatial_cut(be, lay->vae, scaled, &z);
  if (rc == 0)
    rc = sd_vae_decode_spatial(engine->vae, lay->vae, &z, &band);
  if (rc == 0)
    rc = sd_spatial_gather(be, lay->vae, &band, image);
  sd_arena_release(be, mark);
  return rc;
}

int sd_render_group(sd_engine *engine, sd_image_group *group, const sd_txt2img_batch *batch,
                    const sd_image_params *cond_params, const sd_txt2img_item *items, int n,
                    sd_progress_fn progress, void *progress_ctx, sd_txt2img_result *results) {
  sd_backend *be = engine->be;
  const sd_model_files *model = engine->files;
  int rc = -1;
  memset(results, 0, (size_t)n * sizeof *results);
  SD_TRY(sd_render_check(engine, batch, cond_params));
  if (n < 1)
    return SD_ERROR("txt2img: empty batch");

  bool cfg = false;
  for (int i = 0; i < n; i++)
    if (items[i].guidance_scale > 1.0f)
      cfg = true;
  group_layout lay;
  if (layout_create(engine, group, batch, cfg, &lay) < 0) {
    layout_finish(&lay, NULL);
    return -1;
  }
  double cfg_seconds = 0.0;
  int rows = cfg ? 2 * n : n;
  int unet_rows = lay.cfg_half >= 0 ? n : rows; /* the UNet's batch on this rank */
  int length = sd_tokenizer_max_length(engine->tokenizer);
  int factor = sd_engine_vae_scale_factor(engine);
  int latent_c = model->vae.latent_channels, lh = batch->height / factor,
      lw = batch->width / factor;
  int unet_channels = model->unet.in_channels; /* latent_c, or 2 latent_c + 1 for inpainting */
  int64_t band_h = sd_spatial_rows(lay.unet, lw, lh); /* this rank's latent rows */
  size_t per_item = (size_t)latent_c * lh * lw;
  size_t image_plane = (size_t)batch->height * batch->width;
  int image_c = model->vae.out_channels;

  sd_tensor context = sd_tensor_3d(be->ops->act_dtype, rows, length, model->clip.hidden_size);
  sd_tensor latents = sd_tensor_4d(be->ops->act_dtype, n, latent_c, band_h, lw);
  sd_tensor model_in = sd_tensor_4d(be->ops->act_dtype, rows, unet_channels, band_h, lw);
  /* the scaled latents when the UNet takes more channels (concatenated with cond.extra) */
  sd_tensor scaled_in = sd_tensor_4d(be->ops->act_dtype, rows, latent_c, band_h, lw);
  sd_cond_state cond;
  memset(&cond, 0, sizeof cond);
  sd_tensor noise_pred =
      sd_tensor_4d(be->ops->act_dtype, rows, model->unet.out_channels, band_h, lw);
  sd_tensor half_pred =
      sd_tensor_4d(be->ops->act_dtype, unet_rows, model->unet.out_channels, band_h, lw);
  sd_tensor guided = sd_tensor_4d(be->ops->act_dtype, n, model->unet.out_channels, band_h, lw);
  sd_tensor whole = sd_tensor_4d(be->ops->act_dtype, n, latent_c, lh, lw);
  sd_tensor image = sd_tensor_4d(be->ops->act_dtype, n, image_c, batch->height, batch->width);
  sd_scheduler *scheduler = NULL;
  int32_t *ids = calloc((size_t)rows * length, sizeof *ids);
  sd_rng *rngs = calloc((size_t)n, sizeof *rngs);
  uint64_t *seeds = calloc((size_t)n, sizeof *seeds);
  uint64_t *offsets = calloc((size_t)n, sizeof *offsets);
  float *host = malloc((size_t)n * per_item * sizeof *host);
  float *host_image = malloc((size_t)n * image_c * image_plane * sizeof *host_image);
  if (!ids || !rngs || !seeds || !offsets || !host || !host_image) {
    SD_ERROR("out of host memory for a batch of %d %dx%d images", n, batch->width, batch->height);
    goto out;
  }
  if (band_h < 0 || sd_tensor_alloc_persistent(be, &context) < 0 ||
      sd_tensor_alloc_persistent(be, &latents) < 0 ||
      sd_tensor_alloc_persistent(be, &model_in) < 0 ||
      (unet_channels != latent_c && sd_tensor_alloc_persistent(be, &scaled_in) < 0) ||
      sd_tensor_alloc_persistent(be, &noise_pred) < 0 ||
      (lay.cfg_half >= 0 && sd_tensor_alloc_persistent(be, &half_pred) < 0) ||
      sd_tensor_alloc_persistent(be, &guided) < 0 || sd_tensor_alloc_persistent(be, &whole) < 0 ||
      sd_tensor_alloc_persistent(be, &image) < 0)
    goto out;

  if (tokenize_batch(engine, items, n, cfg, ids) < 0 ||
      sd_clip_text_forward(engine->clip, ids, rows, &context) < 0)
    goto out;

  if (sd_scheduler_create(batch->scheduler, &model->scheduler, batch->karras, batch->steps,
                          &scheduler) < 0)
    goto out;

  /* initial latents: each item's randn (1, C, h, w) from its own generator, * init_noise_sigma;
   * or the init images' noised latents (img2img, inpainting) */
  for (int i = 0; i < n; i++)
    sd_rng_init(&rngs[i], batch->rng, items[i].seed);
  noise_source noise = {rngs, n, per_item, host, seeds, offsets, lay.unet, lh};
  if (cond_params) {
    /* over spatial bands: every rank prepares the whole conditioning (the same numbers: the same
     * items and generators) and keeps its band of it */
    if (sd_cond_prepare(engine, batch, cond_params, n, rows, rngs, scheduler,
                        lay.unet ? &whole : &latents, &cond) < 0)
      goto out;
    if (lay.unet && (sd_spatial_cut(be, lay.unet, &whole, &latents) < 0 ||
                     sd_cond_cut_to_band(be, lay.unet, &cond) < 0))
      goto out;
  } else {
    if (draw_noise_band(&noise, be, &latents) < 0) {
      sd_error_context("initial latents");
      goto out;
    }
    if (sd_op_scale(be, &latents, sd_scheduler_init_noise_sigma(scheduler), &latents) < 0)
      goto out;
  }

  /* with CFG halves, this rank's UNet sees rows [half * n, half * n + n) of model_in / context */
  sd_tensor unet_in =
      lay.cfg_half >= 0 ? sd_tensor_slice0(&model_in, lay.cfg_half * n, n) : model_in;
  sd_tensor unet_context =
      lay.cfg_half >= 0 ? sd_tensor_slice0(&context, lay.cfg_half * n, n) : context;
  sd_tensor *unet_out = lay.cfg_half >= 0 ? &half_pred : &noise_pred;
  /* the UNet's class labels (the upscaler's noise level), this rank's rows of them */
  const int32_t *unet_labels =
      cond.labels ? cond.labels + (lay.cfg_half >= 0 ? lay.cfg_half * n : 0) : NULL;
  int count = sd_scheduler_count(scheduler);
  sd_tensor *unet_latents = unet_channels != latent_c ? &scaled_in : &model_in;
  for (int step = cond.begin; step < count; step++) {
    sd_tensor x = sd_tensor_slice0(unet_latents, cfg ? n : 0, n);
    if (sd_scheduler_scale_model_input(scheduler, be, step, &latents, &x) < 0)
      goto out;
    if (cfg) {
      sd_tensor first = sd_tensor_slice0(unet_latents, 0, n);
      if (sd_op_copy(be, &x, &first) < 0)
        goto out;
    }
    if (unet_channels != latent_c &&
        sd_op_concat_channels(be, &scaled_in, &cond.extra, &model_in) < 0)
      goto out;
    if (sd_unet_forward_spatial(engine->unet, lay.unet, &unet_in,
                                sd_scheduler_timestep(scheduler, step), unet_labels, &unet_context,
                                unet_out) < 0 ||
        (lay.cfg_half >= 0 && join_halves(be, group, &half_pred, &noise_pred, &cfg_seconds) < 0)) {
      sd_error_context("step %d of %d", step + 1, count);
      goto out;
    }
    if (cfg ? apply_guidance(be, items, n, &noise_pred, &guided) < 0
            : sd_op_copy(be, &noise_pred, &guided) < 0)
      goto out;
    if (sd_scheduler_step(scheduler, be, step, &guided, &latents, fill_noise, &noise) < 0) {
      sd_error_context("scheduler step %d of %d", step + 1, count);
      goto out;
    }
    if (sd_cond_after_step(engine, &cond, scheduler, step, &latents) < 0)
      goto out;
    if (progress)
      progress(progress_ctx, step + 1 - cond.begin, count - cond.begin);
  }

  if (group)
    group->loop_bytes_sent = (group->spatial ? sd_comm_bytes_sent(group->spatial) : 0) +
                             (group->cfg ? sd_comm_bytes_sent(group->cfg) : 0) - lay.bytes_before;
  /* the whole latents on every rank, decoded from latents / scaling_factor */
  if (sd_spatial_gather(be, lay.unet, &latents, &whole) < 0 ||
      sd_tensor_download_f32(be, &whole, host) < 0)
    goto out;
  const float inv_scale = 1.0f / model->vae.scaling_factor;
  if (sd_op_scale(be, &whole, inv_scale, &whole) < 0 ||
      decode_image(engine, batch, &lay, &whole, &image) < 0 ||
      sd_tensor_download_f32(be, &image, host_image) < 0)
    goto out;

  for (int i = 0; i < n; i++) {
    results[i].rgb = malloc(image_plane * 3);
    results[i].latents = malloc(per_item * sizeof(float));
    if (!results[i].rgb || !results[i].latents) {
      SD_ERROR("out of host memory for results");
      goto out;
    }
    memcpy(results[i].latents, host + (size_t)i * per_item, per_item * sizeof(float));
    bool finite = image_to_rgb(host_image + (size_t)i * image_c * image_plane, image_c,
                               batch->height, batch->width, results[i].rgb);
    for (size_t k = 0; k < per_item && finite; k++)
      finite = isfinite(results[i].latents[k]);
    results[i].finite = finite;
  }
  rc = 0;

out:
  if (rc < 0)
    for (int i = 0; i < n; i++)
      sd_txt2img_result_free(&results[i]);
  sd_cond_free(be, &cond);
  layout_finish(&lay, group);
  if (group)
    group->comm_seconds += cfg_seconds;
  sd_scheduler_free(scheduler);
  sd_tensor_free(be, &image);
  sd_tensor_free(be, &whole);
  sd_tensor_free(be, &guided);
  sd_tensor_free(be, &half_pred);
  sd_tensor_free(be, &noise_pred);
  sd_tensor_free(be, &scaled_in);
  sd_tensor_free(be, &model_in);
  sd_tensor_free(be, &latents);
  sd_tensor_free(be, &context);
  free(host_image);
  free(host);
  free(offsets);
  free(seeds);
  free(rngs);
  free(ids);
  return rc;
}

void sd_txt2img_result_free(sd_txt2img_result *result) {
  free(result->rgb);
  free(result->latents);
  result->rgb = NULL;
  result->latents = NULL;
}
