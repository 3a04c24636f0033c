/* Private to worker/spatial: the decomposition object and timed communication helpers. */
#ifndef SD_SPATIAL_INTERNAL_H
#define SD_SPATIAL_INTERNAL_H

#include "spatial.h"

struct sd_spatial {
  sd_comm *comm; /* borrowed */
  sd_backend *be;
  int64_t height, width; /* the finest level */
  int levels;
  int64_t coarse;          /* rows of the coarsest level */
  int64_t *bounds;         /* (size + 1): rank r's coarsest rows are [bounds[r], bounds[r + 1]) */
  sd_spatial_stats *stats; /* mutable through a const decomposition */
};

double sd_spatial_now(void);
/* Waits for the backend, so that buffers handed to the communicator hold their values. */
int sd_spatial_sync(const sd_spatial *sp);
/* sd_comm_allgatherv after a sync, timed into the stats. */
int sd_spatial_allgatherv(const sd_spatial *sp, const void *send, void *recv, const size_t *bytes);

#endif
