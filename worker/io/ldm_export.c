/* A model's tensors under their original names, written as one safetensors file (see
 * ldm_export.h; the per-component name maps are in ldm_unet.c, ldm_vae.c, ldm_clip.c). */
#include "ldm_export.h"

#include "../../kernels/error.h"
#include "ldm_checkpoint.h"

#include <stdlib.h>
#include <string.h>

static int by_name(const void *a, const void *b) {
  return strcmp(((const sd_st_tensor *)a)->name, ((const sd_st_tensor *)b)->name);
}

int sd_ldm_export_components(sd_model_family family, const sd_unet_config *unet,
                             const sd_tensor_map *unet_tensors, const sd_vae_config *vae,
                             const sd_tensor_map *vae_tensors, const sd_clip_config *clip,
                             const sd_tensor_map *clip_tensors, const char *path) {
  sd_ldm_export out = {0};
  int rc = sd_ldm_unet_export(unet, unet_tensors, &out);
  if (rc == 0)
    rc = sd_ldm_vae_export(vae, vae_tensors, &out);
  if (rc == 0)
    rc = sd_ldm_clip_export(family, clip, clip_tensors, &out);
  static const char *const keys[] = {"format"}, *const values[] = {"pt"};
  /* in name order: the same model gives the same bytes whatever order its source lists */
  if (rc == 0)
    qsort(out.tensors, out.count, sizeof *out.tensors, by_name);
  if (rc == 0)
    rc = sd_safetensors_write(path, out.tensors, out.count, keys, values, 1);
  sd_ldm_export_free(&out);
  return rc;
}

int sd_ldm_export_checkpoint(const sd_model_files *model, const char *path) {
  if (sd_ldm_export_components(model->family, &model->unet, model->unet_tensors, &model->vae,
                               model->vae_tensors, &model->clip, model->clip_tensors, path) < 0)
    return sd_error_context("%s: writing %s as a single-file checkpoint", path, model->path);
  return 0;
}
