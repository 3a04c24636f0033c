/* transformers' DPTForDepthEstimation on the op interface: DPT-hybrid (a BiT ResNet stem and
 * three stages, then ViT layers on its stride-16 features) and plain ViT DPT; the neck
 * (reassemble, 3x3 convs, feature fusion) and the depth head. Weights with transformers' names as
 * sd_dpt_files provides them (standardized BiT weights, folded batch norms). */
#ifndef SD_DPT_H
#define SD_DPT_H

#include "dpt_config.h"
#include "../io/weights.h"

typedef struct sd_dpt sd_dpt;

/* Resolves and shape-checks every weight the config implies. Borrows `weights` and `be`. */
int sd_dpt_create(sd_backend *be, const sd_dpt_config *cfg, const sd_weights *weights,
                  sd_dpt **out);
void sd_dpt_free(sd_dpt *model);

/* Called with each stage's output as it is computed (tests compare them with transformers'):
 * "bit.stem", "bit.stage0..2" (hybrid), "dpt.embeddings" (1, 1 + N, D), "vit.layer<i>",
 * "neck.reassemble<i>", "neck.conv<i>", "neck.fusion<i>". The tensor is valid during the call. */
typedef void (*sd_dpt_stage_fn)(void *ctx, const char *name, const sd_tensor *t);
void sd_dpt_set_stage_hook(sd_dpt *model, sd_dpt_stage_fn fn, void *ctx);

/* pixel_values (1, C, H, W), preprocessed as DPTImageProcessor does -> depth (1, H', W') with
 * H' = 16 * (H / patch_size) (H for 384 inputs), the predicted_depth. H and W must be multiples
 * of patch_size; DPT-hybrid needs exactly image_size (transformers refuses other sizes) and
 * plain DPT a square token grid (its reassemble stage assumes one). Scratch comes from the arena
 * and is released before return. */
int sd_dpt_forward(sd_dpt *model, const sd_tensor *pixel_values, sd_tensor *depth);

/* Output size for an input of h x w (0 when the input is refused). */
void sd_dpt_output_size(const sd_dpt *model, int64_t h, int64_t w, int64_t *out_h, int64_t *out_w);

#endif
