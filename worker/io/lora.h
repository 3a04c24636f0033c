/* LoRA files merged into a model's weights at load: W += scale * (alpha / rank) * up @ down for
 * every layer the file adapts, in the UNet and the text encoder. The merged weights are float32
 * copies (sd_patched); the upload then converts them to the backend's weight dtype, so a LoRA
 * costs nothing per step.
 *
 * Formats (.safetensors only; docs/adapters.md):
 *  - diffusers / peft: `unet.<module>.lora_A.weight` (down, (r, in[, kh, kw])) and `.lora_B.weight`
 *    (up, (out, r[, 1, 1])), `text_encoder.<module>...`; the older attention-processor names
 *    (`unet.<block>.attn1.processor.to_q_lora.down.weight`, `to_out_lora` = `to_out.0`, text
 *    encoder `to_q_lora` = `q_proj`), `.lora.down/up` and `.lora_linear_layer.down/up`; keys
 *    without a `unet.` / `text_encoder.` prefix are the UNet's (save_attn_procs). Alpha: a
 *    `<module>.alpha` tensor, else the `lora_adapter_metadata` JSON's `<component>.lora_alpha` /
 *    `alpha_pattern` (diffusers' save_lora_weights), else alpha = rank.
 *  - kohya-ss sd-scripts: `lora_unet_<module with . as _>.lora_down.weight` / `.lora_up.weight` /
 *    `.alpha` (alpha absent: rank), `lora_te_...` for the text encoder; LoCon conv layers (3x3
 *    down (r, in, 3, 3), up (out, r, 1, 1)).
 * A key that names no layer of this model, a down/up pair that does not fit its layer, a missing
 * half, or a variant that is not plain LoRA (DoRA, LoHa, LoKr, bias) is an error naming the file
 * and the key. */
#ifndef SD_LORA_H
#define SD_LORA_H

#include "patched_tensors.h"
#include "tensor_map.h"

/* Merges the LoRA file at path with strength scale into unet and text_encoder (records replaced
 * by float32 copies owned by patched). On error nothing is promised about the maps' contents:
 * the caller discards the model. */
int sd_lora_merge(const char *path, float scale, sd_tensor_map *unet, sd_tensor_map *text_encoder,
                  sd_patched *patched);

/* w (out, k) += factor * up (out, rank) @ down (rank, k) in float32, the arithmetic of
 * sd_lora_merge (factor = scale * alpha / rank in float). The LoRA trainer (train/lora_trainer.h)
 * merges with it too, so that its saved file merged at load gives the weights it trained with,
 * bit for bit. */
int sd_lora_add_product(float *w, int64_t out, int64_t k, int64_t rank, float factor,
                        const float *up, const float *down);

#endif
