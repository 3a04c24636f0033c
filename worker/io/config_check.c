/* Bounds on model config values (see config_check.h). */
#include "config_check.h"

#include "../../kernels/error.h"

#include <math.h>

static int in_range(const char *source, const char *component, const char *field, int value,
                    int min, int max) {
  if (value < min || value > max)
    return SD_ERROR("%s: %s %s = %d is outside what sdbatch supports (%d to %d)", source, component,
                    field, value, min, max);
  return 0;
}

static int level_in_range(const char *source, const char *component, const char *field, int level,
                          int value, int min, int max) {
  if (value < min || value > max)
    return SD_ERROR("%s: %s %s[%d] = %d is outside what sdbatch supports (%d to %d)", source,
                    component, field, level, value, min, max);
  return 0;
}

static int finite_in(const char *source, const char *component, const char *field, float value,
                     float min, float max) {
  if (!(value >= min && value <= max))
    return SD_ERROR("%s: %s %s = %g is outside what sdbatch supports (%g to %g)", source, component,
                    field, (double)value, (double)min, (double)max);
  return 0;
}

int sd_clip_config_check(const sd_clip_config *cfg, const char *source) {
  const char *part = "text encoder";
  SD_TRY(in_range(source, part, "vocab_size", cfg->vocab_size, 1, SD_CFG_MAX_VOCAB));
  SD_TRY(in_range(source, part, "hidden_size", cfg->hidden_size, 1, SD_CFG_MAX_CHANNELS));
  SD_TRY(in_range(source, part, "intermediate_size", cfg->intermediate_size, 1, SD_CFG_MAX_FFN));
  SD_TRY(in_range(source, part, "num_hidden_layers", cfg->num_hidden_layers, 1, SD_CFG_MAX_LAYERS));
  SD_TRY(
      in_range(source, part, "num_attention_heads", cfg->num_attention_heads, 1, cfg->hidden_size));
  SD_TRY(in_range(source, part, "max_position_embeddings", cfg->max_position_embeddings, 2,
                  SD_CFG_MAX_POSITIONS));
  SD_TRY(in_range(source, part, "bos_token_id", cfg->bos_token_id, 0, cfg->vocab_size - 1));
  SD_TRY(in_range(source, part, "eos_token_id", cfg->eos_token_id, 0, cfg->vocab_size - 1));
  SD_TRY(finite_in(source, part, "layer_norm_eps", cfg->layer_norm_eps, 0.0f, 1.0f));
  return 0;
}

int sd_unet_config_check(const sd_unet_config *cfg, const char *source) {
  const char *part = "UNet";
  SD_TRY(in_range(source, part, "in_channels", cfg->in_channels, 1, SD_CFG_MAX_IO_CHANNELS));
  SD_TRY(in_range(source, part, "out_channels", cfg->out_channels, 1, SD_CFG_MAX_IO_CHANNELS));
  SD_TRY(in_range(source, part, "levels (len(block_out_channels))", cfg->num_levels, 1,
                  SD_MAX_LEVELS));
  for (int i = 0; i < cfg->num_levels; i++) {
    SD_TRY(level_in_range(source, part, "block_out_channels", i, cfg->block_out_channels[i], 1,
                          SD_CFG_MAX_CHANNELS));
    SD_TRY(level_in_range(source, part, "transformer_layers_per_block", i,
                          cfg->transformer_layers_per_block[i], 0, SD_CFG_MAX_LAYERS));
    SD_TRY(level_in_range(source, part, "num_attention_heads", i, cfg->num_attention_heads[i], 0,
                          cfg->block_out_channels[i]));
  }
  SD_TRY(in_range(source, part, "layers_per_block", cfg->layers_per_block, 1, SD_CFG_MAX_RESNETS));
  SD_TRY(in_range(source, part, "cross_attention_dim", cfg->cross_attention_dim, 1,
                  SD_CFG_MAX_CHANNELS));
  SD_TRY(in_range(source, part, "norm_num_groups", cfg->norm_num_groups, 1, SD_CFG_MAX_CHANNELS));
  SD_TRY(in_range(source, part, "sample_size", cfg->sample_size, 1, SD_CFG_MAX_SAMPLE_SIZE));
  SD_TRY(finite_in(source, part, "norm_eps", cfg->norm_eps, 0.0f, 1.0f));
  SD_TRY(finite_in(source, part, "freq_shift", cfg->freq_shift, -1e6f, 1e6f));
  return 0;
}

int sd_vae_config_check(const sd_vae_config *cfg, const char *source) {
  const char *part = "VAE";
  SD_TRY(in_range(source, part, "in_channels", cfg->in_channels, 1, SD_CFG_MAX_IO_CHANNELS));
  SD_TRY(in_range(source, part, "out_channels", cfg->out_channels, 1, SD_CFG_MAX_IO_CHANNELS));
  SD_TRY(
      in_range(source, part, "latent_channels", cfg->latent_channels, 1, SD_CFG_MAX_IO_CHANNELS));
  SD_TRY(in_range(source, part, "levels (len(block_out_channels))", cfg->num_levels, 1,
                  SD_MAX_LEVELS));
  for (int i = 0; i < cfg->num_levels; i++)
    SD_TRY(level_in_range(source, part, "block_out_channels", i, cfg->block_out_channels[i], 1,
                          SD_CFG_MAX_CHANNELS));
  SD_TRY(in_range(source, part, "layers_per_block", cfg->layers_per_block, 1, SD_CFG_MAX_RESNETS));
  SD_TRY(in_range(source, part, "norm_num_groups", cfg->norm_num_groups, 1, SD_CFG_MAX_CHANNELS));
  SD_TRY(in_range(source, part, "sample_size", cfg->sample_size, 1, SD_CFG_MAX_VAE_SAMPLE));
  SD_TRY(finite_in(source, part, "scaling_factor", cfg->scaling_factor, 1e-6f, 1e6f));
  return 0;
}

int sd_scheduler_config_check(const sd_scheduler_config *cfg, const char *source) {
  const char *part = "scheduler";
  SD_TRY(in_range(source, part, "num_train_timesteps", cfg->num_train_timesteps, 1,
                  SD_CFG_MAX_TRAIN_STEPS));
  SD_TRY(
      in_range(source, part, "steps_offset", cfg->steps_offset, 0, cfg->num_train_timesteps - 1));
  SD_TRY(finite_in(source, part, "beta_start", cfg->beta_start, 0.0f, 1.0f));
  SD_TRY(finite_in(source, part, "beta_end", cfg->beta_end, 0.0f, 1.0f));
  SD_TRY(finite_in(source, part, "clip_sample_range", cfg->clip_sample_range, 0.0f, 1e6f));
  return 0;
}
