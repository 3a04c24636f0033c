/* VAE of an original checkpoint (first_stage_model.*): architecture from shapes, LDM
 * encoder/decoder keys to diffusers AutoencoderKL names (decoder up.N in reverse order, 1x1-conv
 * attention reshaped to linear; see ldm_checkpoint.h). */
#include "ldm_checkpoint.h"

#include "../../kernels/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Highest index + 1 of `<prefix><index>.` among the VAE keys. */
static int count_indexed(const sd_safetensors *file, const char *prefix) {
  char full[128];
  snprintf(full, sizeof full, "%s%s", SD_LDM_VAE_PREFIX, prefix);
  return sd_ldm_count_indexed(file, full);
}

static int yaml_mismatch(const sd_ldm_yaml *y, const char *key, int stated, int found) {
  return SD_ERROR("%s: first_stage_config.params.ddconfig.%s = %d disagrees with the checkpoint "
                  "(%d)",
                  y->path, key, stated, found);
}

static int check_yaml(const sd_ldm_yaml *y, const sd_vae_config *cfg) {
  if (y->vae.z_channels >= 0 && y->vae.z_channels != cfg->latent_channels)
    return yaml_mismatch(y, "z_channels", y->vae.z_channels, cfg->latent_channels);
  if (y->vae.num_res_blocks >= 0 && y->vae.num_res_blocks != cfg->layers_per_block)
    return yaml_mismatch(y, "num_res_blocks", y->vae.num_res_blocks, cfg->layers_per_block);
  if (y->vae.in_channels >= 0 && y->vae.in_channels != cfg->in_channels)
    return yaml_mismatch(y, "in_channels", y->vae.in_channels, cfg->in_channels);
  if (y->vae.out_ch >= 0 && y->vae.out_ch != cfg->out_channels)
    return yaml_mismatch(y, "out_ch", y->vae.out_ch, cfg->out_channels);
  if (y->vae.n_ch_mult >= 0) {
    if (y->vae.n_ch_mult != cfg->num_levels)
      return yaml_mismatch(y, "ch_mult (levels)", y->vae.n_ch_mult, cfg->num_levels);
    if (y->vae.ch >= 0)
      for (int i = 0; i < cfg->num_levels; i++)
        if (y->vae.ch * y->vae.ch_mult[i] != cfg->block_out_channels[i])
          return yaml_mismatch(y, "ch x ch_mult", y->vae.ch * y->vae.ch_mult[i],
                               cfg->block_out_channels[i]);
  }
  return 0;
}

static int infer_config(const sd_safetensors *file, const sd_ldm_yaml *y, sd_vae_config *cfg) {
  const char *path = sd_safetensors_path(file);
  const sd_st_tensor *conv_in, *conv_out, *conv2;
  SD_TRY(sd_ldm_require(file, &conv_in, 4, SD_LDM_VAE_PREFIX "decoder.conv_in.weight"));
  SD_TRY(sd_ldm_require(file, &conv_out, 4, SD_LDM_VAE_PREFIX "decoder.conv_out.weight"));
  memset(cfg, 0, sizeof *cfg);
  cfg->latent_channels = (int)conv_in->shape[1];
  cfg->out_channels = (int)conv_out->shape[0];
  cfg->num_levels = count_indexed(file, "decoder.up.");
  if (cfg->num_levels < 1 || cfg->num_levels > SD_MAX_LEVELS)
    return SD_ERROR("%s: VAE decoder has %d up levels (1 to %d supported)", path, cfg->num_levels,
                    SD_MAX_LEVELS);
  char prefix[64];
  int blocks = count_indexed(file, "decoder.up.0.block.");
  cfg->layers_per_block = blocks - 1; /* decoder levels have layers_per_block + 1 resnets */
  if (cfg->layers_per_block < 1)
    return SD_ERROR("%s: VAE decoder level 0 has %d resnets, expected at least 2", path, blocks);
  for (int b = 0; b < cfg->num_levels; b++) {
    snprintf(prefix, sizeof prefix, "decoder.up.%d.block.", b);
    if (count_indexed(file, prefix) != blocks)
      return SD_ERROR("%s: VAE decoder level %d has %d resnets, level 0 %d", path, b,
                      count_indexed(file, prefix), blocks);
    SD_TRY(
        sd_ldm_require(file, &conv2, 4, SD_LDM_VAE_PREFIX "decoder.up.%d.block.0.conv2.weight", b));
    cfg->block_out_channels[b] = (int)conv2->shape[0];
  }
  const sd_st_tensor *enc_in = sd_ldm_find(file, SD_LDM_VAE_PREFIX "encoder.conv_in.weight");
  cfg->in_channels = enc_in ? (int)enc_in->shape[1] : 3;
  if (enc_in && count_indexed(file, "encoder.down.") != cfg->num_levels)
    return SD_ERROR("%s: VAE encoder has %d levels, the decoder %d", path,
                    count_indexed(file, "encoder.down."), cfg->num_levels);
  /* LDM's Normalize; the YAML's norm_num_groups (an sdbatch extension) for narrow test VAEs */
  cfg->norm_num_groups = y && y->vae.norm_num_groups > 0 ? y->vae.norm_num_groups : 32;
  cfg->mid_block_add_attention = sd_ldm_find(file, SD_LDM_VAE_PREFIX "decoder.mid.attn_1.q.weight");
  if (y)
    SD_TRY(check_yaml(y, cfg));
  return 0;
}

typedef struct key_rename {
  const char *from, *to;
} key_rename;

static int renamed(const key_rename *table, size_t n, const char *prefix, const char *s, char *out,
                   size_t size) {
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(table[i].from);
    if (strncmp(s, table[i].from, len) == 0)
      return sd_ldm_name(out, size, "%s%s%s", prefix, table[i].to, s + len);
  }
  return -1;
}

static const key_rename resnet_names[] = {
    {"norm1.", "norm1."},
    {"conv1.", "conv1."},
    {"norm2.", "norm2."},
    {"conv2.", "conv2."},
    {"nin_shortcut.", "conv_shortcut."},
};

static const key_rename attention_names[] = {
    {"norm.", "group_norm."},   {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."},
    {"proj_out.", "to_out.0."},
};

/* The diffusers name of a key (without prefix); 1 for attention projections (reshaped to
 * linear), 0 for others, -1 (no error set) when it doesn't fit. */
static int map_name(const char *s, int levels, char *out, size_t size) {
  char prefix[128];
  int b, j;
  static const key_rename fixed[] = {
      {"encoder.conv_in.", "encoder.conv_in."},
      {"encoder.conv_out.", "encoder.conv_out."},
      {"encoder.norm_out.", "encoder.conv_norm_out."},
      {"decoder.conv_in.", "decoder.conv_in."},
      {"decoder.conv_out.", "decoder.conv_out."},
      {"decoder.norm_out.", "decoder.conv_norm_out."},
      {"quant_conv.", "quant_conv."},
      {"post_quant_conv.", "post_quant_conv."},
  };
  if (renamed(fixed, sizeof fixed / sizeof fixed[0], "", s, out, size) == 0)
    return 0;
  const char *part = strncmp(s, "encoder.", 8) == 0 ? "encoder" : "decoder";
  if (strncmp(s, "encoder.", 8) != 0 && strncmp(s, "decoder.", 8) != 0)
    return -1;
  s += 8;
  if (strncmp(s, "mid.block_1.", 12) == 0 || strncmp(s, "mid.block_2.", 12) == 0) {
    snprintf(prefix, sizeof prefix, "%s.mid_block.resnets.%d.", part, s[10] - '1');
    return renamed(resnet_names, 5, prefix, s + 12, out, size);
  }
  if (strncmp(s, "mid.attn_1.", 11) == 0) {
    snprintf(prefix, sizeof prefix, "%s.mid_block.attentions.0.", part);
    if (renamed(attention_names, 5, prefix, s + 11, out, size) != 0)
      return -1;
    return strncmp(s + 11, "norm.", 5) != 0;
  }
  if (part[0] == 'e' && strncmp(s, "down.", 5) == 0) {
    s += 5;
    if (sd_ldm_parse_index(&s, &b))
      return -1;
    if (strncmp(s, "downsample.conv.", 16) == 0)
      return sd_ldm_name(out, size, "encoder.down_blocks.%d.downsamplers.0.conv.%s", b, s + 16);
    if (strncmp(s, "block.", 6) != 0)
      return -1;
    s += 6;
    if (sd_ldm_parse_index(&s, &j))
      return -1;
    snprintf(prefix, sizeof prefix, "encoder.down_blocks.%d.resnets.%d.", b, j);
    return renamed(resnet_names, 5, prefix, s, out, size);
  }
  if (part[0] == 'd' && strncmp(s, "up.", 3) == 0) {
    s += 3;
    if (sd_ldm_parse_index(&s, &b) || b >= levels)
      return -1;
    int up = levels - 1 - b; /* LDM numbers decoder levels by resolution, diffusers in order */
    if (strncmp(s, "upsample.conv.", 14) == 0)
      return sd_ldm_name(out, size, "decoder.up_blocks.%d.upsamplers.0.conv.%s", up, s + 14);
    if (strncmp(s, "block.", 6) != 0)
      return -1;
    s += 6;
    if (sd_ldm_parse_index(&s, &j))
      return -1;
    snprintf(prefix, sizeof prefix, "decoder.up_blocks.%d.resnets.%d.", up, j);
    return renamed(resnet_names, 5, prefix, s, out, size);
  }
  return -1;
}

int sd_ldm_vae(const sd_safetensors *file, const sd_ldm_yaml *yaml, sd_vae_config *cfg,
               sd_tensor_map *map) {
  SD_TRY(infer_config(file, yaml, cfg));
  const size_t prefix_len = strlen(SD_LDM_VAE_PREFIX);
  char name[512];
  for (size_t k = 0; k < sd_safetensors_count(file); k++) {
    const sd_st_tensor *t = sd_safetensors_at(file, k);
    if (strncmp(t->name, SD_LDM_VAE_PREFIX, prefix_len) != 0)
      continue;
    const char *s = t->name + prefix_len;
    if (strncmp(s, "loss.", 5) == 0)
      continue; /* training-only (LPIPS, discriminator) */
    int kind = map_name(s, cfg->num_levels, name, sizeof name);
    if (kind < 0)
      return SD_ERROR("%s: unexpected VAE key '%s'", sd_safetensors_path(file), t->name);
    int ndim = t->ndim;
    if (kind == 1 && ndim > 2) {
      /* 1x1 conv (C, C, 1, 1) or conv1d (C, C, 1) -> linear (C, C): the same bytes */
      for (int d = 2; d < ndim; d++)
        if (t->shape[d] != 1)
          return SD_ERROR("%s: tensor '%s' is not a 1x1 convolution", sd_safetensors_path(file),
                          t->name);
      ndim = 2;
    }
    SD_TRY(sd_tensor_map_put(map, name, t->dtype, ndim, t->shape, t->data));
  }
  return 0;
}

/* Export ----------------------------------------------------------------------------------- */

/* Pairs the original prefix (printf-style) with the diffusers prefix map_name gives it. */
static int add_pair(sd_ldm_prefixes *p, int levels, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int add_pair(sd_ldm_prefixes *p, int levels, const char *fmt, ...) {
  char ldm[128], diffusers[128];
  va_list args;
  va_start(args, fmt);
  vsnprintf(ldm, sizeof ldm, fmt, args);
  va_end(args);
  int kind = map_name(ldm, levels, diffusers, sizeof diffusers);
  if (kind < 0)
    return SD_ERROR("VAE export: no diffusers name for '%s'", ldm);
  return sd_ldm_prefixes_add(p, ldm, diffusers, kind);
}

static int add_table(sd_ldm_prefixes *p, int levels, const char *block, const key_rename *table,
                     size_t n) {
  for (size_t r = 0; r < n; r++)
    SD_TRY(add_pair(p, levels, "%s%s", block, table[r].from));
  return 0;
}

/* Every prefix of the LDM AutoencoderKL with cfg's levels. */
static int vae_pairs(const sd_vae_config *cfg, sd_ldm_prefixes *p) {
  static const char *const fixed[] = {
      "encoder.conv_in.",  "encoder.conv_out.", "encoder.norm_out.", "decoder.conv_in.",
      "decoder.conv_out.", "decoder.norm_out.", "quant_conv.",       "post_quant_conv.",
  };
  static const char *const sides[] = {"encoder", "decoder"};
  const size_t n_resnet = sizeof resnet_names / sizeof resnet_names[0];
  const size_t n_attention = sizeof attention_names / sizeof attention_names[0];
  int n = cfg->num_levels;
  char block[96];
  for (size_t f = 0; f < sizeof fixed / sizeof fixed[0]; f++)
    SD_TRY(add_pair(p, n, "%s", fixed[f]));
  for (int s = 0; s < 2; s++) {
    for (int r = 1; r <= 2; r++) {
      snprintf(block, sizeof block, "%s.mid.block_%d.", sides[s], r);
      SD_TRY(add_table(p, n, block, resnet_names, n_resnet));
    }
    snprintf(block, sizeof block, "%s.mid.attn_1.", sides[s]);
    SD_TRY(add_table(p, n, block, attention_names, n_attention));
  }
  for (int b = 0; b < n; b++) {
    for (int j = 0; j < cfg->layers_per_block; j++) {
      snprintf(block, sizeof block, "encoder.down.%d.block.%d.", b, j);
      SD_TRY(add_table(p, n, block, resnet_names, n_resnet));
    }
    SD_TRY(add_pair(p, n, "encoder.down.%d.downsample.conv.", b));
    for (int j = 0; j <= cfg->layers_per_block; j++) {
      snprintf(block, sizeof block, "decoder.up.%d.block.%d.", b, j);
      SD_TRY(add_table(p, n, block, resnet_names, n_resnet));
    }
    SD_TRY(add_pair(p, n, "decoder.up.%d.upsample.conv.", b));
  }
  return 0;
}

int sd_ldm_vae_export(const sd_vae_config *cfg, const sd_tensor_map *map, sd_ldm_export *out) {
  sd_ldm_prefixes pairs = {0};
  int rc = vae_pairs(cfg, &pairs);
  if (rc == 0)
    rc = sd_ldm_export_renamed(out, "VAE", SD_LDM_VAE_PREFIX, &pairs, map);
  sd_ldm_prefixes_free(&pairs);
  return rc;
}
