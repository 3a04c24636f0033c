/* Progress of a run on rank 0: counts per rank, images/s and ETA on a stream (stderr), either a
 * line rewritten on each result (a terminal) or a line every few seconds (a log file), and the
 * summary at the end. A NULL stream makes every call a no-op except the counting. */
#ifndef SD_RUN_PROGRESS_H
#define SD_RUN_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct sd_progress {
  FILE *out;           /* NULL: quiet */
  bool tty;            /* out is a terminal */
  int n_ranks;         /* ranks in the world */
  int64_t n_items;     /* items in the job */
  int64_t to_render;   /* items this run sets out to render (not done at the start) */
  int64_t skipped;     /* items done before this run started */
  int64_t rendered;    /* done in this run */
  int64_t failed;      /* failed in this run */
  int64_t *per_rank;   /* (n_ranks) items (done or failed) each rank returned */
  double start;        /* monotonic seconds at sd_progress_init */
  double first_result; /* monotonic seconds of the first result, 0 before it */
  double last_print;
  int failures_shown; /* failure reasons printed so far (the first few are) */
} sd_progress;

int sd_progress_init(sd_progress *p, FILE *out, int n_ranks, int64_t n_items, int64_t skipped);
void sd_progress_free(sd_progress *p);

/* Seconds on the monotonic clock. */
double sd_progress_now(void);

/* Counts one item returned by rank; prints the failure reason of the first few failed items
 * and, when due, the progress line. */
void sd_progress_item(sd_progress *p, int rank, int64_t index, bool done, const char *reason);
/* An item counted failed earlier in this run is returned again (a lost group's batch rendered
 * by another group): its earlier failure no longer counts. */
void sd_progress_retried(sd_progress *p);
/* Prints the progress line when due (call it while waiting, so a log shows the run is alive). */
void sd_progress_tick(sd_progress *p);
/* A line of its own (e.g. "stopping: ..."), ending any rewritten progress line first. */
void sd_progress_note(sd_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The summary: wall time, rendered, failed, skipped, images/s, per-rank counts, rank 0's peak
 * memory; interrupted_by names the signal when the run was stopped (0 otherwise). */
void sd_progress_summary(sd_progress *p, int interrupted_by);

#endif
