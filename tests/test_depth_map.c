/* Depth maps given by the user: the .npy reader (tests/fixtures/depth/npy/, written by
 * tests/reference/make_dpt_fixtures.py with NumPy) must return the saved values exactly for
 * (H, W) and (1, H, W) float32 files and refuse every other file with an error naming it and the
 * problem; then sd_depth_map_prepare against StableDiffusionDepth2ImgPipeline.prepare_depth_map's
 * arithmetic in torch (bicubic resize to the latent size, min-max to [-1, 1]) within
 * 2e-6 + 1e-5 |want|, and a constant map refused. */
#include "test_util.h"

#include "io/safetensors.h"
#include "pipeline/depth_map.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPY SD_TEST_FIXTURES "/depth/npy/"

static void check_good(const char *name, const float *want, int h, int w) {
  float *data = NULL;
  int gh = 0, gw = 0;
  int rc = sd_depth_map_read(name, &data, &gh, &gw);
  CHECK(rc == 0, "%s: %s", name, sd_error_message());
  if (rc == 0) {
    CHECK(gh == h && gw == w, "%s: %dx%d, expected %dx%d", name, gh, gw, h, w);
    if (gh == h && gw == w)
      sd_test_compare_f32(name, data, want, (size_t)(h * w), 0.0f, 0.0f);
  }
  free(data);
}

static void check_bad(const char *file, const char *words) {
  char path[1024];
  snprintf(path, sizeof path, "%s%s", NPY, file);
  float *data = (float *)1;
  int h, w;
  sd_error_clear();
  int rc = sd_depth_map_read(path, &data, &h, &w);
  CHECK(rc == -1 && data == NULL && strstr(sd_error_message(), path) &&
            strstr(sd_error_message(), words),
        "%s: rc %d, error '%s' (should name the file and say '%s')", file, rc, sd_error_message(),
        words);
}

int main(void) {
  sd_safetensors *ref = NULL;
  if (sd_safetensors_open(SD_TEST_FIXTURES "/depth/resize.safetensors", &ref) < 0) {
    fprintf(stderr, "%s\n", sd_error_message());
    return 1;
  }
  const sd_st_tensor *in = sd_safetensors_find(ref, "depth_map.in");
  const sd_st_tensor *out = sd_safetensors_find(ref, "depth_map.out");
  CHECK(in && out && in->ndim == 3 && out->ndim == 4, "depth_map fixtures missing");
  if (!in || !out)
    return sd_test_finish();
  int h = (int)in->shape[1], w = (int)in->shape[2];
  const float *depth = in->data;
  check_good(NPY "depth_hw.npy", depth, h, w);
  check_good(NPY "depth_1hw.npy", depth, h, w);
  check_bad("bad_float64.npy", "'<f8'");
  check_bad("bad_fortran.npy", "Fortran");
  check_bad("bad_2hw.npy", "(2, 37, 45)");
  check_bad("bad_1d.npy", "1 dimension");
  check_bad("bad_bigendian.npy", "'>f4'");
  check_bad("bad_nan.npy", "row 3, column 4");
  check_bad("bad_truncated.npy", "truncated");
  check_bad("bad_magic.npy", "magic");
  check_bad("missing.npy", "cannot open");
  check_bad("depth.tiff", ".npy");         /* neither .npy nor .png */
  check_bad("missing.png", "cannot open"); /* a .png goes to the PNG reader */

  sd_backend *be = sd_backend_cpu_create(0);
  sd_tensor d = sd_tensor_3d(SD_DTYPE_F32, 1, h, w);
  sd_tensor cond = sd_tensor_4d(SD_DTYPE_F32, 1, 1, out->shape[2], out->shape[3]);
  int ok = be && sd_tensor_alloc_persistent(be, &d) == 0 &&
           sd_tensor_upload_f32(be, &d, depth) == 0 && sd_tensor_alloc_persistent(be, &cond) == 0;
  CHECK(ok, "setup: %s", sd_error_message());
  if (ok) {
    int rc = sd_depth_map_prepare(be, &d, "depth_hw.npy", &cond);
    CHECK(rc == 0, "prepare: %s", sd_error_message());
    size_t n = (size_t)sd_tensor_numel(&cond);
    float *got = malloc(n * sizeof *got);
    if (rc == 0 && sd_tensor_download_f32(be, &cond, got) == 0)
      sd_test_compare_f32("depth conditioning vs prepare_depth_map", got, out->data, n, 2e-6f,
                          1e-5f);
    float *flat = malloc((size_t)(h * w) * sizeof *flat);
    for (int i = 0; i < h * w; i++)
      flat[i] = 3.5f;
    sd_tensor_upload_f32(be, &d, flat);
    sd_error_clear();
    CHECK(sd_depth_map_prepare(be, &d, "flat.npy", &cond) == -1 &&
              strstr(sd_error_message(), "flat.npy") && strstr(sd_error_message(), "constant"),
          "a constant depth map was not refused clearly: %s", sd_error_message());
    free(flat);
    free(got);
  }
  sd_tensor_free(be, &d);
  sd_tensor_free(be, &cond);
  sd_backend_destroy(be);
  sd_safetensors_close(ref);
  return sd_test_finish();
}
