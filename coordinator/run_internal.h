/* What rank 0's run loops share (run.c, run_coordinator.c) and what every rendering rank needs
 * to set up its engine (run_worker.c). */
#ifndef SD_RUN_INTERNAL_H
#define SD_RUN_INTERNAL_H

#include "dispatch.h"
#include "messages.h"
#include "output.h"
#include "progress.h"
#include "render.h"
#include "run.h"
#include "run_groups.h"
#include "run_inputs.h"

#include "../jobs/job.h"
#include "../worker/pipeline/engine.h"

/* Rank 0's state. */
typedef struct sd_run_ctx {
  const sd_run_options *opts;
  const sd_cluster *cluster;
  sd_job *job;
  const sd_job_info *info;
  sd_output *output;
  sd_run_plan plan;
  const char **scheduler_names; /* (n_schedulers) the scheduler each sweep entry renders with */
  char *adapters;               /* the output's adapters attribute (JSON, "" when none) */
  sd_run_inputs inputs;         /* the job's input files and their SHA-256 (n 0 without images) */
  sd_dispatch dispatch;
  sd_progress progress;
  sd_run_groups groups;     /* the worker groups of a multi-rank run */
  sd_run_group_comms comms; /* rank 0's: none (it is in no group) */
  double last_flush;        /* monotonic seconds */
  bool unflushed;           /* written since the last flush */
} sd_run_ctx;

/* Output file flushes: about this often while a run goes on, and at its end. */
#define SD_RUN_FLUSH_INTERVAL_S 1.0

/* Writes one returned item (done or failed) to the output file and counts it for rank. */
int sd_run_write_result(sd_run_ctx *ctx, int rank, const sd_item_result *result);
/* Flushes when something was written and the interval has passed (force: when anything was
 * written). */
int sd_run_flush(sd_run_ctx *ctx, bool force);

/* The engine parameters of a rendering rank: model, device (the job's or --device; auto is
 * cuda on the rank's node-local GPU when there is one, else cpu) and CPU threads. */
void sd_run_engine_params(const sd_run_options *opts, const sd_cluster *cluster,
                          const sd_job_info *info, sd_engine_params *params);

/* The job hash the output file records: the job's own, or for the null model a hash derived
 * from it, so that null-model files and real renders never resume into each other. */
void sd_run_job_hash(const sd_job_info *info, bool null_model, char hex[65]);

/* Rank 0 of a multi-rank run: answers the workers until every one has been told to stop. */
int sd_run_coordinate(sd_run_ctx *ctx, sd_run_report *report);
/* A worker rank (rank > 0). *in_run: set once the worker has joined a run rank 0 started (it
 * then takes part in the final status broadcast). */
int sd_run_worker(const sd_run_options *opts, const sd_cluster *cluster, sd_run_report *report,
                  bool *in_run);

#endif
