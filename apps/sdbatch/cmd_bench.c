/* sdbatch bench: times the engine's stages (text encoder, UNet call, VAE decode) and the whole
 * pipeline, with achieved FLOP rates. */
#include "cli.h"

#include "kernels/error.h"
#include "worker/pipeline/bench.h"
#include "worker/pipeline/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const bench_usage =
    "Usage: sdbatch bench --model PATH [options]\n"
    "\n"
    "Times one text-encoder call, one UNet call, one VAE decode and one VAE encode (img2img and\n"
    "inpainting inputs) on the real shapes, then the whole text-to-image pipeline, and prints\n"
    "milliseconds per call, GFLOP per call (linear, convolution and attention, as torch's\n"
    "FlopCounterMode counts them), achieved TFLOP/s and images/s. With guidance > 1 a UNet\n"
    "call runs 2 x batch rows (classifier-free guidance).\n"
    "With --depth-estimator (or a model folder holding depth_estimator/) it also times the depth\n"
    "estimator on one image at its size; --only depth times that alone. On an inpainting, depth\n"
    "or x4 upscaler model the stages are timed (the upscaler's UNet with noise level 20 as its\n"
    "class label) and the whole-pipeline stage, which is text-to-image, is skipped.\n";

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
  bool no_pipeline = false, precision_given = false;
  const char *only = NULL, *depth_dir = NULL;
  sd_scheduler_kind scheduler = SD_SCHED_DDIM;
  cli_adapters adapters = {0};
  const cli_option options[] = {
      CLI_OPTION("model", "PATH", CLI_STRING, &params.model_path,
                 "diffusers folder or single-file checkpoint (e.g. a model from\n"
                 "'sdbatch make-demo-model DIR --full-size')",
                 .required = true),
      CLI_OPTION_DEVICE(&params.device),
      CLI_OPTION_PRECISION(&params.precision, &precision_given),
      CLI_OPTION_THREADS(&params.threads),
      CLI_OPTION("batch", "B", CLI_INT, &batch_size, "images per call (default 1)", .min = 1,
                 .max = 1024),
      CLI_OPTION("steps", "N", CLI_INT, &steps, "pipeline steps (default 50)", .min = 1,
                 .max = 1000),
      CLI_OPTION("guidance-scale", "F", CLI_FLOAT, &guidance, "(default 7.5)"),
      CLI_OPTION("scheduler", "NAME", CLI_CUSTOM, &scheduler, "pipeline scheduler (default ddim)",
                 .parse = cli_parse_scheduler),
      CLI_OPTION("width", "W", CLI_INT, &width, "(default: the model's native size)", .min = 8,
                 .max = 8192, .synopsis = "--width W, --height H"),
      CLI_OPTION("height", "H", CLI_INT, &height, NULL, .min = 8, .max = 8192),
      CLI_OPTION("repeat", "R", CLI_INT, &repeat,
                 "timed calls per stage after one warm-up (default 3)", .min = 1, .max = 1000),
      CLI_OPTION("no-pipeline", NULL, CLI_FLAG, &no_pipeline, "time the stages only"),
      CLI_OPTION("only", NULL, CLI_CHOICE, &only,
                 "time this one stage (e.g. a 2048x2048 VAE decode alone)",
                 .choices = "text|unet|vae|vae-encoder|pipeline|depth"),
      CLI_OPTION("depth-estimator", "DIR", CLI_STRING, &depth_dir,
                 "a depth estimator folder (config.json + model.safetensors of\n"
                 "DPTForDepthEstimation; default: the model's depth_estimator/ if any)"),
      CLI_OPTION_LORA(&adapters),
      CLI_OPTION_EMBEDDING(&adapters),
      {0},
  };
  const cli_command command = {.name = cmd, .usage = bench_usage, .options = options};
  int parsed = cli_parse(&command, argc, argv, true);
  if (parsed != CLI_PARSED) {
    cli_adapters_free(&adapters);
    return cli_parse_exit_status(parsed);
  }
  /* LoRAs are merged at load: they show in the load time, a step costs what it costs without */
  params.loras = adapters.loras;
  params.lora_count = adapters.lora_count;
  params.embeddings = adapters.embeddings;
  params.embedding_count = adapters.embedding_count;
  sd_txt2img_batch batch = {0, 0, steps, scheduler, false, SD_RNG_CUDA};

  double load_start = now_s();
  sd_engine *engine = NULL;
  if (sd_engine_open(&params, &engine) < 0) {
    cli_adapters_free(&adapters);
    return cli_report_error(cmd);
  }
  double load_s = now_s() - load_start;
  const sd_model_files *model = sd_engine_model(engine);
  sd_backend *be = sd_engine_backend(engine);
  int factor = sd_engine_vae_scale_factor(engine);
  batch.width = width ? width : model->unet.sample_size * factor;
  batch.height = height ? height : model->unet.sample_size * factor;
  int status = 0;
  bool depth_only = only && strcmp(only, "depth") == 0;
  /* a depth, inpainting or upscaler model: its stages are timed, the whole-pipeline stage is
   * text-to-image only */
  bool txt2img_model = model->unet.in_channels == model->vae.latent_channels;
  bool pipeline_stage = only ? strcmp(only, "pipeline") == 0 : !no_pipeline;
  if (!txt2img_model && pipeline_stage && only) {
    SD_ERROR("--only pipeline times text-to-image; this model's UNet takes %d input channels "
             "(an inpainting, depth or upscaler model): time its stages instead",
             model->unet.in_channels);
    status = cli_report_error(cmd);
    goto out;
  }
  if (!depth_only && txt2img_model && sd_txt2img_check(engine, &batch) < 0) {
    status = cli_report_error(cmd);
    goto out;
  }
  int multiple = factor > 8 ? factor : 8;
  if (!depth_only && !txt2img_model && (batch.width % multiple || batch.height % multiple)) {
    SD_ERROR("width and height must be multiples of %d (got %dx%d)", multiple, batch.width,
             batch.height);
    status = cli_report_error(cmd);
    goto out;
  }
  int rows = guidance > 1.0f ? 2 * batch_size : batch_size;
  sd_dtype precision = sd_engine_precision(engine);
  if (precision_given && precision != params.precision)
    fprintf(stderr,
            "sdbatch bench: note: the %s backend offers no --precision %s; it computes in %s\n",
            be->ops->name, sd_precision_name(params.precision), sd_precision_name(precision));
  printf("sdbatch bench: model %s (loaded in %.1f s)\n", params.model_path, load_s);
  printf("  device %s: %s (%d threads), %s, %dx%d, batch %d, guidance %g, %d steps (%s)\n",
         be->ops->name, be->device_name, be->threads, sd_precision_name(precision), batch.width,
         batch.height, batch_size, (double)guidance, steps,
         sd_scheduler_kind_name(batch.scheduler));
  fflush(stdout);
  sd_stage_timing timing;
  char model_depth_dir[4200], depth_config[4300];
  if (!depth_dir) {
    snprintf(model_depth_dir, sizeof model_depth_dir, "%s/depth_estimator", params.model_path);
    snprintf(depth_config, sizeof depth_config, "%s/config.json", model_depth_dir);
    if (access(depth_config, R_OK) == 0)
      depth_dir = model_depth_dir;
  }
  if (depth_only && !depth_dir) {
    SD_ERROR("--only depth: %s has no depth_estimator/ folder; give --depth-estimator DIR",
             params.model_path);
    status = cli_report_error(cmd);
    goto out;
  }
  if (depth_dir && (!only || depth_only)) {
    int side = 0;
    if (sd_bench_depth_estimator(be, depth_dir, repeat, &side, &timing) < 0) {
      status = cli_report_error(cmd);
      goto out;
    }
    printf("  depth estimator %s at %dx%d:\n", depth_dir, side, side);
    print_stage("depth", 1, &timing);
    fflush(stdout);
  }
  if (depth_only)
    goto out;
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
  if (!only || strcmp(only, "vae-encoder") == 0) {
    if (sd_bench_vae_encoder(engine, batch_size, batch.width, batch.height, repeat, &timing) < 0) {
      status = cli_report_error(cmd);
      goto out;
    }
    print_stage("vae encode", batch_size, &timing);
    fflush(stdout);
  }
  if (pipeline_stage && !txt2img_model)
    printf("  pipeline      skipped: the whole-pipeline stage is text-to-image, and this model's "
           "UNet takes %d input channels\n",
           model->unet.in_channels);
  if (pipeline_stage && txt2img_model) {
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
  char kernels[1024];
  if (sd_backend_kernels(be, kernels, sizeof kernels)[0])
    printf("  kernels: %s\n", kernels);
out:
  sd_engine_close(engine);
  cli_adapters_free(&adapters);
  return status;
}
