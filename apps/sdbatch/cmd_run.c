/* sdbatch run: renders a YAML job into its HDF5 output file, in one process or over the ranks
 * that mpirun / srun start (coordinator/run.h). Only rank 0 speaks: usage errors, progress,
 * the summary and errors that concern the whole run are printed once. */
#include "cli.h"

#include "coordinator/run.h"
#include "kernels/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const run_usage =
    "Usage: sdbatch run JOB.yaml [options]\n"
    "       mpirun -n N sdbatch run JOB.yaml [options]     (or srun)\n"
    "\n"
    "Renders every item of a job file (docs/jobs.md) into the job's output file (docs/output.md).\n"
    "With one process it renders everything itself; with N ranks, rank 0 checks the job, hands\n"
    "out batches and writes the file while ranks 1..N-1 render (in groups of the job's\n"
    "ranks_per_image, docs/spatial.md). Items already done in the output file are skipped,\n"
    "so running the same command again resumes an interrupted job.\n"
    "SIGTERM or SIGINT stops the run cleanly (pending items stay pending). See docs/running.md.\n";

static const char *const run_epilogue =
    "Exit status: 0 every item done; 3 the run went through but some items failed (their\n"
    "reasons are in the output file; a rerun retries them); 1 an error (job, model or output\n"
    "refused, a worker that cannot render, a write that fails); 2 a usage error; 128 + the\n"
    "signal (143 SIGTERM, 130 SIGINT) when stopped by a signal.\n";

typedef struct run_args {
  sd_run_options opts;
  bool quiet;
  float group_timeout; /* seconds; 0: the default */
} run_args;

/* Parses argv (rank 0 prints usage errors and --help); returns a cli_parse result. */
static int parse_args(int argc, char **argv, bool speak, run_args *args) {
  const cli_option options[] = {
      CLI_OPTION("device", NULL, CLI_CHOICE, &args->opts.device,
                 "where the workers render (default: the job's device key; auto:\n"
                 "the rank's node-local GPU when there is one, else the CPU)",
                 .choices = "auto|cpu|cuda"),
      CLI_OPTION("threads", "N", CLI_INT, &args->opts.threads,
                 "CPU threads per rendering rank (default: the cores the launcher\n"
                 "bound the rank to, or the node's cores shared among its ranks)",
                 .min = 1, .max = 1024),
      CLI_OPTION("group-timeout", "S", CLI_FLOAT, &args->group_timeout,
                 "with ranks_per_image > 1: seconds a rank of a group waits for the\n"
                 "others before the group is lost and its batch fails (default 300)",
                 .min = 0.1f, .max = 86400.0f),
      CLI_OPTION("quiet", NULL, CLI_FLAG, &args->quiet,
                 "no progress or summary on stderr (errors are still reported)"),
      CLI_OPTION("output-schema", "N", CLI_INT, &args->opts.output_schema,
                 "schema version of a new output file (default 3; an existing file\n"
                 "keeps its own): 1 writes no checksums and leaves unwritten images as\n"
                 "holes, for jobs too large to write out in full at creation; 2 is 3\n"
                 "without inputs, for readers of 2 (docs/output.md)",
                 .min = 1, .max = 3),
      CLI_OPTION("null-model", NULL, CLI_FLAG, &args->opts.null_model,
                 "load no model: workers return a pattern computed from the item\n"
                 "index (measures what dispatch and the writer sustain)"),
      {0},
  };
  const cli_command command = {.name = "run",
                               .usage = run_usage,
                               .options = options,
                               .epilogue = run_epilogue,
                               .min_operands = 1,
                               .max_operands = 1,
                               .operand_name = "a job file",
                               .operands = &args->opts.job_path};
  return cli_parse(&command, argc, argv, speak);
}

int cmd_run(int argc, char **argv) {
  sd_cluster cluster;
  if (sd_cluster_init(&cluster) < 0)
    return cli_report_error("run");
  bool rank0 = cluster.rank == 0;
  run_args args;
  memset(&args, 0, sizeof args);
  int parsed = parse_args(argc, argv, rank0, &args);
  if (parsed != CLI_PARSED) {
    sd_cluster_finalize();
    return cli_parse_exit_status(parsed);
  }
  args.opts.log = rank0 && !args.quiet ? stderr : NULL;
  args.opts.group_timeout_s = args.group_timeout;

  sd_run_report report;
  int rc = sd_run(&args.opts, &cluster, &report);
  if (rc < 0 && !report.reported_by_rank0) {
    if (rank0)
      cli_report_error("run");
    else
      fprintf(stderr, "sdbatch run: rank %d: error: %s\n", cluster.rank, sd_error_message());
  }
  if (report.abort_world) /* with the run's status: 0 after a lost group whose items were redone */
    sd_cluster_abort(report.exit_status);
  else if (sd_cluster_finalize() < 0)
    return cli_report_error("run");
  return report.exit_status;
}
