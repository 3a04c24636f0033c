/* sd_strlist (job_internal.h): strings kept in one growing buffer with their offsets, so that
 * a job's millions of prompts or input paths cost two allocations, not millions. */
#include "job_internal.h"

#include "error.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int sd_strlist_add(sd_strlist *list, const char *s, size_t len) {
  if (list->n == list->offsets_cap) {
    int64_t cap = list->offsets_cap ? 2 * list->offsets_cap : 16;
    int64_t *offsets = realloc(list->offsets, (size_t)cap * sizeof *offsets);
    if (!offsets)
      return SD_ERROR("out of memory for %" PRId64 " strings", cap);
    list->offsets = offsets;
    list->offsets_cap = cap;
  }
  if (list->cap - list->len < len + 1) {
    size_t cap = list->cap ? list->cap : 4096;
    while (cap - list->len < len + 1)
      cap *= 2;
    char *text = realloc(list->text, cap);
    if (!text)
      return SD_ERROR("out of memory for %zu bytes of strings", cap);
    list->text = text;
    list->cap = cap;
  }
  list->offsets[list->n++] = (int64_t)list->len;
  memcpy(list->text + list->len, s, len);
  list->text[list->len + len] = '\0';
  list->len += len + 1;
  return 0;
}

const char *sd_strlist_get(const sd_strlist *list, int64_t i) {
  return i >= 0 && i < list->n ? list->text + list->offsets[i] : NULL;
}

void sd_strlist_free(sd_strlist *list) {
  free(list->text);
  free(list->offsets);
  memset(list, 0, sizeof *list);
}
