/* Original single-file checkpoints (CompVis / Stability layout): each component's architecture
 * is inferred from key names and shapes (optionally checked against and completed by an LDM YAML
 * config), and every key is mapped to its diffusers / transformers name, as diffusers'
 * single_file_utils does (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
 * convert_ldm_clip_checkpoint, convert_open_clip_checkpoint). Mapped tensors point into the file's
 * mapping. Module-internal (model_files.c), declared here for tests. */
#ifndef SD_LDM_CHECKPOINT_H
#define SD_LDM_CHECKPOINT_H

#include "ldm_yaml.h"
#include "model_files.h"

#define SD_LDM_UNET_PREFIX     "model.diffusion_model."
#define SD_LDM_VAE_PREFIX      "first_stage_model."
#define SD_LDM_CLIP_PREFIX     "cond_stage_model.transformer."
#define SD_LDM_OPENCLIP_PREFIX "cond_stage_model.model."

/* The tensor named by the printf-style name, checked to have ndim dims; -1 with an error naming
 * the file and tensor otherwise. */
int sd_ldm_require(const sd_safetensors *file, const sd_st_tensor **out, int ndim,
                   const char *name_fmt, ...) __attribute__((format(printf, 4, 5)));
/* NULL when absent. */
const sd_st_tensor *sd_ldm_find(const sd_safetensors *file, const char *name_fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Highest index + 1 among keys `<prefix><index>.` (0 when there are none). */
int sd_ldm_count_indexed(const sd_safetensors *file, const char *prefix);
/* Parses "<digits>." at *s, advancing past the dot; -1 (no error set) when absent. */
int sd_ldm_parse_index(const char **s, int *out);
/* Copies key without prefix into the diffusers name buffer; -1 with an error when too long. */
int sd_ldm_name(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* yaml may be NULL. The family decides the heads when neither the YAML nor the shapes can (SD
 * 1.x: 8 per level; SD 2.x: head size 64). upcast_attention and sample_size are left to the
 * caller. */
int sd_ldm_unet(const sd_safetensors *file, const sd_ldm_yaml *yaml, sd_model_family family,
                sd_unet_config *cfg, sd_tensor_map *map);
/* scaling_factor and sample_size are left to the caller. */
int sd_ldm_vae(const sd_safetensors *file, const sd_ldm_yaml *yaml, sd_vae_config *cfg,
               sd_tensor_map *map);
/* SD 1.x (cond_stage_model.transformer., transformers names already) or SD 2.x OpenCLIP
 * (cond_stage_model.model.; the last resblock dropped unless the YAML says layer: "last"). */
int sd_ldm_clip(const sd_safetensors *file, const sd_ldm_yaml *yaml, sd_model_family family,
                sd_clip_config *cfg, sd_tensor_map *map);

#endif
