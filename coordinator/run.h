/* `sdbatch run`: a job (jobs/job.h) rendered over the ranks of a cluster (cluster/cluster.h)
 * into its output file (output.h).
 *
 * With one rank, rank 0 renders everything itself. With more, rank 0 coordinates: it checks
 * the job, the model's configs and the output file before any rank starts work, then hands out
 * batches of compatible items on request (workers pull, so none idles while items remain),
 * writes every result it gets back and flushes the file about every second and at the end. The
 * other ranks each open the engine once and render. Only items not done in the output file
 * are rendered (a rerun resumes); an item that fails is marked failed with its reason and the
 * run goes on. SIGTERM/SIGINT stop the run cleanly (stop_signal.h). */
#ifndef SD_RUN_H
#define SD_RUN_H

#include "../cluster/cluster.h"

#include <stdbool.h>
#include <stdio.h>

typedef struct sd_run_options {
  const char *job_path;
  const char *device; /* "auto", "cpu", "cuda"; NULL: the job's device key */
  int threads;        /* CPU threads per rendering rank; 0: sd_cluster_default_threads */
  bool null_model;    /* no model: each item is a pattern of its index (coordinator benchmark) */
  int output_schema;  /* schema version of a new output file; 0: the newest (an existing file
                         keeps its own) */
  /* Seconds a rank of a group (ranks_per_image > 1) waits for the others in any operation before
   * the group is lost and its batch fails; 0: SD_COMM_DEFAULT_TIMEOUT_S. */
  double group_timeout_s;
  FILE *log; /* rank 0's progress and summary; NULL: quiet */
} sd_run_options;

typedef enum sd_run_outcome {
  SD_RUN_COMPLETE = 0,     /* every item of the job is done */
  SD_RUN_ITEMS_FAILED = 1, /* the run went through; some items failed (reasons in the file) */
  SD_RUN_INTERRUPTED = 2,  /* stopped by a signal; the items not rendered stay pending */
} sd_run_outcome;

typedef struct sd_run_report {
  /* Exit status of `sdbatch run`, the same on every rank (rank 0 broadcasts it): 0 every item
   * done, 3 some items failed, 128 + signal when interrupted, 1 on errors. */
  int exit_status;
  sd_run_outcome outcome; /* on rank 0 */
  int signal;             /* SIGTERM or SIGINT when interrupted */
  /* When sd_run fails: rank 0 has reported the failure (it says why once, for every rank), so
   * this rank prints nothing. */
  bool reported_by_rank0;
  /* The ranks could not all be stopped cleanly (a second signal on rank 0, a broken
   * communication): end with sd_cluster_abort instead of sd_cluster_finalize. */
  bool abort_world;
} sd_run_report;

/* Runs the job on this rank's part of the cluster; every rank calls it. Returns 0 when the run
 * went through (report->outcome says how), -1 with an error otherwise (job, model or output
 * refused, a worker that cannot render, a write that fails). */
int sd_run(const sd_run_options *opts, const sd_cluster *cluster, sd_run_report *report);

#endif
