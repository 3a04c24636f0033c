/* Spatial decompositions (spatial.h): the band layout of every level, and moving whole tensors
 * to bands and back (cut, gather). */
#include "spatial_internal.h"

#include "../../kernels/error.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double sd_spatial_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

int sd_spatial_create(sd_comm *comm, sd_backend *be, int64_t height, int64_t width, int levels,
                      sd_spatial **out) {
  *out = NULL;
  int size = sd_comm_size(comm);
  if (height < 1 || width < 1 || levels < 1 || levels > 30)
    return SD_ERROR("spatial: a %lld x %lld image with %d levels", (long long)height,
                    (long long)width, levels);
  int64_t coarse = ceil_div(height, (int64_t)1 << (levels - 1));
  if (coarse < size)
    return SD_ERROR("spatial: %d ranks for a %lld-row image whose coarsest level (1/%d) has %lld "
                    "rows: at most one rank per row there",
                    size, (long long)height, 1 << (levels - 1), (long long)coarse);
  bool device_backend = strcmp(be->ops->name, "cpu") != 0;
  if (size > 1 && device_backend != sd_comm_device_memory(comm))
    return SD_ERROR("spatial: the %s backend cannot use a %s communicator (%s memory); use %s",
                    be->ops->name, sd_comm_kind(comm),
                    sd_comm_device_memory(comm) ? "device" : "host",
                    device_backend ? "NCCL" : "MPI");
  sd_spatial *sp = calloc(1, sizeof *sp);
  int64_t *bounds = calloc((size_t)size + 1, sizeof *bounds);
  sd_spatial_stats *stats = calloc(1, sizeof *stats);
  if (!sp || !bounds || !stats) {
    free(sp);
    free(bounds);
    free(stats);
    return SD_ERROR("spatial: out of memory");
  }
  for (int r = 0; r <= size; r++)
    bounds[r] = coarse * r / size;
  *sp = (sd_spatial){.comm = comm,
                     .be = be,
                     .height = height,
                     .width = width,
                     .levels = levels,
                     .coarse = coarse,
                     .bounds = bounds,
                     .stats = stats};
  *out = sp;
  return 0;
}

void sd_spatial_free(sd_spatial *sp) {
  if (!sp)
    return;
  free(sp->bounds);
  free(sp->stats);
  free(sp);
}

int sd_spatial_rank(const sd_spatial *sp) {
  return sd_comm_rank(sp->comm);
}

int sd_spatial_size(const sd_spatial *sp) {
  return sd_comm_size(sp->comm);
}

sd_comm *sd_spatial_comm(const sd_spatial *sp) {
  return sp->comm;
}

sd_spatial_stats sd_spatial_get_stats(const sd_spatial *sp) {
  sd_spatial_stats s = *sp->stats;
  s.bytes_sent = sd_comm_bytes_sent(sp->comm);
  return s;
}

int sd_spatial_band(const sd_spatial *sp, int64_t width, int rank, int64_t *first, int64_t *rows,
                    int64_t *height) {
  for (int l = 0; l < sp->levels; l++) {
    int64_t w = ceil_div(sp->width, (int64_t)1 << l);
    if (w != width)
      continue;
    int64_t h = ceil_div(sp->height, (int64_t)1 << l);
    int64_t scale = (int64_t)1 << (sp->levels - 1 - l);
    int64_t start = sp->bounds[rank] * scale;
    int64_t end = rank == sd_comm_size(sp->comm) - 1 ? h : sp->bounds[rank + 1] * scale;
    if (first)
      *first = start;
    if (rows)
      *rows = end - start;
    if (height)
      *height = h;
    return 0;
  }
  return SD_ERROR("spatial: no level of the %lld x %lld decomposition (%d levels) is %lld wide",
                  (long long)sp->height, (long long)sp->width, sp->levels, (long long)width);
}

int64_t sd_spatial_rows(const sd_spatial *sp, int64_t width, int64_t whole) {
  int64_t rows = whole;
  if (sp && sd_spatial_band(sp, width, sd_spatial_rank(sp), NULL, &rows, NULL) < 0)
    return -1;
  return rows;
}

int sd_spatial_sync(const sd_spatial *sp) {
  if (sp->be->ops->synchronize)
    return sp->be->ops->synchronize(sp->be);
  return 0;
}

int sd_spatial_cut(sd_backend *be, const sd_spatial *sp, const sd_tensor *full, sd_tensor *band) {
  if (!sp)
    return sd_op_copy(be, full, band);
  int64_t first, rows, height;
  SD_TRY(sd_spatial_band(sp, full->shape[3], sd_spatial_rank(sp), &first, &rows, &height));
  if (full->ndim != 4 || band->ndim != 4 || full->shape[2] != height || band->shape[2] != rows ||
      band->shape[0] != full->shape[0] || band->shape[1] != full->shape[1] ||
      band->shape[3] != full->shape[3])
    return SD_ERROR("spatial cut: band (rows %lld of %lld) does not fit the tensors",
                    (long long)rows, (long long)height);
  return sd_op_blend_window(be, full, first, 0, band, 0, 0, rows, full->shape[3], SD_BLEND_COPY);
}

int sd_spatial_gather(sd_backend *be, const sd_spatial *sp, const sd_tensor *band,
                      sd_tensor *full) {
  if (!sp)
    return sd_op_copy(be, band, full);
  int size = sd_spatial_size(sp);
  int64_t b = band->shape[0], c = band->shape[1], w = band->shape[3], height;
  SD_TRY(sd_spatial_band(sp, w, 0, NULL, NULL, &height));
  if (band->ndim != 4 || full->ndim != 4 || full->shape[2] != height || full->shape[0] != b ||
      full->shape[1] != c || full->shape[3] != w || band->shape[2] != sd_spatial_rows(sp, w, 0))
    return SD_ERROR("spatial gather: band and whole tensor do not match the decomposition");
  size_t *bytes = malloc((size_t)size * sizeof *bytes);
  if (!bytes)
    return SD_ERROR("spatial gather: out of memory");
  size_t elem = sd_dtype_size(band->dtype);
  for (int r = 0; r < size; r++) {
    int64_t rows;
    sd_spatial_band(sp, w, r, NULL, &rows, NULL);
    bytes[r] = (size_t)(b * c * rows * w) * elem;
  }
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor parts = sd_tensor_1d(band->dtype, sd_tensor_numel(full)); /* rank by rank */
  int rc = sd_tensor_alloc(be, &parts);
  if (rc == 0)
    rc = sd_spatial_allgatherv(sp, band->data, parts.data, bytes);
  size_t offset = 0;
  for (int r = 0; r < size && rc == 0; r++) {
    int64_t first, rows;
    sd_spatial_band(sp, w, r, &first, &rows, NULL);
    sd_tensor part = sd_tensor_4d(band->dtype, b, c, rows, w); /* rank r's band */
    part.data = (char *)parts.data + offset;
    rc = sd_op_blend_window(be, &part, 0, 0, full, first, 0, rows, w, SD_BLEND_COPY);
    offset += bytes[r];
  }
  sd_arena_release(be, mark);
  free(bytes);
  return rc < 0 ? sd_error_context("spatial gather") : 0;
}

int sd_spatial_allgatherv(const sd_spatial *sp, const void *send, void *recv, const size_t *bytes) {
  SD_TRY(sd_spatial_sync(sp));
  double t0 = sd_spatial_now();
  int rc = sd_comm_allgatherv(sp->comm, send, recv, bytes);
  sp->stats->comm_seconds += sd_spatial_now() - t0;
  sp->stats->gather_calls++;
  return rc;
}
