/* String -> index hash table used by the loaders (see name_index.h). */
#include "name_index.h"

#include "../../kernels/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h;
}

void sd_name_index_free(sd_name_index *index) {
  free(index->keys);
  free(index->values);
  memset(index, 0, sizeof *index);
}

/* The slot holding key, or the empty slot where it would go. */
static size_t find_slot(const sd_name_index *index, const char *key) {
  size_t mask = index->capacity - 1;
  size_t slot = (size_t)hash_name(key) & mask;
  while (index->keys[slot] && strcmp(index->keys[slot], key) != 0)
    slot = (slot + 1) & mask;
  return slot;
}

static int grow(sd_name_index *index) {
  size_t capacity = index->capacity ? index->capacity * 2 : 64;
  sd_name_index bigger = {0};
  bigger.keys = calloc(capacity, sizeof *bigger.keys);
  bigger.values = calloc(capacity, sizeof *bigger.values);
  if (!bigger.keys || !bigger.values) {
    free(bigger.keys);
    free(bigger.values);
    return SD_ERROR("out of memory growing a name index to %zu slots", capacity);
  }
  bigger.capacity = capacity;
  for (size_t i = 0; i < index->capacity; i++) {
    if (!index->keys[i])
      continue;
    size_t slot = find_slot(&bigger, index->keys[i]);
    bigger.keys[slot] = index->keys[i];
    bigger.values[slot] = index->values[i];
    bigger.count++;
  }
  sd_name_index_free(index);
  *index = bigger;
  return 0;
}

int sd_name_index_put(sd_name_index *index, const char *key, size_t value) {
  if ((index->count + 1) * 2 > index->capacity)
    SD_TRY(grow(index));
  size_t slot = find_slot(index, key);
  if (!index->keys[slot]) {
    index->keys[slot] = key;
    index->count++;
  }
  index->values[slot] = value;
  return 0;
}

int sd_name_index_get(const sd_name_index *index, const char *key, size_t *value) {
  if (index->capacity == 0)
    return 0;
  size_t slot = find_slot(index, key);
  if (!index->keys[slot])
    return 0;
  *value = index->values[slot];
  return 1;
}
