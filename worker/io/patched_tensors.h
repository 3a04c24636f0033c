/* Owned float32 copies of tensor-map records that adapters change: a LoRA merged into a layer's
 * weight, a text encoder's token embedding table grown by textual-inversion vectors. The map's
 * record is pointed at the copy, so the weights uploaded from the map are the patched ones; the
 * copies live until sd_patched_free (after the upload, or when the model closes). */
#ifndef SD_PATCHED_TENSORS_H
#define SD_PATCHED_TENSORS_H

#include "tensor_map.h"

#include <stdint.h>

typedef struct sd_patched sd_patched;

int sd_patched_create(sd_patched **out);
void sd_patched_free(sd_patched *patched);

/* The float32 copy of map's record `name` (converted from its dtype), the record now pointing at
 * it; a later call for the same map and name returns the same copy. -1 (error set) when the map
 * has no such record or memory runs out. */
int sd_patched_f32(sd_patched *patched, sd_tensor_map *map, const char *name, float **out);
/* A new zeroed float32 tensor (ndim, shape) put into map as `name` (replacing the record). */
int sd_patched_put(sd_patched *patched, sd_tensor_map *map, const char *name, int ndim,
                   const int64_t *shape, float **out);

#endif
