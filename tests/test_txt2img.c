/* Whole-image parity: sdbatch's txt2img against images diffusers' StableDiffusionPipeline made
 * (tests/reference/make_fixtures.py) for the tiny SD 1.x and SD 2.x models, every scheduler,
 * with and without guidance, with a negative prompt; plus the batch invariance of an item's image.
 * Tolerances: final latents within 1e-3 absolute + 1e-3 relative of diffusers (float32 on both
 * sides; the residue is summation order over 10 steps); pixels within 1 level of 255, and at
 * least 99.9% of them exact. */
#include "test_util.h"

#include "kernels/error.h"
#include "worker/io/safetensors.h"
#include "worker/pipeline/engine.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const sd_st_tensor *require(const sd_safetensors *file, const char *name) {
  const sd_st_tensor *t = sd_safetensors_find(file, name);
  CHECK(t != NULL, "fixture tensor %s missing", name);
  return t;
}

static void run_case(sd_engine *engine, const sd_safetensors *stages, const char *model_name,
                     const cJSON *c) {
  const char *name = c->string;
  sd_txt2img_item item = {
      cJSON_GetObjectItem(c, "prompt")->valuestring,
      cJSON_GetObjectItem(c, "negative_prompt")->valuestring,
      (uint64_t)cJSON_GetObjectItem(c, "seed")->valuedouble,
      (float)cJSON_GetObjectItem(c, "guidance_scale")->valuedouble,
  };
  sd_txt2img_batch batch = {
      cJSON_GetObjectItem(c, "width")->valueint,      cJSON_GetObjectItem(c, "height")->valueint,
      cJSON_GetObjectItem(c, "steps")->valueint,      SD_SCHED_DDIM,
      cJSON_IsTrue(cJSON_GetObjectItem(c, "karras")), SD_RNG_CPU};
  CHECK(sd_scheduler_kind_parse(cJSON_GetObjectItem(c, "scheduler")->valuestring,
                                &batch.scheduler) == 0,
        "scheduler name");
  char what[256], key[128];
  snprintf(key, sizeof key, "image.%s", name);
  const sd_st_tensor *want_image = require(stages, key);
  snprintf(key, sizeof key, "image.%s.latents", name);
  const sd_st_tensor *want_latents = require(stages, key);
  if (!want_image || !want_latents)
    return;
  sd_txt2img_result result;
  int rc = sd_txt2img(engine, &batch, &item, 1, NULL, NULL, &result);
  CHECK(rc == 0, "%s %s: txt2img failed: %s", model_name, name, sd_error_message());
  if (rc < 0)
    return;
  snprintf(what, sizeof what, "%s %s latents", model_name, name);
  sd_test_compare_f32(what, result.latents, want_latents->data, want_latents->bytes / 4, 1e-3f,
                      1e-3f);
  snprintf(what, sizeof what, "%s %s image", model_name, name);
  sd_test_compare_pixels(what, result.rgb, want_image->data, want_image->bytes / 4, 1, 0.999);
  sd_txt2img_result_free(&result);
}

static void test_model(const char *model_name) {
  char model_path[1024], stages_path[1024];
  snprintf(model_path, sizeof model_path, "%s/tiny-%s", SD_TEST_FIXTURES, model_name);
  snprintf(stages_path, sizeof stages_path, "%s/stages-%s.safetensors", SD_TEST_FIXTURES,
           model_name);
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.model_path = model_path;
  sd_engine *engine = NULL;
  sd_safetensors *stages = NULL;
  CHECK(sd_engine_open(&params, &engine) == 0, "open %s: %s", model_path, sd_error_message());
  CHECK(sd_safetensors_open(stages_path, &stages) == 0, "open %s: %s", stages_path,
        sd_error_message());
  if (!engine || !stages)
    goto out;
  cJSON *cases = cJSON_Parse(sd_safetensors_metadata(stages, "cases"));
  CHECK(cases && cJSON_GetArraySize(cases) > 0, "%s: no cases in metadata", stages_path);
  const cJSON *c;
  cJSON_ArrayForEach(c, cases) run_case(engine, stages, model_name, c);
  cJSON_Delete(cases);
out:
  sd_safetensors_close(stages);
  sd_engine_close(engine);
}

/* An item's image depends only on the item: rendered in a batch of three (different prompts,
 * seeds, guidance scales, one without guidance) it is bit for bit the image rendered alone. */
static void test_batch_invariance(void) {
  char model_path[1024];
  snprintf(model_path, sizeof model_path, "%s/tiny-sd1", SD_TEST_FIXTURES);
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.model_path = model_path;
  sd_engine *engine = NULL;
  CHECK(sd_engine_open(&params, &engine) == 0, "open %s: %s", model_path, sd_error_message());
  if (!engine)
    return;
  const sd_txt2img_item items[3] = {
      {"a red cube on a table", "", 11, 7.5f},
      {"a photo of an astronaut riding a horse", "blurry", 12, 5.0f},
      {"an oil painting of a lighthouse", "", 13, 1.0f},
  };
  sd_txt2img_batch batch = {128, 96, 4, SD_SCHED_EULER_A, false, SD_RNG_CUDA};
  sd_txt2img_result together[3], alone;
  int rc = sd_txt2img(engine, &batch, items, 3, NULL, NULL, together);
  CHECK(rc == 0, "batch of 3: %s", sd_error_message());
  for (int i = 0; i < 3 && rc == 0; i++) {
    CHECK(sd_txt2img(engine, &batch, &items[i], 1, NULL, NULL, &alone) == 0, "item %d alone: %s", i,
          sd_error_message());
    size_t pixels = (size_t)batch.width * batch.height * 3;
    size_t latents = (size_t)4 * (batch.width / 8) * (batch.height / 8);
    CHECK(memcmp(alone.rgb, together[i].rgb, pixels) == 0, "item %d: image differs in a batch", i);
    CHECK(memcmp(alone.latents, together[i].latents, latents * sizeof(float)) == 0,
          "item %d: latents differ in a batch", i);
    sd_txt2img_result_free(&alone);
  }
  for (int i = 0; i < 3 && rc == 0; i++)
    sd_txt2img_result_free(&together[i]);
  sd_engine_close(engine);
}

int main(void) {
  test_batch_invariance();
  test_model("sd1");
  test_model("sd2");
  return sd_test_finish();
}
