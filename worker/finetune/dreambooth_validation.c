/* Validation renders (dreambooth_validation.h). */
#include "dreambooth_validation.h"

#include "dreambooth_state.h"

#include "../io/file_util.h"
#include "../io/png_image.h"

#include "../../kernels/error.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VALIDATION_STEPS    25   /* log_validation's num_inference_steps */
#define VALIDATION_GUIDANCE 7.5f /* the pipeline's default guidance_scale */

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int sd_dreambooth_validate(sd_engine *engine, const sd_dreambooth_config *cfg, int64_t step,
                           bool progress) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/validation", cfg->output_dir);
  SD_TRY(sd_make_folder(dir));
  SD_TRY(sd_remove_entries_containing(dir, ".png.tmp.")); /* sd_png_write_rgb's, of a killed run */
  const sd_model_files *model = sd_engine_model(engine);
  int size = model->unet.sample_size * sd_engine_vae_scale_factor(engine);
  sd_txt2img_batch batch = {.width = size,
                            .height = size,
                            .steps = VALIDATION_STEPS,
                            .scheduler = SD_SCHED_DPMPP_2M,
                            .karras = false,
                            .rng = SD_RNG_CPU};
  if (sd_txt2img_check(engine, &batch) < 0)
    return sd_error_context("validation renders");
  int n = cfg->num_validation_images;
  sd_txt2img_item *items = calloc((size_t)n, sizeof *items);
  sd_txt2img_result *results = calloc((size_t)n, sizeof *results);
  int rc = items && results ? 0 : SD_ERROR("out of memory");
  for (int k = 0; rc == 0 && k < n; k++)
    items[k] = (sd_txt2img_item){.prompt = cfg->validation_prompt,
                                 .negative_prompt = "",
                                 .seed = cfg->seed + (uint64_t)k,
                                 .guidance_scale = VALIDATION_GUIDANCE};
  double t0 = now_seconds();
  if (rc == 0 && sd_txt2img(engine, &batch, items, n, NULL, NULL, results) < 0)
    rc = sd_error_context("validation renders of step %" PRId64, step);
  for (int k = 0; k < n; k++) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/step-%06" PRId64 "-%d.png", dir, step, k);
    if (rc == 0 && !results[k].finite)
      rc = SD_ERROR("validation image %s: the render gave NaN or Inf (the training diverged?)",
                    path);
    if (rc == 0 && sd_png_write_rgb(path, results[k].rgb, size, size, NULL, 0) < 0)
      rc = sd_error_context("validation renders");
    if (rc == 0)
      rc = sd_dreambooth_fsync_path(path);
    sd_txt2img_result_free(&results[k]);
  }
  if (rc == 0)
    rc = sd_dreambooth_fsync_path(dir);
  if (rc == 0 && progress)
    fprintf(stderr,
            "sdbatch train: validation: %d images of step %" PRId64 " in %s/step-%06" PRId64
            "-*.png (%.1f s)\n",
            n, step, dir, step, now_seconds() - t0);
  free(items);
  free(results);
  return rc;
}
