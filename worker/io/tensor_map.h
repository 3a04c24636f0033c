/* A name -> host tensor map: the format-neutral record of a model component's weights, with
 * diffusers names, pointing into mmapped safetensors files. Tensors a key map derives need no
 * copies: a reshaped VAE attention 1x1 conv is the same bytes, and each third of a split OpenCLIP
 * in_proj weight (3C, C) is a contiguous row range. The map owns its names, not the data. */
#ifndef SD_TENSOR_MAP_H
#define SD_TENSOR_MAP_H

#include "safetensors.h"

typedef struct sd_tensor_map sd_tensor_map;

sd_tensor_map *sd_tensor_map_create(void);
void sd_tensor_map_free(sd_tensor_map *map);

/* Adds (or replaces) a record; the name is copied, the data is borrowed. */
int sd_tensor_map_put(sd_tensor_map *map, const char *name, sd_dtype dtype, int ndim,
                      const int64_t *shape, const void *data);
/* NULL when absent (no error set). Records stay valid until the next put or the free. */
const sd_st_tensor *sd_tensor_map_get(const sd_tensor_map *map, const char *name);
size_t sd_tensor_map_count(const sd_tensor_map *map);
const sd_st_tensor *sd_tensor_map_at(const sd_tensor_map *map, size_t index);

#endif
