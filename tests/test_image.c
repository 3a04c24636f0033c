/* Input images against PIL (tests/fixtures/images, made by tests/reference/make_image_fixtures.py):
 * every PNG colour type and bit depth and several JPEG kinds decode to PIL's
 * Image.open(f).convert("RGB") exactly; sd_image_resize gives PIL's Image.resize pixels exactly
 * for every convolution filter, up, down, mixed and the same size, RGB and L;
 * sd_image_to_luma gives convert("L") exactly. Bad files (missing,
 * folder, FIFO, empty, garbage, truncated PNG and JPEG, corrupt data, CMYK, absurd dimensions)
 * each get one error naming the file. diffusers' VaeImageProcessor and mask processor outputs
 * (sizes, resize, normalisation, binarised masks, the mask at latent size, the masked image)
 * are matched exactly. */
#include "test_util.h"

#include "image/image.h"
#include "io/safetensors.h"

#include "error.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMAGES SD_TEST_FIXTURES "/images"

/* Fixture tensor (H, W, C) of uint8 values stored as float16, as an sd_image (NULL data when
 * absent). */
static sd_image fixture_image(const sd_safetensors *file, const char *name) {
  sd_image img = {0, 0, 0, NULL};
  const sd_st_tensor *t = sd_safetensors_find(file, name);
  CHECK(t && t->ndim == 3, "fixture tensor %s missing", name);
  if (!t || t->ndim != 3)
    return img;
  size_t n = (size_t)(t->shape[0] * t->shape[1] * t->shape[2]);
  float *values = malloc(n * sizeof *values);
  img.data = malloc(n);
  sd_convert_to_f32(t->dtype, t->data, values, n);
  for (size_t i = 0; i < n; i++)
    img.data[i] = (uint8_t)values[i];
  free(values);
  img.height = (int)t->shape[0];
  img.width = (int)t->shape[1];
  img.channels = (int)t->shape[2];
  return img;
}

static void expect_same(const char *what, const sd_image *got, const sd_image *want) {
  if (!CHECK(got->width == want->width && got->height == want->height &&
                 got->channels == want->channels,
             "%s: %dx%dx%d, PIL %dx%dx%d", what, got->width, got->height, got->channels,
             want->width, want->height, want->channels))
    return;
  size_t n = (size_t)got->width * got->height * got->channels, differ = 0, first = 0;
  for (size_t i = n; i-- > 0;)
    if (got->data[i] != want->data[i]) {
      differ++;
      first = i;
    }
  CHECK(differ == 0, "%s: %zu of %zu values differ from PIL's (first at %zu: %d, PIL %d)", what,
        differ, n, first, got->data[first], want->data[first]);
}

static void test_decode(const sd_safetensors *fixture) {
  int files = 0;
  for (size_t i = 0;; i++) {
    const sd_st_tensor *t = sd_safetensors_at(fixture, i);
    if (!t)
      break;
    if (strncmp(t->name, "decode.", 7) != 0)
      continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", IMAGES, t->name + 7);
    sd_image want = fixture_image(fixture, t->name), got;
    int rc = sd_image_read_rgb(path, &got);
    if (CHECK(rc == 0, "%s: %s", path, sd_error_message()))
      expect_same(t->name + 7, &got, &want);
    sd_image_free(&got);
    sd_image_free(&want);
    files++;
  }
  CHECK(files >= 25, "only %d decode cases in the fixture", files);
}

static void test_resize(const sd_safetensors *fixture) {
  static const char *const filters[] = {"lanczos", "bicubic", "bilinear", "box", "hamming"};
  static const char *const sizes[] = {"down", "up", "wide", "mixed", "same", "tall"};
  sd_image rgb = fixture_image(fixture, "resize.source.rgb");
  sd_image gray = fixture_image(fixture, "resize.source.l");
  for (size_t f = 0; f < sizeof filters / sizeof *filters; f++) {
    sd_resample kind;
    CHECK(sd_resample_parse(filters[f], &kind) == 0, "parse %s", filters[f]);
    char name[128];
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
      snprintf(name, sizeof name, "resize.%s.rgb.%s", filters[f], sizes[s]);
      sd_image want = fixture_image(fixture, name), got;
      if (CHECK(sd_image_resize(&rgb, want.width, want.height, kind, &got) == 0, "%s: %s", name,
                sd_error_message()))
        expect_same(name, &got, &want);
      sd_image_free(&got);
      sd_image_free(&want);
    }
    snprintf(name, sizeof name, "resize.%s.l.down", filters[f]);
    sd_image want = fixture_image(fixture, name), got;
    if (CHECK(sd_image_resize(&gray, want.width, want.height, kind, &got) == 0, "%s: %s", name,
              sd_error_message()))
      expect_same(name, &got, &want);
    sd_image_free(&got);
    sd_image_free(&want);
  }
  sd_image want, got;
  want = fixture_image(fixture, "luma");
  if (CHECK(sd_image_to_luma(&rgb, &got) == 0, "luma: %s", sd_error_message()))
    expect_same("luma", &got, &want);
  sd_image_free(&got);
  sd_image_free(&want);
  sd_resample kind;
  CHECK(sd_resample_parse("nearest", &kind) < 0 && strstr(sd_error_message(), "lanczos"),
        "nearest refused naming the choices: %s", sd_error_message());
  sd_image_free(&rgb);
  sd_image_free(&gray);
}

/* Reading path fails with a message that names it and contains `reason`. */
static void expect_refused(const char *path, const char *reason) {
  sd_image img;
  sd_error_clear();
  int rc = sd_image_read_rgb(path, &img);
  CHECK(rc < 0 && img.data == NULL, "%s: read succeeded (want '%s')", path, reason);
  CHECK(strstr(sd_error_message(), path) && strstr(sd_error_message(), reason),
        "%s: error '%s' should name the file and say '%s'", path, sd_error_message(), reason);
}

static void write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  CHECK(f && fwrite(data, 1, len, f) == len, "cannot write %s", path);
  if (f)
    fclose(f);
}

static void test_bad_files(void) {
  char dir[] = "/tmp/sdbatch-test-image-XXXXXX";
  if (!CHECK(mkdtemp(dir) != NULL, "mkdtemp"))
    return;
  char path[256];
  snprintf(path, sizeof path, "%s/missing.png", dir);
  expect_refused(path, "cannot open");
  expect_refused(dir, "not a regular file");
  snprintf(path, sizeof path, "%s/fifo.png", dir);
  CHECK(mkfifo(path, 0600) == 0, "mkfifo");
  expect_refused(path, "not a regular file");
  unlink(path);
  snprintf(path, sizeof path, "%s/empty.png", dir);
  write_file(path, "", 0);
  expect_refused(path, "empty file");
  unlink(path);
  snprintf(path, sizeof path, "%s/text.png", dir);
  write_file(path, "hello, world\n", 13);
  expect_refused(path, "not a PNG or JPEG file");
  unlink(path);

  static const char *const sources[] = {"rgb8.png", "rgb8-interlaced.png", "photo420.jpg",
                                        "photo-progressive.jpg"};
  for (size_t i = 0; i < sizeof sources / sizeof *sources; i++) {
    char src[512];
    snprintf(src, sizeof src, "%s/%s", IMAGES, sources[i]);
    size_t len = 0;
    char *data = sd_test_read_file(src, &len);
    if (!CHECK(data != NULL, "cannot read %s", src))
      continue;
    bool png = strstr(sources[i], ".png") != NULL;
    snprintf(path, sizeof path, "%s/truncated-%s", dir, sources[i]);
    write_file(path, data, len * 2 / 3);
    expect_refused(path, png ? "truncated" : "truncated JPEG");
    unlink(path);
    /* corrupt compressed data: a PNG's IDAT (its CRC catches it), a JPEG's header tables */
    for (size_t k = png ? 60 : 20; k < len && k < (png ? 80 : 200); k++)
      data[k] = (char)(data[k] ^ 0x5a);
    snprintf(path, sizeof path, "%s/corrupt-%s", dir, sources[i]);
    write_file(path, data, len);
    expect_refused(path, png ? "corrupt or truncated PNG" : "corrupt JPEG");
    unlink(path);
    free(data);
  }
  rmdir(dir);
  expect_refused(IMAGES "/cmyk.jpg", "unsupported JPEG colour space");
  expect_refused(IMAGES "/huge.png", "100000x100000 pixels is too large");
  expect_refused(IMAGES "/huge.jpg", "60000x60000 pixels is too large");
}

/* A float32 fixture tensor (C, H, W) in a new buffer; NULL when absent. */
static float *fixture_f32(const sd_safetensors *file, const char *name, int64_t shape[3]) {
  const sd_st_tensor *t = sd_safetensors_find(file, name);
  if (!CHECK(t && t->ndim == 3, "fixture tensor %s missing", name))
    return NULL;
  memcpy(shape, t->shape, 3 * sizeof *shape);
  size_t n = (size_t)(shape[0] * shape[1] * shape[2]);
  float *out = malloc(n * sizeof *out);
  sd_convert_to_f32(t->dtype, t->data, out, n);
  return out;
}

/* diffusers' VaeImageProcessor on load_image(file): bit-exact (same uint8 pixels, the same
 * float32 operations). */
static void test_preprocess(const sd_safetensors *fixture) {
  static const char *const files[] = {"photo420.jpg", "rgb16.png", "gray16-low.png", "palette4.png",
                                      "photo420-40x48"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    char name[128], path[512];
    snprintf(name, sizeof name, "preprocess.image.%s", files[i]);
    snprintf(path, sizeof path, "%s/%s", IMAGES,
             strstr(files[i], "-40x48") ? "photo420.jpg" : files[i]);
    int64_t shape[3];
    float *want = fixture_f32(fixture, name, shape);
    sd_image rgb;
    if (!want || !CHECK(sd_image_read_rgb(path, &rgb) == 0, "%s", sd_error_message())) {
      free(want);
      continue;
    }
    int w = (int)shape[2], h = (int)shape[1], vw, vh;
    CHECK(sd_image_vae_size(path, rgb.width, rgb.height, 8, &vw, &vh) == 0, "vae size");
    if (!strstr(files[i], "-40x48"))
      CHECK(vw == w && vh == h, "%s: size %dx%d, diffusers %dx%d", name, vw, vh, w, h);
    float *got = malloc((size_t)3 * w * h * sizeof *got);
    CHECK(sd_image_preprocess(&rgb, w, h, got) == 0, "%s: %s", name, sd_error_message());
    sd_test_compare_f32(name, got, want, (size_t)3 * w * h, 0, 0);
    free(got);
    free(want);
    sd_image_free(&rgb);
  }
  int64_t ishape[3];
  float *init = fixture_f32(fixture, "preprocess.image.photo420.jpg", ishape);
  static const char *const masks[] = {"mask-soft", "mask-hard"};
  for (size_t i = 0; init && i < sizeof masks / sizeof *masks; i++) {
    char name[128], path[512];
    snprintf(path, sizeof path, "%s/%s.png", IMAGES, masks[i]);
    int64_t shape[3];
    snprintf(name, sizeof name, "preprocess.mask.%s", masks[i]);
    float *want = fixture_f32(fixture, name, shape);
    snprintf(name, sizeof name, "preprocess.mask_latent.%s", masks[i]);
    float *want_latent = fixture_f32(fixture, name, shape);
    snprintf(name, sizeof name, "preprocess.masked_image.%s", masks[i]);
    float *want_masked = fixture_f32(fixture, name, shape);
    sd_image rgb;
    float mask[24 * 32], latent[3 * 4], masked[3 * 24 * 32];
    if (want && want_latent && want_masked &&
        CHECK(sd_image_read_rgb(path, &rgb) == 0, "%s", sd_error_message())) {
      CHECK(sd_mask_preprocess(&rgb, 32, 24, mask) == 0, "mask: %s", sd_error_message());
      sd_test_compare_f32(masks[i], mask, want, 24 * 32, 0, 0);
      sd_mask_to_latent_size(mask, 32, 24, 8, latent);
      sd_test_compare_f32("mask at latent size", latent, want_latent, 3 * 4, 0, 0);
      sd_masked_image(init, mask, 32, 24, masked);
      sd_test_compare_f32("masked image", masked, want_masked, 3 * 24 * 32, 0, 0);
      sd_image_free(&rgb);
    }
    free(want);
    free(want_latent);
    free(want_masked);
  }
  free(init);
  int w, h;
  CHECK(sd_image_vae_size("tiny.png", 7, 100, 8, &w, &h) < 0 &&
            strstr(sd_error_message(), "tiny.png"),
        "a 7 px wide image refused naming it");
}

int main(void) {
  sd_safetensors *fixture = NULL;
  if (sd_safetensors_open(IMAGES "/images.safetensors", &fixture) < 0) {
    fprintf(stderr, "%s\n", sd_error_message());
    return 1;
  }
  test_decode(fixture);
  test_resize(fixture);
  test_preprocess(fixture);
  test_bad_files();
  sd_safetensors_close(fixture);
  return sd_test_finish();
}
