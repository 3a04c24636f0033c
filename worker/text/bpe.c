/* Byte-level BPE building blocks: string map, bytes_to_unicode, one word's merges (see bpe.h). */
#include "bpe.h"

#include "../../kernels/error.h"

#include <stdlib.h>
#include <string.h>

#define FNV_OFFSET 1469598103934665603ull
#define FNV_PRIME  1099511628211ull

static uint64_t fnv_update(uint64_t h, const char *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= FNV_PRIME;
  }
  return h;
}

void sd_strmap_free(sd_strmap *map) {
  free(map->entries);
  free(map->slots);
  free(map->keys);
  memset(map, 0, sizeof *map);
}

const char *sd_strmap_key(const sd_strmap *map, size_t i, size_t *len) {
  *len = map->entries[i].key_len;
  return map->keys + map->entries[i].key_offset;
}

/* Slot of the entry whose key is a (+ " " + b when pair), or the empty slot where it would go. */
static size_t find_slot(const sd_strmap *map, uint64_t hash, const char *a, size_t a_len, int pair,
                        const char *b, size_t b_len) {
  size_t mask = map->slot_count - 1;
  size_t key_len = pair ? a_len + 1 + b_len : a_len;
  for (size_t slot = (size_t)hash & mask;; slot = (slot + 1) & mask) {
    uint32_t index = map->slots[slot];
    if (index == 0)
      return slot;
    const sd_strmap_entry *e = &map->entries[index - 1];
    if (e->hash != hash || e->key_len != key_len)
      continue;
    const char *key = map->keys + e->key_offset;
    if (memcmp(key, a, a_len) != 0)
      continue;
    if (!pair || (key[a_len] == ' ' && memcmp(key + a_len + 1, b, b_len) == 0))
      return slot;
  }
}

static int grow_slots(sd_strmap *map) {
  size_t slot_count = map->slot_count ? map->slot_count * 2 : 1024;
  uint32_t *slots = calloc(slot_count, sizeof *slots);
  if (!slots)
    return SD_ERROR("out of memory growing a string map to %zu slots", slot_count);
  free(map->slots);
  map->slots = slots;
  map->slot_count = slot_count;
  for (size_t i = 0; i < map->count; i++) {
    size_t slot = (size_t)map->entries[i].hash & (slot_count - 1);
    while (slots[slot])
      slot = (slot + 1) & (slot_count - 1);
    slots[slot] = (uint32_t)(i + 1);
  }
  return 0;
}

static int reserve(void **buf, size_t *capacity, size_t needed, size_t elem_size) {
  if (needed <= *capacity)
    return 0;
  size_t capacity_new = *capacity ? *capacity : 64;
  while (capacity_new < needed)
    capacity_new *= 2;
  void *grown = realloc(*buf, capacity_new * elem_size);
  if (!grown)
    return SD_ERROR("out of memory (%zu bytes)", capacity_new * elem_size);
  *buf = grown;
  *capacity = capacity_new;
  return 0;
}

int sd_strmap_set(sd_strmap *map, const char *key, size_t len, int32_t value) {
  if (len > UINT32_MAX || map->count >= UINT32_MAX - 1)
    return SD_ERROR("string map: key of %zu bytes or %zu entries is too many", len, map->count);
  if ((map->count + 1) * 2 > map->slot_count)
    SD_TRY(grow_slots(map));
  uint64_t hash = fnv_update(FNV_OFFSET, key, len);
  size_t slot = find_slot(map, hash, key, len, 0, NULL, 0);
  if (map->slots[slot]) {
    map->entries[map->slots[slot] - 1].value = value;
    return 0;
  }
  SD_TRY(reserve((void **)&map->entries, &map->entries_capacity, map->count + 1,
                 sizeof *map->entries));
  /* one spare byte: the buffer exists once there is an entry, even when every key is empty
   * (keys + offset on a NULL buffer is undefined; found by fuzz_tokenizer_files) */
  SD_TRY(reserve((void **)&map->keys, &map->keys_capacity, map->keys_len + len + 1, 1));
  if (len)
    memcpy(map->keys + map->keys_len, key, len);
  map->entries[map->count] = (sd_strmap_entry){
      .hash = hash, .key_offset = map->keys_len, .key_len = (uint32_t)len, .value = value};
  map->keys_len += len;
  map->slots[slot] = (uint32_t)(++map->count);
  return 0;
}

int32_t sd_strmap_get(const sd_strmap *map, const char *key, size_t len) {
  if (map->count == 0)
    return -1;
  size_t slot = find_slot(map, fnv_update(FNV_OFFSET, key, len), key, len, 0, NULL, 0);
  return map->slots[slot] ? map->entries[map->slots[slot] - 1].value : -1;
}

int32_t sd_strmap_get_pair(const sd_strmap *map, const char *a, size_t a_len, const char *b,
                           size_t b_len) {
  if (map->count == 0)
    return -1;
  uint64_t hash = fnv_update(fnv_update(fnv_update(FNV_OFFSET, a, a_len), " ", 1), b, b_len);
  size_t slot = find_slot(map, hash, a, a_len, 1, b, b_len);
  return map->slots[slot] ? map->entries[map->slots[slot] - 1].value : -1;
}

void sd_byte_unicode_init(sd_byte_unicode *table) {
  /* Printable Latin-1 bytes stand for themselves; the others (controls, space, DEL, NBSP, soft
   * hyphen) for U+0100, U+0101, ... in byte order. */
  int n = 0, shifted = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (int b = 0; b < 256; b++) {
      int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      if (printable != (pass == 0))
        continue;
      int cp = printable ? b : 256 + shifted++;
      table->order[n++] = (uint8_t)b;
      if (cp < 0x80) {
        table->utf8[b][0] = (char)cp;
        table->len[b] = 1;
      } else {
        table->utf8[b][0] = (char)(0xC0 | (cp >> 6));
        table->utf8[b][1] = (char)(0x80 | (cp & 0x3F));
        table->len[b] = 2;
      }
    }
  }
}

void sd_bpe_work_free(sd_bpe_work *work) {
  free(work->start);
  free(work->len);
  free(work->prev);
  free(work->next);
  free(work->heap);
  free(work->batch);
  memset(work, 0, sizeof *work);
}

int sd_bpe_work_reset(sd_bpe_work *work, size_t n) {
  if (n > INT32_MAX / 4)
    return SD_ERROR("BPE: a word of %zu symbols is too long", n);
  if (n > work->capacity) {
    size_t capacity = work->capacity ? work->capacity : 64;
    while (capacity < n)
      capacity *= 2;
    int32_t **arrays[] = {&work->start, &work->len, &work->prev, &work->next};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
      int32_t *grown = realloc(*arrays[i], capacity * sizeof(int32_t));
      if (!grown)
        return SD_ERROR("BPE: out of memory for a word of %zu symbols", n);
      *arrays[i] = grown;
    }
    /* Each merge forms at most two new pairs: fewer than 3n pairs are ever queued. */
    sd_bpe_pair *heap = realloc(work->heap, 3 * capacity * sizeof *heap);
    if (!heap)
      return SD_ERROR("BPE: out of memory for a word of %zu symbols", n);
    work->heap = heap;
    sd_bpe_pair *batch = realloc(work->batch, 3 * capacity * sizeof *batch);
    if (!batch)
      return SD_ERROR("BPE: out of memory for a word of %zu symbols", n);
    work->batch = batch;
    work->capacity = capacity;
    work->heap_capacity = 3 * capacity;
  }
  work->count = n;
  return 0;
}

static int pair_less(const sd_bpe_pair *a, const sd_bpe_pair *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(sd_bpe_work *w, sd_bpe_pair p) {
  size_t i = w->heap_count++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!pair_less(&p, &w->heap[parent]))
      break;
    w->heap[i] = w->heap[parent];
    i = parent;
  }
  w->heap[i] = p;
}

static sd_bpe_pair heap_pop(sd_bpe_work *w) {
  sd_bpe_pair top = w->heap[0];
  sd_bpe_pair last = w->heap[--w->heap_count];
  size_t i = 0, n = w->heap_count;
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n)
      break;
    if (child + 1 < n && pair_less(&w->heap[child + 1], &w->heap[child]))
      child++;
    if (!pair_less(&w->heap[child], &last))
      break;
    w->heap[i] = w->heap[child];
    i = child;
  }
  if (n)
    w->heap[i] = last;
  return top;
}

/* Queues the pair (left, right) when the merges rank it. */
static void push_pair(sd_bpe_work *w, const char *word, const sd_strmap *merges, int32_t left,
                      int32_t right) {
  int32_t rank = sd_strmap_get_pair(merges, word + w->start[left], (size_t)w->len[left],
                                    word + w->start[right], (size_t)w->len[right]);
  if (rank >= 0)
    heap_push(w, (sd_bpe_pair){rank, left, right, w->len[left], w->len[right]});
}

/* A queued pair still stands when both symbols are unchanged and still adjacent (a merged-away
 * symbol has length 0). */
static int pair_valid(const sd_bpe_work *w, const sd_bpe_pair *p) {
  return w->len[p->left] == p->left_len && w->next[p->left] == p->right &&
         w->len[p->right] == p->right_len;
}

int sd_bpe_merge(sd_bpe_work *w, const char *word, const sd_strmap *merges) {
  int32_t n = (int32_t)w->count;
  for (int32_t i = 0; i < n; i++) {
    w->prev[i] = i - 1;
    w->next[i] = i + 1 < n ? i + 1 : -1;
  }
  w->heap_count = 0;
  for (int32_t i = 0; i + 1 < n; i++)
    push_pair(w, word, merges, i, i + 1);

  while (w->heap_count) {
    sd_bpe_pair top = heap_pop(w);
    if (!pair_valid(w, &top))
      continue;
    /* All queued pairs of this rank are occurrences of the same pair (ranks are one per pair);
     * merged left to right, as Python's scan does. New pairs never share this rank. */
    size_t batch_count = 0;
    w->batch[batch_count++] = top;
    while (w->heap_count && w->heap[0].rank == top.rank)
      w->batch[batch_count++] = heap_pop(w);
    for (size_t k = 0; k < batch_count; k++) {
      const sd_bpe_pair *p = &w->batch[k];
      if (!pair_valid(w, p))
        continue;
      int32_t left = p->left, right = p->right;
      w->len[left] += w->len[right];
      w->len[right] = 0;
      w->next[left] = w->next[right];
      if (w->next[left] >= 0)
        w->prev[w->next[left]] = left;
      if (w->prev[left] >= 0)
        push_pair(w, word, merges, w->prev[left], left);
      if (w->next[left] >= 0)
        push_pair(w, word, merges, left, w->next[left]);
    }
  }

  size_t count = 0;
  for (int32_t i = n ? 0 : -1; i >= 0; i = w->next[i]) {
    w->start[count] = w->start[i];
    w->len[count] = w->len[i];
    count++;
  }
  w->count = count;
  return 0;
}
