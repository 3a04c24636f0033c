/* safetensors files (header, offsets, metadata), then what a single-file checkpoint's key
 * names and shapes drive: the LDM layout scans and the inference of the text encoder, UNet and
 * VAE architectures (worker/io/ldm_*.c). */
#include "fuzz.h"

#include "io/ldm_checkpoint.h"
#include "io/safetensors.h"
#include "io/tensor_map.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = sd_fuzz_file(data, size);
  sd_safetensors *file = NULL;
  if (!path || sd_safetensors_open(path, &file) != 0)
    return 0;
  /* touch every listed tensor's bytes: they must lie inside the mapping */
  volatile uint8_t sum = 0;
  for (size_t i = 0; i < sd_safetensors_count(file); i++) {
    const sd_st_tensor *t = sd_safetensors_at(file, i);
    if (t->bytes)
      sum += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->bytes - 1];
    if (sd_safetensors_find(file, t->name) != t)
      __builtin_trap();
  }
  (void)sd_safetensors_metadata(file, "format");
  for (int family = SD_FAMILY_SD1; family <= SD_FAMILY_SD2; family++) {
    sd_tensor_map *map = sd_tensor_map_create();
    if (!map)
      break;
    sd_clip_config clip;
    sd_unet_config unet;
    sd_vae_config vae;
    (void)sd_ldm_clip(file, NULL, (sd_model_family)family, &clip, map);
    (void)sd_ldm_unet(file, NULL, (sd_model_family)family, &unet, map);
    (void)sd_ldm_vae(file, NULL, &vae, map);
    sd_tensor_map_free(map);
  }
  sd_safetensors_close(file);
  return 0;
}
