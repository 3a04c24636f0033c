/* A depth estimator folder (a Stable Diffusion depth model's depth_estimator/: config.json and
 * model.safetensors of transformers' DPTForDepthEstimation) read into a DPT config and a tensor
 * map with transformers' names, ready for sd_weights_upload. Constant transforms of the weights
 * are applied here, once, on the host: BiT's weight-standardized convolutions get their
 * standardized weights ((w - mean) / sqrt(var + 1e-8) per output channel, as the batch_norm call
 * in WeightStandardizedConv2d.forward computes them), and fusion-residual batch norms (eval mode)
 * are folded into the convolution before them (a new "<conv>.bias" appears). */
#ifndef SD_DPT_FILES_H
#define SD_DPT_FILES_H

#include "../model/dpt_config.h"
#include "tensor_map.h"

typedef struct sd_dpt_files {
  sd_dpt_config cfg;
  sd_tensor_map *tensors; /* transformers names: dpt.encoder.layer.0..., neck..., head... */
  void *internal;         /* the open file and the transformed weights */
} sd_dpt_files;

/* Reads config.json: bounds-checked (sizes within what real checkpoints use, times a margin),
 * and every setting sdbatch does not implement refused by name (a readout other than "project",
 * add_projection, a BiT that is not a "same"-padded bottleneck with 3 stages, ...). Errors name
 * the file and the field. */
int sd_dpt_config_read(const char *path, sd_dpt_config *cfg);

/* dir: the folder holding config.json and model.safetensors. */
int sd_dpt_files_open(const char *dir, sd_dpt_files **out);
void sd_dpt_files_close(sd_dpt_files *files);

#endif
