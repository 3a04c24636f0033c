/* sdbatch train's instance images (worker/finetune/instance_data.h) against train_dreambooth.py's
 * transforms as torch and PIL compute them (tests/fixtures/train-data, made by
 * tests/reference/make_train_data_fixtures.py): a 100 x 70 PNG and a 45 x 77 JPEG at resolution
 * 32 (one resized down, one up; the center crop of the first rounds half to even), CenterCrop,
 * and RandomCrop + RandomHorizontalFlip drawn from torch.manual_seed(seed) for seeds 0..4: the
 * crop offsets and flips exactly, the pixels within 1e-6 (the same uint8 values through the same
 * float32 operations: measured 0). Also: files that are not .png/.jpg/.jpeg are skipped, the
 * images come sorted by name, an empty folder and an undecodable image are refused naming them. */
#include "test_util.h"

#include "error.h"
#include "finetune/instance_data.h"
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RES 32

static const sd_st_tensor *want(const sd_safetensors *f, const char *fmt, const char *name,
                                int seed) {
  char key[256];
  snprintf(key, sizeof key, fmt, name, seed);
  const sd_st_tensor *t = sd_safetensors_find(f, key);
  CHECK(t != NULL, "fixture tensor %s", key);
  return t;
}

static void test_against_torch(void) {
  const char *dir = SD_TEST_FIXTURES "/train-data/images";
  sd_safetensors *f = NULL;
  sd_instance_data data;
  if (!CHECK(sd_safetensors_open(SD_TEST_FIXTURES "/train-data/want.safetensors", &f) == 0,
             "fixture: %s", sd_error_message()) ||
      !CHECK(sd_instance_data_load(dir, RES, &data) == 0, "load: %s", sd_error_message())) {
    sd_safetensors_close(f);
    return;
  }
  CHECK(data.count == 2, "two images (notes.txt skipped), got %d", data.count);
  CHECK(data.count == 2 && strstr(data.paths[0], "a_wide.png") &&
            strstr(data.paths[1], "b_tall.jpg"),
        "sorted by name");
  CHECK(data.images[0].width == 45 && data.images[0].height == 32 && data.images[1].width == 32 &&
            data.images[1].height == 54,
        "resized to a shorter side of 32: %dx%d, %dx%d", data.images[0].width,
        data.images[0].height, data.images[1].width, data.images[1].height);
  static float got[3 * RES * RES];
  for (int i = 0; i < data.count && i < 2; i++) {
    const char *name = strrchr(data.paths[i], '/') + 1;
    sd_instance_view view;
    sd_rng rng;
    sd_rng_init(&rng, SD_RNG_CPU, 0);
    char what[128];
    const sd_st_tensor *t = want(f, "center.%s", name, 0);
    if (t && CHECK(sd_instance_data_pixels(&data, i, true, false, &rng, got, &view) == 0,
                   "center crop: %s", sd_error_message())) {
      snprintf(what, sizeof what, "%s CenterCrop at (%d, %d)", name, view.top, view.left);
      sd_test_compare_f32(what, got, t->data, 3 * RES * RES, 1e-6f, 0);
    }
    CHECK(!sd_instance_data_fixed_crop(&data, i, false) &&
              sd_instance_data_fixed_crop(&data, i, true),
          "%s: a random crop varies, a center crop does not", name);
    for (int seed = 0; seed < 5; seed++) {
      sd_rng_init(&rng, SD_RNG_CPU, (uint64_t)seed);
      const sd_st_tensor *px = want(f, "random.%s.%d", name, seed);
      const sd_st_tensor *v = want(f, "view.%s.%d", name, seed);
      if (!px || !v ||
          !CHECK(sd_instance_data_pixels(&data, i, false, true, &rng, got, &view) == 0,
                 "random crop: %s", sd_error_message()))
        continue;
      const int32_t *w = v->data;
      CHECK(view.top == w[0] && view.left == w[1] && (int)view.flipped == w[2],
            "%s seed %d: crop (%d, %d) flip %d, torch (%d, %d) flip %d", name, seed, view.top,
            view.left, (int)view.flipped, w[0], w[1], w[2]);
      snprintf(what, sizeof what, "%s seed %d RandomCrop + flip", name, seed);
      sd_test_compare_f32(what, got, px->data, 3 * RES * RES, 1e-6f, 0);
    }
  }
  sd_instance_data_free(&data);
  sd_safetensors_close(f);
}

static void test_refusals(void) {
  char dir[] = "/tmp/sdbatch-instance-data.XXXXXX";
  if (!CHECK(mkdtemp(dir), "mkdtemp"))
    return;
  sd_instance_data data;
  CHECK(sd_instance_data_load(dir, RES, &data) < 0 && strstr(sd_error_message(), dir) &&
            strstr(sd_error_message(), "no instance images"),
        "an empty folder: %s", sd_error_message());
  char path[256];
  snprintf(path, sizeof path, "%s/photo.jpg", dir);
  FILE *f = fopen(path, "w");
  if (f) {
    fputs("this is text", f);
    fclose(f);
  }
  CHECK(sd_instance_data_load(dir, RES, &data) < 0 && strstr(sd_error_message(), path),
        "a .jpg that is not an image: %s", sd_error_message());
  unlink(path);
  rmdir(dir);
  CHECK(sd_instance_data_load(dir, RES, &data) < 0 && strstr(sd_error_message(), "cannot read"),
        "a missing folder: %s", sd_error_message());
}

int main(void) {
  test_against_torch();
  test_refusals();
  return sd_test_finish();
}
