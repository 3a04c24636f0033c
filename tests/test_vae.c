/* VAE decoder parity: vae.latent -> vae.image and vae2.latent -> vae2.image (non-square) against
 * diffusers' AutoencoderKL.decode for the tiny SD 1.x and SD 2.x fixture models on the CPU
 * backend; plus the arena being released, shape errors and weight errors naming the tensor. */
#include "test_util.h"

#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/vae.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* float32 reference vs the decoder; same fp16 weights cast to float32, summation order differs. */
#define IMAGE_ATOL 1e-4f
#define IMAGE_RTOL 1e-4f

/* A stage tensor as host float32 (malloc'd); NULL (with a failed check) when missing or 4D shape
 * differs from (b, c, *, *) — the spatial size is taken from the file. */
static float *stage_f32(const sd_safetensors *file, const char *name, int64_t b, int64_t c,
                        int64_t shape[4]) {
  const sd_st_tensor *t = sd_safetensors_find(file, name);
  CHECK(t != NULL, "%s: tensor %s missing", sd_safetensors_path(file), name);
  if (!t)
    return NULL;
  int ok = t->ndim == 4 && t->shape[0] == b && t->shape[1] == c;
  CHECK(ok, "%s: tensor %s is not (%lld, %lld, H, W)", sd_safetensors_path(file), name,
        (long long)b, (long long)c);
  if (!ok)
    return NULL;
  memcpy(shape, t->shape, 4 * sizeof *shape);
  size_t n = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
  float *out = malloc(n * sizeof *out);
  sd_convert_to_f32(t->dtype, t->data, out, n);
  return out;
}

/* Decodes stage `<prefix>.latent` and compares with `<prefix>.image`. */
static void check_decode(const char *family, const char *prefix, sd_backend *be, sd_vae *vae,
                         const sd_vae_config *cfg, const sd_safetensors *stages) {
  char name[64], what[64];
  int64_t zshape[4], ishape[4];
  snprintf(name, sizeof name, "%s.latent", prefix);
  float *latent = stage_f32(stages, name, 1, cfg->latent_channels, zshape);
  snprintf(name, sizeof name, "%s.image", prefix);
  float *want = stage_f32(stages, name, 1, cfg->out_channels, ishape);
  float *got = NULL;
  sd_tensor z = sd_tensor_4d(be->ops->act_dtype, zshape[0], zshape[1], zshape[2], zshape[3]);
  sd_tensor image = sd_tensor_4d(be->ops->act_dtype, ishape[0], ishape[1], ishape[2], ishape[3]);
  if (!latent || !want)
    goto out;
  CHECK(ishape[2] == 8 * zshape[2] && ishape[3] == 8 * zshape[3],
        "%s %s: image is not 8x the latent size", family, prefix);

  const size_t n = (size_t)sd_tensor_numel(&image);
  got = malloc(n * sizeof *got);
  int ok = sd_tensor_alloc_persistent(be, &z) == 0 && sd_tensor_upload_f32(be, &z, latent) == 0 &&
           sd_tensor_alloc_persistent(be, &image) == 0 && sd_vae_decode(vae, &z, &image) == 0 &&
           sd_tensor_download_f32(be, &image, got) == 0;
  CHECK(ok, "%s %s: decode: %s (%s)", family, prefix, sd_error_message(), sd_error_location());
  if (!ok)
    goto out;
  snprintf(what, sizeof what, "%s %s.image", family, prefix);
  sd_test_compare_f32(what, got, want, n, IMAGE_ATOL, IMAGE_RTOL);
  CHECK(be->arena.used_bytes == 0, "%s %s: %zu arena bytes still in use after decode", family,
        prefix, be->arena.used_bytes);

  /* An output of the wrong size is refused with the expected shape in the message. */
  sd_tensor wrong = image;
  wrong.shape[3] -= 8;
  sd_error_clear();
  CHECK(sd_vae_decode(vae, &z, &wrong) < 0 && strstr(sd_error_message(), "image must be"),
        "%s %s: decode accepted a wrong image shape (%s)", family, prefix, sd_error_message());

out:
  sd_tensor_free(be, &z);
  sd_tensor_free(be, &image);
  free(latent);
  free(want);
  free(got);
}

static void test_model(const char *family) {
  char folder[512], stages_path[512];
  snprintf(folder, sizeof folder, "%s/tiny-%s", SD_TEST_FIXTURES, family);
  snprintf(stages_path, sizeof stages_path, "%s/stages-%s.safetensors", SD_TEST_FIXTURES, family);

  sd_model_files *files = NULL;
  sd_safetensors *stages = NULL;
  sd_backend *be = sd_backend_cpu_create(0);
  sd_weights *weights = NULL;
  sd_vae *vae = NULL;

  int ok = be && sd_model_files_open(folder, NULL, NULL, &files) == 0 &&
           sd_safetensors_open(stages_path, &stages) == 0 &&
           sd_weights_upload(be, files->vae_tensors, "vae", &weights) == 0 &&
           sd_vae_create(be, &files->vae, weights, &vae) == 0;
  CHECK(ok, "%s: setup: %s (%s)", family, sd_error_message(), sd_error_location());
  if (!ok)
    goto out;

  check_decode(family, "vae", be, vae, &files->vae, stages);
  check_decode(family, "vae2", be, vae, &files->vae, stages);

  /* A config that disagrees with the weights fails at create, naming the tensor. */
  sd_vae_config bad = files->vae;
  bad.layers_per_block += 1;
  sd_vae *bad_model = NULL;
  sd_error_clear();
  CHECK(sd_vae_create(be, &bad, weights, &bad_model) < 0 && !bad_model,
        "%s: create accepted a wrong layers_per_block", family);
  char missing[96];
  snprintf(missing, sizeof missing, "decoder.up_blocks.0.resnets.%d.norm1.weight",
           bad.layers_per_block);
  CHECK(strstr(sd_error_message(), missing) != NULL, "%s: error does not name %s: %s", family,
        missing, sd_error_message());

out:
  sd_vae_free(vae);
  sd_weights_free(weights);
  sd_safetensors_close(stages);
  sd_model_files_close(files);
  sd_backend_destroy(be);
}

int main(void) {
  test_model("sd1");
  test_model("sd2");
  return sd_test_finish();
}
