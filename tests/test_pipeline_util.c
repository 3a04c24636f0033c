/* Helpers of the whole-pipeline parity tests, see test_pipeline_util.h. */
#include "test_pipeline_util.h"

#include "test_util.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>

float *sd_test_fixture_f32(const sd_safetensors *file, const char *name, size_t *n) {
  const sd_st_tensor *t = sd_safetensors_find(file, name);
  if (!CHECK(t != NULL, "fixture tensor %s missing", name))
    return NULL;
  *n = 1;
  for (int d = 0; d < t->ndim; d++)
    *n *= (size_t)t->shape[d];
  float *out = malloc(*n * sizeof *out);
  if (!CHECK(out != NULL, "out of memory for fixture tensor %s", name))
    return NULL;
  sd_convert_to_f32(t->dtype, t->data, out, *n);
  return out;
}

sd_engine *sd_test_open_engine(const char *model) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", SD_TEST_FIXTURES, model);
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.model_path = path;
  params.device = "cpu";
  sd_engine *engine = NULL;
  CHECK(sd_engine_open(&params, &engine) == 0, "open %s: %s", path, sd_error_message());
  return engine;
}

void sd_test_case_item(const cJSON *c, int k, sd_txt2img_item *item, sd_txt2img_batch *batch) {
  *item = (sd_txt2img_item){cJSON_GetObjectItem(c, "prompt")->valuestring, "",
                            (uint64_t)cJSON_GetObjectItem(c, "seed")->valuedouble,
                            (float)cJSON_GetObjectItem(c, "guidance_scale")->valuedouble};
  *batch = (sd_txt2img_batch){cJSON_GetObjectItem(c, "width")->valueint,
                              cJSON_GetObjectItem(c, "height")->valueint,
                              cJSON_GetObjectItem(c, "steps")->valueint,
                              SD_SCHED_DDIM,
                              false,
                              SD_RNG_CPU};
  CHECK(sd_scheduler_kind_parse(cJSON_GetObjectItem(c, "scheduler")->valuestring,
                                &batch->scheduler) == 0 &&
            sd_rng_kind_parse(cJSON_GetObjectItem(c, "rng")->valuestring, &batch->rng) == 0,
        "case %d: scheduler and rng names", k);
}

void sd_test_check_case(const sd_safetensors *fixture, int k, const char *what, int rc,
                        sd_txt2img_result *result) {
  char key[64];
  size_t n_image = 0, n_latents = 0;
  snprintf(key, sizeof key, "case.%d.image", k);
  float *want_image = sd_test_fixture_f32(fixture, key, &n_image);
  snprintf(key, sizeof key, "case.%d.latents", k);
  float *want_latents = sd_test_fixture_f32(fixture, key, &n_latents);
  if (CHECK(rc == 0, "%s: %s", what, sd_error_message())) {
    if (want_image && want_latents) {
      char sub[300];
      snprintf(sub, sizeof sub, "%s latents", what);
      sd_test_compare_f32(sub, result->latents, want_latents, n_latents, 1e-3f, 1e-3f);
      snprintf(sub, sizeof sub, "%s image", what);
      sd_test_compare_pixels(sub, result->rgb, want_image, n_image, 1, 0.999);
    }
    sd_txt2img_result_free(result);
  }
  free(want_image);
  free(want_latents);
}
