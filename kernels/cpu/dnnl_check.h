/* Checked calls into oneDNN (the CPU backend's GEMM and convolutions). DNNL_CHECK evaluates the
 * call once; on failure it records "oneDNN: <call text>: <status>" with the caller's file and
 * line through sd_error_set and returns -1 from the enclosing function (which must return int).
 *
 * Inside an OpenMP parallel region a thread cannot return, and the error message is per thread:
 * DNNL_NOTE records the first failure of the region in a shared sd_dnnl_status, and
 * sd_dnnl_report raises it on the calling thread once the region has ended. */
#ifndef SD_DNNL_CHECK_H
#define SD_DNNL_CHECK_H

#include "../error.h"

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#define DNNL_CHECK(call)                                                                           \
  do {                                                                                             \
    dnnl_status_t sd_dnnl_status_ = (call);                                                        \
    if (sd_dnnl_status_ != dnnl_success)                                                           \
      return sd_error_set(__FILE__, __LINE__, "oneDNN: %s: %s", #call,                             \
                          dnnl_status2str(sd_dnnl_status_));                                       \
  } while (0)

/* The first failed oneDNN call of a parallel region (status dnnl_success while none failed). */
typedef struct sd_dnnl_status {
  dnnl_status_t status;
  const char *call;
  const char *file;
  int line;
} sd_dnnl_status;

static inline void sd_dnnl_note(sd_dnnl_status *first, dnnl_status_t status, const char *call,
                                const char *file, int line) {
  if (status == dnnl_success)
    return;
#pragma omp critical(sd_dnnl_note)
  if (first->status == dnnl_success) {
    first->status = status;
    first->call = call;
    first->file = file;
    first->line = line;
  }
}

#define DNNL_NOTE(first, call) sd_dnnl_note((first), (call), #call, __FILE__, __LINE__)

/* 0, or -1 with the recorded failure as the error (call it after the parallel region). */
static inline int sd_dnnl_report(const sd_dnnl_status *first) {
  if (first->status == dnnl_success)
    return 0;
  return sd_error_set(first->file, first->line, "oneDNN: %s: %s", first->call,
                      dnnl_status2str(first->status));
}

#endif
