/* A string -> index hash table (open addressing, FNV-1a) for name lookups in safetensors files,
 * tensor maps and weight sets. Keys are borrowed: the caller keeps each key alive (and unchanged)
 * while it is in the table. */
#ifndef SD_NAME_INDEX_H
#define SD_NAME_INDEX_H

#include <stddef.h>

typedef struct sd_name_index {
  const char **keys; /* (capacity) slots, NULL when empty */
  size_t *values;    /* (capacity) */
  size_t capacity;   /* a power of two, or 0 before the first put */
  size_t count;
} sd_name_index;

/* An empty index needs no set-up beyond zeroing. */
void sd_name_index_free(sd_name_index *index);
/* Inserts key -> value, replacing the value of an equal key. -1 (error set) when out of memory. */
int sd_name_index_put(sd_name_index *index, const char *key, size_t value);
/* 1 and *value when key is present, 0 otherwise. */
int sd_name_index_get(const sd_name_index *index, const char *key, size_t *value);

#endif
