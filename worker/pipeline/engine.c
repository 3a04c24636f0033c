/* Opening a model onto a backend: files, tokenizer, weights, the three networks. */
#include "engine_internal.h"

#include "depth_estimate.h"

#include "../../kernels/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SDBATCH_CLIP_BPE
#define SDBATCH_CLIP_BPE ""
#endif

void sd_engine_params_init(sd_engine_params *params) {
  memset(params, 0, sizeof *params);
  params->device = "cpu";
  params->precision = SD_DTYPE_F16;
}

int sd_precision_parse(const char *name, sd_dtype *out) {
  static const sd_dtype dtypes[3] = {SD_DTYPE_F16, SD_DTYPE_BF16, SD_DTYPE_F32};
  for (int i = 0; i < 3; i++)
    if (strcmp(name, sd_precision_name(dtypes[i])) == 0) {
      *out = dtypes[i];
      return 0;
    }
  return SD_ERROR("expected fp16, bf16 or fp32, got '%s'", name);
}

const char *sd_precision_name(sd_dtype precision) {
  switch (precision) {
  case SD_DTYPE_F16:
    return "fp16";
  case SD_DTYPE_BF16:
    return "bf16";
  case SD_DTYPE_F32:
    return "fp32";
  default:
    return "?";
  }
}

int sd_tokenizer_open_for_model(const sd_tokenizer_files *files, sd_tokenizer **out) {
  if (files->vocab_json[0] && files->merges_txt[0])
    return sd_tokenizer_load_vocab_merges(files->vocab_json, files->merges_txt, files->pad_token,
                                          files->model_max_length, out);
  if (files->tokenizer_json[0])
    return sd_tokenizer_load_tokenizer_json(files->tokenizer_json, files->pad_token,
                                            files->model_max_length, out);
  if (files->bpe_gz[0])
    return sd_tokenizer_load_bpe_gz(files->bpe_gz, files->pad_token, files->model_max_length, out);
  return SD_ERROR("no tokenizer files (vocab.json + merges.txt, tokenizer.json or the CLIP BPE)");
}

int sd_engine_open(const sd_engine_params *params, sd_engine **out) {
  *out = NULL;
  if (params->precision != SD_DTYPE_F16 && params->precision != SD_DTYPE_BF16 &&
      params->precision != SD_DTYPE_F32)
    return SD_ERROR("precision must be F16, BF16 or F32 (got %s)",
                    sd_dtype_name(params->precision));
  sd_engine *engine = calloc(1, sizeof *engine);
  if (!engine)
    return SD_ERROR("out of memory");
  engine->vae_tiling = params->vae_tiling;
  const char *bpe = params->clip_bpe_gz ? params->clip_bpe_gz : SDBATCH_CLIP_BPE;
  if (sd_model_files_open(params->model_path, params->model_yaml, bpe, &engine->files) < 0)
    goto fail;
  if (sd_tokenizer_open_for_model(&engine->files->tokenizer, &engine->tokenizer) < 0) {
    sd_error_context("%s: tokenizer", params->model_path);
    goto fail;
  }
  if (sd_engine_apply_adapters(engine, params) < 0)
    goto fail;
  bool is_auto = strcmp(params->device, "auto") == 0;
  /* the CPU computes in fp32 unless bf16 is asked for (fp16, the CUDA default, is not offered) */
  sd_dtype cpu_compute = params->precision == SD_DTYPE_BF16 ? SD_DTYPE_BF16 : SD_DTYPE_F32;
  if (strcmp(params->device, "cpu") == 0) {
    engine->be = sd_backend_cpu_create_precision(params->threads, cpu_compute);
  } else if (is_auto || strcmp(params->device, "cuda") == 0) {
    engine->be = sd_backend_cuda_create(params->device_index, params->precision);
    if (!engine->be && is_auto) {
      sd_error_clear();
      engine->be = sd_backend_cpu_create_precision(params->threads, cpu_compute);
    }
  } else {
    engine->be = sd_backend_create(params->device);
  }
  if (!engine->be)
    goto fail;
  engine->precision =
      strcmp(engine->be->ops->name, "cpu") == 0 ? cpu_compute : engine->be->ops->act_dtype;
  if (sd_weights_upload(engine->be, engine->files->clip_tensors, "text_encoder",
                        &engine->clip_weights) < 0 ||
      sd_weights_upload(engine->be, engine->files->unet_tensors, "unet", &engine->unet_weights) <
          0 ||
      sd_weights_upload(engine->be, engine->files->vae_tensors, "vae", &engine->vae_weights) < 0)
    goto fail_model;
  if (sd_clip_text_create(engine->be, &engine->files->clip, engine->clip_weights, &engine->clip) <
          0 ||
      sd_unet_create(engine->be, &engine->files->unet, engine->unet_weights, &engine->unet) < 0 ||
      sd_vae_create(engine->be, &engine->files->vae, engine->vae_weights, &engine->vae) < 0)
    goto fail_model;
  if (sd_scheduler_kind_from_config(&engine->files->scheduler, &engine->default_scheduler) < 0)
    goto fail_model;
  /* a depth model's own estimator, for depth-to-image without a given depth map */
  bool depth_model = engine->files->unet.in_channels == engine->files->vae.latent_channels + 1;
  if (params->depth_estimator_path && !depth_model) {
    SD_ERROR("%s: a depth estimator is given, but this is not a depth-to-image model (its UNet "
             "takes %d channels, not %d)",
             params->model_path, engine->files->unet.in_channels,
             engine->files->vae.latent_channels + 1);
    goto fail;
  }
  if (depth_model && !params->no_depth_estimator &&
      (params->depth_estimator_path
           ? sd_depth_estimator_open_given(engine->be, params->depth_estimator_path,
                                           params->dpt_backend, &engine->depth)
           : sd_depth_estimator_open(engine->be, params->model_path, params->dpt_backend,
                                     &engine->depth)) < 0)
    goto fail;
  *out = engine;
  return 0;

fail_model:
  sd_error_context("%s", params->model_path);
fail:
  sd_engine_close(engine);
  return -1;
}

void sd_engine_close(sd_engine *engine) {
  if (!engine)
    return;
  sd_depth_estimator_free(engine->depth);
  sd_vae_free(engine->vae);
  sd_unet_free(engine->unet);
  sd_clip_text_free(engine->clip);
  sd_weights_free(engine->vae_weights);
  sd_weights_free(engine->unet_weights);
  sd_weights_free(engine->clip_weights);
  sd_tokenizer_free(engine->tokenizer);
  sd_backend_destroy(engine->be);
  sd_model_files_close(engine->files);
  sd_engine_free_adapters(engine);
  free(engine);
}

int sd_engine_max_noise_level(const sd_engine *engine) {
  const sd_upscaler_config *upscaler = &engine->files->upscaler;
  return upscaler->present ? upscaler->max_noise_level : 0;
}

bool sd_engine_has_depth_estimator(const sd_engine *engine) {
  return engine->depth != NULL;
}

const sd_model_files *sd_engine_model(const sd_engine *engine) {
  return engine->files;
}

sd_backend *sd_engine_backend(const sd_engine *engine) {
  return engine->be;
}

sd_dtype sd_engine_precision(const sd_engine *engine) {
  return engine->precision;
}

sd_scheduler_kind sd_engine_default_scheduler(const sd_engine *engine) {
  return engine->default_scheduler;
}

int sd_engine_vae_scale_factor(const sd_engine *engine) {
  return 1 << (engine->files->vae.num_levels - 1);
}

void sd_engine_get_networks(sd_engine *engine, sd_engine_networks *out) {
  *out = (sd_engine_networks){.tokenizer = engine->tokenizer,
                              .clip = engine->clip,
                              .clip_weights = engine->clip_weights,
                              .unet = engine->unet,
                              .unet_weights = engine->unet_weights,
                              .vae = engine->vae};
}
