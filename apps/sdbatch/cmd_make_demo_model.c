/* sdbatch make-demo-model: writes a random-weight model in diffusers layout. */
#include "cli.h"

#include "kernels/error.h"
#include "worker/pipeline/demo_model.h"

#include <getopt.h>
#include <stdio.h>
#include <time.h>

#ifndef SDBATCH_CLIP_BPE
#define SDBATCH_CLIP_BPE ""
#endif

static const char *const demo_help =
    "Usage: sdbatch make-demo-model DIR [--full-size] [--seed N]\n"
    "\n"
    "Writes a random-weight Stable Diffusion model in diffusers folder layout to DIR (which must\n"
    "not exist or be empty). Its pictures are noise: it runs every real code path without\n"
    "downloading weights. For real images, pass --model a checkpoint you have (a diffusers\n"
    "folder, or a single-file SD 1.x/2.x .safetensors).\n"
    "\n"
    "  --full-size   SD 1.5 shapes (860M-parameter UNet, 1.7 GB of fp16 weights), for\n"
    "                benchmarks; default: a tiny model of the same block structure (128x128)\n"
    "  --seed N      seed of the random weights (default 0)\n"
    "  --help        this text\n";

int cmd_make_demo_model(int argc, char **argv) {
  const char *cmd = "make-demo-model";
  sd_demo_model_params params = {false, 0, SDBATCH_CLIP_BPE};
  static const struct option options[] = {
      {"full-size", no_argument, NULL, 'f'},
      {"seed", required_argument, NULL, 's'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  optind = 1;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    switch (opt) {
    case 'f':
      params.full_size = true;
      break;
    case 's':
      if (cli_parse_u64(cmd, "--seed", optarg, &params.seed) < 0)
        return 2;
      break;
    case 'h':
      fputs(demo_help, stdout);
      return 0;
    default:
      return cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind != argc - 1)
    return cli_usage_error(cmd, "expected one folder name, got %d arguments", argc - optind);
  const char *dir = argv[optind];
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  if (sd_demo_model_write(dir, &params) < 0)
    return cli_report_error(cmd);
  clock_gettime(CLOCK_MONOTONIC, &end);
  fprintf(
      stderr,
      "sdbatch make-demo-model: wrote %s%s in %.1f s (random weights: its pictures are noise)\n",
      dir, params.full_size ? " (SD 1.5 shapes)" : "",
      (double)(end.tv_sec - start.tv_sec) + 1e-9 * (double)(end.tv_nsec - start.tv_nsec));
  return 0;
}
