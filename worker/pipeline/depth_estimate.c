/* The depth model's own estimator, see depth_estimate.h. */
#include "depth_estimate.h"

#include "../io/config_json.h"
#include "../io/dpt_files.h"
#include "../io/weights.h"
#include "../model/dpt.h"

#include "../../kernels/error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SIDE 4096

struct sd_depth_estimator {
  sd_backend *be;
  sd_dpt_preprocess_config pre;
  sd_dpt_files *files;
  sd_weights *weights;
  sd_dpt *model;
};

/* A boolean field (default when absent). */
static int read_bool(const char *path, const cJSON *root, const char *name, bool fallback,
                     bool *out) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);
  if (!item || cJSON_IsNull(item)) {
    *out = fallback;
    return 0;
  }
  if (!cJSON_IsBool(item))
    return SD_ERROR("%s: '%s' must be true or false", path, name);
  *out = cJSON_IsTrue(item);
  return 0;
}

static int read_number(const char *path, const cJSON *root, const char *name, double fallback,
                       double *out) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);
  if (!item || cJSON_IsNull(item)) {
    *out = fallback;
    return 0;
  }
  if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
    return SD_ERROR("%s: '%s' must be a number", path, name);
  *out = item->valuedouble;
  return 0;
}

/* image_mean / image_std: three numbers (a single number is used for every channel). */
static int read_triple(const char *path, const cJSON *root, const char *name, float fallback,
                       float out[3]) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);
  if (!item || cJSON_IsNull(item)) {
    out[0] = out[1] = out[2] = fallback;
    return 0;
  }
  if (cJSON_IsNumber(item)) {
    out[0] = out[1] = out[2] = (float)item->valuedouble;
    return 0;
  }
  if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 3)
    return SD_ERROR("%s: '%s' must be a list of 3 numbers", path, name);
  for (int i = 0; i < 3; i++) {
    const cJSON *e = cJSON_GetArrayItem(item, i);
    if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble))
      return SD_ERROR("%s: '%s' must be a list of 3 numbers", path, name);
    out[i] = (float)e->valuedouble;
  }
  return 0;
}

int sd_dpt_backend_parse(const char *name, sd_dpt_backend *out) {
  if (strcmp(name, "pil") == 0)
    *out = SD_DPT_BACKEND_PIL;
  else if (strcmp(name, "torchvision") == 0)
    *out = SD_DPT_BACKEND_TORCHVISION;
  else
    return SD_ERROR("expected pil or torchvision, got '%s'", name);
  return 0;
}

const char *sd_dpt_backend_name(sd_dpt_backend backend) {
  return backend == SD_DPT_BACKEND_TORCHVISION ? "torchvision" : "pil";
}

static int parse_config(const char *path, const cJSON *root, sd_dpt_preprocess_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  bool keep_aspect, reduce_labels, pad;
  double multiple, resample, factor;
  SD_TRY(read_bool(path, root, "do_resize", true, &cfg->do_resize));
  SD_TRY(read_bool(path, root, "do_rescale", true, &cfg->do_rescale));
  SD_TRY(read_bool(path, root, "do_normalize", true, &cfg->do_normalize));
  SD_TRY(read_bool(path, root, "keep_aspect_ratio", false, &keep_aspect));
  SD_TRY(read_bool(path, root, "do_reduce_labels", false, &reduce_labels));
  SD_TRY(read_bool(path, root, "do_pad", false, &pad));
  SD_TRY(read_number(path, root, "ensure_multiple_of", 1, &multiple));
  SD_TRY(read_number(path, root, "resample", 3, &resample));
  SD_TRY(read_number(path, root, "rescale_factor", 1.0 / 255.0, &factor));
  /* DPTImageProcessor's defaults: ImageNet's 0.5 mean and std */
  SD_TRY(read_triple(path, root, "image_mean", 0.5f, cfg->mean));
  SD_TRY(read_triple(path, root, "image_std", 0.5f, cfg->std));
  if (keep_aspect)
    return SD_ERROR("%s: keep_aspect_ratio true is not supported (SD 2 depth uses false)", path);
  if (multiple != 1)
    return SD_ERROR("%s: ensure_multiple_of %g is not supported (SD 2 depth uses 1)", path,
                    multiple);
  if (reduce_labels)
    return SD_ERROR("%s: do_reduce_labels is for segmentation, not depth", path);
  const cJSON *divisor = cJSON_GetObjectItemCaseSensitive(root, "size_divisor");
  if (pad && divisor && !cJSON_IsNull(divisor))
    return SD_ERROR("%s: do_pad with a size_divisor is not supported", path);
  cfg->do_pad = pad;
  int r = (int)resample;
  if (resample != r ||
      !(r == SD_RESAMPLE_BOX || r == SD_RESAMPLE_BILINEAR || r == SD_RESAMPLE_HAMMING ||
        r == SD_RESAMPLE_BICUBIC || r == SD_RESAMPLE_LANCZOS))
    return SD_ERROR("%s: resample %g is not one of PIL's filters sdbatch has (1 lanczos, 2 "
                    "bilinear, 3 bicubic, 4 box, 5 hamming)",
                    path, resample);
  cfg->resample = (sd_resample)r;
  if (!(factor > 0 && factor <= 1))
    return SD_ERROR("%s: rescale_factor %g must be in (0, 1]", path, factor);
  cfg->rescale_factor = factor;
  for (int c = 0; c < 3; c++)
    if (!(cfg->std[c] != 0.0f))
      return SD_ERROR("%s: image_std has a zero", path);
  if (cfg->do_resize) {
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(root, "size");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(size, "height");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(size, "width");
    if (!cJSON_IsObject(size) || !cJSON_IsNumber(h) || !cJSON_IsNumber(w))
      return SD_ERROR("%s: 'size' must be {\"height\": H, \"width\": W}", path);
    if (!(h->valuedouble >= 1 && h->valuedouble <= MAX_SIDE && w->valuedouble >= 1 &&
          w->valuedouble <= MAX_SIDE) ||
        h->valuedouble != (int)h->valuedouble || w->valuedouble != (int)w->valuedouble)
      return SD_ERROR("%s: size %gx%g: sides must be whole numbers from 1 to %d", path,
                      w->valuedouble, h->valuedouble, MAX_SIDE);
    cfg->height = (int)h->valuedouble;
    cfg->width = (int)w->valuedouble;
  }
  return 0;
}

int sd_dpt_preprocess_config_read(const char *path, sd_dpt_preprocess_config *cfg) {
  cJSON *root = NULL;
  SD_TRY(sd_json_read_file(path, &root));
  int rc = parse_config(path, root, cfg);
  cJSON_Delete(root);
  return rc;
}

int sd_dpt_preprocess_config_set_backend(sd_dpt_preprocess_config *cfg, sd_dpt_backend backend,
                                         const char *path) {
  if (backend == SD_DPT_BACKEND_TORCHVISION) {
    if (cfg->resample != SD_RESAMPLE_BILINEAR && cfg->resample != SD_RESAMPLE_BICUBIC)
      return SD_ERROR("%s: resample %d with the torchvision preprocessing: sdbatch has torch's "
                      "antialiased bilinear (2) and bicubic (3) only",
                      path, (int)cfg->resample);
    if (cfg->do_pad)
      return SD_ERROR("%s: do_pad true with the torchvision preprocessing (transformers' "
                      "torchvision backend pads to a size_divisor, which sdbatch does not run)",
                      path);
  }
  cfg->backend = backend;
  return 0;
}

/* DPTImageProcessorPil: x * rescale_factor in double stored as float32, then (x - mean) / std in
 * float32. out (3, H, W) from src (H, W, 3). */
static void rescale_normalize_pil(const sd_dpt_preprocess_config *cfg, const sd_image *src,
                                  float *out) {
  size_t plane = (size_t)src->width * src->height;
  for (int c = 0; c < 3; c++)
    for (size_t i = 0; i < plane; i++) {
      float x = (float)src->data[i * 3 + c];
      if (cfg->do_rescale)
        x = (float)(x * cfg->rescale_factor);
      if (cfg->do_normalize)
        x = (x - cfg->mean[c]) / cfg->std[c];
      out[c * plane + i] = x;
    }
}

/* TorchvisionBackend.rescale_and_normalize: with both steps, mean and std are float32 tensors
 * multiplied by the float32 of 1 / rescale_factor, then tvF.normalize computes (x - m) / s in
 * float32; rescale alone is the uint8 tensor times rescale_factor (both as float32); normalize
 * alone (x - mean) / std. out (3, H, W) from src (H, W, 3). */
static void rescale_normalize_torchvision(const sd_dpt_preprocess_config *cfg, const sd_image *src,
                                          float *out) {
  size_t plane = (size_t)src->width * src->height;
  float inverse = (float)(1.0 / cfg->rescale_factor), factor = (float)cfg->rescale_factor;
  for (int c = 0; c < 3; c++) {
    float mean = cfg->mean[c], std = cfg->std[c];
    if (cfg->do_rescale && cfg->do_normalize) {
      mean = mean * inverse;
      std = std * inverse;
    }
    for (size_t i = 0; i < plane; i++) {
      float x = (float)src->data[i * 3 + c];
      if (cfg->do_normalize)
        x = (x - mean) / std;
      else if (cfg->do_rescale)
        x = x * factor;
      out[c * plane + i] = x;
    }
  }
}

int sd_dpt_preprocess(const sd_dpt_preprocess_config *cfg, const sd_image *rgb, float *out) {
  if (rgb->channels != 3)
    return SD_ERROR("the depth estimator takes an RGB image (got %d channels)", rgb->channels);
  bool torchvision = cfg->backend == SD_DPT_BACKEND_TORCHVISION;
  sd_image resized = {0};
  const sd_image *src = rgb;
  if (cfg->do_resize) {
    SD_TRY(torchvision
               ? sd_image_resize_torch_aa(rgb, cfg->width, cfg->height, cfg->resample, &resized)
               : sd_image_resize(rgb, cfg->width, cfg->height, cfg->resample, &resized));
    src = &resized;
  }
  if (torchvision)
    rescale_normalize_torchvision(cfg, src, out);
  else
    rescale_normalize_pil(cfg, src, out);
  sd_image_free(&resized);
  return 0;
}

/* The estimator of the DPT folder `dir` (config.json, weights) with the processor config `config`
 * (a preprocessor_config.json); errors carry `what`. */
static int estimator_open(sd_backend *be, const char *dir, const char *config, const char *what,
                          sd_dpt_backend backend, sd_depth_estimator **out) {
  sd_depth_estimator *e = calloc(1, sizeof *e);
  if (!e)
    return SD_ERROR("out of memory");
  e->be = be;
  int rc = sd_dpt_preprocess_config_read(config, &e->pre);
  if (rc == 0)
    rc = sd_dpt_preprocess_config_set_backend(&e->pre, backend, config);
  if (rc == 0 && !e->pre.do_resize)
    rc = SD_ERROR("%s: do_resize false: the estimator needs its fixed input size", config);
  if (rc == 0 && (rc = sd_dpt_files_open(dir, &e->files)) == 0 &&
      (rc = sd_weights_upload(be, e->files->tensors, "depth_estimator", &e->weights)) == 0)
    rc = sd_dpt_create(be, &e->files->cfg, e->weights, &e->model);
  int64_t oh = 0, ow = 0;
  if (rc == 0) {
    sd_dpt_output_size(e->model, e->pre.height, e->pre.width, &oh, &ow);
    if (oh == 0 || e->files->cfg.num_channels != 3)
      rc = SD_ERROR("%s: the feature extractor's size %dx%d is not an input the depth estimator "
                    "takes",
                    config, e->pre.width, e->pre.height);
  }
  if (rc < 0) {
    sd_depth_estimator_free(e);
    return sd_error_context("%s: depth estimator", what);
  }
  *out = e;
  return 0;
}

static bool is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int sd_depth_estimator_open(sd_backend *be, const char *model_dir, sd_dpt_backend backend,
                            sd_depth_estimator **out) {
  *out = NULL;
  char dir[4096], config[4200];
  if (snprintf(dir, sizeof dir, "%s/depth_estimator", model_dir) >= (int)sizeof dir)
    return SD_ERROR("%s: the path is too long", model_dir);
  if (!is_dir(dir))
    return 0;
  snprintf(config, sizeof config, "%s/feature_extractor/preprocessor_config.json", model_dir);
  return estimator_open(be, dir, config, model_dir, backend, out);
}

int sd_depth_estimator_open_given(sd_backend *be, const char *dir, sd_dpt_backend backend,
                                  sd_depth_estimator **out) {
  *out = NULL;
  char sub[4200], config[4300];
  if (snprintf(sub, sizeof sub, "%s/depth_estimator", dir) >= (int)sizeof sub)
    return SD_ERROR("%s: the path is too long", dir);
  if (!is_dir(dir))
    return SD_ERROR("%s: not a folder (a depth estimator is a diffusers depth model folder or a "
                    "transformers DPT folder)",
                    dir);
  if (is_dir(sub)) { /* a diffusers depth model folder */
    snprintf(config, sizeof config, "%s/feature_extractor/preprocessor_config.json", dir);
    return estimator_open(be, sub, config, dir, backend, out);
  }
  snprintf(config, sizeof config, "%s/preprocessor_config.json", dir);
  if (access(config, R_OK) != 0)
    return SD_ERROR("%s: neither a depth_estimator/ folder nor a DPT folder with "
                    "preprocessor_config.json",
                    dir);
  return estimator_open(be, dir, config, dir, backend, out);
}

void sd_depth_estimator_free(sd_depth_estimator *e) {
  if (!e)
    return;
  sd_dpt_free(e->model);
  sd_weights_free(e->weights);
  sd_dpt_files_close(e->files);
  free(e);
}

int sd_depth_estimate(sd_depth_estimator *e, const sd_image *rgb, sd_tensor *depth) {
  sd_backend *be = e->be;
  const int H = e->pre.height, W = e->pre.width;
  int64_t oh, ow;
  sd_dpt_output_size(e->model, H, W, &oh, &ow);
  float *host = malloc((size_t)3 * H * W * sizeof *host);
  if (!host)
    return SD_ERROR("out of memory for the depth estimator's input");
  sd_tensor pixels = sd_tensor_4d(be->ops->act_dtype, 1, 3, H, W);
  *depth = sd_tensor_3d(be->ops->act_dtype, 1, oh, ow);
  int rc = sd_dpt_preprocess(&e->pre, rgb, host);
  if (rc == 0)
    rc = sd_tensor_alloc_persistent(be, &pixels);
  if (rc == 0)
    rc = sd_tensor_upload_f32(be, &pixels, host);
  if (rc == 0)
    rc = sd_tensor_alloc_persistent(be, depth);
  if (rc == 0)
    rc = sd_dpt_forward(e->model, &pixels, depth);
  sd_tensor_free(be, &pixels);
  free(host);
  if (rc < 0) {
    sd_tensor_free(be, depth);
    return sd_error_context("depth estimator");
  }
  return 0;
}
