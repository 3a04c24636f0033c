/* sdbatch render: one txt2img image to a PNG file, with the generation parameters in a text
 * chunk. */
#include "cli.h"

#include "kernels/error.h"
#include "worker/io/png_image.h"
#include "worker/pipeline/engine.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const render_help =
    "Usage: sdbatch render --model PATH --prompt TEXT --out FILE.png [options]\n"
    "\n"
    "Renders one image with text-to-image, giving the pixels diffusers' StableDiffusionPipeline\n"
    "gives for the same model, prompt, parameters and seed.\n"
    "\n"
    "  --model PATH            diffusers folder or single-file .safetensors checkpoint\n"
    "  --model-config FILE     LDM-style YAML for a single-file checkpoint (optional)\n"
    "  --prompt TEXT           the prompt\n"
    "  --negative-prompt TEXT  what to steer away from (default: empty)\n"
    "  --seed N                seed of the image's generator (default 0)\n"
    "  --steps N               denoising steps (default 50)\n"
    "  --guidance-scale F      classifier-free guidance scale; <= 1 runs only the prompt\n"
    "                          branch (default 7.5)\n"
    "  --scheduler NAME        ddim, pndm, lms, euler, euler_a, heun, dpmpp_2m\n"
    "                          (default: the model's scheduler config)\n"
    "  --karras                Karras sigma schedule (lms, euler, heun, dpmpp_2m)\n"
    "  --width W, --height H   image size, multiples of 8 (default: the model's native size)\n"
    "  --rng cuda|cpu          reproduce torch.Generator('cuda') or ('cpu') noise (default cuda)\n"
    "  --device cpu|cuda|auto  where to compute (default auto: cuda when available)\n"
    "  --vae-tiling auto|on|off\n"
    "                          decode the image in overlapping tiles, as diffusers after\n"
    "                          vae.enable_tiling(), in bounded memory (default auto: above 2x the\n"
    "                          VAE's sample_size, e.g. 1024 px for SD 1.x)\n"
    "  --precision fp16|bf16|fp32\n"
    "                          CUDA activation and weight dtype (default fp16); the CPU always\n"
    "                          computes in fp32\n"
    "  --threads N             CPU threads (default: all cores)\n"
    "  --out FILE.png          the image to write\n"
    "  --quiet                 no progress on stderr\n"
    "  --help                  this text\n";

typedef struct render_progress {
  bool quiet;
  bool tty;
  struct timespec start;
} render_progress;

static double seconds_since(const struct timespec *start) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - start->tv_sec) + 1e-9 * (double)(now.tv_nsec - start->tv_nsec);
}

static void on_progress(void *ctx, int done, int total) {
  render_progress *p = ctx;
  if (p->quiet)
    return;
  double elapsed = seconds_since(&p->start);
  if (p->tty)
    fprintf(stderr, "\rsdbatch render: step %d/%d (%.1f s)%s", done, total, elapsed,
            done == total ? "\n" : "");
  else if (done == total || done % 10 == 0)
    fprintf(stderr, "sdbatch render: step %d/%d (%.1f s)\n", done, total, elapsed);
}

int cmd_render(int argc, char **argv) {
  const char *cmd = "render";
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.device = "auto";
  sd_txt2img_item item = {NULL, "", 0, 7.5f};
  sd_txt2img_batch batch = {0, 0, 50, SD_SCHED_DDIM, false, SD_RNG_CUDA};
  const char *out_path = NULL, *scheduler_name = NULL;
  bool quiet = false, precision_given = false;

  enum {
    OPT_MODEL = 256,
    OPT_MODEL_CONFIG,
    OPT_PROMPT,
    OPT_NEGATIVE,
    OPT_SEED,
    OPT_STEPS,
    OPT_GUIDANCE,
    OPT_SCHEDULER,
    OPT_KARRAS,
    OPT_WIDTH,
    OPT_HEIGHT,
    OPT_RNG,
    OPT_DEVICE,
    OPT_VAE_TILING,
    OPT_PRECISION,
    OPT_THREADS,
    OPT_OUT,
    OPT_QUIET,
    OPT_HELP
  };
  static const struct option options[] = {
      {"model", required_argument, NULL, OPT_MODEL},
      {"model-config", required_argument, NULL, OPT_MODEL_CONFIG},
      {"prompt", required_argument, NULL, OPT_PROMPT},
      {"negative-prompt", required_argument, NULL, OPT_NEGATIVE},
      {"seed", required_argument, NULL, OPT_SEED},
      {"steps", required_argument, NULL, OPT_STEPS},
      {"guidance-scale", required_argument, NULL, OPT_GUIDANCE},
      {"scheduler", required_argument, NULL, OPT_SCHEDULER},
      {"karras", no_argument, NULL, OPT_KARRAS},
      {"width", required_argument, NULL, OPT_WIDTH},
      {"height", required_argument, NULL, OPT_HEIGHT},
      {"rng", required_argument, NULL, OPT_RNG},
      {"device", required_argument, NULL, OPT_DEVICE},
      {"vae-tiling", required_argument, NULL, OPT_VAE_TILING},
      {"precision", required_argument, NULL, OPT_PRECISION},
      {"threads", required_argument, NULL, OPT_THREADS},
      {"out", required_argument, NULL, OPT_OUT},
      {"quiet", no_argument, NULL, OPT_QUIET},
      {"help", no_argument, NULL, OPT_HELP},
      {NULL, 0, NULL, 0},
  };
  optind = 1;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    switch (opt) {
    case OPT_MODEL:
      params.model_path = optarg;
      break;
    case OPT_MODEL_CONFIG:
      params.model_yaml = optarg;
      break;
    case OPT_PROMPT:
      item.prompt = optarg;
      break;
    case OPT_NEGATIVE:
      item.negative_prompt = optarg;
      break;
    case OPT_SEED:
      if (cli_parse_u64(cmd, "--seed", optarg, &item.seed) < 0)
        return 2;
      break;
    case OPT_STEPS:
      if (cli_parse_int(cmd, "--steps", optarg, 1, 1000, &batch.steps) < 0)
        return 2;
      break;
    case OPT_GUIDANCE:
      if (cli_parse_float(cmd, "--guidance-scale", optarg, &item.guidance_scale) < 0)
        return 2;
      break;
    case OPT_SCHEDULER:
      scheduler_name = optarg;
      break;
    case OPT_KARRAS:
      batch.karras = true;
      break;
    case OPT_WIDTH:
      if (cli_parse_int(cmd, "--width", optarg, 8, 8192, &batch.width) < 0)
        return 2;
      break;
    case OPT_HEIGHT:
      if (cli_parse_int(cmd, "--height", optarg, 8, 8192, &batch.height) < 0)
        return 2;
      break;
    case OPT_RNG:
      if (sd_rng_kind_parse(optarg, &batch.rng) < 0)
        return cli_usage_error(cmd, "--rng: %s", sd_error_message());
      break;
    case OPT_DEVICE:
      if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda") && strcmp(optarg, "auto"))
        return cli_usage_error(cmd, "--device: expected cpu, cuda or auto, got '%s'", optarg);
      params.device = optarg;
      break;
    case OPT_VAE_TILING:
      if (sd_vae_tiling_parse(optarg, &params.vae_tiling) < 0)
        return cli_usage_error(cmd, "--vae-tiling: %s", sd_error_message());
      break;
    case OPT_PRECISION:
      if (sd_precision_parse(optarg, &params.precision) < 0)
        return cli_usage_error(cmd, "--precision: %s", sd_error_message());
      precision_given = true;
      break;
    case OPT_THREADS:
      if (cli_parse_int(cmd, "--threads", optarg, 1, 1024, &params.threads) < 0)
        return 2;
      break;
    case OPT_OUT:
      out_path = optarg;
      break;
    case OPT_QUIET:
      quiet = true;
      break;
    case OPT_HELP:
      fputs(render_help, stdout);
      return 0;
    default:
      return cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
  if (!params.model_path)
    return cli_usage_error(cmd, "--model is required");
  if (!item.prompt)
    return cli_usage_error(cmd, "--prompt is required");
  if (!out_path)
    return cli_usage_error(cmd, "--out is required");
  sd_scheduler_kind scheduler_kind = SD_SCHED_DDIM;
  if (scheduler_name && sd_scheduler_kind_parse(scheduler_name, &scheduler_kind) < 0)
    return cli_usage_error(cmd, "--scheduler: %s", sd_error_message());

  render_progress progress = {quiet, isatty(STDERR_FILENO) != 0, {0, 0}};
  clock_gettime(CLOCK_MONOTONIC, &progress.start);
  sd_engine *engine = NULL;
  if (sd_engine_open(&params, &engine) < 0)
    return cli_report_error(cmd);
  const sd_model_files *model = sd_engine_model(engine);
  int factor = sd_engine_vae_scale_factor(engine);
  if (!batch.width)
    batch.width = model->unet.sample_size * factor;
  if (!batch.height)
    batch.height = model->unet.sample_size * factor;
  batch.scheduler = scheduler_name ? scheduler_kind : sd_engine_default_scheduler(engine);
  const sd_backend *be = sd_engine_backend(engine);
  if (precision_given && be->ops->act_dtype != params.precision)
    fprintf(stderr,
            "sdbatch render: note: --precision %s applies to CUDA; the %s backend computes "
            "in %s\n",
            sd_precision_name(params.precision), be->ops->name,
            sd_precision_name(be->ops->act_dtype));
  if (!quiet)
    fprintf(stderr, "sdbatch render: model %s loaded on %s (%s) in %.1f s\n", params.model_path,
            be->ops->name, sd_precision_name(be->ops->act_dtype), seconds_since(&progress.start));

  int status = 0;
  sd_txt2img_result result = {0};
  clock_gettime(CLOCK_MONOTONIC, &progress.start);
  if (sd_txt2img(engine, &batch, &item, 1, on_progress, &progress, &result) < 0) {
    status = cli_report_error(cmd);
    goto out;
  }
  if (!result.finite)
    fprintf(stderr, "sdbatch render: warning: the latents or image had NaN or Inf values\n");

  char parameters[8192];
  snprintf(
      parameters, sizeof parameters,
      "%s\nNegative prompt: %s\nSteps: %d, Sampler: %s, Karras: %s, CFG scale: %g, Seed: "
      "%llu, Size: %dx%d, RNG: %s, Device: %s, Precision: %s, Model: %s, Generator: sdbatch %s",
      item.prompt, item.negative_prompt, batch.steps, sd_scheduler_kind_name(batch.scheduler),
      batch.karras ? "yes" : "no", (double)item.guidance_scale, (unsigned long long)item.seed,
      batch.width, batch.height, batch.rng == SD_RNG_CUDA ? "cuda" : "cpu", be->ops->name,
      sd_precision_name(be->ops->act_dtype), params.model_path, SDBATCH_VERSION);
  sd_png_text text = {"parameters", parameters};
  if (sd_png_write_rgb(out_path, result.rgb, batch.width, batch.height, &text, 1) < 0) {
    status = cli_report_error(cmd);
    goto out;
  }
  if (!quiet)
    fprintf(stderr, "sdbatch render: wrote %s (%dx%d, %d steps, %.2f s)\n", out_path, batch.width,
            batch.height, batch.steps, seconds_since(&progress.start));
out:
  sd_txt2img_result_free(&result);
  sd_engine_close(engine);
  return status;
}
