/* Rank 0's preparation of an image-conditioned job (docs/jobs.md, "Inputs"): the pipeline the
 * model and inputs call for, the output size (the first image's, as diffusers sizes it), the
 * refusals of settings that do not apply, and every input file's SHA-256 for the output file. */
#include "run_inputs.h"

#include "../jobs/sha256.h"
#include "../kernels/error.h"
#include "../worker/image/image.h"
#include "../worker/io/config_json.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* An x4 upscaler's max_noise_level, as the engine reads it (model_index.json; 350 when absent). */
static int upscaler_max_noise_level(const char *model_path, int *out) {
  *out = 350;
  char path[4200];
  snprintf(path, sizeof path, "%s/model_index.json", model_path);
  struct stat st;
  if (stat(path, &st) != 0)
    return 0; /* a single file: the pipeline's default */
  cJSON *index = NULL;
  SD_TRY(sd_json_read_file(path, &index));
  const cJSON *level = cJSON_GetObjectItemCaseSensitive(index, "max_noise_level");
  if (cJSON_IsNumber(level) && level->valuedouble >= 0 && level->valuedouble <= 1e6)
    *out = (int)level->valuedouble;
  cJSON_Delete(index);
  return 0;
}

static bool has_depth_estimator(const char *model_path) {
  char path[4200];
  snprintf(path, sizeof path, "%s/depth_estimator", model_path);
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The settings that do not apply to the pipeline, refused before the output exists. */
static int check_settings(const sd_job *job, const char *model_path, sd_pipeline_kind kind) {
  const sd_job_info *info = sd_job_get_info(job);
  if ((info->width || info->height) && kind != SD_PIPELINE_INPAINT)
    return SD_ERROR("%s: width and height: %s renders at each input's own size (rounded down to a "
                    "multiple of 8%s), as diffusers does; leave them out",
                    info->path, sd_pipeline_kind_name(kind),
                    kind == SD_PIPELINE_UPSCALE ? ", times 4 for the x4 upscaler" : "");
  bool strength_given = info->strengths[0] != SD_JOB_STRENGTH_DEFAULT;
  bool noise_given = info->noise_levels[0] != SD_JOB_NOISE_LEVEL_DEFAULT;
  if (kind == SD_PIPELINE_UPSCALE && strength_given)
    return SD_ERROR("%s: strength: the x4 upscaler runs the whole schedule; leave it out",
                    info->path);
  if (kind != SD_PIPELINE_UPSCALE && noise_given)
    return SD_ERROR("%s: noise_level is for x4 upscalers; this job runs %s", info->path,
                    sd_pipeline_kind_name(kind));
  for (int s = 0; kind != SD_PIPELINE_UPSCALE && s < info->n_strengths; s++)
    for (int t = 0; t < info->n_steps; t++) {
      float strength = sd_render_item_strength(kind, info->strengths[s]);
      if ((int)(info->steps[t] * (double)strength) < 1)
        return SD_ERROR("%s: strength %g with %d steps runs no step (diffusers needs steps x "
                        "strength >= 1)",
                        info->path, (double)strength, info->steps[t]);
    }
  if (kind == SD_PIPELINE_UPSCALE && noise_given) {
    int most;
    SD_TRY(upscaler_max_noise_level(model_path, &most));
    for (int i = 0; i < info->n_noise_levels; i++)
      if (info->noise_levels[i] > most)
        return SD_ERROR("%s: noise_level %d: this upscaler takes 0 to %d (its max_noise_level)",
                        info->path, info->noise_levels[i], most);
  }
  return 0;
}

int sd_run_inputs_shape(const sd_job *job, const sd_model_files *model, sd_render_shape *shape) {
  const sd_job_info *info = sd_job_get_info(job);
  shape->pipeline = SD_PIPELINE_TXT2IMG;
  bool depth_model = model->unet.in_channels == model->vae.latent_channels + 1;
  if (info->depth_estimator && !depth_model)
    return SD_ERROR("%s: depth_estimator: the model %s is not a depth-to-image model (its UNet "
                    "takes %d channels)",
                    info->path, info->model, model->unet.in_channels);
  if (info->depth_estimator && info->n_depth_maps > 0)
    return SD_ERROR("%s: depth_estimator and depth_maps: give one (the maps are used as they are)",
                    info->path);
  if (info->dpt_preprocess_given && !depth_model)
    return SD_ERROR("%s: dpt_preprocess: the model %s is not a depth-to-image model (no depth "
                    "estimator runs)",
                    info->path, info->model);
  if (info->dpt_preprocess_given && info->n_depth_maps > 0)
    return SD_ERROR("%s: dpt_preprocess is for the depth estimator; with depth_maps none runs",
                    info->path);
  if (info->n_images == 0)
    return 0;
  bool depth = info->n_depth_maps > 0 || info->depth_estimator || has_depth_estimator(info->model);
  sd_pipeline_kind kind;
  if (sd_pipeline_choose(model, true, info->n_masks > 0, depth, &kind) < 0)
    return sd_error_context("%s: the model %s with this job's inputs", info->path, info->model);
  SD_TRY(check_settings(job, info->model, kind));
  shape->pipeline = kind;
  if (kind == SD_PIPELINE_INPAINT && (info->width || info->height))
    return 0; /* every image resized to the job's size, as the inpainting pipeline does */
  sd_job_input first;
  SD_TRY(sd_job_input_get(job, 0, &first));
  int factor = 1 << (model->vae.num_levels - 1);
  int width, height;
  SD_TRY(sd_render_input_size(&first, kind, factor, &width, &height));
  shape->width = width;
  shape->height = height;
  shape->latent_h = height / factor;
  shape->latent_w = width / factor;
  return 0;
}

void sd_run_inputs_free(sd_run_inputs *inputs) {
  free(inputs->files);
  free(inputs->sha256);
  free(inputs->sha256_ptrs);
  memset(inputs, 0, sizeof *inputs);
}

int sd_run_inputs_hash(const sd_job *job, FILE *log, sd_run_inputs *out) {
  memset(out, 0, sizeof *out);
  const sd_job_info *info = sd_job_get_info(job);
  int64_t n = info->n_images;
  if (n == 0)
    return 0;
  size_t cells = (size_t)n * SD_OUTPUT_INPUT_FILES;
  out->files = calloc(cells, sizeof *out->files);
  out->sha256 = calloc(cells, sizeof *out->sha256);
  out->sha256_ptrs = calloc(cells, sizeof *out->sha256_ptrs);
  if (!out->files || !out->sha256 || !out->sha256_ptrs) {
    sd_run_inputs_free(out);
    return SD_ERROR("out of memory for %" PRId64 " inputs", n);
  }
  out->n = n;
  if (log && n >= 1000) {
    fprintf(log, "sdbatch run: reading %" PRId64 " inputs for their SHA-256\n", n);
    fflush(log);
  }
  for (int64_t i = 0; i < n; i++) {
    sd_job_input in;
    SD_TRY(sd_job_input_get(job, i, &in));
    const char *resolved[SD_OUTPUT_INPUT_FILES] = {in.image, in.mask, in.depth_map};
    const char *written[SD_OUTPUT_INPUT_FILES] = {in.image_written, in.mask_written,
                                                  in.depth_map_written};
    for (int k = 0; k < SD_OUTPUT_INPUT_FILES; k++) {
      size_t cell = (size_t)i * SD_OUTPUT_INPUT_FILES + (size_t)k;
      out->files[cell] = written[k];
      out->sha256_ptrs[cell] = out->sha256[cell];
      if (!resolved[k])
        continue;
      /* a mask or depth map shared by every image is read once */
      if (i > 0 && ((k == SD_OUTPUT_INPUT_MASK && info->n_masks == 1) ||
                    (k == SD_OUTPUT_INPUT_DEPTH && info->n_depth_maps == 1))) {
        memcpy(out->sha256[cell], out->sha256[k], 65);
        continue;
      }
      if (sd_sha256_file(resolved[k], out->sha256[cell]) < 0) {
        sd_error_context("%s: input %" PRId64, info->path, i);
        sd_run_inputs_free(out);
        return -1;
      }
    }
  }
  return 0;
}
