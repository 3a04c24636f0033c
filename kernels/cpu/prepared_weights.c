/* Prepared weights: a weight reordered (and possibly converted) once into the layout a oneDNN
 * primitive wants, such as the blocked OIhw16i16o of a direct convolution, and kept for the
 * following calls. Only weights in persistent memory written by upload are kept: the backend
 * notes every upload into persistent memory (a version per address), and a kept copy is used
 * while its address still has the version it was made from; free drops it. A weight in scratch
 * (arena) memory, whose contents may change under the same address without an upload, is
 * reordered into scratch on every call. */
#include "cpu_internal.h"

#include <stdlib.h>

typedef struct sd_cpu_upload {
  const void *ptr;
  uint64_t version;
} sd_cpu_upload;

struct sd_cpu_prepared {
  sd_cpu_prepared *next;
  const void *src; /* the weight's own memory */
  uint64_t version;
  dnnl_memory_desc_t md; /* layout and dtype of data */
  void *data;
};

static sd_cpu_upload *find_upload(sd_cpu_state *st, const void *ptr) {
  for (size_t i = 0; i < st->uploads_count; i++)
    if (st->uploads[i].ptr == ptr)
      return &st->uploads[i];
  return NULL;
}

int sd_cpu_note_upload(sd_backend *be, const void *ptr) {
  sd_cpu_state *st = be->impl;
  if (sd_arena_owns(be, ptr))
    return 0;
  sd_cpu_upload *known = find_upload(st, ptr);
  if (known) {
    known->version = ++st->upload_clock;
    return 0;
  }
  if (st->uploads_count == st->uploads_capacity) {
    size_t capacity = st->uploads_capacity ? 2 * st->uploads_capacity : 256;
    sd_cpu_upload *grown = realloc(st->uploads, capacity * sizeof *grown);
    if (!grown)
      return SD_ERROR("out of host memory noting an upload");
    st->uploads = grown;
    st->uploads_capacity = capacity;
  }
  st->uploads[st->uploads_count++] = (sd_cpu_upload){ptr, ++st->upload_clock};
  return 0;
}

void sd_cpu_forget(sd_backend *be, const void *ptr) {
  sd_cpu_state *st = be->impl;
  sd_cpu_upload *known = find_upload(st, ptr);
  if (known)
    *known = st->uploads[--st->uploads_count];
  for (sd_cpu_prepared **p = &st->prepared; *p;) {
    sd_cpu_prepared *dead = *p;
    if (dead->src != ptr) {
      p = &dead->next;
      continue;
    }
    *p = dead->next;
    st->prepared_bytes -= dnnl_memory_desc_get_size(&dead->md);
    free(dead->data);
    free(dead);
  }
}

void sd_cpu_prepared_destroy(sd_backend *be) {
  sd_cpu_state *st = be->impl;
  while (st->prepared) {
    sd_cpu_prepared *dead = st->prepared;
    st->prepared = dead->next;
    free(dead->data);
    free(dead);
  }
  free(st->uploads);
  st->uploads = NULL;
  st->uploads_count = st->uploads_capacity = 0;
  st->prepared_bytes = 0;
}

/* dst (layout md) = src (layout src_md) through a oneDNN reorder. */
static int reorder(sd_cpu_state *st, const dnnl_memory_desc_t *src_md, const void *src,
                   const dnnl_memory_desc_t *md, void *dst) {
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_t prim = NULL;
  dnnl_memory_t from = NULL, to = NULL;
  int rc = -1;
  dnnl_status_t s =
      dnnl_reorder_primitive_desc_create(&pd, src_md, st->engine, md, st->engine, NULL);
  if (s == dnnl_success)
    s = dnnl_primitive_create(&prim, pd);
  if (s == dnnl_success)
    s = dnnl_memory_create(&from, src_md, st->engine, (void *)src);
  if (s == dnnl_success)
    s = dnnl_memory_create(&to, md, st->engine, dst);
  if (s == dnnl_success) {
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    s = dnnl_primitive_execute(prim, st->stream, 2, args);
  }
  if (s == dnnl_success)
    s = dnnl_stream_wait(st->stream);
  if (s == dnnl_success)
    rc = 0;
  else
    SD_ERROR("oneDNN: weight reorder: %s", dnnl_status2str(s));
  dnnl_memory_destroy(from);
  dnnl_memory_destroy(to);
  dnnl_primitive_destroy(prim);
  dnnl_primitive_desc_destroy(pd);
  return rc;
}

int sd_cpu_prepared_weight(sd_backend *be, const sd_tensor *w, const dnnl_memory_desc_t *src_md,
                           const dnnl_memory_desc_t *md, const void **out) {
  sd_cpu_state *st = be->impl;
  if (dnnl_memory_desc_equal(src_md, md)) {
    *out = w->data;
    return 0;
  }
  size_t bytes = dnnl_memory_desc_get_size(md);
  sd_cpu_upload *known = find_upload(st, w->data);
  if (!known) { /* scratch weight: reorder on every call (the caller releases the arena) */
    float *scratch =
        sd_cpu_scratch(be, (bytes + sizeof(float) - 1) / sizeof(float), "weight reorder");
    if (!scratch)
      return -1;
    SD_TRY(reorder(st, src_md, w->data, md, scratch));
    *out = scratch;
    return 0;
  }
  sd_cpu_prepared *p = st->prepared;
  while (p && !(p->src == w->data && dnnl_memory_desc_equal(&p->md, md)))
    p = p->next;
  if (p && p->version == known->version) {
    *out = p->data;
    return 0;
  }
  if (!p) {
    p = calloc(1, sizeof *p);
    if (!p || posix_memalign(&p->data, 64, bytes ? bytes : 1) != 0) {
      free(p);
      return SD_ERROR("out of host memory for a prepared weight (%zu bytes)", bytes);
    }
    p->src = w->data;
    p->md = *md;
    p->next = st->prepared;
    st->prepared = p;
    st->prepared_bytes += bytes;
  }
  p->version = 0; /* not valid until the reorder has succeeded */
  SD_TRY(reorder(st, src_md, w->data, md, p->data));
  p->version = known->version;
  *out = p->data;
  return 0;
}
