/* The x4 upscaler's VAE shape: a three-level AutoencoderKL (decoder upsampling by 4, scaling
 * factor 0.08333) from tests/fixtures/upscaler-vae/ (make_upscaler_vae_fixture.py) must decode a
 * (1, 4, 6, 5) latent to diffusers' (1, 3, 24, 20) image within 1e-4 + 1e-4 |want| (the txt2img
 * VAE tolerance), and its config must read back the factor and the scaling factor. */
#include "test_util.h"

#include "io/config_json.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/vae.h"

#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define DIR SD_TEST_FIXTURES "/upscaler-vae"

int main(void) {
  sd_vae_config cfg;
  int rc = sd_vae_config_read(DIR "/config.json", &cfg);
  CHECK(rc == 0, "config: %s", sd_error_message());
  if (rc < 0)
    return sd_test_finish();
  CHECK(cfg.num_levels == 3 && fabsf(cfg.scaling_factor - 0.08333f) < 1e-7f,
        "config: %d levels, scaling_factor %g", cfg.num_levels, cfg.scaling_factor);
  sd_backend *be = sd_backend_cpu_create(0);
  sd_safetensors *file = NULL, *stages = NULL;
  sd_tensor_map *map = sd_tensor_map_create();
  sd_weights *weights = NULL;
  sd_vae *vae = NULL;
  int ok = be && map &&
           sd_safetensors_open(DIR "/diffusion_pytorch_model.safetensors", &file) == 0 &&
           sd_safetensors_open(DIR "/stages.safetensors", &stages) == 0;
  for (size_t i = 0; ok && i < sd_safetensors_count(file); i++) {
    const sd_st_tensor *t = sd_safetensors_at(file, i);
    ok = sd_tensor_map_put(map, t->name, t->dtype, t->ndim, t->shape, t->data) == 0;
  }
  ok = ok && sd_weights_upload(be, map, "vae", &weights) == 0 &&
       sd_vae_create(be, &cfg, weights, &vae) == 0;
  CHECK(ok, "setup: %s", sd_error_message());
  const sd_st_tensor *ls = ok ? sd_safetensors_find(stages, "latent") : NULL;
  const sd_st_tensor *is = ok ? sd_safetensors_find(stages, "image") : NULL;
  if (ls && is) {
    sd_tensor z = sd_tensor_make(SD_DTYPE_F32, 4, ls->shape);
    sd_tensor image = sd_tensor_make(SD_DTYPE_F32, 4, is->shape);
    size_t n = (size_t)sd_tensor_numel(&image);
    float *got = malloc(n * sizeof *got);
    rc = sd_tensor_alloc_persistent(be, &z) == 0 && sd_tensor_upload_f32(be, &z, ls->data) == 0 &&
                 sd_tensor_alloc_persistent(be, &image) == 0 &&
                 sd_vae_decode(vae, &z, &image) == 0 && sd_tensor_download_f32(be, &image, got) == 0
             ? 0
             : -1;
    CHECK(rc == 0, "decode: %s", sd_error_message());
    if (rc == 0)
      sd_test_compare_f32("x4 VAE decode (1, 4, 6, 5) -> (1, 3, 24, 20)", got, is->data, n, 1e-4f,
                          1e-4f);
    free(got);
    sd_tensor_free(be, &z);
    sd_tensor_free(be, &image);
  }
  sd_vae_free(vae);
  sd_weights_free(weights);
  sd_tensor_map_free(map);
  sd_safetensors_close(file);
  sd_safetensors_close(stages);
  sd_backend_destroy(be);
  return sd_test_finish();
}
