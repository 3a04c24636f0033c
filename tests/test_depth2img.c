/* Depth-to-image parity with diffusers (tests/fixtures/depth2img, made by
 * tests/reference/make_depth2img_fixtures.py): whole images of StableDiffusionDepth2ImgPipeline
 * on a tiny depth model (5-channel UNet, tiny-sd2's v-prediction parts) with the depth map given
 * as .npy (1, H, W) and (H, W) and as 16- and 8-bit grayscale PNG (their samples as floats), over
 * schedulers, strengths 0.3 / 0.75 / 1.0, guidance 7.5, 4 and 1 (no CFG), PNG, 16-bit PNG and JPEG
 * init images whose size is not a multiple of 8, cpu and cuda generators; two without a depth map,
 * where the model's depth estimator runs (its DPTImageProcessor pixel_values within 1e-6 and
 * predicted_depth within 1e-4 relative checked too). Tolerances as tests/test_img2img.c: final
 * latents within 1e-3 absolute + 1e-3 relative, pixels within 1 level and >= 99.9% exact. Then the
 * pipeline choice and its refusals (a depth model without a depth map or with a mask, a depth map
 * for other models, a constant depth map). */
#include "test_pipeline_util.h"
#include "test_util.h"

#include "image/image.h"
#include "io/safetensors.h"
#include "pipeline/depth_estimate.h"
#include "pipeline/depth_map.h"
#include "pipeline/engine.h"

#include "error.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIR      SD_TEST_FIXTURES "/depth2img"
#define INIT_DIR SD_TEST_FIXTURES "/img2img"

static const char *text(const cJSON *c, const char *key) {
  return cJSON_GetObjectItem(c, key)->valuestring;
}

static void run_case(sd_engine *engine, const sd_safetensors *fixture, int k, const cJSON *c) {
  sd_txt2img_item item;
  sd_txt2img_batch batch;
  sd_test_case_item(c, k, &item, &batch);
  char path[512], what[256];
  sd_image init = {0};
  float *depth = NULL;
  int depth_h = 0, depth_w = 0;
  snprintf(path, sizeof path, "%s/%s", INIT_DIR, text(c, "init"));
  CHECK(sd_image_read_rgb(path, &init) == 0, "%s", sd_error_message());
  const cJSON *depth_name = cJSON_GetObjectItem(c, "depth");
  bool given = cJSON_IsString(depth_name);
  if (given) {
    snprintf(path, sizeof path, "%s/%s", DIR, depth_name->valuestring);
    CHECK(sd_depth_map_read(path, &depth, &depth_h, &depth_w) == 0, "%s", sd_error_message());
  }
  sd_pipeline_kind kind = SD_PIPELINE_TXT2IMG;
  CHECK(sd_pipeline_choose(sd_engine_model(engine), true, false,
                           given || sd_engine_has_depth_estimator(engine), &kind) == 0 &&
            kind == SD_PIPELINE_DEPTH,
        "case %d: depth2img chosen (%s): %s", k, sd_pipeline_kind_name(kind), sd_error_message());
  sd_image_cond cond = {&init, NULL, depth, depth_h, depth_w};
  sd_image_params image = {SD_PIPELINE_DEPTH,
                           (float)cJSON_GetObjectItem(c, "strength")->valuedouble, &cond, 0};
  sd_txt2img_result result;
  int rc = init.data && (depth || !given)
               ? sd_render(engine, &batch, &image, &item, 1, NULL, NULL, &result)
               : -1;
  snprintf(what, sizeof what, "case %d (%s, strength %g, %s, %s, guidance %g, %s generator)", k,
           text(c, "scheduler"), (double)image.strength, text(c, "init"),
           given ? depth_name->valuestring : "estimated", (double)item.guidance_scale,
           text(c, "rng"));
  sd_test_check_case(fixture, k, what, rc, &result);
  free(depth);
  sd_image_free(&init);
}

/* DPTImageProcessor and DPTForDepthEstimation of the model's folder on init.png. */
static void test_estimator_stages(const sd_safetensors *fixture) {
  sd_backend *be = sd_backend_cpu_create(0);
  sd_depth_estimator *estimator = NULL;
  sd_dpt_preprocess_config pre;
  sd_image init = {0};
  size_t n_pixels = 0, n_depth = 0;
  float *want_pixels = sd_test_fixture_f32(fixture, "stage.pixel_values", &n_pixels);
  float *want_depth = sd_test_fixture_f32(fixture, "stage.predicted_depth", &n_depth);
  int ok = be && want_pixels && want_depth && sd_image_read_rgb(INIT_DIR "/init.png", &init) == 0 &&
           sd_dpt_preprocess_config_read(
               SD_TEST_FIXTURES "/tiny-sd2-depth/feature_extractor/preprocessor_config.json",
               &pre) == 0 &&
           sd_depth_estimator_open(be, SD_TEST_FIXTURES "/tiny-sd2-depth", SD_DPT_BACKEND_PIL,
                                   &estimator) == 0 &&
           estimator;
  if (CHECK(ok, "estimator setup: %s", sd_error_message()) &&
      CHECK(n_pixels == 3 * 64 * 64 && n_depth == 64 * 64, "stage sizes %zu %zu", n_pixels,
            n_depth)) {
    float *pixels = malloc(n_pixels * sizeof *pixels), got[64 * 64];
    CHECK(sd_dpt_preprocess(&pre, &init, pixels) == 0, "%s", sd_error_message());
    sd_test_compare_f32("DPTImageProcessor pixel_values of init.png (70x45 -> 64x64 bicubic)",
                        pixels, want_pixels, n_pixels, 1e-6f, 1e-6f);
    free(pixels);
    sd_tensor depth = {0};
    if (CHECK(sd_depth_estimate(estimator, &init, &depth) == 0, "estimate: %s",
              sd_error_message()) &&
        CHECK(sd_tensor_download_f32(be, &depth, got) == 0, "download")) {
      float scale = 0;
      for (size_t i = 0; i < n_depth; i++)
        scale = fabsf(want_depth[i]) > scale ? fabsf(want_depth[i]) : scale;
      sd_test_compare_f32("predicted_depth of init.png", got, want_depth, n_depth, 1e-4f * scale,
                          1e-4f);
    }
    sd_tensor_free(be, &depth);
  }
  sd_depth_estimator_free(estimator);
  sd_image_free(&init);
  free(want_pixels);
  free(want_depth);
  sd_backend_destroy(be);
}

/* preprocessor_config.json settings sdbatch does not run are refused by name. */
static void test_preprocess_config_refusals(void) {
  static const struct {
    const char *json, *error;
  } bad[] = {
      {"{\"keep_aspect_ratio\": true, \"size\": {\"height\": 8, \"width\": 8}}",
       "keep_aspect_ratio"},
      {"{\"ensure_multiple_of\": 32, \"size\": {\"height\": 8, \"width\": 8}}",
       "ensure_multiple_of"},
      {"{\"resample\": 0, \"size\": {\"height\": 8, \"width\": 8}}", "resample 0"},
      {"{\"size\": {\"shortest_edge\": 384}}", "'size' must be"},
      {"{\"size\": {\"height\": 100000, \"width\": 8}}", "sides must be"},
      {"{\"image_std\": [0.5, 0, 0.5], \"size\": {\"height\": 8, \"width\": 8}}",
       "image_std has a zero"},
      {"{\"do_resize\": 1, \"size\": {\"height\": 8, \"width\": 8}}", "'do_resize' must"},
  };
  char path[] = "/tmp/sd_test_preprocess_XXXXXX";
  int fd = mkstemp(path);
  if (!CHECK(fd >= 0, "temp file"))
    return;
  close(fd);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    FILE *f = fopen(path, "w");
    fputs(bad[i].json, f);
    fclose(f);
    sd_dpt_preprocess_config cfg;
    CHECK(sd_dpt_preprocess_config_read(path, &cfg) < 0 &&
              strstr(sd_error_message(), bad[i].error) && strstr(sd_error_message(), path),
          "%s refused (%s): %s", bad[i].json, bad[i].error, sd_error_message());
  }
  unlink(path);
}

static void test_refusals(sd_engine *depth_model, sd_engine *sd2) {
  sd_pipeline_kind kind;
  const sd_model_files *five = sd_engine_model(depth_model), *four = sd_engine_model(sd2);
  CHECK(sd_pipeline_choose(five, true, false, false, &kind) < 0 &&
            strstr(sd_error_message(), "needs an init image and a depth map"),
        "a depth model without a depth map refused: %s", sd_error_message());
  CHECK(sd_pipeline_choose(five, false, false, true, &kind) < 0 &&
            strstr(sd_error_message(), "needs an init image and a depth map"),
        "a depth model without an init image refused: %s", sd_error_message());
  CHECK(sd_pipeline_choose(five, true, true, true, &kind) < 0 &&
            strstr(sd_error_message(), "takes no mask"),
        "a mask for a depth model refused: %s", sd_error_message());
  CHECK(sd_pipeline_choose(four, true, false, true, &kind) < 0 &&
            strstr(sd_error_message(), "a depth map is for depth-to-image models"),
        "a depth map for a 4-channel model refused: %s", sd_error_message());

  /* depth map files: a color PNG and another format refused naming the file */
  float *map = NULL;
  int mh = 0, mw = 0;
  CHECK(sd_depth_map_read(INIT_DIR "/init.png", &map, &mh, &mw) < 0 &&
            strstr(sd_error_message(), "init.png: a depth map PNG must be grayscale"),
        "a color PNG depth map refused: %s", sd_error_message());
  CHECK(sd_depth_map_read(INIT_DIR "/init.jpg", &map, &mh, &mw) < 0 &&
            strstr(sd_error_message(), "init.jpg: depth maps are read from .npy files"),
        "a JPEG depth map refused: %s", sd_error_message());
  CHECK(sd_depth_map_read(DIR "/depth-c16.png", &map, &mh, &mw) == 0 && mh == 45 && mw == 70 &&
            map[0] >= 0.0f && map[0] <= 65535.0f,
        "a 16-bit PNG depth map read (%dx%d): %s", mw, mh, sd_error_message());
  free(map);

  /* a map that is constant at the latent size (zeros: bicubic weights that do not sum to 1
   * exactly keep them zero): refused naming it, nothing rendered */
  sd_image init = {0};
  CHECK(sd_image_read_rgb(INIT_DIR "/init.png", &init) == 0, "%s", sd_error_message());
  float flat[12 * 20];
  for (int i = 0; i < 12 * 20; i++)
    flat[i] = 0.0f;
  sd_image_cond cond = {&init, NULL, flat, 12, 20};
  sd_image_params image = {SD_PIPELINE_DEPTH, 0.75f, &cond, 0};
  sd_txt2img_batch batch = {64, 40, 5, SD_SCHED_DDIM, false, SD_RNG_CPU};
  sd_txt2img_item item = {"a house", "", 1, 7.5f};
  sd_txt2img_result result;
  int rc = init.data ? sd_render(depth_model, &batch, &image, &item, 1, NULL, NULL, &result) : 0;
  if (rc == 0 && init.data)
    sd_txt2img_result_free(&result);
  CHECK(rc < 0 && strstr(sd_error_message(), "the depth map of item 0") &&
            strstr(sd_error_message(), "constant"),
        "a constant depth map refused: %s", sd_error_message());
  image.kind = SD_PIPELINE_IMG2IMG;
  CHECK(sd_render_check(depth_model, &batch, &image) < 0, "img2img on a depth model refused: %s",
        sd_error_message());
  sd_image_free(&init);
}

int main(void) {
  sd_safetensors *fixture = NULL;
  if (sd_safetensors_open(DIR "/depth2img.safetensors", &fixture) < 0) {
    fprintf(stderr, "%s\n", sd_error_message());
    return 1;
  }
  sd_engine *depth_model = sd_test_open_engine("tiny-sd2-depth"),
            *sd2 = sd_test_open_engine("tiny-sd2");
  cJSON *cases = cJSON_Parse(sd_safetensors_metadata(fixture, "cases"));
  CHECK(cases && cJSON_GetArraySize(cases) >= 9, "cases metadata");
  if (depth_model && sd2 && cases) {
    int k = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) run_case(depth_model, fixture, k++, c);
    test_refusals(depth_model, sd2);
  }
  test_estimator_stages(fixture);
  test_preprocess_config_refusals();
  cJSON_Delete(cases);
  sd_engine_close(depth_model);
  sd_engine_close(sd2);
  sd_safetensors_close(fixture);
  return sd_test_finish();
}
