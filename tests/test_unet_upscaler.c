/* The UNet features of the x4 upscaler against diffusers: tests/fixtures/upscaler-unet/ (made by
 * tests/reference/make_upscaler_unet_fixture.py) is a tiny UNet2DConditionModel with 7 input
 * channels, a class embedding (num_class_embeds 100) and only_cross_attention [true, true, false]
 * (up blocks reversed, mid block without), cross_attention_dim 24 != the channels so attn1's
 * k/v weights change shape. Its output for a batch of 2 with labels [20, 99] must be within
 * 1e-5 + 1e-5 |want| of diffusers' float32 result; the config read must give the features; a
 * missing or unexpected label list and a label past the table are refused. */
#include "test_util.h"

#include "io/config_json.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/unet.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR SD_TEST_FIXTURES "/upscaler-unet"

static float *host(const sd_safetensors *f, const char *name, sd_tensor *t, sd_backend *be) {
  const sd_st_tensor *s = sd_safetensors_find(f, name);
  CHECK(s != NULL, "stage %s missing", name);
  if (!s)
    return NULL;
  size_t n = 1;
  for (int i = 0; i < s->ndim; i++)
    n *= (size_t)s->shape[i];
  float *out = malloc(n * sizeof *out);
  sd_convert_to_f32(s->dtype, s->data, out, n);
  if (t) {
    *t = sd_tensor_make(be->ops->act_dtype, s->ndim, s->shape);
    CHECK(sd_tensor_alloc_persistent(be, t) == 0 && sd_tensor_upload_f32(be, t, out) == 0,
          "upload %s", name);
  }
  return out;
}

int main(void) {
  sd_unet_config cfg;
  int rc = sd_unet_config_read(DIR "/config.json", &cfg);
  CHECK(rc == 0, "config: %s", sd_error_message());
  if (rc < 0)
    return sd_test_finish();
  CHECK(cfg.in_channels == 7 && cfg.num_class_embeds == 100 && cfg.only_cross_attention[0] &&
            cfg.only_cross_attention[1] && !cfg.only_cross_attention[2],
        "config: in_channels %d, num_class_embeds %d, only_cross_attention %d %d %d",
        cfg.in_channels, cfg.num_class_embeds, cfg.only_cross_attention[0],
        cfg.only_cross_attention[1], cfg.only_cross_attention[2]);
  sd_backend *be = sd_backend_cpu_create(0);
  sd_safetensors *file = NULL, *stages = NULL;
  sd_tensor_map *map = sd_tensor_map_create();
  sd_weights *weights = NULL;
  sd_unet *unet = NULL;
  int ok = be && map &&
           sd_safetensors_open(DIR "/diffusion_pytorch_model.safetensors", &file) == 0 &&
           sd_safetensors_open(DIR "/stages.safetensors", &stages) == 0;
  for (size_t i = 0; ok && i < sd_safetensors_count(file); i++) {
    const sd_st_tensor *t = sd_safetensors_at(file, i);
    ok = sd_tensor_map_put(map, t->name, t->dtype, t->ndim, t->shape, t->data) == 0;
  }
  ok = ok && sd_weights_upload(be, map, "unet", &weights) == 0 &&
       sd_unet_create(be, &cfg, weights, &unet) == 0;
  CHECK(ok, "setup: %s", sd_error_message());
  if (ok) {
    sd_tensor sample, context, out;
    float *hs = host(stages, "sample", &sample, be), *hc = host(stages, "context", &context, be);
    float *t = host(stages, "timestep", NULL, be), *want = host(stages, "out", &out, be);
    const sd_st_tensor *labels = sd_safetensors_find(stages, "labels");
    CHECK(labels && labels->dtype == SD_DTYPE_I32, "labels missing");
    size_t n = (size_t)sd_tensor_numel(&out);
    float *got = malloc(n * sizeof *got);
    rc = sd_unet_forward_labels(unet, &sample, t[0], labels->data, &context, &out);
    CHECK(rc == 0, "forward: %s", sd_error_message());
    if (rc == 0 && sd_tensor_download_f32(be, &out, got) == 0)
      sd_test_compare_f32("upscaler unet out (class labels, only_cross_attention)", got, want, n,
                          1e-5f, 1e-5f);
    sd_error_clear();
    CHECK(sd_unet_forward(unet, &sample, t[0], &context, &out) == -1 &&
              strstr(sd_error_message(), "num_class_embeds"),
          "a forward without labels was not refused: %s", sd_error_message());
    const int32_t bad[2] = {20, 100};
    CHECK(sd_unet_forward_labels(unet, &sample, t[0], bad, &context, &out) == -1,
          "label 100 of a 100-row table was accepted");
    free(hs), free(hc), free(t), free(want), free(got);
    sd_tensor_free(be, &sample);
    sd_tensor_free(be, &context);
    sd_tensor_free(be, &out);
  }
  sd_unet_free(unet);
  sd_weights_free(weights);
  sd_tensor_map_free(map);
  sd_safetensors_close(file);
  sd_safetensors_close(stages);
  sd_backend_destroy(be);
  return sd_test_finish();
}
