/* A depth model's own depth estimator, as StableDiffusionDepth2ImgPipeline runs it when no depth
 * map is given: the init image through the model's feature_extractor/ (transformers'
 * DPTImageProcessor: resize, rescale, normalize) and depth_estimator/ (DPTForDepthEstimation),
 * whose predicted_depth then goes through sd_depth_map_prepare like a given map. */
#ifndef SD_DEPTH_ESTIMATE_H
#define SD_DEPTH_ESTIMATE_H

#include "../../kernels/ops.h"
#include "../image/image.h"

#include <stdbool.h>

/* Whose arithmetic DPTImageProcessor follows: transformers 5 has two backends, the same steps
 * computed differently (docs/depth.md). */
typedef enum sd_dpt_backend {
  SD_DPT_BACKEND_PIL = 0,     /* DPTImageProcessorPil, what transformers falls back to without
                                 torchvision: PIL's resize, rescale, then normalize */
  SD_DPT_BACKEND_TORCHVISION, /* DPTImageProcessor with torchvision installed: torch's antialiased
                                 uint8 resize, then a fused rescale + normalize in float32 */
} sd_dpt_backend;

/* "pil", "torchvision"; -1 with an error naming the choices otherwise. */
int sd_dpt_backend_parse(const char *name, sd_dpt_backend *out);
const char *sd_dpt_backend_name(sd_dpt_backend backend);

/* The DPTImageProcessor settings sdbatch runs (preprocessor_config.json). */
typedef struct sd_dpt_preprocess_config {
  sd_dpt_backend backend; /* not from the file: SD_DPT_BACKEND_PIL after reading it */
  bool do_resize;
  int height, width; /* size {height, width} */
  sd_resample resample;
  bool do_rescale;
  double rescale_factor;
  bool do_normalize;
  float mean[3], std[3];
  bool do_pad; /* without a size_divisor (refused): nothing to do in the PIL backend */
} sd_dpt_preprocess_config;

/* Reads preprocessor_config.json; settings sdbatch does not implement (keep_aspect_ratio,
 * ensure_multiple_of other than 1, do_pad with a size_divisor, do_reduce_labels, a resample
 * that is not one of PIL's convolution filters, sizes outside [1, 4096]) are refused by name,
 * naming the file. */
int sd_dpt_preprocess_config_read(const char *path, sd_dpt_preprocess_config *cfg);

/* Sets cfg->backend; refuses (naming path, the config file) settings the torchvision backend
 * computes differently and sdbatch does not: a resample other than bilinear or bicubic, do_pad
 * (transformers' torchvision backend pads only to a size_divisor). */
int sd_dpt_preprocess_config_set_backend(sd_dpt_preprocess_config *cfg, sd_dpt_backend backend,
                                         const char *path);

/* out (3, H, W) float32 (H, W: the config's size when do_resize, else the image's) = the
 * processor's pixel_values of an RGB image, as transformers 5 computes them with cfg->backend:
 *  - PIL: PIL's resize on the 8-bit image, then x * rescale_factor (double, stored as float32),
 *    then (x - mean) / std per channel in float32;
 *  - torchvision: torch's antialiased resize of the uint8 image (sd_image_resize_torch_aa), then
 *    with both rescale and normalize (x - m) / s in float32, m = mean * (1 / rescale_factor) and
 *    s = std * (1 / rescale_factor) multiplied in float32 (the fused form); rescale alone
 *    x * rescale_factor and normalize alone (x - mean) / std, all in float32. */
int sd_dpt_preprocess(const sd_dpt_preprocess_config *cfg, const sd_image *rgb, float *out);

typedef struct sd_depth_estimator sd_depth_estimator;

/* Opens model_dir/depth_estimator and model_dir/feature_extractor on be, its input preprocessed
 * as `backend` computes it. *out is NULL (and 0 returned) when model_dir has no depth_estimator/
 * folder. */
int sd_depth_estimator_open(sd_backend *be, const char *model_dir, sd_dpt_backend backend,
                            sd_depth_estimator **out);
/* Opens a depth estimator given apart from the model (a single-file depth checkpoint carries
 * none that sdbatch reads): `dir` is a diffusers depth model folder (its depth_estimator/ and
 * feature_extractor/) or a transformers DPT folder (config.json, model.safetensors and
 * preprocessor_config.json side by side, as Intel/dpt-hybrid-midas). An error when it is
 * neither. */
int sd_depth_estimator_open_given(sd_backend *be, const char *dir, sd_dpt_backend backend,
                                  sd_depth_estimator **out);
void sd_depth_estimator_free(sd_depth_estimator *estimator);

/* depth = the predicted_depth (1, H', W') of an RGB image, in a persistent tensor the caller
 * frees (sd_tensor_free). */
int sd_depth_estimate(sd_depth_estimator *estimator, const sd_image *rgb, sd_tensor *depth);

#endif
