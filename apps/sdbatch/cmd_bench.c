/* sdbatch bench: times the engine's stages (text encoder, UNet call, VAE decode) and the whole
 * pipeline, with achieved FLOP rates. */
#include "cli.h"

#include "kernels/error.h"
#include "worker/pipeline/bench.h"
#include "worker/pipeline/engine.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const bench_help =
    "Usage: sdbatch bench --model PATH [options]\n"
    "\n"
    "Times one text-encoder call, one UNet call and one VAE decode on the real shapes, then the\n"
    "whole text-to-image pipeline, and prints milliseconds per call, GFLOP per call (linear,\n"
    "convolution and attention, as torch's FlopCounterMode counts them), achieved TFLOP/s and\n"
    "images/s. With guidance > 1 a UNet call runs 2 x batch rows (classifier-free guidance).\n"
    "\n"
    "  --model PATH            diffusers folder or single-file checkpoint (e.g. a model from\n"
    "                          'sdbatch make-demo-model DIR --full-size')\n"
    "  --device cpu|cuda|auto  (default auto)\n"
    "  --precision fp16|bf16|fp32\n"
    "                          CUDA activation and weight dtype (default fp16); the CPU always\n"
    "                          computes in fp32\n"
    "  --threads N             CPU threads (default: all cores)\n"
    "  --batch B               images per call (default 1)\n"
    "  --steps N               pipeline steps (default 50)\n"
    "  --guidance-scale F      (default 7.5)\n"
    "  --scheduler NAME        pipeline scheduler (default ddim)\n"
    "  --width W, --height H   (default: the model's native size)\n"
    "  --repeat R              timed calls per stage after one warm-up (default 3)\n"
    "  --no-pipeline           time the stages only\n"
    "  --only text|unet|vae|pipeline\n"
    "                          time this one stage (e.g. a 2048x2048 VAE decode alone)\n"
    "  --help                  this text\n";

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void print_stage(const char *name, int rows, const sd_stage_timing *t) {
  double gflop = (double)t->flops_per_call * 1e-9;
  printf("  %-13s batch %-3d %10.2f ms/call (best %.2f)  %9.1f GFLOP/call  %7.3f TFLOP/s\n", name,
         rows, t->ms_per_call, t->ms_best, gflop, t->ms_best > 0 ? gflop / t->ms_best : 0.0);
}

int cmd_bench(int argc, char **argv) {
  const char *cmd = "bench";
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.device = "auto";
  int batch_size = 1, steps = 50, width = 0, height = 0, repeat = 3;
  float guidance = 7.5f;
  bool pipeline = true, precision_given = false;
  const char *only = NULL;
  const char *scheduler_name = "ddim";
  static const struct option options[] = {
      {"model", required_argument, NULL, 'm'},
      {"device", required_argument, NULL, 'd'},
      {"precision", required_argument, NULL, 'p'},
      {"threads", required_argument, NULL, 't'},
      {"batch", required_argument, NULL, 'b'},
      {"steps", required_argument, NULL, 's'},
      {"guidance-scale", required_argument, NULL, 'g'},
      {"scheduler", required_argument, NULL, 'S'},
      {"width", required_argument, NULL, 'W'},
      {"height", required_argument, NULL, 'H'},
      {"repeat", required_argument, NULL, 'r'},
      {"no-pipeline", no_argument, NULL, 'n'},
      {"only", required_argument, NULL, 'o'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  optind = 1;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    switch (opt) {
    case 'm':
      params.model_path = optarg;
      break;
    case 'd':
      if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda") && strcmp(optarg, "auto"))
        return cli_usage_error(cmd, "--device: expected cpu, cuda or auto, got '%s'", optarg);
      params.device = optarg;
      break;
    case 'p':
      if (sd_precision_parse(optarg, &params.precision) < 0)
        return cli_usage_error(cmd, "--precision: %s", sd_error_message());
      precision_given = true;
      break;
    case 't':
      if (cli_parse_int(cmd, "--threads", optarg, 1, 1024, &params.threads) < 0)
        return 2;
      break;
    case 'b':
      if (cli_parse_int(cmd, "--batch", optarg, 1, 1024, &batch_size) < 0)
        return 2;
      break;
    case 's':
      if (cli_parse_int(cmd, "--steps", optarg, 1, 1000, &steps) < 0)
        return 2;
      break;
    case 'g':
      if (cli_parse_float(cmd, "--guidance-scale", optarg, &guidance) < 0)
        return 2;
      break;
    case 'S':
      scheduler_name = optarg;
      break;
    case 'W':
      if (cli_parse_int(cmd, "--width", optarg, 8, 8192, &width) < 0)
        return 2;
      break;
    case 'H':
      if (cli_parse_int(cmd, "--height", optarg, 8, 8192, &height) < 0)
        return 2;
      break;
    case 'r':
      if (cli_parse_int(cmd, "--repeat", optarg, 1, 1000, &repeat) < 0)
        return 2;
      break;
    case 'n':
      pipeline = false;
      break;
    case 'o':
      if (strcmp(optarg, "text") && strcmp(optarg, "unet") && strcmp(optarg, "vae") &&
          strcmp(optarg, "pipeline"))
        return cli_usage_error(cmd, "--only: expected text, unet, vae or pipeline, got '%s'",
                               optarg);
      only = optarg;
      break;
    case 'h':
      fputs(bench_help, stdout);
      return 0;
    default:
      return cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
  if (!params.model_path)
    return cli_usage_error(cmd, "--model is required");
  sd_txt2img_batch batch = {0, 0, steps, SD_SCHED_DDIM, false, SD_RNG_CUDA};
  if (sd_scheduler_kind_parse(scheduler_name, &batch.scheduler) < 0)
    return cli_usage_error(cmd, "--scheduler: %s", sd_error_message());

  double load_start = now_s();
  sd_engine *engine = NULL;
  if (sd_engine_open(&params, &engine) < 0)
    return cli_report_error(cmd);
  double load_s = now_s() - load_start;
  const sd_model_files *model = sd_engine_model(engine);
  sd_backend *be = sd_engine_backend(engine);
  int factor = sd_engine_vae_scale_factor(engine);
  batch.width = width ? width : model->unet.sample_size * factor;
  batch.height = height ? height : model->unet.sample_size * factor;
  int status = 0;
  if (sd_txt2img_check(engine, &batch) < 0) {
    status = cli_report_error(cmd);
    goto out;
  }
  int rows = guidance > 1.0f ? 2 * batch_size : batch_size;
  if (precision_given && be->ops->act_dtype != params.precision)
    fprintf(stderr,
            "sdbatch bench: note: --precision %s applies to CUDA; the %s backend computes in %s\n",
            sd_precision_name(params.precision), be->ops->name,
            sd_precision_name(be->ops->act_dtype));
  printf("sdbatch bench: model %s (loaded in %.1f s)\n", params.model_path, load_s);
  printf("  device %s: %s (%d threads), %s, %dx%d, batch %d, guidance %g, %d steps (%s)\n",
         be->ops->name, be->device_name, be->threads, sd_precision_name(be->ops->act_dtype),
         batch.width, batch.height, batch_size, (double)guidance, steps, scheduler_name);
  fflush(stdout);
  sd_stage_timing timing;
  if (!only || strcmp(only, "text") == 0) {
    if (sd_bench_text_encoder(engine, rows, repeat, &timing) < 0) {
      status = cli_report_error(cmd);
      goto out;
    }
    print_stage("text encoder", rows, &timing);
    fflush(stdout);
  }
  if (!only || strcmp(only, "unet") == 0) {
    if (sd_bench_unet(engine, rows, batch.width, batch.height, repeat, &timing) < 0) {
      status = cli_report_error(cmd);
      goto out;
    }
    print_stage("unet", rows, &timing);
    fflush(stdout);
  }
  if (!only || strcmp(only, "vae") == 0) {
    if (sd_bench_vae(engine, batch_size, batch.width, batch.height, repeat, &timing) < 0) {
      status = cli_report_error(cmd);
      goto out;
    }
    print_stage("vae decode", batch_size, &timing);
    fflush(stdout);
  }
  if (only ? strcmp(only, "pipeline") == 0 : pipeline) {
    sd_txt2img_item *items = calloc((size_t)batch_size, sizeof *items);
    sd_txt2img_result *results = calloc((size_t)batch_size, sizeof *results);
    if (!items || !results) {
      free(items);
      free(results);
      SD_ERROR("out of memory");
      status = cli_report_error(cmd);
      goto out;
    }
    for (int i = 0; i < batch_size; i++)
      items[i] = (sd_txt2img_item){"a photo of an astronaut riding a horse on mars", "",
                                   (uint64_t)i, guidance};
    double start = now_s();
    int rc = sd_txt2img(engine, &batch, items, batch_size, NULL, NULL, results);
    double elapsed = now_s() - start;
    for (int i = 0; i < batch_size; i++)
      sd_txt2img_result_free(&results[i]);
    free(items);
    free(results);
    if (rc < 0) {
      status = cli_report_error(cmd);
      goto out;
    }
    printf("  pipeline      %d image(s), %d steps: %.3f s, %.3f images/s\n", batch_size, steps,
           elapsed, batch_size / elapsed);
  }
out:
  sd_engine_close(engine);
  return status;
}
