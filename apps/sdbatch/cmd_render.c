/* sdbatch render: one txt2img image to a PNG file, with the generation parameters in a text
 * chunk. */
#include "cli.h"
#include "render_group.h"

#include "kernels/error.h"
#include "kernels/file.h"
#include "worker/image/image.h"
#include "worker/io/png_image.h"
#include "worker/pipeline/depth_map.h"
#include "worker/pipeline/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const render_usage =
    "Usage: sdbatch render --model PATH --prompt TEXT --out FILE.png [options]\n"
    "\n"
    "       sdbatch render ... --init-image FILE [--strength F] [--mask FILE | --depth-map FILE]\n"
    "       sdbatch render --model X4_UPSCALER ... --init-image FILE [--noise-level N]\n"
    "\n"
    "Renders one image with text-to-image, giving the pixels diffusers' StableDiffusionPipeline\n"
    "gives for the same model, prompt, parameters and seed; with --init-image, image-to-image\n"
    "(StableDiffusionImg2ImgPipeline); with --init-image and --mask, inpainting\n"
    "(StableDiffusionInpaintPipeline: a 9-channel inpainting model, or an ordinary one with\n"
    "per-step blending); with --init-image on a depth model, depth-to-image\n"
    "(StableDiffusionDepth2ImgPipeline, with --depth-map, the model's depth estimator or\n"
    "--depth-estimator DIR).\n"
    "On an x4 upscaler, StableDiffusionUpscalePipeline: the init image at 4 times its size\n"
    "(rounded down to a multiple of 4 first). Input images: docs/images.md; depth maps and the\n"
    "upscaler: docs/depth.md.\n"
    "\n"
    "Under mpirun -n N, the N ranks render one text-to-image image together: its rows split into\n"
    "bands (spatial parallelism) and, with --cfg-parallel, the conditional and unconditional\n"
    "halves on two halves of the ranks; rank 0 writes the file (docs/spatial.md).\n";

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
  const char *out_path = NULL;
  sd_scheduler_kind scheduler_kind = SD_SCHED_DDIM;
  bool quiet = false, precision_given = false, scheduler_given = false, strength_given = false;
  bool width_given = false, height_given = false, cfg_parallel = false, dpt_given = false;
  const char *init_path = NULL, *mask_path = NULL, *depth_path = NULL;
  const char *depth_estimator = NULL;
  float *depth = NULL;
  int depth_height = 0, depth_width = 0;
  float strength = 0.0f;
  int noise_level = 20; /* StableDiffusionUpscalePipeline's default */
  bool noise_level_given = false, steps_given = false, guidance_given = false;
  sd_image init = {0}, mask = {0};
  cli_adapters adapters = {0};

  const cli_option options[] = {
      CLI_OPTION("model", "PATH", CLI_STRING, &params.model_path,
                 "diffusers folder or single-file .safetensors checkpoint", .required = true),
      CLI_OPTION("model-config", "FILE", CLI_STRING, &params.model_yaml,
                 "LDM-style YAML for a single-file checkpoint (optional)"),
      CLI_OPTION("prompt", "TEXT", CLI_STRING, &item.prompt, "the prompt", .required = true),
      CLI_OPTION("negative-prompt", "TEXT", CLI_STRING, &item.negative_prompt,
                 "what to steer away from (default: empty)"),
      CLI_OPTION("seed", "N", CLI_U64, &item.seed, "seed of the image's generator (default 0)"),
      CLI_OPTION("steps", "N", CLI_INT, &batch.steps,
                 "denoising steps (default 50; 75 for the x4 upscaler, as diffusers)", .min = 1,
                 .max = 1000, .given = &steps_given),
      CLI_OPTION("guidance-scale", "F", CLI_FLOAT, &item.guidance_scale,
                 "classifier-free guidance scale; <= 1 runs only the prompt\nbranch (default 7.5; "
                 "9 for the x4 upscaler, as diffusers)",
                 .given = &guidance_given),
      CLI_OPTION("scheduler", "NAME", CLI_CUSTOM, &scheduler_kind,
                 "ddim, pndm, lms, euler, euler_a, heun, dpmpp_2m\n(default: the model's scheduler "
                 "config)",
                 .parse = cli_parse_scheduler, .given = &scheduler_given),
      CLI_OPTION("karras", NULL, CLI_FLAG, &batch.karras,
                 "Karras sigma schedule (lms, euler, heun, dpmpp_2m)"),
      CLI_OPTION("width", "W", CLI_INT, &batch.width,
                 "image size, multiples of 8 (default: the model's native size)", .min = 8,
                 .max = 8192, .synopsis = "--width W, --height H", .given = &width_given),
      CLI_OPTION("height", "H", CLI_INT, &batch.height, NULL, .min = 8, .max = 8192,
                 .given = &height_given),
      CLI_OPTION("init-image", "FILE", CLI_STRING, &init_path,
                 "PNG or JPEG to start from: image-to-image at its size rounded\n"
                 "down to a multiple of 8 (no --width/--height, as diffusers); with\n"
                 "--mask, inpainting at --width x --height (default: the model's\n"
                 "native size), the image resized to it; on an x4 upscaler, the\n"
                 "low-resolution image"),
      CLI_OPTION("strength", "F", CLI_FLOAT, &strength,
                 "how much of the schedule runs from the noised init image, 0 to 1\n"
                 "(default 0.8 for img2img and depth-to-image, 1 for inpainting:\n"
                 "diffusers' defaults; "
                 "steps x strength must be >= 1)",
                 .min = 0, .max = 1, .given = &strength_given),
      CLI_OPTION("mask", "FILE", CLI_STRING, &mask_path,
                 "inpainting mask, PNG or JPEG (white: repaint; binarised at 128\n"
                 "as diffusers does); needs --init-image"),
      CLI_OPTION("depth-map", "FILE", CLI_STRING, &depth_path,
                 "depth model: the depth map, .npy float32 (H, W) or (1, H, W) or\n"
                 "a grayscale PNG (8 or 16 bits), any size (resized to the latents,\n"
                 "normalized to [-1, 1]); needs\n"
                 "--init-image (default: the model's depth_estimator/ estimate)"),
      CLI_OPTION("depth-estimator", "DIR", CLI_STRING, &depth_estimator,
                 "depth model without --depth-map: the depth estimator to use\n"
                 "instead of the model's own (a single-file depth checkpoint has\n"
                 "none sdbatch reads): a diffusers depth model folder or a\n"
                 "transformers DPT folder (config.json, model.safetensors,\n"
                 "preprocessor_config.json)"),
      CLI_OPTION("dpt-preprocess", "pil|torchvision", CLI_CUSTOM, &params.dpt_backend,
                 "depth model without --depth-map: the depth estimator's input\n"
                 "preprocessed as transformers' DPTImageProcessor computes it without\n"
                 "torchvision (pil, the default) or with it (torchvision: what\n"
                 "diffusers gives where torchvision is installed)",
                 .parse = cli_parse_dpt_backend, .given = &dpt_given),
      CLI_OPTION("noise-level", "N", CLI_INT, &noise_level,
                 "x4 upscaler: the low_res_scheduler timestep the init image is\n"
                 "noised at, 0 to the model's max_noise_level (default 20)",
                 .min = 0, .max = 1000, .given = &noise_level_given),
      CLI_OPTION("rng", "cuda|cpu", CLI_CUSTOM, &batch.rng,
                 "reproduce torch.Generator('cuda') or ('cpu') noise (default cuda)",
                 .parse = cli_parse_rng),
      CLI_OPTION_DEVICE(&params.device),
      CLI_OPTION("vae-tiling", "auto|on|off", CLI_CUSTOM, &params.vae_tiling,
                 "decode the image in overlapping tiles, as diffusers after\n"
                 "vae.enable_tiling(), in bounded memory (default auto: above 2x the\n"
                 "VAE's sample_size, e.g. 1024 px for SD 1.x)",
                 .parse = cli_parse_vae_tiling),
      CLI_OPTION_PRECISION(&params.precision, &precision_given),
      CLI_OPTION_THREADS(&params.threads),
      CLI_OPTION_LORA(&adapters),
      CLI_OPTION_EMBEDDING(&adapters),
      CLI_OPTION("out", "FILE.png", CLI_STRING, &out_path, "the image to write", .required = true),
      CLI_OPTION("quiet", NULL, CLI_FLAG, &quiet, "no progress on stderr"),
      CLI_OPTION("cfg-parallel", NULL, CLI_FLAG, &cfg_parallel,
                 "under mpirun -n 2N: the unconditional and conditional halves of\n"
                 "classifier-free guidance on two halves of the ranks"),
      {0},
  };
  const cli_command command = {.name = cmd, .usage = render_usage, .options = options};
  int parsed = cli_parse(&command, argc, argv, true);
  if (parsed != CLI_PARSED) {
    cli_adapters_free(&adapters);
    return cli_parse_exit_status(parsed);
  }
  if (sd_file_check_output(out_path) < 0) { /* before minutes of work, not after */
    cli_adapters_free(&adapters);
    return cli_usage_error(cmd, "--out: %s", sd_error_message());
  }
  const char *misuse = strength_given && !init_path    ? "--strength needs --init-image"
                       : mask_path && !init_path       ? "--mask needs --init-image"
                       : depth_path && !init_path      ? "--depth-map needs --init-image"
                       : depth_estimator && !init_path ? "--depth-estimator needs --init-image"
                       : depth_estimator && depth_path
                           ? "--depth-map and --depth-estimator: give one (the map is used as is)"
                       : dpt_given && !init_path ? "--dpt-preprocess needs --init-image"
                       : dpt_given && depth_path
                           ? "--dpt-preprocess is for the depth estimator; --depth-map is used as "
                             "is"
                       : init_path && !mask_path && (width_given || height_given)
                           ? "image-to-image, depth-to-image and the x4 upscaler render at the "
                             "init image's size (rounded down to a multiple of 8; 4 times it for "
                             "the upscaler): --width and --height do not apply"
                           : NULL;
  if (misuse) {
    cli_adapters_free(&adapters);
    return cli_usage_error(cmd, "%s", misuse);
  }
  params.loras = adapters.loras;
  params.lora_count = adapters.lora_count;
  params.embeddings = adapters.embeddings;
  params.embedding_count = adapters.embedding_count;

  int status = 0;
  sd_txt2img_result result = {0};
  render_group ranks;
  if (render_group_open(cfg_parallel, &ranks) < 0) {
    status = cli_report_error(cmd);
    render_group_close(&ranks, true);
    cli_adapters_free(&adapters);
    return status;
  }
  bool rank0 = ranks.cluster.rank == 0;
  quiet = quiet || !rank0;
  if (!params.threads && ranks.cluster.size > 1)
    params.threads = render_group_default_threads(&ranks);
  params.no_depth_estimator = depth_path != NULL;
  params.depth_estimator_path = depth_estimator;
  sd_engine *engine = NULL;
  if ((init_path && sd_image_read_rgb(init_path, &init) < 0) ||
      (mask_path && sd_image_read_rgb(mask_path, &mask) < 0) ||
      (depth_path && sd_depth_map_read(depth_path, &depth, &depth_height, &depth_width) < 0)) {
    status = cli_report_error(cmd);
    goto out;
  }
  render_progress progress = {quiet, isatty(STDERR_FILENO) != 0, {0, 0}};
  clock_gettime(CLOCK_MONOTONIC, &progress.start);
  if (sd_engine_open(&params, &engine) < 0) {
    status = cli_report_error(cmd);
    goto out;
  }
  const sd_model_files *model = sd_engine_model(engine);
  int factor = sd_engine_vae_scale_factor(engine);
  sd_pipeline_kind kind;
  bool depth_map = depth_path != NULL || sd_engine_has_depth_estimator(engine);
  if (sd_pipeline_choose(model, init_path != NULL, mask_path != NULL, depth_map, &kind) < 0 ||
      ((kind == SD_PIPELINE_IMG2IMG || kind == SD_PIPELINE_DEPTH || kind == SD_PIPELINE_UPSCALE) &&
       sd_image_vae_size(init_path, init.width, init.height, factor, &batch.width, &batch.height) <
           0)) {
    status = cli_report_error(cmd);
    goto out;
  }
  const char *upscale_misuse =
      kind != SD_PIPELINE_UPSCALE && noise_level_given ? "--noise-level is for x4 upscalers"
      : kind != SD_PIPELINE_DEPTH && dpt_given
          ? "--dpt-preprocess is for depth models (their depth estimator's input)"
      : kind == SD_PIPELINE_UPSCALE && strength_given
          ? "the x4 upscaler runs the whole schedule: --strength does not apply"
          : NULL;
  if (upscale_misuse) {
    SD_ERROR("%s", upscale_misuse);
    status = cli_report_error(cmd);
    goto out;
  }
  if (kind == SD_PIPELINE_UPSCALE) {
    /* the output is 4x the low-res image (rounded down to a multiple of the factor); the
     * pipeline's own defaults */
    batch.width *= factor;
    batch.height *= factor;
    batch.steps = steps_given ? batch.steps : 75;
    item.guidance_scale = guidance_given ? item.guidance_scale : 9.0f;
  }
  if (!strength_given)
    strength = kind == SD_PIPELINE_INPAINT || kind == SD_PIPELINE_UPSCALE ? 1.0f : 0.8f;
  sd_image_cond cond = {&init, mask_path ? &mask : NULL, depth, depth_height, depth_width};
  sd_image_params image = {kind, strength, &cond, noise_level};
  if (!batch.width)
    batch.width = model->unet.sample_size * factor;
  if (!batch.height)
    batch.height = model->unet.sample_size * factor;
  batch.scheduler = scheduler_given ? scheduler_kind : sd_engine_default_scheduler(engine);
  const sd_backend *be = sd_engine_backend(engine);
  sd_dtype precision = sd_engine_precision(engine);
  if (!quiet && ranks.cluster.size > 1)
    fprintf(stderr, "sdbatch render: %d ranks%s, %d threads each\n", ranks.cluster.size,
            cfg_parallel ? " (CFG halves)" : "", be->threads);
  if (precision_given && precision != params.precision)
    fprintf(stderr,
            "sdbatch render: note: the %s backend offers no --precision %s; it computes in %s\n",
            be->ops->name, sd_precision_name(params.precision), sd_precision_name(precision));
  if (!quiet)
    fprintf(stderr, "sdbatch render: model %s loaded on %s (%s) in %.1f s\n", params.model_path,
            be->ops->name, sd_precision_name(precision), seconds_since(&progress.start));

  clock_gettime(CLOCK_MONOTONIC, &progress.start);
  if (sd_render_group(engine, render_group_get(&ranks), &batch,
                      kind == SD_PIPELINE_TXT2IMG ? NULL : &image, &item, 1, on_progress, &progress,
                      &result) < 0) {
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
      sd_precision_name(precision), params.model_path, SDBATCH_VERSION);
  if (kind != SD_PIPELINE_TXT2IMG) {
    char noise_text[32];
    snprintf(noise_text, sizeof noise_text, ", Noise level: %d", noise_level);
    size_t used = strlen(parameters);
    snprintf(parameters + used, sizeof parameters - used,
             ", Pipeline: %s, Init image: %s (%dx%d), Strength: %g%s%s%s%s%s%s",
             sd_pipeline_kind_name(kind), init_path, init.width, init.height, (double)strength,
             kind == SD_PIPELINE_UPSCALE ? noise_text : "", mask_path ? ", Mask: " : "",
             mask_path ? mask_path : "", kind == SD_PIPELINE_DEPTH ? ", Depth map: " : "",
             kind != SD_PIPELINE_DEPTH ? ""
             : depth_path              ? depth_path
             : depth_estimator         ? depth_estimator
                                       : "the model's depth estimator",
             kind == SD_PIPELINE_DEPTH && !depth_path &&
                     params.dpt_backend == SD_DPT_BACKEND_TORCHVISION
                 ? ", DPT preprocess: torchvision"
                 : "");
  }
  if (cli_format_adapters(&adapters, parameters, sizeof parameters) < 0) {
    status = cli_report_error(cmd);
    goto out;
  }
  sd_png_text text = {"parameters", parameters};
  if (rank0 && sd_png_write_rgb(out_path, result.rgb, batch.width, batch.height, &text, 1) < 0) {
    status = cli_report_error(cmd);
    goto out;
  }
  if (!quiet)
    fprintf(stderr, "sdbatch render: wrote %s (%dx%d, %d steps, %.2f s)\n", out_path, batch.width,
            batch.height, batch.steps, seconds_since(&progress.start));
out:
  sd_image_free(&init);
  sd_image_free(&mask);
  free(depth);
  sd_txt2img_result_free(&result);
  sd_engine_close(engine);
  cli_adapters_free(&adapters);
  render_group_close(&ranks, status != 0);
  return status;
}
