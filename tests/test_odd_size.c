/* Whole-image parity at a size whose latent sides are not multiples of the UNet's 2^(levels - 1):
 * sdbatch's txt2img at 112x144 (latent 14x18, which the tiny SD 1.x UNet halves to 7x9 and 4x5,
 * so its up blocks resize to the skips' sizes) against diffusers' StableDiffusionPipeline
 * (tests/fixtures/odd-size-sd1.safetensors, tests/reference/make_odd_size_fixture.py). Tolerances
 * as test_txt2img: final latents within 1e-3 absolute + 1e-3 relative, pixels within 1 level of
 * 255 and at least 99.9% of them exact. The UNet alone at this size is checked in test_unet. */
#include "test_util.h"

#include "kernels/error.h"
#include "kernels/tensor.h"
#include "worker/io/safetensors.h"
#include "worker/pipeline/engine.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run(sd_engine *engine, const sd_safetensors *fixture) {
  cJSON *c = cJSON_Parse(sd_safetensors_metadata(fixture, "case"));
  const sd_st_tensor *image = sd_safetensors_find(fixture, "image");
  const sd_st_tensor *latents = sd_safetensors_find(fixture, "image.latents");
  CHECK(c && image && latents && latents->dtype == SD_DTYPE_F32,
        "fixture: case metadata, image or float32 image.latents missing");
  if (!c || !image || !latents || latents->dtype != SD_DTYPE_F32) {
    cJSON_Delete(c);
    return;
  }
  sd_txt2img_item item = {cJSON_GetObjectItem(c, "prompt")->valuestring, "",
                          (uint64_t)cJSON_GetObjectItem(c, "seed")->valuedouble,
                          (float)cJSON_GetObjectItem(c, "guidance_scale")->valuedouble};
  sd_txt2img_batch batch = {cJSON_GetObjectItem(c, "width")->valueint,
                            cJSON_GetObjectItem(c, "height")->valueint,
                            cJSON_GetObjectItem(c, "steps")->valueint,
                            SD_SCHED_DDIM,
                            false,
                            SD_RNG_CPU};
  CHECK(sd_scheduler_kind_parse(cJSON_GetObjectItem(c, "scheduler")->valuestring,
                                &batch.scheduler) == 0,
        "scheduler name");
  size_t n_pixels = (size_t)batch.width * (size_t)batch.height * 3;
  size_t n_latents = (size_t)4 * (size_t)(batch.width / 8) * (size_t)(batch.height / 8);
  CHECK(image->bytes / sd_dtype_size(image->dtype) == n_pixels && latents->bytes / 4 == n_latents,
        "fixture sizes do not match %dx%d", batch.width, batch.height);
  float *want = malloc(n_pixels * sizeof *want);
  sd_txt2img_result result;
  int rc = -1;
  if (want && image->bytes / sd_dtype_size(image->dtype) == n_pixels &&
      latents->bytes / 4 == n_latents) {
    sd_convert_to_f32(image->dtype, image->data, want, n_pixels);
    rc = sd_txt2img(engine, &batch, &item, 1, NULL, NULL, &result);
    CHECK(rc == 0, "txt2img %dx%d failed: %s", batch.width, batch.height, sd_error_message());
  }
  if (rc == 0) {
    sd_test_compare_f32("odd-size latents", result.latents, latents->data, n_latents, 1e-3f, 1e-3f);
    sd_test_compare_pixels("odd-size image", result.rgb, want, n_pixels, 1, 0.999);
    sd_txt2img_result_free(&result);
  }
  free(want);
  cJSON_Delete(c);
}

int main(void) {
  char model_path[1024], fixture_path[1024];
  snprintf(model_path, sizeof model_path, "%s/tiny-sd1", SD_TEST_FIXTURES);
  snprintf(fixture_path, sizeof fixture_path, "%s/odd-size-sd1.safetensors", SD_TEST_FIXTURES);
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.model_path = model_path;
  sd_engine *engine = NULL;
  sd_safetensors *fixture = NULL;
  CHECK(sd_engine_open(&params, &engine) == 0, "open %s: %s", model_path, sd_error_message());
  CHECK(sd_safetensors_open(fixture_path, &fixture) == 0, "open %s: %s", fixture_path,
        sd_error_message());
  if (engine && fixture)
    run(engine, fixture);
  sd_safetensors_close(fixture);
  sd_engine_close(engine);
  return sd_test_finish();
}
