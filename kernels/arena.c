/* The backend scratch arena: chunks of backend memory handed out with stack discipline. */
#include "error.h"
#include "ops.h"

#include <stdlib.h>

#define SD_ARENA_ALIGN         256
#define SD_ARENA_DEFAULT_CHUNK ((size_t)256 << 20)

struct sd_arena_chunk {
  sd_arena_chunk *next;
  char *base;
  size_t capacity;
  size_t offset;
};

static size_t align_up(size_t n) {
  return (n + SD_ARENA_ALIGN - 1) & ~(size_t)(SD_ARENA_ALIGN - 1);
}

static void *arena_alloc(sd_backend *be, size_t bytes) {
  sd_arena *arena = &be->arena;
  bytes = align_up(bytes ? bytes : 1);
  sd_arena_chunk *chunk = arena->chunks;
  if (!chunk || chunk->capacity - chunk->offset < bytes) {
    sd_arena_chunk **spare = &arena->spare;
    while (*spare && (*spare)->capacity < bytes)
      spare = &(*spare)->next;
    if (*spare) { /* reuse a released chunk */
      sd_arena_chunk *reused = *spare;
      *spare = reused->next;
      reused->offset = 0;
      reused->next = chunk;
      arena->chunks = reused;
      return arena_alloc(be, bytes);
    }
    size_t chunk_bytes = arena->chunk_bytes ? arena->chunk_bytes : SD_ARENA_DEFAULT_CHUNK;
    if (chunk_bytes < bytes)
      chunk_bytes = bytes;
    sd_arena_chunk *fresh = calloc(1, sizeof *fresh);
    if (!fresh) {
      SD_ERROR("out of host memory for an arena chunk");
      return NULL;
    }
    fresh->base = be->ops->alloc(be, chunk_bytes);
    if (!fresh->base) {
      free(fresh);
      sd_error_context("scratch arena: %zu bytes", chunk_bytes);
      return NULL;
    }
    fresh->capacity = chunk_bytes;
    fresh->next = chunk;
    arena->chunks = fresh;
    chunk = fresh;
  }
  void *ptr = chunk->base + chunk->offset;
  chunk->offset += bytes;
  arena->used_bytes += bytes;
  if (arena->used_bytes > arena->peak_bytes)
    arena->peak_bytes = arena->used_bytes;
  return ptr;
}

int sd_tensor_alloc(sd_backend *be, sd_tensor *t) {
  t->data = arena_alloc(be, sd_tensor_bytes(t));
  return t->data ? 0 : -1;
}

sd_arena_mark sd_arena_get_mark(sd_backend *be) {
  sd_arena_mark mark = {be->arena.chunks, be->arena.chunks ? be->arena.chunks->offset : 0,
                        be->arena.used_bytes};
  return mark;
}

/* Chunks newer than the mark's chunk go to the spare list for reuse; the mark's chunk rewinds. */
void sd_arena_release(sd_backend *be, sd_arena_mark mark) {
  sd_arena *arena = &be->arena;
  while (arena->chunks && arena->chunks != mark.chunk) {
    sd_arena_chunk *done = arena->chunks;
    arena->chunks = done->next;
    done->offset = 0;
    done->next = arena->spare;
    arena->spare = done;
  }
  if (arena->chunks)
    arena->chunks->offset = mark.offset;
  arena->used_bytes = mark.used_bytes;
}

void sd_arena_destroy(sd_backend *be) {
  sd_arena_mark empty = {NULL, 0, 0};
  sd_arena_release(be, empty);
  while (be->arena.spare) {
    sd_arena_chunk *dead = be->arena.spare;
    be->arena.spare = dead->next;
    be->ops->free(be, dead->base);
    free(dead);
  }
}

static bool chunks_own(const sd_arena_chunk *chunk, const char *p) {
  for (; chunk; chunk = chunk->next)
    if (p >= chunk->base && p < chunk->base + chunk->capacity)
      return true;
  return false;
}

bool sd_arena_owns(const sd_backend *be, const void *ptr) {
  return chunks_own(be->arena.chunks, ptr) || chunks_own(be->arena.spare, ptr);
}
