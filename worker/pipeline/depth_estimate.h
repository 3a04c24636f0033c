/* A depth model's own depth estimator, as StableDiffusionDepth2ImgPipeline runs it when no depth
 * map is given: the init image through the model's feature_extractor/ (transformers'
 * DPTImageProcessor: resize, rescale, normalize) and depth_estimator/ (DPTForDepthEstimation),
 * whose predicted_depth then goes through sd_depth_map_prepare like a given map. */
#ifndef SD_DEPTH_ESTIMATE_H
#define SD_DEPTH_ESTIMATE_H

#include "../../kernels/ops.h"
#include "../image/image.h"

#include <stdbool.h>

/* The DPTImageProcessor settings sdbatch runs (preprocessor_config.json). */
typedef struct sd_dpt_preprocess_config {
  bool do_resize;
  int height, width; /* size {height, width} */
  sd_resample resample;
  bool do_rescale;
  double rescale_factor;
  bool do_normalize;
  float mean[3], std[3];
} sd_dpt_preprocess_config;

/* Reads preprocessor_config.json; settings sdbatch does not implement (keep_aspect_ratio,
 * ensure_multiple_of other than 1, do_pad with a size_divisor, do_reduce_labels, a resample
 * that is not one of PIL's convolution filters, sizes outside [1, 4096]) are refused by name,
 * naming the file. */
int sd_dpt_preprocess_config_read(const char *path, sd_dpt_preprocess_config *cfg);

/* out (3, H, W) float32 (H, W: the config's size when do_resize, else the image's) = the
 * processor's pixel_values of an RGB image, as transformers 5's PIL backend computes them:
 * PIL's resize on the 8-bit image, then x * rescale_factor, then (x - mean) / std per channel. */
int sd_dpt_preprocess(const sd_dpt_preprocess_config *cfg, const sd_image *rgb, float *out);

typedef struct sd_depth_estimator sd_depth_estimator;

/* Opens model_dir/depth_estimator and model_dir/feature_extractor on be. *out is NULL (and 0
 * returned) when model_dir has no depth_estimator/ folder. */
int sd_depth_estimator_open(sd_backend *be, const char *model_dir, sd_depth_estimator **out);
/* Opens a depth estimator given apart from the model (a single-file depth checkpoint carries
 * none that sdbatch reads): `dir` is a diffusers depth model folder (its depth_estimator/ and
 * feature_extractor/) or a transformers DPT folder (config.json, model.safetensors and
 * preprocessor_config.json side by side, as Intel/dpt-hybrid-midas). An error when it is
 * neither. */
int sd_depth_estimator_open_given(sd_backend *be, const char *dir, sd_depth_estimator **out);
void sd_depth_estimator_free(sd_depth_estimator *estimator);

/* depth = the predicted_depth (1, H', W') of an RGB image, in a persistent tensor the caller
 * frees (sd_tensor_free). */
int sd_depth_estimate(sd_depth_estimator *estimator, const sd_image *rgb, sd_tensor *depth);

#endif
