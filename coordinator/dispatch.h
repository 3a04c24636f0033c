/* Dispatch on rank 0: hands out batches of items not done in the output file, in index order,
 * each batch up to batch_size items that can render together (sd_job_items_batchable: same
 * size, steps, scheduler, karras). A cursor over the index is the whole state, so a job of any
 * size costs no memory here; every index is looked at once per run. */
#ifndef SD_RUN_DISPATCH_H
#define SD_RUN_DISPATCH_H

#include "../jobs/job.h"
#include "output.h"

#include <stdint.h>

typedef struct sd_dispatch {
  const sd_job *job;
  const sd_output *output;
  int batch_size;
  int64_t n_items;
  int64_t next; /* first index not looked at yet */
} sd_dispatch;

void sd_dispatch_init(sd_dispatch *d, const sd_job *job, const sd_output *output, int batch_size);

/* Fills indices[0 .. *count) with the next batch (at most batch_size); *count is 0 when every
 * item has been handed out. Items done in the output are skipped; failed ones are rendered
 * again. */
int sd_dispatch_next(sd_dispatch *d, int64_t *indices, int *count);

#endif
