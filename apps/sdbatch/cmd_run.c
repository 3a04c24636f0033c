/* sdbatch run: renders a YAML job into its HDF5 output file, in one process or over the ranks
 * that mpirun / srun start (coordinator/run.h). Only rank 0 speaks: usage errors, progress,
 * the summary and errors that concern the whole run are printed once. */
#include "cli.h"

#include "coordinator/run.h"
#include "kernels/error.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const run_help =
    "Usage: sdbatch run JOB.yaml [options]\n"
    "       mpirun -n N sdbatch run JOB.yaml [options]     (or srun)\n"
    "\n"
    "Renders every item of a job file (docs/jobs.md) into the job's output file (docs/output.md).\n"
    "With one process it renders everything itself; with N ranks, rank 0 checks the job, hands\n"
    "out batches and writes the file while ranks 1..N-1 render. Items already done in the\n"
    "output file are skipped, so running the same command again resumes an interrupted job.\n"
    "SIGTERM or SIGINT stops the run cleanly (pending items stay pending). See docs/running.md.\n"
    "\n"
    "  --device auto|cpu|cuda  where the workers render (default: the job's device key; auto:\n"
    "                          the rank's node-local GPU when there is one, else the CPU)\n"
    "  --threads N             CPU threads per rendering rank (default: the cores the launcher\n"
    "                          bound the rank to, or the node's cores shared among its ranks)\n"
    "  --quiet                 no progress or summary on stderr (errors are still reported)\n"
    "  --null-model            load no model: workers return a pattern computed from the item\n"
    "                          index (measures what dispatch and the writer sustain)\n"
    "  --help                  this text\n"
    "\n"
    "Exit status: 0 every item done; 3 the run went through but some items failed (their\n"
    "reasons are in the output file; a rerun retries them); 1 an error (job, model or output\n"
    "refused, a worker that cannot render, a write that fails); 2 a usage error; 128 + the\n"
    "signal (143 SIGTERM, 130 SIGINT) when stopped by a signal.\n";

typedef struct run_args {
  sd_run_options opts;
  bool quiet;
  bool help;
} run_args;

/* Parses argv; returns 0, or the exit status 2 after rank 0 has printed the usage error. */
static int parse_args(int argc, char **argv, bool speak, run_args *args) {
  const char *cmd = "run";
  enum { OPT_DEVICE = 256, OPT_THREADS, OPT_QUIET, OPT_NULL_MODEL, OPT_HELP };
  static const struct option options[] = {
      {"device", required_argument, NULL, OPT_DEVICE},
      {"threads", required_argument, NULL, OPT_THREADS},
      {"quiet", no_argument, NULL, OPT_QUIET},
      {"null-model", no_argument, NULL, OPT_NULL_MODEL},
      {"help", no_argument, NULL, OPT_HELP},
      {NULL, 0, NULL, 0},
  };
  optind = 1;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    switch (opt) {
    case OPT_DEVICE:
      if (strcmp(optarg, "auto") && strcmp(optarg, "cpu") && strcmp(optarg, "cuda"))
        return speak
                   ? cli_usage_error(cmd, "--device: expected auto, cpu or cuda, got '%s'", optarg)
                   : 2;
      args->opts.device = optarg;
      break;
    case OPT_THREADS: {
      char *end = NULL;
      errno = 0;
      long threads = strtol(optarg, &end, 10);
      if (errno || end == optarg || *end || threads < 1 || threads > 1024)
        return speak ? cli_usage_error(cmd,
                                       "--threads: expected an integer from 1 to 1024, got "
                                       "'%s'",
                                       optarg)
                     : 2;
      args->opts.threads = (int)threads;
      break;
    }
    case OPT_QUIET:
      args->quiet = true;
      break;
    case OPT_NULL_MODEL:
      args->opts.null_model = true;
      break;
    case OPT_HELP:
      args->help = true;
      return 0;
    default:
      return speak ? cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1])
                   : 2;
    }
  }
  if (optind >= argc)
    return speak ? cli_usage_error(cmd, "a job file is required") : 2;
  if (optind + 1 < argc)
    return speak ? cli_usage_error(cmd, "unexpected argument '%s'", argv[optind + 1]) : 2;
  args->opts.job_path = argv[optind];
  return 0;
}

int cmd_run(int argc, char **argv) {
  sd_cluster cluster;
  if (sd_cluster_init(&cluster) < 0)
    return cli_report_error("run");
  bool rank0 = cluster.rank == 0;
  run_args args;
  memset(&args, 0, sizeof args);
  int status = parse_args(argc, argv, rank0, &args);
  if (status == 0 && args.help && rank0)
    fputs(run_help, stdout);
  if (status != 0 || args.help) {
    sd_cluster_finalize();
    return status;
  }
  args.opts.log = rank0 && !args.quiet ? stderr : NULL;

  sd_run_report report;
  int rc = sd_run(&args.opts, &cluster, &report);
  if (rc < 0 && !report.reported_by_rank0) {
    if (rank0)
      cli_report_error("run");
    else
      fprintf(stderr, "sdbatch run: rank %d: error: %s\n", cluster.rank, sd_error_message());
  }
  if (report.abort_world)
    sd_cluster_abort(report.exit_status ? report.exit_status : 1);
  else if (sd_cluster_finalize() < 0)
    return cli_report_error("run");
  return report.exit_status;
}
