/* Name -> host tensor records with diffusers names (see tensor_map.h). */
#include "tensor_map.h"

#include "name_index.h"

#include "../../kernels/error.h"

#include <stdlib.h>
#include <string.h>

struct sd_tensor_map {
  sd_st_tensor *records; /* (count), names owned */
  size_t count;
  size_t capacity;
  sd_name_index index; /* name -> position in records */
};

sd_tensor_map *sd_tensor_map_create(void) {
  sd_tensor_map *map = calloc(1, sizeof *map);
  if (!map)
    SD_ERROR("out of memory creating a tensor map");
  return map;
}

void sd_tensor_map_free(sd_tensor_map *map) {
  if (!map)
    return;
  for (size_t i = 0; i < map->count; i++)
    free((char *)map->records[i].name);
  free(map->records);
  sd_name_index_free(&map->index);
  free(map);
}

int sd_tensor_map_put(sd_tensor_map *map, const char *name, sd_dtype dtype, int ndim,
                      const int64_t *shape, const void *data) {
  if (ndim < 0 || ndim > SD_MAX_DIMS)
    return SD_ERROR("tensor '%s': %d dimensions, at most %d are supported", name, ndim,
                    SD_MAX_DIMS);
  sd_st_tensor record;
  memset(&record, 0, sizeof record);
  record.dtype = dtype;
  record.ndim = ndim;
  for (int i = 0; i < ndim; i++)
    record.shape[i] = shape[i];
  sd_tensor header = sd_tensor_make(dtype, ndim, shape);
  record.bytes = sd_tensor_bytes(&header);
  record.data = data;

  size_t existing;
  if (sd_name_index_get(&map->index, name, &existing)) {
    record.name = map->records[existing].name;
    map->records[existing] = record;
    return 0;
  }
  if (map->count == map->capacity) {
    size_t capacity = map->capacity ? map->capacity * 2 : 256;
    sd_st_tensor *records = realloc(map->records, capacity * sizeof *records);
    if (!records)
      return SD_ERROR("out of memory growing a tensor map to %zu records", capacity);
    map->records = records;
    map->capacity = capacity;
  }
  char *owned = strdup(name);
  if (!owned)
    return SD_ERROR("out of memory adding tensor '%s'", name);
  record.name = owned;
  if (sd_name_index_put(&map->index, owned, map->count) != 0) {
    free(owned);
    return -1;
  }
  map->records[map->count++] = record;
  return 0;
}

const sd_st_tensor *sd_tensor_map_get(const sd_tensor_map *map, const char *name) {
  size_t index;
  if (!sd_name_index_get(&map->index, name, &index))
    return NULL;
  return &map->records[index];
}

size_t sd_tensor_map_count(const sd_tensor_map *map) {
  return map->count;
}

const sd_st_tensor *sd_tensor_map_at(const sd_tensor_map *map, size_t index) {
  return index < map->count ? &map->records[index] : NULL;
}
