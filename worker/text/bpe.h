/* Byte-level BPE building blocks of the CLIP tokenizer (internal to worker/text): a byte-string
 * -> int hash map that owns its keys (vocabulary, merge ranks), CLIP's reversible byte -> unicode
 * table (bytes_to_unicode), and the merge loop for one word (CLIP's bpe). */
#ifndef SD_TEXT_BPE_H
#define SD_TEXT_BPE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sd_strmap_entry {
  uint64_t hash;
  size_t key_offset; /* into sd_strmap.keys */
  uint32_t key_len;
  int32_t value;
} sd_strmap_entry;

/* Open addressing over entries kept in insertion order; keys are copied into one buffer. */
typedef struct sd_strmap {
  sd_strmap_entry *entries; /* (count) in insertion order */
  size_t count, entries_capacity;
  uint32_t *slots;   /* (slot_count) entry index + 1, 0 when empty */
  size_t slot_count; /* a power of two, or 0 before the first set */
  char *keys;        /* key bytes, not NUL-terminated */
  size_t keys_len, keys_capacity;
} sd_strmap;

/* An empty map needs no set-up beyond zeroing. */
void sd_strmap_free(sd_strmap *map);
/* key (len bytes) -> value (>= 0), replacing the value of an equal key as a Python dict does.
 * -1 (error set) when out of memory or the key is over 4 GiB. */
int sd_strmap_set(sd_strmap *map, const char *key, size_t len, int32_t value);
/* The value of key, or -1 when absent. */
int32_t sd_strmap_get(const sd_strmap *map, const char *key, size_t len);
/* The value of the key `a + " " + b` (merge ranks are keyed "first second"), or -1. */
int32_t sd_strmap_get_pair(const sd_strmap *map, const char *a, size_t a_len, const char *b,
                           size_t b_len);
/* Key of entry i (insertion order) and its length. */
const char *sd_strmap_key(const sd_strmap *map, size_t i, size_t *len);

/* CLIP's bytes_to_unicode: byte b stands for the character whose UTF-8 is utf8[b] (len[b] bytes).
 * order lists the bytes in the order of the table's construction (the printable ranges first),
 * which is the order of the first 256 vocabulary entries. */
typedef struct sd_byte_unicode {
  char utf8[256][2];
  uint8_t len[256];
  uint8_t order[256];
} sd_byte_unicode;

void sd_byte_unicode_init(sd_byte_unicode *table);

/* A pair of adjacent symbols queued for merging. */
typedef struct sd_bpe_pair {
  int32_t rank;
  int32_t left, right;         /* symbol indices */
  int32_t left_len, right_len; /* their lengths when the pair was formed */
} sd_bpe_pair;

/* One word's symbols during merging: a linked list over the initial symbols, each a byte range of
 * the word; merging grows the left symbol over the right one. Reused from word to word. */
typedef struct sd_bpe_work {
  int32_t *start, *len, *prev, *next; /* (capacity) symbol byte ranges and list links */
  size_t count, capacity;             /* symbols in use */
  sd_bpe_pair *heap;                  /* (heap_capacity) min-heap on (rank, left) */
  size_t heap_count, heap_capacity;
  sd_bpe_pair *batch; /* (heap_capacity) the pairs of one rank being merged */
} sd_bpe_work;

void sd_bpe_work_free(sd_bpe_work *work);
/* Makes room for n symbols and sets count = n; fill start[i] and len[i] for i < n (consecutive
 * byte ranges of the word). -1 (error set) when out of memory. */
int sd_bpe_work_reset(sd_bpe_work *work, size_t n);
/* Merges the symbols of `word` with the ranks in `merges` ("first second" -> rank) as CLIP's
 * bpe does: while some adjacent pair has a rank, take the pair of lowest rank and merge all its
 * occurrences left to right. This is the order of the tokenizers library's BPE too (lowest rank
 * first, leftmost first among equals), since a merge never re-creates its own pair. On return
 * start/len hold the final symbols in order and count their number. O(n log n) in the word length.
 * -1 (error set) when out of memory. */
int sd_bpe_merge(sd_bpe_work *work, const char *word, const sd_strmap *merges);

#endif
