/* x4 upscaler parity with diffusers (tests/fixtures/upscale, made by
 * tests/reference/make_upscale_fixtures.py): whole images of StableDiffusionUpscalePipeline on a
 * tiny upscaler (7-channel UNet with 1000 class embeddings and only_cross_attention, the
 * three-level factor-4 VAE, tiny-sd2's text encoder and v-prediction DDIM scheduler, the real
 * low_res_scheduler config): 16x12 PNG inputs and 18x13 PNG and JPEG ones (resized down to 16x12
 * with bicubic first), noise levels 0, 20, 100 and 350, guidance 9, 4 and 1 (no CFG), ddim,
 * euler_a and dpmpp_2m, cpu and cuda generators; output 64x48. Tolerances as
 * tests/test_img2img.c: final latents within 1e-3 absolute + 1e-3 relative, pixels within 1
 * level and >= 99.9% exact. Then the pipeline choice and refusals (no image, a mask or a depth
 * map, a strength, a noise level above max_noise_level). The same model as an original single
 * file (tests/fixtures/tiny-upscaler.safetensors with its YAML) renders every case exactly as the
 * folder does (latents and pixels). */
#include "test_pipeline_util.h"
#include "test_util.h"

#include "image/image.h"

#include "error.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR SD_TEST_FIXTURES "/upscale"

static const char *text(const cJSON *c, const char *key) {
  return cJSON_GetObjectItem(c, key)->valuestring;
}

static int number(const cJSON *c, const char *key) {
  return cJSON_GetObjectItem(c, key)->valueint;
}

static void run_case(sd_engine *engine, const sd_safetensors *fixture, int k, const cJSON *c) {
  sd_txt2img_item item;
  sd_txt2img_batch batch;
  sd_test_case_item(c, k, &item, &batch);
  char path[512], what[256];
  sd_image low = {0};
  snprintf(path, sizeof path, "%s/%s", DIR, text(c, "input"));
  CHECK(sd_image_read_rgb(path, &low) == 0, "%s", sd_error_message());
  sd_pipeline_kind kind = SD_PIPELINE_TXT2IMG;
  CHECK(sd_pipeline_choose(sd_engine_model(engine), true, false, false, &kind) == 0 &&
            kind == SD_PIPELINE_UPSCALE,
        "case %d: upscale chosen (%s): %s", k, sd_pipeline_kind_name(kind), sd_error_message());
  sd_image_cond cond = {&low, NULL, NULL, 0, 0};
  sd_image_params image = {SD_PIPELINE_UPSCALE, 1.0f, &cond, number(c, "noise_level")};
  sd_txt2img_result result;
  int rc = low.data ? sd_render(engine, &batch, &image, &item, 1, NULL, NULL, &result) : -1;
  snprintf(what, sizeof what, "case %d (%s, noise level %d, guidance %g, %s, %s generator)", k,
           text(c, "input"), image.noise_level, (double)item.guidance_scale, text(c, "scheduler"),
           text(c, "rng"));
  sd_test_check_case(fixture, k, what, rc, &result);
  sd_image_free(&low);
}

/* Case k rendered into *result (freed by the caller); -1 when it could not be. */
static int render_case(sd_engine *engine, int k, const cJSON *c, sd_txt2img_result *result) {
  sd_txt2img_item item;
  sd_txt2img_batch batch;
  sd_test_case_item(c, k, &item, &batch);
  char path[512];
  sd_image low = {0};
  snprintf(path, sizeof path, "%s/%s", DIR, text(c, "input"));
  if (sd_image_read_rgb(path, &low) < 0)
    return -1;
  sd_image_cond cond = {&low, NULL, NULL, 0, 0};
  sd_image_params image = {SD_PIPELINE_UPSCALE, 1.0f, &cond, number(c, "noise_level")};
  int rc = sd_render(engine, &batch, &image, &item, 1, NULL, NULL, result);
  sd_image_free(&low);
  return rc;
}

/* The single file (with tiny-upscaler.yaml) renders the folder's latents and pixels exactly. */
static void test_single_file(sd_engine *folder, const cJSON *cases) {
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.model_path = SD_TEST_FIXTURES "/tiny-upscaler.safetensors";
  params.model_yaml = SD_TEST_FIXTURES "/tiny-upscaler.yaml";
  params.clip_bpe_gz = SD_SOURCE_DIR "/third_party/clip/bpe_simple_vocab_16e6.txt.gz";
  params.device = "cpu";
  sd_engine *single = NULL;
  CHECK(sd_engine_open(&params, &single) == 0, "open the single file: %s", sd_error_message());
  if (!single)
    return;
  CHECK(sd_engine_max_noise_level(single) == 350, "single file: max_noise_level %d",
        sd_engine_max_noise_level(single));
  int k = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, cases) {
    sd_txt2img_result want = {0}, got = {0};
    int rc = render_case(folder, k, c, &want);
    CHECK(rc == 0, "case %d from the folder: %s", k, sd_error_message());
    if (rc == 0)
      rc = render_case(single, k, c, &got);
    CHECK(rc == 0, "case %d from the single file: %s", k, sd_error_message());
    if (rc == 0) {
      int w = number(c, "width"), h = number(c, "height");
      size_t latents = (size_t)4 * (h / 4) * (w / 4);
      CHECK(memcmp(got.rgb, want.rgb, (size_t)w * h * 3) == 0 &&
                memcmp(got.latents, want.latents, latents * sizeof(float)) == 0,
            "case %d: the single file renders other latents or pixels than the folder", k);
    }
    sd_txt2img_result_free(&want);
    sd_txt2img_result_free(&got);
    k++;
  }
  sd_engine_close(single);
}

static void test_refusals(sd_engine *upscaler) {
  const sd_model_files *model = sd_engine_model(upscaler);
  sd_pipeline_kind kind;
  CHECK(sd_engine_max_noise_level(upscaler) == 350, "max_noise_level %d read from model_index.json",
        sd_engine_max_noise_level(upscaler));
  CHECK(sd_pipeline_choose(model, false, false, false, &kind) < 0 &&
            strstr(sd_error_message(), "needs the low-resolution image"),
        "the upscaler without an image refused: %s", sd_error_message());
  CHECK(sd_pipeline_choose(model, true, true, false, &kind) < 0 &&
            strstr(sd_error_message(), "takes no mask"),
        "a mask for the upscaler refused: %s", sd_error_message());
  CHECK(sd_pipeline_choose(model, true, false, true, &kind) < 0 &&
            strstr(sd_error_message(), "takes no depth map"),
        "a depth map for the upscaler refused: %s", sd_error_message());
  sd_image low = {0};
  CHECK(sd_image_read_rgb(DIR "/low-16x12.png", &low) == 0, "%s", sd_error_message());
  sd_image_cond cond = {&low, NULL, NULL, 0, 0};
  sd_image_params image = {SD_PIPELINE_UPSCALE, 1.0f, &cond, 351};
  sd_txt2img_batch batch = {64, 48, 2, SD_SCHED_DDIM, false, SD_RNG_CPU};
  CHECK(sd_render_check(upscaler, &batch, &image) < 0 &&
            strstr(sd_error_message(), "noise level 351: this upscaler takes 0 to 350"),
        "noise level 351 refused: %s", sd_error_message());
  image.noise_level = -1;
  CHECK(sd_render_check(upscaler, &batch, &image) < 0, "noise level -1 refused");
  image.noise_level = 20;
  image.strength = 0.5f;
  CHECK(sd_render_check(upscaler, &batch, &image) < 0 &&
            strstr(sd_error_message(), "has no strength"),
        "a strength for the upscaler refused: %s", sd_error_message());
  image.strength = 1.0f;
  image.kind = SD_PIPELINE_IMG2IMG;
  CHECK(sd_render_check(upscaler, &batch, &image) < 0, "img2img on the upscaler refused");
  sd_image_free(&low);
}

int main(void) {
  sd_safetensors *fixture = NULL;
  if (sd_safetensors_open(DIR "/upscale.safetensors", &fixture) < 0) {
    fprintf(stderr, "%s\n", sd_error_message());
    return 1;
  }
  sd_engine *upscaler = sd_test_open_engine("tiny-upscaler");
  cJSON *cases = cJSON_Parse(sd_safetensors_metadata(fixture, "cases"));
  CHECK(cases && cJSON_GetArraySize(cases) >= 4, "cases metadata");
  if (upscaler && cases) {
    int k = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) run_case(upscaler, fixture, k++, c);
    test_refusals(upscaler);
    test_single_file(upscaler, cases);
  }
  cJSON_Delete(cases);
  sd_engine_close(upscaler);
  sd_safetensors_close(fixture);
  return sd_test_finish();
}
