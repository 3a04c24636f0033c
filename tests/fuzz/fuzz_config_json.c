/* The JSON configs of a diffusers folder: the same bytes through the UNet, VAE, text encoder and
 * scheduler readers, and as model_index.json / tokenizer_config.json objects. */
#include "fuzz.h"

#include "io/config_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  sd_unet_config unet;
  sd_vae_config vae;
  sd_clip_config clip;
  sd_scheduler_config scheduler;
  (void)sd_unet_config_parse(text, size, "config.json", &unet);
  (void)sd_vae_config_parse(text, size, "config.json", &vae);
  (void)sd_clip_config_parse(text, size, "config.json", &clip);
  (void)sd_scheduler_config_parse(text, size, "scheduler_config.json", &scheduler);
  return 0;
}
