/* Writing a model as an original single-file checkpoint (CompVis / Stability layout), the file
 * A1111, ComfyUI, kohya-ss and diffusers' from_single_file read: the UNet under
 * model.diffusion_model., the VAE under first_stage_model., the text encoder under
 * cond_stage_model.transformer. (SD 1.x) or cond_stage_model.model. (SD 2.x, OpenCLIP layout
 * without the last resblock SD skips, as diffusers' conversion script writes it). Every tensor
 * keeps its dtype and bytes, tensors in name order; names are the inverse of the key maps
 * model_files uses to read such files, so sd_model_files_open of the result gives the model's
 * tensors back. */
#ifndef SD_LDM_EXPORT_H
#define SD_LDM_EXPORT_H

#include "model_files.h"

/* Writes model's UNet, VAE and text encoder to path (atomically: a temporary file renamed into
 * place). Errors name the tensor that has no original name, or the file. */
int sd_ldm_export_checkpoint(const sd_model_files *model, const char *path);

/* The same from configs and tensor maps (diffusers names) given apart, e.g. a trained UNet's
 * master weights with a pretrained model's VAE and text encoder. */
int sd_ldm_export_components(sd_model_family family, const sd_unet_config *unet,
                             const sd_tensor_map *unet_tensors, const sd_vae_config *vae,
                             const sd_tensor_map *vae_tensors, const sd_clip_config *clip,
                             const sd_tensor_map *clip_tensors, const char *path);

#endif
