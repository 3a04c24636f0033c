/* Image-to-image and inpainting parity with diffusers (tests/fixtures/img2img, made by
 * tests/reference/make_img2img_fixtures.py):
 *  - the VAE encoder of tiny-sd1 on a preprocessed 70x45 image (moments within 1e-4) and
 *    latent_dist.sample with a cpu generator times the scaling factor;
 *  - whole images of StableDiffusionImg2ImgPipeline and StableDiffusionInpaintPipeline (a
 *    9-channel model and the 4-channel tiny-sd1 with per-step blending) over schedulers,
 *    strengths 0.3 / 0.75 / 1.0, soft and hard masks, PNG, 16-bit PNG and JPEG inputs whose size
 *    is not a multiple of 8, cpu and cuda generators. Tolerances as tests/test_txt2img.c: final
 *    latents within 1e-3 absolute + 1e-3 relative, pixels within 1 level and >= 99.9% exact;
 *  - the pipeline choice and refusals (a 9-channel model without a mask, a mask without an init
 *    image, strength outside [0, 1] or keeping no step). */
#include "test_pipeline_util.h"
#include "test_util.h"

#include "image/image.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/vae.h"
#include "pipeline/engine.h"
#include "rng/rng.h"

#include "error.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR SD_TEST_FIXTURES "/img2img"

static void test_encoder(const sd_safetensors *fixture) {
  sd_backend *be = sd_backend_cpu_create(0);
  sd_model_files *files = NULL;
  sd_weights *weights = NULL;
  sd_vae *vae = NULL;
  size_t n_image, n_moments, n_latents;
  float *image = sd_test_fixture_f32(fixture, "stage.image", &n_image);
  float *want_moments = sd_test_fixture_f32(fixture, "stage.moments", &n_moments);
  float *want_latents = sd_test_fixture_f32(fixture, "stage.latents", &n_latents);
  int ok = be && image && want_moments && want_latents &&
           sd_model_files_open(SD_TEST_FIXTURES "/tiny-sd1", NULL, NULL, &files) == 0 &&
           sd_weights_upload(be, files->vae_tensors, "vae", &weights) == 0 &&
           sd_vae_create(be, &files->vae, weights, &vae) == 0;
  if (!CHECK(ok, "VAE setup: %s", sd_error_message()))
    goto out;
  sd_tensor x = sd_tensor_4d(SD_DTYPE_F32, 1, 3, 40, 64);
  sd_tensor m = sd_tensor_4d(SD_DTYPE_F32, 1, 8, 5, 8);
  float got[8 * 5 * 8], latents[4 * 5 * 8], noise[4 * 5 * 8];
  ok = sd_tensor_alloc_persistent(be, &x) == 0 && sd_tensor_alloc_persistent(be, &m) == 0 &&
       sd_tensor_upload_f32(be, &x, image) == 0 && sd_vae_encode(vae, &x, &m) == 0 &&
       sd_tensor_download_f32(be, &m, got) == 0;
  if (CHECK(ok, "encode: %s", sd_error_message()) && CHECK(n_moments == 320, "moments size")) {
    sd_test_compare_f32("vae encoder moments", got, want_moments, n_moments, 1e-4f, 1e-4f);
    sd_rng rng;
    sd_rng_init(&rng, SD_RNG_CPU, 5);
    CHECK(sd_rng_randn(&rng, noise, 160) == 0, "randn");
    sd_vae_latent_sample(got, noise, 4, 40, files->vae.scaling_factor, latents);
    sd_test_compare_f32("latent_dist.sample * scaling_factor", latents, want_latents, 160, 1e-4f,
                        1e-4f);
  }
  CHECK(be->arena.used_bytes == 0, "encode left %zu arena bytes in use", be->arena.used_bytes);
  sd_tensor bad = sd_tensor_4d(SD_DTYPE_F32, 1, 3, 36, 64);
  CHECK(sd_vae_encode(vae, &bad, &m) < 0 && strstr(sd_error_message(), "multiples of 8"),
        "a 36-row image refused: %s", sd_error_message());
  sd_tensor_free(be, &x);
  sd_tensor_free(be, &m);
out:
  sd_vae_free(vae);
  sd_weights_free(weights);
  sd_model_files_close(files);
  free(image);
  free(want_moments);
  free(want_latents);
  sd_backend_destroy(be);
}

static void run_case(sd_engine *engine, const sd_safetensors *fixture, int k, const cJSON *c) {
  const char *pipeline = cJSON_GetObjectItem(c, "pipeline")->valuestring;
  const cJSON *mask_name = cJSON_GetObjectItem(c, "mask");
  sd_txt2img_item item;
  sd_txt2img_batch batch;
  sd_test_case_item(c, k, &item, &batch);
  char path[512], what[256];
  sd_image init = {0}, mask = {0};
  snprintf(path, sizeof path, "%s/%s", DIR, cJSON_GetObjectItem(c, "init")->valuestring);
  CHECK(sd_image_read_rgb(path, &init) == 0, "%s", sd_error_message());
  if (cJSON_IsString(mask_name)) {
    snprintf(path, sizeof path, "%s/%s", DIR, mask_name->valuestring);
    CHECK(sd_image_read_rgb(path, &mask) == 0, "%s", sd_error_message());
  }
  sd_pipeline_kind kind;
  CHECK(sd_pipeline_choose(sd_engine_model(engine), true, mask.data != NULL, false, &kind) == 0 &&
            strcmp(sd_pipeline_kind_name(kind), pipeline) == 0,
        "case %d: pipeline %s chosen, diffusers ran %s", k, sd_pipeline_kind_name(kind), pipeline);
  sd_image_cond cond = {&init, mask.data ? &mask : NULL, NULL, 0, 0};
  sd_image_params image = {kind, (float)cJSON_GetObjectItem(c, "strength")->valuedouble, &cond, 0};
  sd_txt2img_result result;
  int rc = sd_render(engine, &batch, &image, &item, 1, NULL, NULL, &result);
  snprintf(what, sizeof what, "case %d (%s %s, %s, strength %g, %s generator)", k, pipeline,
           cJSON_GetObjectItem(c, "model")->valuestring,
           cJSON_GetObjectItem(c, "scheduler")->valuestring, (double)image.strength,
           cJSON_GetObjectItem(c, "rng")->valuestring);
  sd_test_check_case(fixture, k, what, rc, &result);
  sd_image_free(&init);
  sd_image_free(&mask);
}

static void test_refusals(sd_engine *sd1, sd_engine *inpaint) {
  sd_pipeline_kind kind;
  const sd_model_files *nine = sd_engine_model(inpaint), *four = sd_engine_model(sd1);
  CHECK(sd_pipeline_choose(nine, true, false, false, &kind) < 0 &&
            strstr(sd_error_message(), "needs an init image and a mask"),
        "9-channel model without a mask refused: %s", sd_error_message());
  CHECK(sd_pipeline_choose(nine, false, false, false, &kind) < 0,
        "9-channel model for txt2img refused");
  CHECK(sd_pipeline_choose(four, false, true, false, &kind) < 0 &&
            strstr(sd_error_message(), "a mask needs an init image"),
        "a mask without an init image refused: %s", sd_error_message());
  CHECK(sd_pipeline_choose(four, false, false, false, &kind) == 0 && kind == SD_PIPELINE_TXT2IMG,
        "4-channel model, no image: txt2img");
  sd_txt2img_batch batch = {64, 40, 5, SD_SCHED_DDIM, false, SD_RNG_CPU};
  sd_image_params image = {SD_PIPELINE_IMG2IMG, 1.5f, NULL, 0};
  CHECK(sd_render_check(sd1, &batch, &image) < 0 && strstr(sd_error_message(), "[0, 1]"),
        "strength 1.5 refused: %s", sd_error_message());
  image.strength = 0.1f;
  CHECK(sd_render_check(sd1, &batch, &image) < 0 && strstr(sd_error_message(), "runs no step"),
        "strength 0.1 with 5 steps refused: %s", sd_error_message());
  image.kind = SD_PIPELINE_IMG2IMG;
  image.strength = 0.5f;
  CHECK(sd_render_check(inpaint, &batch, &image) < 0, "img2img on a 9-channel model refused");
}

int main(void) {
  sd_safetensors *fixture = NULL;
  if (sd_safetensors_open(DIR "/img2img.safetensors", &fixture) < 0) {
    fprintf(stderr, "%s\n", sd_error_message());
    return 1;
  }
  test_encoder(fixture);
  sd_engine *sd1 = sd_test_open_engine("tiny-sd1"),
            *inpaint = sd_test_open_engine("tiny-sd1-inpaint");
  cJSON *cases = cJSON_Parse(sd_safetensors_metadata(fixture, "cases"));
  CHECK(cases && cJSON_GetArraySize(cases) >= 13, "cases metadata");
  if (sd1 && inpaint && cases) {
    int k = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
      bool nine = strcmp(cJSON_GetObjectItem(c, "model")->valuestring, "tiny-sd1-inpaint") == 0;
      run_case(nine ? inpaint : sd1, fixture, k++, c);
    }
    test_refusals(sd1, inpaint);
  }
  cJSON_Delete(cases);
  sd_engine_close(sd1);
  sd_engine_close(inpaint);
  sd_safetensors_close(fixture);
  return sd_test_finish();
}
