/* transformers' DPTConfig (with its BitConfig backbone for DPT-hybrid), as a depth_estimator/
 * config.json states it: the fields DPTForDepthEstimation's forward depends on. Filled by
 * worker/io/dpt_files.c, read by worker/model/dpt.c. */
#ifndef SD_DPT_CONFIG_H
#define SD_DPT_CONFIG_H

#include <stdbool.h>

/* DPT's neck always has 4 stages (backbone_out_indices, neck_hidden_sizes, reassemble_factors). */
#define SD_DPT_STAGES 4
/* BiT stages DPT-hybrid uses (out_features stage1, stage2, stage3). */
#define SD_DPT_BIT_STAGES 3

typedef struct sd_dpt_config {
  bool is_hybrid;          /* DPT-hybrid (BiT + ViT), else plain ViT */
  int num_channels;        /* 3 */
  int image_size;          /* 384: the position embeddings' grid is image_size / patch_size */
  int patch_size;          /* 16 (hybrid: the BiT's total stride) */
  int hidden_size;         /* 768 (hybrid), 1024 (dpt-large) */
  int num_hidden_layers;   /* 12, 24 */
  int num_attention_heads; /* 12, 16 */
  int intermediate_size;   /* 3072, 4096 */
  float layer_norm_eps;    /* 1e-12 */
  bool qkv_bias;           /* true */
  int backbone_out_indices[SD_DPT_STAGES]; /* encoder layers read by the neck */
  int neck_hidden_sizes[SD_DPT_STAGES];    /* [256, 512, 768, 768] (hybrid) */
  /* reassemble factors as rationals: > 1 ConvTranspose2d(k = s = factor), 1 nothing, < 1 a 3x3
   * conv with stride 1 / factor; stored as up (factor > 1) or down (factor < 1) integers */
  int reassemble_up[SD_DPT_STAGES];   /* factor when >= 1, else 1 */
  int reassemble_down[SD_DPT_STAGES]; /* 1 / factor when < 1, else 1 */
  int fusion_hidden_size;             /* 256 */
  bool use_batch_norm_in_fusion_residual;
  bool use_bias_in_fusion_residual;
  /* BiT (is_hybrid only): layer_type "bottleneck", global_padding "same" */
  int bit_embedding_size;                  /* 64 */
  int bit_depths[SD_DPT_BIT_STAGES];       /* [3, 4, 9] */
  int bit_hidden_sizes[SD_DPT_BIT_STAGES]; /* after make_div(hidden_sizes * width_factor) */
  int bit_num_groups;                      /* 32 */
  bool bit_embedding_dynamic_padding;      /* the stem's max pool pads "same" */
} sd_dpt_config;

#endif
