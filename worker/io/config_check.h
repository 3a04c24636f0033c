/* Bounds on the sizes a model config may state. Configs come with downloaded checkpoints, so a
 * value is checked against what the architectures sdbatch runs can use before anything is
 * allocated from it (a max_position_embeddings or num_train_timesteps of 2^31 would otherwise
 * cost gigabytes before any error). The limits are far above the real models' values (in
 * comments) and are listed in docs/security.md. Each check names the source (the config file,
 * or the checkpoint whose shapes the config was inferred from) and the diffusers field. */
#ifndef SD_CONFIG_CHECK_H
#define SD_CONFIG_CHECK_H

#include "../model/config.h"

#define SD_CFG_MAX_IO_CHANNELS 64      /* UNet in 4 / 9, VAE 3, latents 4 */
#define SD_CFG_MAX_CHANNELS    16384   /* UNet 1280, VAE 512, CLIP hidden 1024 */
#define SD_CFG_MAX_FFN         65536   /* CLIP intermediate 4096 */
#define SD_CFG_MAX_LAYERS      64      /* CLIP 23, transformer depth 1 (SDXL 10) */
#define SD_CFG_MAX_RESNETS     16      /* layers_per_block 2 */
#define SD_CFG_MAX_VOCAB       1048576 /* 49408 */
#define SD_CFG_MAX_POSITIONS   4096    /* 77 */
#define SD_CFG_MAX_SAMPLE_SIZE 1024    /* UNet latents 64 / 96 */
#define SD_CFG_MAX_VAE_SAMPLE  32768   /* VAE pixels 512 / 768 */
#define SD_CFG_MAX_TRAIN_STEPS 100000  /* 1000 */

int sd_clip_config_check(const sd_clip_config *cfg, const char *source);
int sd_unet_config_check(const sd_unet_config *cfg, const char *source);
int sd_vae_config_check(const sd_vae_config *cfg, const char *source);
int sd_scheduler_config_check(const sd_scheduler_config *cfg, const char *source);

#endif
