/* A name -> host tensor map: the format-neutral record of a model component's weights, with
 * diffusers names, pointing into mmapped safetensors files (or into buffers the map owns, for
 * tensors a key map had to derive, e.g. split OpenCLIP in_proj weights). */
#ifndef SD_TENSOR_MAP_H
#define SD_TENSOR_MAP_H

#include "safetensors.h"

typedef struct sd_tensor_map sd_tensor_map;

sd_tensor_map *sd_tensor_map_create(void);
void sd_tensor_map_free(sd_tensor_map *map);

/* Adds (or replaces) a record; the name is copied, the data is borrowed. */
int sd_tensor_map_put(sd_tensor_map *map, const char *name, sd_dtype dtype, int ndim,
                      const int64_t *shape, const void *data);
/* NULL when absent. */
const sd_st_tensor *sd_tensor_map_get(const sd_tensor_map *map, const char *name);
size_t sd_tensor_map_count(const sd_tensor_map *map);
const sd_st_tensor *sd_tensor_map_at(const sd_tensor_map *map, size_t index);

#endif
