/* Tiled VAE decoding parity: sd_vae_decode_tiled of vae.latent (1, 4, 13, 19) in 64 px tiles
 * against diffusers' AutoencoderKL.decode after enable_tiling() with tile_sample_min_size 64 and
 * tile_latent_min_size 8 (tests/fixtures/vae-tiled-sd1.safetensors, made by
 * tests/reference/make_vae_tiling_fixture.py), for the tiny SD 1.x VAE on the CPU backend; the
 * same latent twice in a batch of 2; the untiled path (a latent within one tile) left exactly as
 * sd_vae_decode; the arena released; tile sizes that cannot tile refused. */
#include "test_util.h"

#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/vae.h"

#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* float32 reference vs the decoder: same tolerances as tests/test_vae.c (same fp16 weights cast
 * to float32, summation orders differ); the blend itself rounds as torch does. */
#define IMAGE_ATOL       1e-4f
#define IMAGE_RTOL       1e-4f
#define TILE_SAMPLE_SIZE 64

static sd_backend *be;
static sd_vae *vae;
static const sd_vae_config *cfg;

/* A fixture tensor as host float32 (malloc'd) with its 4D shape; NULL (failed check) if absent. */
static float *fixture_f32(const sd_safetensors *file, const char *name, int64_t shape[4]) {
  const sd_st_tensor *t = sd_safetensors_find(file, name);
  CHECK(t && t->ndim == 4, "%s: 4D tensor %s missing", sd_safetensors_path(file), name);
  if (!t || t->ndim != 4)
    return NULL;
  memcpy(shape, t->shape, 4 * sizeof *shape);
  size_t n = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
  float *out = malloc(n * sizeof *out);
  sd_convert_to_f32(t->dtype, t->data, out, n);
  return out;
}

/* Decodes host latents (B, C, h, w) tiled (tile > 0) or whole (tile 0) into host memory. */
static float *decode(const float *latent, const int64_t zshape[4], int tile) {
  const int64_t f = (int64_t)1 << (cfg->num_levels - 1);
  sd_tensor z = sd_tensor_4d(be->ops->act_dtype, zshape[0], zshape[1], zshape[2], zshape[3]);
  sd_tensor image =
      sd_tensor_4d(be->ops->act_dtype, zshape[0], cfg->out_channels, f * zshape[2], f * zshape[3]);
  float *out = malloc((size_t)sd_tensor_numel(&image) * sizeof *out);
  int ok =
      out && sd_tensor_alloc_persistent(be, &z) == 0 && sd_tensor_upload_f32(be, &z, latent) == 0 &&
      sd_tensor_alloc_persistent(be, &image) == 0 &&
      (tile ? sd_vae_decode_tiled(vae, &z, tile, &image) : sd_vae_decode(vae, &z, &image)) == 0 &&
      sd_tensor_download_f32(be, &image, out) == 0;
  CHECK(ok, "decode (tile %d): %s (%s)", tile, sd_error_message(), sd_error_location());
  CHECK(be->arena.used_bytes == 0, "decode (tile %d): %zu arena bytes still in use", tile,
        be->arena.used_bytes);
  sd_tensor_free(be, &z);
  sd_tensor_free(be, &image);
  if (!ok) {
    free(out);
    return NULL;
  }
  return out;
}

static void test_parity(const sd_safetensors *fixture) {
  int64_t zshape[4], ishape[4];
  float *latent = fixture_f32(fixture, "vae.latent", zshape);
  float *want = fixture_f32(fixture, "vae.tiled_image", ishape);
  const char *meta = sd_safetensors_metadata(fixture, "tile_sample_size");
  CHECK(meta && atoi(meta) == TILE_SAMPLE_SIZE, "fixture tile_sample_size %s, expected %d",
        meta ? meta : "(none)", TILE_SAMPLE_SIZE);
  if (!latent || !want)
    goto out;
  const size_t per_image = (size_t)(ishape[1] * ishape[2] * ishape[3]);
  const size_t per_latent = (size_t)(zshape[1] * zshape[2] * zshape[3]);

  float *got = decode(latent, zshape, TILE_SAMPLE_SIZE);
  if (got)
    sd_test_compare_f32("tiled decode vs diffusers tiled_decode", got, want, per_image, IMAGE_ATOL,
                        IMAGE_RTOL);
  /* the whole decode differs from the tiled one well beyond the tolerance: the tiles are real */
  float *whole = decode(latent, zshape, 0);
  if (got && whole) {
    double max_diff = 0.0;
    for (size_t i = 0; i < per_image; i++)
      max_diff = fmax(max_diff, fabs((double)whole[i] - (double)want[i]));
    CHECK(max_diff > 1e-2, "whole decode equals the tiled reference (max diff %.3g)", max_diff);
  }
  free(got);
  free(whole);

  /* batch of 2: each item is the single item's tiled image */
  float *pair = malloc(2 * per_latent * sizeof *pair);
  memcpy(pair, latent, per_latent * sizeof *pair);
  memcpy(pair + per_latent, latent, per_latent * sizeof *pair);
  int64_t pshape[4] = {2, zshape[1], zshape[2], zshape[3]};
  float *got2 = decode(pair, pshape, TILE_SAMPLE_SIZE);
  if (got2) {
    sd_test_compare_f32("tiled decode batch item 0", got2, want, per_image, IMAGE_ATOL, IMAGE_RTOL);
    sd_test_compare_f32("tiled decode batch item 1", got2 + per_image, want, per_image, IMAGE_ATOL,
                        IMAGE_RTOL);
  }
  free(got2);
  free(pair);

  /* A latent within one tile (tile 256 px = 32 latent px >= 19) takes the untiled path, bit for
   * bit sd_vae_decode, as diffusers decodes it whole. */
  float *one_tile = decode(latent, zshape, 4 * TILE_SAMPLE_SIZE);
  float *plain = decode(latent, zshape, 0);
  if (one_tile && plain)
    sd_test_compare_f32("one-tile decode vs sd_vae_decode (exact)", one_tile, plain, per_image,
                        0.0f, 0.0f);
  free(one_tile);
  free(plain);

out:
  free(latent);
  free(want);
}

/* Tile sizes whose kept part is not factor x the stride would leave gaps; they are refused. */
static void test_rejects(void) {
  sd_tensor z = sd_tensor_4d(be->ops->act_dtype, 1, cfg->latent_channels, 13, 19);
  sd_tensor image = sd_tensor_4d(be->ops->act_dtype, 1, cfg->out_channels, 104, 152);
  int ok = sd_tensor_alloc_persistent(be, &z) == 0 && sd_tensor_alloc_persistent(be, &image) == 0;
  CHECK(ok, "setup: %s", sd_error_message());
  const int bad_sizes[3] = {0, 8, 72};
  for (int k = 0; ok && k < 3; k++) {
    sd_error_clear();
    CHECK(sd_vae_decode_tiled(vae, &z, bad_sizes[k], &image) < 0 &&
              strstr(sd_error_message(), "tile size"),
          "tile size %d accepted (%s)", bad_sizes[k], sd_error_message());
  }
  sd_tensor wrong = image;
  wrong.shape[3] -= 8;
  sd_error_clear();
  CHECK(ok && sd_vae_decode_tiled(vae, &z, TILE_SAMPLE_SIZE, &wrong) < 0 &&
            strstr(sd_error_message(), "image must be"),
        "tiled decode accepted a wrong image shape (%s)", sd_error_message());
  sd_tensor_free(be, &z);
  sd_tensor_free(be, &image);
}

int main(void) {
  char folder[512], fixture_path[512];
  snprintf(folder, sizeof folder, "%s/tiny-sd1", SD_TEST_FIXTURES);
  snprintf(fixture_path, sizeof fixture_path, "%s/vae-tiled-sd1.safetensors", SD_TEST_FIXTURES);
  sd_model_files *files = NULL;
  sd_safetensors *fixture = NULL;
  sd_weights *weights = NULL;
  be = sd_backend_cpu_create(0);
  int ok = be && sd_model_files_open(folder, NULL, NULL, &files) == 0 &&
           sd_safetensors_open(fixture_path, &fixture) == 0 &&
           sd_weights_upload(be, files->vae_tensors, "vae", &weights) == 0 &&
           sd_vae_create(be, &files->vae, weights, &vae) == 0;
  CHECK(ok, "setup: %s (%s)", sd_error_message(), sd_error_location());
  if (ok) {
    cfg = sd_vae_get_config(vae);
    test_parity(fixture);
    test_rejects();
  }
  sd_vae_free(vae);
  sd_weights_free(weights);
  sd_safetensors_close(fixture);
  sd_model_files_close(files);
  sd_backend_destroy(be);
  return sd_test_finish();
}
