/* DPTImageProcessor's torchvision backend (`--dpt-preprocess torchvision`) against transformers 5
 * with torchvision (tests/fixtures/dpt-preprocess, made by
 * tests/reference/make_dpt_preprocess_fixtures.py): for every case (test images, synthetic
 * images that shrink, grow, keep their size, odd sizes; the tiny depth model's config, the SD 2
 * depth feature_extractor's 384x384, ImageNet mean/std, bilinear, rescale or normalize alone, an
 * odd rescale_factor), torch's antialiased uint8 resize and the pixel_values exactly: the same
 * integer arithmetic and the same float32 operations, so no tolerance. Then the choice itself:
 * the default stays PIL's, the names parse, and configs the torchvision path does not run are
 * refused naming the file. */
#include "test_util.h"

#include "image/image.h"
#include "io/safetensors.h"
#include "pipeline/depth_estimate.h"

#include "error.h"
#include "tensor.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIR SD_TEST_FIXTURES "/dpt-preprocess"

/* synthetic() of make_dpt_preprocess_fixtures.py: a ramp plus hashed noise, inverted on a
 * checker. */
static int synthetic(int h, int w, int seed, sd_image *out) {
  out->width = w;
  out->height = h;
  out->channels = 3;
  out->data = malloc((size_t)w * h * 3);
  if (!out->data)
    return -1;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) {
        uint32_t i = (uint32_t)(((y * w + x) * 3 + c) + seed * 7919);
        uint32_t m = i * 2654435761u;
        m ^= m >> 15;
        int noise = (int)((m >> 8) & 63) - 32;
        int v = (x * 255 / w + y * 255 / h) / 2 + noise;
        v = v < 0 ? 0 : v > 255 ? 255 : v;
        if ((x / 7 + y / 5) % 4 == 0)
          v = 255 - v;
        out->data[((size_t)y * w + x) * 3 + c] = (uint8_t)v;
      }
  return 0;
}

static int load_input(const char *spec, sd_image *out) {
  int h, w, seed;
  if (sscanf(spec, "synthetic:%dx%d:%d", &h, &w, &seed) == 3)
    return synthetic(h, w, seed, out);
  char path[512];
  snprintf(path, sizeof path, "%s/%s", SD_TEST_FIXTURES, spec);
  return sd_image_read_rgb(path, out);
}

/* want (3, H, W) = level[c][resized(y, x, c)], the processor's pixel_values (the script checks
 * that identity against the processor for every case). */
static float *pixel_values_of(const sd_st_tensor *level, const sd_image *resized) {
  size_t plane = (size_t)resized->width * resized->height;
  float *want = malloc(plane * 3 * sizeof *want), table[3 * 256];
  if (!want)
    return NULL;
  sd_convert_to_f32(level->dtype, level->data, table, 3 * 256);
  for (int c = 0; c < 3; c++)
    for (size_t i = 0; i < plane; i++)
      want[c * plane + i] = table[c * 256 + resized->data[i * 3 + c]];
  return want;
}

static void run_case(const sd_safetensors *levels, const cJSON *c, int *resized_exact,
                     int *values_exact) {
  const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
  const char *config = cJSON_GetObjectItem(c, "config")->valuestring;
  const char *input = cJSON_GetObjectItem(c, "input")->valuestring;
  char path[512], key[64];
  sd_dpt_preprocess_config cfg;
  sd_image in = {0}, got = {0}, want = {0};
  snprintf(path, sizeof path, "%s/%s.json", DIR, config);
  int ok = sd_dpt_preprocess_config_read(path, &cfg) == 0 &&
           sd_dpt_preprocess_config_set_backend(&cfg, SD_DPT_BACKEND_TORCHVISION, path) == 0 &&
           load_input(input, &in) == 0;
  snprintf(path, sizeof path, "%s/%s.png", DIR, name);
  ok = ok && sd_image_read_rgb(path, &want) == 0;
  snprintf(key, sizeof key, "level.%s", config);
  const sd_st_tensor *level = sd_safetensors_find(levels, key);
  if (!CHECK(ok && level, "%s: setup: %s", name, sd_error_message()))
    goto out;
  if (CHECK(sd_image_resize_torch_aa(&in, cfg.width, cfg.height, cfg.resample, &got) == 0,
            "%s: resize: %s", name, sd_error_message())) {
    size_t n = (size_t)cfg.width * cfg.height * 3, differ = 0;
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
      int d = abs((int)got.data[i] - (int)want.data[i]);
      differ += d != 0;
      worst = d > worst ? d : worst;
    }
    *resized_exact += CHECK(differ == 0,
                            "%s (%dx%d -> %dx%d): torch's resize: %zu of %zu values "
                            "differ, by up to %d levels",
                            name, in.width, in.height, cfg.width, cfg.height, differ, n, worst);
  }
  size_t n = (size_t)3 * cfg.width * cfg.height;
  float *values = malloc(n * sizeof *values), *want_values = pixel_values_of(level, &want);
  if (CHECK(values && want_values, "out of memory") &&
      CHECK(sd_dpt_preprocess(&cfg, &in, values) == 0, "%s: %s", name, sd_error_message())) {
    char what[300];
    snprintf(what, sizeof what, "%s pixel_values (exact)", name);
    *values_exact += sd_test_compare_f32(what, values, want_values, n, 0.0f, 0.0f);
  }
  free(values);
  free(want_values);
out:
  sd_image_free(&in);
  sd_image_free(&got);
  sd_image_free(&want);
}

static void test_cases(void) {
  sd_safetensors *levels = NULL;
  char *text = sd_test_read_file(DIR "/cases.json", NULL);
  cJSON *cases = text ? cJSON_Parse(text) : NULL;
  if (CHECK(cases && cJSON_IsArray(cases), "cases.json") &&
      CHECK(sd_safetensors_open(DIR "/levels.safetensors", &levels) == 0, "%s",
            sd_error_message())) {
    int n = cJSON_GetArraySize(cases), resized = 0, values = 0;
    for (int k = 0; k < n; k++)
      run_case(levels, cJSON_GetArrayItem(cases, k), &resized, &values);
    printf(
        "torchvision preprocessing: %d of %d cases resize exactly, %d of %d pixel_values exact\n",
        resized, n, values, n);
    CHECK(n >= 30, "the fixture has %d cases", n);
  }
  sd_safetensors_close(levels);
  cJSON_Delete(cases);
  free(text);
}

/* The default stays PIL's; the two backends differ on an image that PIL and torch round apart. */
static void test_default_is_pil(void) {
  sd_dpt_preprocess_config cfg;
  sd_image in = {0};
  const char *path = SD_TEST_FIXTURES "/tiny-sd2-depth/feature_extractor/preprocessor_config.json";
  if (!CHECK(sd_dpt_preprocess_config_read(path, &cfg) == 0 &&
                 load_input("img2img/init.png", &in) == 0,
             "%s", sd_error_message()))
    return;
  CHECK(cfg.backend == SD_DPT_BACKEND_PIL, "a config read gives the PIL backend");
  size_t n = (size_t)3 * cfg.width * cfg.height, differ = 0;
  float *pil = malloc(n * sizeof *pil), *tv = malloc(n * sizeof *tv);
  int ok = pil && tv && sd_dpt_preprocess(&cfg, &in, pil) == 0 &&
           sd_dpt_preprocess_config_set_backend(&cfg, SD_DPT_BACKEND_TORCHVISION, path) == 0 &&
           sd_dpt_preprocess(&cfg, &in, tv) == 0;
  if (CHECK(ok, "%s", sd_error_message())) {
    for (size_t i = 0; i < n; i++)
      differ += pil[i] != tv[i];
    CHECK(differ > 0, "PIL and torchvision pixel_values of init.png differ (%zu of %zu)", differ,
          n);
  }
  free(pil);
  free(tv);
  sd_image_free(&in);
}

static void test_names_and_refusals(void) {
  sd_dpt_backend b = SD_DPT_BACKEND_PIL;
  CHECK(sd_dpt_backend_parse("torchvision", &b) == 0 && b == SD_DPT_BACKEND_TORCHVISION,
        "'torchvision' parses");
  CHECK(sd_dpt_backend_parse("pil", &b) == 0 && b == SD_DPT_BACKEND_PIL, "'pil' parses");
  CHECK(sd_dpt_backend_parse("PIL", &b) < 0 && strstr(sd_error_message(), "pil or torchvision"),
        "'PIL' refused naming the choices: %s", sd_error_message());
  CHECK(!strcmp(sd_dpt_backend_name(SD_DPT_BACKEND_TORCHVISION), "torchvision") &&
            !strcmp(sd_dpt_backend_name(SD_DPT_BACKEND_PIL), "pil"),
        "names");
  static const struct {
    const char *json, *error;
  } bad[] = {
      {"{\"resample\": 1, \"size\": {\"height\": 8, \"width\": 8}}", "resample 1"},
      {"{\"resample\": 4, \"size\": {\"height\": 8, \"width\": 8}}", "resample 4"},
      {"{\"do_pad\": true, \"size\": {\"height\": 8, \"width\": 8}}", "do_pad"},
  };
  char path[] = "/tmp/sd_test_dpt_preprocess_XXXXXX";
  int fd = mkstemp(path);
  if (!CHECK(fd >= 0, "temp file"))
    return;
  close(fd);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    FILE *f = fopen(path, "w");
    fputs(bad[i].json, f);
    fclose(f);
    sd_dpt_preprocess_config cfg;
    CHECK(sd_dpt_preprocess_config_read(path, &cfg) == 0, "%s reads: %s", bad[i].json,
          sd_error_message());
    CHECK(sd_dpt_preprocess_config_set_backend(&cfg, SD_DPT_BACKEND_PIL, path) == 0,
          "%s: fine for the PIL backend", bad[i].json);
    int rc = sd_dpt_preprocess_config_set_backend(&cfg, SD_DPT_BACKEND_TORCHVISION, path);
    const char *msg = sd_error_message();
    CHECK(rc < 0 && strstr(msg, bad[i].error) && strstr(msg, path),
          "%s with torchvision: refused naming '%s' and the file (%s)", bad[i].json, bad[i].error,
          msg);
  }
  unlink(path);
  sd_image rgb = {0}, out = {0};
  CHECK(synthetic(4, 4, 0, &rgb) == 0, "synthetic");
  CHECK(sd_image_resize_torch_aa(&rgb, 2, 2, SD_RESAMPLE_LANCZOS, &out) < 0 &&
            strstr(sd_error_message(), "bilinear or bicubic"),
        "torch resize refuses lanczos: %s", sd_error_message());
  sd_image_free(&rgb);
}

int main(void) {
  test_cases();
  test_default_is_pil();
  test_names_and_refusals();
  return sd_test_finish();
}
