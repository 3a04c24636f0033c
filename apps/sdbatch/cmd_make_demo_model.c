/* sdbatch make-demo-model: writes a random-weight model in diffusers layout. */
#include "cli.h"

#include "kernels/error.h"
#include "worker/pipeline/demo_model.h"

#include <stdio.h>
#include <time.h>

#ifndef SDBATCH_CLIP_BPE
#define SDBATCH_CLIP_BPE ""
#endif

static const char *const demo_usage =
    "Usage: sdbatch make-demo-model DIR [--full-size] [--seed N]\n"
    "\n"
    "Writes a random-weight Stable Diffusion model in diffusers folder layout to DIR (which must\n"
    "not exist or be empty). Its pictures are noise: it runs every real code path without\n"
    "downloading weights. For pictures that show the prompt, use the shapes demo model that\n"
    "sdbatch trained itself (models/shapes-demo in the repository, docs/demo-model.md); for real\n"
    "images, pass --model a checkpoint you have (a diffusers folder, or a single-file SD\n"
    "1.x/2.x .safetensors).\n";

int cmd_make_demo_model(int argc, char **argv) {
  const char *cmd = "make-demo-model";
  sd_demo_model_params params = {.seed = 0, .bpe_gz = SDBATCH_CLIP_BPE};
  const char *dir = NULL;
  const cli_option options[] = {
      CLI_OPTION("full-size", NULL, CLI_FLAG, &params.full_size,
                 "SD 1.5 shapes (860M-parameter UNet, 1.7 GB of fp16 weights), for\n"
                 "benchmarks; default: a tiny model of the same block structure (128x128)"),
      CLI_OPTION("seed", "N", CLI_U64, &params.seed, "seed of the random weights (default 0)"),
      {0},
  };
  const cli_command command = {.name = cmd,
                               .usage = demo_usage,
                               .options = options,
                               .min_operands = 1,
                               .max_operands = 1,
                               .operand_name = "the folder (DIR)",
                               .operands = &dir};
  int parsed = cli_parse(&command, argc, argv, true);
  if (parsed != CLI_PARSED)
    return cli_parse_exit_status(parsed);
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  if (sd_demo_model_write(dir, &params) < 0)
    return cli_report_error(cmd);
  clock_gettime(CLOCK_MONOTONIC, &end);
  fprintf(stderr,
          "sdbatch make-demo-model: wrote %s%s in %.1f s (random weights: its pictures are noise; "
          "models/shapes-demo draws shapes)\n",
          dir, params.full_size ? " (SD 1.5 shapes)" : "",
          (double)(end.tv_sec - start.tv_sec) + 1e-9 * (double)(end.tv_nsec - start.tv_nsec));
  return 0;
}
