/* Image-to-image, inpainting and depth-to-image as diffusers' StableDiffusionImg2ImgPipeline,
 * StableDiffusionInpaintPipeline and StableDiffusionDepth2ImgPipeline prepare them: the init image
 * (and mask) preprocessed as VaeImageProcessor does, encoded by the VAE, sampled from latent_dist
 * with the item's generator and scaled; strength sets the first timestep (get_timesteps); the
 * initial latents are the scheduler's add_noise of the init latents (or pure noise for inpainting
 * at strength 1); a 9-channel UNet gets [mask, masked image latents] beside the latents, a
 * 4-channel one the per-step blending with the re-noised init latents outside the mask; a depth
 * model (latent + 1 channels) runs img2img with the depth conditioning (prepare_depth_map) beside
 * the latents. */
#include "engine_internal.h"

#include "depth_estimate.h"
#include "depth_map.h"

#include "../sched/ddpm_noise.h"
#include "../spatial/spatial.h"

#include "../../kernels/error.h"
#include "../image/image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sd_pipeline_kind_name(sd_pipeline_kind kind) {
  switch (kind) {
  case SD_PIPELINE_IMG2IMG:
    return "img2img";
  case SD_PIPELINE_INPAINT:
    return "inpaint";
  case SD_PIPELINE_DEPTH:
    return "depth2img";
  case SD_PIPELINE_UPSCALE:
    return "upscale";
  default:
    return "txt2img";
  }
}

int sd_pipeline_choose(const sd_model_files *model, bool init_image, bool mask, bool depth_map,
                       sd_pipeline_kind *out) {
  int in = model->unet.in_channels, latent = model->vae.latent_channels;
  if (in == latent + model->vae.in_channels && model->unet.num_class_embeds > 0) {
    if (!init_image)
      return SD_ERROR("this is an x4 upscaler (its UNet takes %d channels and a noise level): "
                      "it needs the low-resolution image to upscale",
                      in);
    if (mask || depth_map)
      return SD_ERROR("the x4 upscaler takes no %s", mask ? "mask" : "depth map");
    *out = SD_PIPELINE_UPSCALE;
    return 0;
  }
  if (in == latent + 1) {
    if (!init_image || !depth_map)
      return SD_ERROR("this is a depth-to-image model (its UNet takes %d channels): it needs an "
                      "init image and a depth map (given, or made by the model's own depth "
                      "estimator: a depth_estimator/ folder, which this model lacks)",
                      in);
    if (mask)
      return SD_ERROR("a depth-to-image model takes no mask");
    *out = SD_PIPELINE_DEPTH;
    return 0;
  }
  if (depth_map)
    return SD_ERROR("a depth map is for depth-to-image models (a UNet of %d input channels); "
                    "this model's takes %d",
                    latent + 1, in);
  if (in == 2 * latent + 1) {
    if (!init_image || !mask)
      return SD_ERROR("this is an inpainting model (its UNet takes %d channels): it needs an init "
                      "image and a mask",
                      in);
    *out = SD_PIPELINE_INPAINT;
    return 0;
  }
  if (in != latent)
    return SD_ERROR("this model's UNet takes %d input channels; sdbatch renders %d "
                    "(text-to-image, img2img, inpainting), %d (depth-to-image), %d (inpainting) "
                    "and %d with class embeddings (the x4 upscaler)",
                    in, latent, latent + 1, 2 * latent + 1, latent + model->vae.in_channels);
  if (mask && !init_image)
    return SD_ERROR("a mask needs an init image to inpaint");
  *out = !init_image ? SD_PIPELINE_TXT2IMG : mask ? SD_PIPELINE_INPAINT : SD_PIPELINE_IMG2IMG;
  return 0;
}

/* moments (n, 2C, h, w) on the host = the VAE encoder of images (n, 3, H, W) on the host. */
static int encode(sd_engine *engine, const float *images, int n, int height, int width,
                  float *moments) {
  sd_backend *be = engine->be;
  const sd_model_files *model = engine->files;
  int factor = sd_engine_vae_scale_factor(engine);
  sd_tensor x = sd_tensor_4d(be->ops->act_dtype, n, model->vae.in_channels, height, width);
  sd_tensor m = sd_tensor_4d(be->ops->act_dtype, n, 2 * model->vae.latent_channels, height / factor,
                             width / factor);
  int rc = sd_tensor_alloc_persistent(be, &x);
  if (rc == 0)
    rc = sd_tensor_alloc_persistent(be, &m);
  if (rc == 0)
    rc = sd_tensor_upload_f32(be, &x, images);
  if (rc == 0)
    rc = sd_vae_encode(engine->vae, &x, &m);
  if (rc == 0)
    rc = sd_tensor_download_f32(be, &m, moments);
  sd_tensor_free(be, &x);
  sd_tensor_free(be, &m);
  return rc;
}

/* Host buffers of one batch's preparation. */
typedef struct cond_host {
  float *init;           /* (n, 3, H, W) preprocessed init images */
  float *mask;           /* (n, 1, H, W) binarised masks (inpaint) */
  float *masked;         /* (n, 3, H, W) masked images (9-channel) */
  float *moments;        /* (n, 2C, h, w) */
  float *eps;            /* (C, h, w) one latent_dist.sample draw */
  float *image_latents;  /* (n, C, h, w) */
  float *noise;          /* (n, C, h, w) */
  float *masked_latents; /* (n, C, h, w) */
  float *mask_latent;    /* (n, 1, h, w) */
  float *depth;          /* (n, 1, h, w) the depth conditioning (depth2img) */
  float *extra;          /* (rows, 1 + C, h, w), or (rows, 1, h, w) for depth2img */
} cond_host;

static void cond_host_free(cond_host *h) {
  free(h->init);
  free(h->mask);
  free(h->masked);
  free(h->moments);
  free(h->eps);
  free(h->image_latents);
  free(h->noise);
  free(h->masked_latents);
  free(h->mask_latent);
  free(h->depth);
  free(h->extra);
}

static int preprocess_inputs(const sd_image_params *image, int n, int width, int height, bool nine,
                             cond_host *h) {
  size_t plane = (size_t)width * height;
  for (int i = 0; i < n; i++) {
    const sd_image_cond *c = &image->conds[i];
    if (!c->init_image)
      return SD_ERROR("item %d has no init image", i);
    if (sd_image_preprocess(c->init_image, width, height, h->init + (size_t)i * 3 * plane) < 0)
      return sd_error_context("init image of item %d", i);
    if (image->kind != SD_PIPELINE_INPAINT)
      continue;
    if (!c->mask)
      return SD_ERROR("item %d has no mask", i);
    if (sd_mask_preprocess(c->mask, width, height, h->mask + (size_t)i * plane) < 0)
      return sd_error_context("mask of item %d", i);
    if (nine)
      sd_masked_image(h->init + (size_t)i * 3 * plane, h->mask + (size_t)i * plane, width, height,
                      h->masked + (size_t)i * 3 * plane);
  }
  return 0;
}

static int upload_new(sd_backend *be, sd_tensor *t, const float *host) {
  SD_TRY(sd_tensor_alloc_persistent(be, t));
  return sd_tensor_upload_f32(be, t, host);
}

/* out (n, 1, h, w) on the host = each item's depth map (given, or the model's estimate of its
 * init image) as prepare_depth_map conditions it. */
static int depth_conditioning(sd_engine *engine, const sd_image_params *image, int n, int h, int w,
                              float *out) {
  sd_backend *be = engine->be;
  const sd_dtype dt = be->ops->act_dtype;
  for (int i = 0; i < n; i++) {
    const sd_image_cond *c = &image->conds[i];
    bool given = c->depth != NULL;
    if (given && (c->depth_height < 1 || c->depth_width < 1))
      return SD_ERROR("item %d: the depth map is empty", i);
    if (!given && !engine->depth)
      return SD_ERROR("item %d has no depth map, and the model has no depth estimator", i);
    char what[64];
    snprintf(what, sizeof what,
             given ? "the depth map of item %d" : "the estimated depth of item %d", i);
    sd_tensor map = given ? sd_tensor_3d(dt, 1, c->depth_height, c->depth_width) : (sd_tensor){0};
    sd_tensor cond = sd_tensor_4d(dt, 1, 1, h, w);
    int rc = given ? upload_new(be, &map, c->depth)
                   : sd_depth_estimate(engine->depth, c->init_image, &map);
    if (rc == 0)
      rc = sd_tensor_alloc_persistent(be, &cond);
    if (rc == 0)
      rc = sd_depth_map_prepare(be, &map, what, &cond);
    if (rc == 0)
      rc = sd_tensor_download_f32(be, &cond, out + (size_t)i * h * w);
    sd_tensor_free(be, &map);
    sd_tensor_free(be, &cond);
    SD_TRY(rc);
  }
  return 0;
}

/* The x4 upscaler (StableDiffusionUpscalePipeline) at latent size h x w (the low-res size): each
 * item's image preprocessed at that size (resized with bicubic when its own size differs), its
 * noise then its latents drawn from the item's generator, the image noised by the
 * low_res_scheduler at noise_level and concatenated after the latents at every step (every row
 * of the UNet batch), the level as the UNet's class label, the latents * init_noise_sigma. */
static int prepare_upscale(sd_engine *engine, const sd_image_params *image, int n, int rows, int h,
                           int w, sd_rng *rngs, sd_scheduler *scheduler, sd_tensor *latents,
                           sd_cond_state *state) {
  sd_backend *be = engine->be;
  const int C = engine->files->vae.latent_channels, IC = engine->files->vae.in_channels;
  const size_t lplane = (size_t)h * w, per_image = (size_t)IC * lplane, per = (size_t)C * lplane;
  const sd_dtype dt = be->ops->act_dtype;
  const sd_upscaler_config *upscaler = &engine->files->upscaler;
  if (!upscaler->present)
    return SD_ERROR("this model is not an x4 upscaler");
  if (image->noise_level < 0 || image->noise_level > upscaler->max_noise_level)
    return SD_ERROR("noise level %d: this upscaler takes 0 to %d (its max_noise_level)",
                    image->noise_level, upscaler->max_noise_level);
  state->begin = 0;
  float *low = malloc((size_t)n * per_image * sizeof(float));
  float *noise = malloc((size_t)n * per_image * sizeof(float));
  float *draws = malloc((size_t)n * per * sizeof(float));
  float *extra = malloc((size_t)rows * per_image * sizeof(float));
  state->labels = malloc((size_t)rows * sizeof *state->labels);
  sd_tensor x = sd_tensor_4d(dt, n, IC, h, w), nz = sd_tensor_4d(dt, n, IC, h, w);
  int rc = low && noise && draws && extra && state->labels
               ? 0
               : SD_ERROR("out of host memory for the low-resolution images");
  for (int i = 0; rc == 0 && i < n; i++) {
    if (!image->conds[i].init_image)
      rc = SD_ERROR("item %d has no image to upscale", i);
    else if (sd_image_preprocess_resample(image->conds[i].init_image, w, h, SD_RESAMPLE_BICUBIC,
                                          low + (size_t)i * per_image) < 0)
      rc = sd_error_context("the image of item %d", i);
  }
  /* each item's generator: the image's noise, then the latents */
  for (int i = 0; rc == 0 && i < n; i++) {
    rc = sd_rng_randn(&rngs[i], noise + (size_t)i * per_image, per_image);
    if (rc == 0)
      rc = sd_rng_randn(&rngs[i], draws + (size_t)i * per, per);
  }
  if (rc == 0 && (rc = upload_new(be, &x, low)) == 0 && (rc = upload_new(be, &nz, noise)) == 0)
    rc = sd_ddpm_add_noise(&upscaler->low_res, image->noise_level, be, &x, &nz, &x);
  if (rc == 0)
    rc = sd_tensor_download_f32(be, &x, low);
  for (int r = 0; rc == 0 && r < rows; r++) {
    memcpy(extra + (size_t)r * per_image, low + (size_t)(r % n) * per_image,
           per_image * sizeof(float));
    state->labels[r] = image->noise_level;
  }
  if (rc == 0) {
    state->extra = sd_tensor_4d(dt, rows, IC, h, w);
    rc = upload_new(be, &state->extra, extra);
  }
  if (rc == 0)
    rc = sd_tensor_upload_f32(be, latents, draws);
  if (rc == 0)
    rc = sd_op_scale(be, latents, sd_scheduler_init_noise_sigma(scheduler), latents);
  sd_tensor_free(be, &x);
  sd_tensor_free(be, &nz);
  free(low);
  free(noise);
  free(draws);
  free(extra);
  if (rc < 0)
    sd_cond_free(be, state);
  return rc;
}

int sd_cond_prepare(sd_engine *engine, const sd_txt2img_batch *batch, const sd_image_params *image,
                    int n, int rows, sd_rng *rngs, sd_scheduler *scheduler, sd_tensor *latents,
                    sd_cond_state *state) {
  sd_backend *be = engine->be;
  const sd_model_files *model = engine->files;
  const int factor = sd_engine_vae_scale_factor(engine);
  const int H = batch->height, W = batch->width, h = H / factor, w = W / factor;
  const int C = model->vae.latent_channels;
  const size_t plane = (size_t)H * W, lplane = (size_t)h * w, per = (size_t)C * lplane;
  const bool inpaint = image->kind == SD_PIPELINE_INPAINT;
  const bool nine = inpaint && model->unet.in_channels == 2 * C + 1;
  const bool depth = image->kind == SD_PIPELINE_DEPTH;
  const bool strength_max = image->strength == 1.0f;
  /* the init image is encoded for img2img, 4-channel inpainting, and below strength 1 */
  const bool encode_init = !inpaint || !nine || !strength_max;
  const sd_dtype dt = be->ops->act_dtype;

  memset(state, 0, sizeof *state);
  state->kind = image->kind;
  if (image->kind == SD_PIPELINE_UPSCALE)
    return prepare_upscale(engine, image, n, rows, h, w, rngs, scheduler, latents, state);
  state->blend = inpaint && !nine;
  state->begin = sd_scheduler_begin_for_strength(scheduler, image->strength);
  if (state->begin >= sd_scheduler_count(scheduler))
    return SD_ERROR("strength %g with %d steps runs no step (diffusers: steps x strength must "
                    "be at least 1)",
                    (double)image->strength, batch->steps);
  SD_TRY(sd_scheduler_set_begin(scheduler, state->begin));

  cond_host hb = {0};
  int rc = -1;
  hb.init = malloc((size_t)n * 3 * plane * sizeof(float));
  hb.mask = inpaint ? malloc((size_t)n * plane * sizeof(float)) : NULL;
  hb.masked = nine ? malloc((size_t)n * 3 * plane * sizeof(float)) : NULL;
  hb.moments = malloc((size_t)n * 2 * per * sizeof(float));
  hb.eps = malloc(per * sizeof(float));
  hb.image_latents = malloc((size_t)n * per * sizeof(float));
  hb.noise = malloc((size_t)n * per * sizeof(float));
  hb.masked_latents = nine ? malloc((size_t)n * per * sizeof(float)) : NULL;
  hb.mask_latent = inpaint ? malloc((size_t)n * lplane * sizeof(float)) : NULL;
  hb.depth = depth ? malloc((size_t)n * lplane * sizeof(float)) : NULL;
  hb.extra = nine    ? malloc((size_t)rows * (1 + C) * lplane * sizeof(float))
             : depth ? malloc((size_t)rows * lplane * sizeof(float))
                     : NULL;
  if (!hb.init || (inpaint && (!hb.mask || !hb.mask_latent)) ||
      (nine && (!hb.masked || !hb.masked_latents || !hb.extra)) ||
      (depth && (!hb.depth || !hb.extra)) || !hb.moments || !hb.eps || !hb.image_latents ||
      !hb.noise) {
    SD_ERROR("out of host memory for the init images");
    goto out;
  }
  if (preprocess_inputs(image, n, W, H, nine, &hb) < 0)
    goto out;
  for (int i = 0; inpaint && i < n; i++)
    sd_mask_to_latent_size(hb.mask + (size_t)i * plane, W, H, factor,
                           hb.mask_latent + (size_t)i * lplane);

  /* the init image's latent_dist.sample (draw 1), then the noise (draw 2) */
  if (encode_init && encode(engine, hb.init, n, H, W, hb.moments) < 0) {
    sd_error_context("encoding the init images");
    goto out;
  }
  for (int i = 0; i < n; i++) {
    if (encode_init) {
      if (sd_rng_randn(&rngs[i], hb.eps, per) < 0)
        goto out;
      sd_vae_latent_sample(hb.moments + (size_t)i * 2 * per, hb.eps, C, (int64_t)lplane,
                           model->vae.scaling_factor, hb.image_latents + (size_t)i * per);
    }
    if (sd_rng_randn(&rngs[i], hb.noise + (size_t)i * per, per) < 0)
      goto out;
  }

  /* the masked image's latent_dist.sample (draw 3; drawn for 4-channel models too, as
   * diffusers' prepare_mask_latents encodes it for every model) */
  if (inpaint) {
    if (nine && encode(engine, hb.masked, n, H, W, hb.moments) < 0) {
      sd_error_context("encoding the masked images");
      goto out;
    }
    for (int i = 0; i < n; i++) {
      if (sd_rng_randn(&rngs[i], hb.eps, per) < 0)
        goto out;
      if (nine)
        sd_vae_latent_sample(hb.moments + (size_t)i * 2 * per, hb.eps, C, (int64_t)lplane,
                             model->vae.scaling_factor, hb.masked_latents + (size_t)i * per);
    }
  }

  /* initial latents */
  state->noise = sd_tensor_4d(dt, n, C, h, w);
  if (upload_new(be, &state->noise, hb.noise) < 0)
    goto out;
  if (inpaint && strength_max) {
    if (sd_op_scale(be, &state->noise, sd_scheduler_init_noise_sigma(scheduler), latents) < 0)
      goto out;
  } else {
    state->image_latents = sd_tensor_4d(dt, n, C, h, w);
    if (upload_new(be, &state->image_latents, hb.image_latents) < 0 ||
        sd_scheduler_add_noise(scheduler, be, state->begin, &state->image_latents, &state->noise,
                               latents) < 0)
      goto out;
  }

  if (state->blend) {
    if (!state->image_latents.data) {
      state->image_latents = sd_tensor_4d(dt, n, C, h, w);
      if (upload_new(be, &state->image_latents, hb.image_latents) < 0)
        goto out;
    }
    state->mask = sd_tensor_4d(dt, n, 1, h, w);
    if (upload_new(be, &state->mask, hb.mask_latent) < 0)
      goto out;
  }
  if (nine) {
    /* rows (uncond items, then cond items with guidance): [mask (1), masked latents (C)] */
    for (int r = 0; r < rows; r++) {
      int i = r % n;
      float *dst = hb.extra + (size_t)r * (1 + C) * lplane;
      memcpy(dst, hb.mask_latent + (size_t)i * lplane, lplane * sizeof(float));
      memcpy(dst + lplane, hb.masked_latents + (size_t)i * per, per * sizeof(float));
    }
    state->extra = sd_tensor_4d(dt, rows, 1 + C, h, w);
    if (upload_new(be, &state->extra, hb.extra) < 0)
      goto out;
  }
  if (depth) {
    /* the depth conditioning of each item, in the rows of the UNet batch as for 9 channels */
    if (depth_conditioning(engine, image, n, h, w, hb.depth) < 0)
      goto out;
    for (int r = 0; r < rows; r++)
      memcpy(hb.extra + (size_t)r * lplane, hb.depth + (size_t)(r % n) * lplane,
             lplane * sizeof(float));
    state->extra = sd_tensor_4d(dt, rows, 1, h, w);
    if (upload_new(be, &state->extra, hb.extra) < 0)
      goto out;
  }
  rc = 0;
out:
  cond_host_free(&hb);
  if (rc < 0)
    sd_cond_free(be, state);
  return rc;
}

int sd_cond_after_step(sd_engine *engine, sd_cond_state *state, sd_scheduler *scheduler, int call,
                       sd_tensor *latents) {
  if (!state->blend)
    return 0;
  sd_backend *be = engine->be;
  if (call + 1 >= sd_scheduler_count(scheduler))
    return sd_op_mask_blend(be, &state->image_latents, latents, &state->mask, latents);
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor proper = sd_tensor_4d(be->ops->act_dtype, latents->shape[0], latents->shape[1],
                                  latents->shape[2], latents->shape[3]);
  int rc = sd_tensor_alloc(be, &proper);
  if (rc == 0)
    rc = sd_scheduler_add_noise(scheduler, be, call + 1, &state->image_latents, &state->noise,
                                &proper);
  if (rc == 0)
    rc = sd_op_mask_blend(be, &proper, latents, &state->mask, latents);
  sd_arena_release(be, mark);
  return rc;
}

int sd_cond_cut_to_band(sd_backend *be, const sd_spatial *sp, sd_cond_state *state) {
  if (!sp)
    return 0;
  sd_tensor *wholes[4] = {&state->image_latents, &state->noise, &state->mask, &state->extra};
  for (int i = 0; i < 4; i++) {
    sd_tensor *t = wholes[i];
    if (!t->data)
      continue;
    int64_t rows = sd_spatial_rows(sp, t->shape[3], t->shape[2]);
    sd_tensor band = sd_tensor_4d(t->dtype, t->shape[0], t->shape[1], rows, t->shape[3]);
    if (rows < 0 || sd_tensor_alloc_persistent(be, &band) < 0)
      return sd_error_context("the band of the image conditioning");
    if (sd_spatial_cut(be, sp, t, &band) < 0) {
      sd_tensor_free(be, &band);
      return sd_error_context("the band of the image conditioning");
    }
    sd_tensor_free(be, t);
    *t = band;
  }
  return 0;
}

void sd_cond_free(sd_backend *be, sd_cond_state *state) {
  free(state->labels);
  state->labels = NULL;
  sd_tensor_free(be, &state->image_latents);
  sd_tensor_free(be, &state->noise);
  sd_tensor_free(be, &state->mask);
  sd_tensor_free(be, &state->extra);
}
