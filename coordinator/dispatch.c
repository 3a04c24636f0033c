/* The dispatch cursor (dispatch.h). */
#include "dispatch.h"

#include "../kernels/error.h"

void sd_dispatch_init(sd_dispatch *d, const sd_job *job, const sd_output *output, int batch_size) {
  d->job = job;
  d->output = output;
  d->batch_size = batch_size > 0 ? batch_size : 1;
  d->n_items = sd_job_item_count(job);
  d->next = 0;
}

static int to_render(const sd_dispatch *d, int64_t index) {
  return sd_output_status(d->output, index) != SD_ITEM_DONE;
}

int sd_dispatch_next(sd_dispatch *d, int64_t *indices, int *count) {
  *count = 0;
  while (d->next < d->n_items && !to_render(d, d->next))
    d->next++;
  if (d->next >= d->n_items)
    return 0;
  sd_job_item first, item;
  SD_TRY(sd_job_item_get(d->job, d->next, &first));
  indices[(*count)++] = d->next++;
  while (*count < d->batch_size && d->next < d->n_items) {
    if (!to_render(d, d->next)) {
      d->next++;
      continue;
    }
    SD_TRY(sd_job_item_get(d->job, d->next, &item));
    if (!sd_job_items_batchable(&first, &item))
      break;
    indices[(*count)++] = d->next++;
  }
  return 0;
}
