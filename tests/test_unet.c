/* UNet parity: unet.* (batch 2, square, t = 981) and unet2.* (batch 1, 24x16 latent, t = 500.5)
 * against diffusers' UNet2DConditionModel for the tiny SD 1.x (conv proj_in, 4 heads per level)
 * and SD 2.x (linear proj_in, heads (2, 4, 4)) fixture models on the CPU backend, and an 18x14
 * latent that the SD 1.x model's up blocks must resize to the skips' sizes
 * (tests/fixtures/odd-size-sd1.safetensors, make_odd_size_fixture.py); plus the time
 * projection against a direct double-precision evaluation, the arena being released, and shape
 * and weight errors that name what is wrong. */
#include "test_util.h"

#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/unet.h"

#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* float32 reference vs the UNet; the same fp16 weights cast to float32, summation orders differ.
 * Outputs are O(1) (std 0.35); measured max abs error 2e-6. Tight enough to catch a GroupNorm eps
 * of 1e-5 instead of 1e-6 in the transformers (that moves outputs by 3e-5). */
#define UNET_ATOL 1e-5f
#define UNET_RTOL 1e-5f

/* The time projection's float32 argument t * freq is off by up to ~|t| * 2^-24 from the exact
 * product, which moves sin/cos by that much (6e-5 at t = 1000). */
#define TIME_PROJ_ATOL 1.5e-4f

/* A stage tensor as host float32 (malloc'd) with its shape; NULL (with a failed check) when it is
 * missing or does not have ndim dims. */
static float *stage_f32(const sd_safetensors *file, const char *name, int ndim, int64_t *shape) {
  const sd_st_tensor *t = sd_safetensors_find(file, name);
  CHECK(t && t->ndim == ndim, "%s: tensor %s missing or not %dD", sd_safetensors_path(file), name,
        ndim);
  if (!t || t->ndim != ndim)
    return NULL;
  size_t n = 1;
  for (int i = 0; i < ndim; i++) {
    shape[i] = t->shape[i];
    n *= (size_t)t->shape[i];
  }
  float *out = malloc(n * sizeof *out);
  if (out)
    sd_convert_to_f32(t->dtype, t->data, out, n);
  return out;
}

static void check_time_proj(const sd_unet_config *cfg) {
  const double timesteps[3] = {0.0, 500.5, 999.0};
  int dim = cfg->block_out_channels[0], half = dim / 2;
  float *got = malloc((size_t)dim * sizeof *got), *want = malloc((size_t)dim * sizeof *want);
  for (int k = 0; k < 3; k++) {
    double t = timesteps[k];
    for (int i = 0; i < half; i++) {
      double arg = t * exp(-log(10000.0) * i / (half - cfg->freq_shift));
      want[i] = (float)(cfg->flip_sin_to_cos ? cos(arg) : sin(arg));
      want[half + i] = (float)(cfg->flip_sin_to_cos ? sin(arg) : cos(arg));
    }
    char what[64];
    snprintf(what, sizeof what, "time projection t = %g", t);
    CHECK(sd_unet_time_proj(cfg, t, got) == 0, "time projection: %s", sd_error_message());
    sd_test_compare_f32(what, got, want, (size_t)dim, TIME_PROJ_ATOL, 0.0f);
  }
  free(got);
  free(want);
}

/* Runs stage `<prefix>.sample/timestep/context` and compares with `<prefix>.out`. */
static void check_forward(const char *family, const char *prefix, sd_backend *be, sd_unet *unet,
                          const sd_safetensors *stages) {
  char name[64], what[64];
  int64_t sshape[4], cshape[3], oshape[4], tshape[1];
  snprintf(name, sizeof name, "%s.sample", prefix);
  float *sample_host = stage_f32(stages, name, 4, sshape);
  snprintf(name, sizeof name, "%s.context", prefix);
  float *context_host = stage_f32(stages, name, 3, cshape);
  snprintf(name, sizeof name, "%s.timestep", prefix);
  float *timestep = stage_f32(stages, name, 1, tshape);
  snprintf(name, sizeof name, "%s.out", prefix);
  float *want = stage_f32(stages, name, 4, oshape);
  float *got = NULL;
  sd_dtype dt = be->ops->act_dtype;
  sd_tensor sample = {0}, context = {0}, out = {0};
  if (!sample_host || !context_host || !timestep || !want)
    goto done;

  sample = sd_tensor_4d(dt, sshape[0], sshape[1], sshape[2], sshape[3]);
  context = sd_tensor_3d(dt, cshape[0], cshape[1], cshape[2]);
  out = sd_tensor_4d(dt, oshape[0], oshape[1], oshape[2], oshape[3]);
  size_t n = (size_t)sd_tensor_numel(&out);
  got = malloc(n * sizeof *got);
  int ok = got && sd_tensor_alloc_persistent(be, &sample) == 0 &&
           sd_tensor_upload_f32(be, &sample, sample_host) == 0 &&
           sd_tensor_alloc_persistent(be, &context) == 0 &&
           sd_tensor_upload_f32(be, &context, context_host) == 0 &&
           sd_tensor_alloc_persistent(be, &out) == 0;
  CHECK(ok, "%s %s: setup: %s", family, prefix, sd_error_message());
  if (!ok)
    goto done;
  ok = sd_unet_forward(unet, &sample, timestep[0], &context, &out) == 0 &&
       sd_tensor_download_f32(be, &out, got) == 0;
  CHECK(ok, "%s %s: forward: %s (%s)", family, prefix, sd_error_message(), sd_error_location());
  if (!ok)
    goto done;
  snprintf(what, sizeof what, "%s %s.out", family, prefix);
  sd_test_compare_f32(what, got, want, n, UNET_ATOL, UNET_RTOL);
  CHECK(be->arena.used_bytes == 0, "%s %s: %zu arena bytes still in use after forward", family,
        prefix, be->arena.used_bytes);
  fprintf(stderr, "     %s %s: arena peak %.1f KiB\n", family, prefix,
          (double)be->arena.peak_bytes / 1024.0);

  /* A context whose batch differs from the sample's is refused. */
  if (cshape[0] > 1) {
    sd_tensor short_context = sd_tensor_slice0(&context, 0, cshape[0] - 1);
    sd_error_clear();
    CHECK(sd_unet_forward(unet, &sample, timestep[0], &short_context, &out) < 0 &&
              strstr(sd_error_message(), "context"),
          "%s %s: forward accepted a context batch mismatch (%s)", family, prefix,
          sd_error_message());
  }

done:
  sd_tensor_free(be, &sample);
  sd_tensor_free(be, &context);
  sd_tensor_free(be, &out);
  free(sample_host);
  free(context_host);
  free(timestep);
  free(want);
  free(got);
}

/* A config that disagrees with the weights fails at create, naming the tensor. */
static void check_bad_config(const char *family, sd_backend *be, const sd_unet_config *good,
                             const sd_weights *weights) {
  sd_unet_config bad = *good;
  bad.cross_attention_dim *= 2;
  sd_unet *model = NULL;
  sd_error_clear();
  CHECK(sd_unet_create(be, &bad, weights, &model) < 0 && !model,
        "%s: create accepted a wrong cross_attention_dim", family);
  CHECK(strstr(sd_error_message(), "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k") !=
            NULL,
        "%s: error does not name the cross-attention key weight: %s", family, sd_error_message());

  bad = *good;
  bad.layers_per_block += 1;
  sd_error_clear();
  CHECK(sd_unet_create(be, &bad, weights, &model) < 0 && !model,
        "%s: create accepted a wrong layers_per_block", family);
  char missing[64];
  snprintf(missing, sizeof missing, "down_blocks.0.resnets.%d.", good->layers_per_block);
  CHECK(strstr(sd_error_message(), missing) != NULL, "%s: error does not name %s: %s", family,
        missing, sd_error_message());
}

/* The model asks for exactly the tensors the checkpoint holds, with their shapes: none left
 * unused (a forgotten bias or norm would show here), none extra. */
static void check_weight_coverage(const char *family, const sd_unet_config *cfg,
                                  const sd_tensor_map *map) {
  sd_weights *recorder = NULL;
  sd_unet *model = NULL;
  int ok = sd_weights_recorder_create(&recorder) == 0 &&
           sd_unet_create(NULL, cfg, recorder, &model) == 0;
  CHECK(ok, "%s: recording the UNet's weights: %s", family, sd_error_message());
  if (ok) {
    size_t count = sd_weights_count(recorder), matched = 0;
    CHECK(count == sd_tensor_map_count(map), "%s: UNet asks for %zu tensors, checkpoint has %zu",
          family, count, sd_tensor_map_count(map));
    for (size_t i = 0; i < count; i++) {
      const char *name = sd_weights_name_at(recorder, i);
      const sd_tensor *want = sd_weights_at(recorder, i);
      const sd_st_tensor *have = sd_tensor_map_get(map, name);
      int same = have && have->ndim == want->ndim;
      for (int d = 0; same && d < want->ndim; d++)
        same = have->shape[d] == want->shape[d];
      CHECK(same, "%s: UNet tensor %s absent from the checkpoint or shaped differently", family,
            name);
      matched += (size_t)same;
    }
    CHECK(matched == count, "%s: %zu of %zu tensors matched", family, matched, count);
  }
  sd_unet_free(model);
  sd_weights_free(recorder);
}

/* transformer_layers_per_block per level, mirrored on the way up: for the tiny SD 1.x layout with
 * (2, 1, 3), diffusers' state_dict holds 634 tensors, including the names checked here. */
static void check_transformer_layers(const sd_unet_config *tiny_sd1) {
  sd_unet_config cfg = *tiny_sd1;
  cfg.transformer_layers_per_block[0] = 2;
  cfg.transformer_layers_per_block[1] = 1;
  cfg.transformer_layers_per_block[2] = 3;
  sd_weights *recorder = NULL;
  sd_unet *model = NULL;
  int ok = sd_weights_recorder_create(&recorder) == 0 &&
           sd_unet_create(NULL, &cfg, recorder, &model) == 0;
  CHECK(ok, "transformer layers (2, 1, 3): %s", sd_error_message());
  if (ok) {
    CHECK(sd_weights_count(recorder) == 634, "transformer layers (2, 1, 3): %zu tensors, want 634",
          sd_weights_count(recorder));
    const char *present[] = {"down_blocks.0.attentions.1.transformer_blocks.1.norm1.weight",
                             "up_blocks.2.attentions.2.transformer_blocks.1.norm1.weight",
                             "mid_block.attentions.0.transformer_blocks.2.norm1.weight"};
    const char *absent[] = {"down_blocks.1.attentions.0.transformer_blocks.1.norm1.weight",
                            "up_blocks.1.attentions.0.transformer_blocks.1.norm1.weight"};
    for (size_t i = 0; i < sizeof present / sizeof *present; i++)
      CHECK(sd_weights_find(recorder, present[i]) != NULL, "transformer layers: %s not asked for",
            present[i]);
    for (size_t i = 0; i < sizeof absent / sizeof *absent; i++)
      CHECK(sd_weights_find(recorder, absent[i]) == NULL, "transformer layers: %s asked for",
            absent[i]);
  }
  sd_unet_free(model);
  sd_weights_free(recorder);
}

static void test_model(const char *family) {
  char folder[512], stages_path[512];
  snprintf(folder, sizeof folder, "%s/tiny-%s", SD_TEST_FIXTURES, family);
  snprintf(stages_path, sizeof stages_path, "%s/stages-%s.safetensors", SD_TEST_FIXTURES, family);

  sd_model_files *files = NULL;
  sd_safetensors *stages = NULL;
  sd_backend *be = sd_backend_cpu_create(0);
  sd_weights *weights = NULL;
  sd_unet *unet = NULL;

  int ok = be && sd_model_files_open(folder, NULL, NULL, &files) == 0 &&
           sd_safetensors_open(stages_path, &stages) == 0 &&
           sd_weights_upload(be, files->unet_tensors, "unet", &weights) == 0 &&
           sd_unet_create(be, &files->unet, weights, &unet) == 0;
  CHECK(ok, "%s: setup: %s (%s)", family, sd_error_message(), sd_error_location());
  if (!ok)
    goto out;

  check_time_proj(&files->unet);
  check_forward(family, "unet", be, unet, stages);
  check_forward(family, "unet2", be, unet, stages);
  if (files->family == SD_FAMILY_SD1) {
    char odd_path[512];
    snprintf(odd_path, sizeof odd_path, "%s/odd-size-sd1.safetensors", SD_TEST_FIXTURES);
    sd_safetensors *odd = NULL;
    CHECK(sd_safetensors_open(odd_path, &odd) == 0, "open %s: %s", odd_path, sd_error_message());
    if (odd)
      check_forward("sd1 odd-size", "unet", be, unet, odd);
    sd_safetensors_close(odd);
  }
  check_bad_config(family, be, &files->unet, weights);
  check_weight_coverage(family, &files->unet, files->unet_tensors);
  if (files->family == SD_FAMILY_SD1)
    check_transformer_layers(&files->unet);

out:
  sd_unet_free(unet);
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
