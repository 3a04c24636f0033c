/* A model's tensors under their original names, written as one safetensors file (see
 * ldm_export.h; the per-component name maps are in ldm_unet.c, ldm_vae.c, ldm_clip.c). */
#include "ldm_export.h"

#include "../../kernels/error.h"
#include "ldm_checkpoint.h"

int sd_ldm_export_checkpoint(const sd_model_files *model, const char *path) {
  sd_ldm_export out = {0};
  int rc = sd_ldm_unet_export(&model->unet, model->unet_tensors, &out);
  if (rc == 0)
    rc = sd_ldm_vae_export(&model->vae, model->vae_tensors, &out);
  if (rc == 0)
    rc = sd_ldm_clip_export(model->family, &model->clip, model->clip_tensors, &out);
  static const char *const keys[] = {"format"}, *const values[] = {"pt"};
  if (rc == 0)
    rc = sd_safetensors_write(path, out.tensors, out.count, keys, values, 1);
  sd_ldm_export_free(&out);
  return rc < 0 ? sd_error_context("%s: writing %s as a single-file checkpoint", path, model->path)
                : 0;
}
