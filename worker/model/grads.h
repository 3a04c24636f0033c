/* Gradients of a model's weights for training: one tensor shaped like each chosen weight, in the
 * backend's activation dtype (float32 on the CPU), in persistent backend memory. A model's
 * backward finds a weight's gradient by the weight tensor it holds (sd_grads_of), an optimizer or
 * LoRA by position or name. The backward passes ADD into these tensors (docs/training.md): zero
 * them (sd_grads_zero) before the first backward of an optimizer step. */
#ifndef SD_GRADS_H
#define SD_GRADS_H

#include "../io/weights.h"

#include <stdbool.h>

typedef struct sd_grads sd_grads;

/* Whether the weight called `name` gets a gradient (a frozen weight gets none). */
typedef bool (*sd_grads_filter)(const char *name, void *user);

/* A zeroed gradient for each weight of `weights` that wants (NULL: every weight) accepts, in the
 * order of `weights`. Borrows weights (keep them alive until sd_grads_free) and be. */
int sd_grads_create(sd_backend *be, const sd_weights *weights, sd_grads_filter wants, void *user,
                    sd_grads **out);
void sd_grads_free(sd_grads *grads);

/* Sets every gradient to 0. */
int sd_grads_zero(sd_grads *grads);

size_t sd_grads_count(const sd_grads *grads);
/* The weight's name, the weight and its gradient at index (< count); NULL past the end. */
const char *sd_grads_name_at(const sd_grads *grads, size_t index);
const sd_tensor *sd_grads_weight_at(const sd_grads *grads, size_t index);
sd_tensor *sd_grads_at(sd_grads *grads, size_t index);
/* The gradient of the weight called name; NULL when it has none. */
sd_tensor *sd_grads_find(sd_grads *grads, const char *name);
/* The gradient of `weight` (a tensor of the sd_weights the store was made from); NULL when grads
 * is NULL or the weight has none (frozen). */
sd_tensor *sd_grads_of(sd_grads *grads, const sd_tensor *weight);
/* Backend bytes of the gradients. */
size_t sd_grads_bytes(const sd_grads *grads);

#endif
