/* Original single-file checkpoints (CompVis / Stability layout): each component's architecture
 * is inferred from key names and shapes (optionally checked against and completed by an LDM YAML
 * config), and every key is mapped to its diffusers / transformers name, as diffusers'
 * single_file_utils does (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
 * convert_ldm_clip_checkpoint, convert_open_clip_checkpoint). Mapped tensors point into the file's
 * mapping. The export functions go the other way (ldm_export.h), through the same key maps.
 * Module-internal (model_files.c, ldm_export.c), declared here for tests. */
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
 * 1.x: 8 per level; SD 2.x: head size 64; a UNet with class embeddings, the x4 upscaler: 8 per
 * level). label_emb.weight gives num_class_embeds; only_cross_attention comes from attn1's
 * to_k widths, else the YAML's disable_self_attentions, else false. upcast_attention and
 * sample_size are left to the caller. */
int sd_ldm_unet(const sd_safetensors *file, const sd_ldm_yaml *yaml, sd_model_family family,
                sd_unet_config *cfg, sd_tensor_map *map);
/* scaling_factor and sample_size are left to the caller. */
int sd_ldm_vae(const sd_safetensors *file, const sd_ldm_yaml *yaml, sd_vae_config *cfg,
               sd_tensor_map *map);
/* SD 1.x (cond_stage_model.transformer., transformers names already) or SD 2.x OpenCLIP
 * (cond_stage_model.model.). SD 2.x uses the penultimate layer's output: a file with the whole
 * OpenCLIP text tower (text_projection present, as in Stability's releases) has its last resblock
 * dropped unless the YAML says layer: "last"; a file without text_projection was converted from
 * a diffusers text encoder (sd_ldm_clip_export, diffusers' conversion script) whose layers are
 * already cut, and keeps them all. */
int sd_ldm_clip(const sd_safetensors *file, const sd_ldm_yaml *yaml, sd_model_family family,
                sd_clip_config *cfg, sd_tensor_map *map);

/* Export: diffusers names back to original ones ---------------------------------------------- */

/* One prefix of an original name and the diffusers prefix the key maps give it. kind 1 marks
 * the VAE attention projections (linear in diffusers, 1x1 convolutions in the original). */
typedef struct sd_ldm_prefix_pair {
  char ldm[128];
  char diffusers[128];
  int kind;
} sd_ldm_prefix_pair;

typedef struct sd_ldm_prefixes {
  sd_ldm_prefix_pair *pairs;
  size_t count, capacity;
} sd_ldm_prefixes;

int sd_ldm_prefixes_add(sd_ldm_prefixes *p, const char *ldm, const char *diffusers, int kind);
void sd_ldm_prefixes_free(sd_ldm_prefixes *p);

/* The tensors of a single file being written: names and joined buffers owned, data otherwise
 * borrowed from the model's maps. */
typedef struct sd_ldm_export {
  sd_st_tensor *tensors;
  size_t count, capacity;
  void **buffers;
  size_t n_buffers;
} sd_ldm_export;

/* Adds a tensor (the name is copied, the data borrowed). */
int sd_ldm_export_add(sd_ldm_export *out, const char *name, sd_dtype dtype, int ndim,
                      const int64_t *shape, const void *data, size_t bytes);
/* A buffer of bytes owned by out (freed with it); NULL with an error when out of memory. */
void *sd_ldm_export_buffer(sd_ldm_export *out, size_t bytes);
void sd_ldm_export_free(sd_ldm_export *out);
/* Every tensor of map under model_prefix + its original name: the longest pair whose diffusers
 * prefix starts the name gives its original prefix (kind 1: a (C, C) weight written as
 * (C, C, 1, 1)). A name no pair covers is an error naming it and the component. */
int sd_ldm_export_renamed(sd_ldm_export *out, const char *component, const char *model_prefix,
                          const sd_ldm_prefixes *pairs, const sd_tensor_map *map);

/* The UNet's, VAE's and text encoder's tensors under their original names, for the layouts the
 * configs give (the inverse of sd_ldm_unet / sd_ldm_vae / sd_ldm_clip). The SD 2.x text encoder
 * is written in OpenCLIP layout (q, k, v joined into in_proj) with the model's layers only, no
 * text_projection: a file whose last resblock is already cut (see sd_ldm_clip). */
int sd_ldm_unet_export(const sd_unet_config *cfg, const sd_tensor_map *map, sd_ldm_export *out);
int sd_ldm_vae_export(const sd_vae_config *cfg, const sd_tensor_map *map, sd_ldm_export *out);
int sd_ldm_clip_export(sd_model_family family, const sd_clip_config *cfg, const sd_tensor_map *map,
                       sd_ldm_export *out);

#endif
