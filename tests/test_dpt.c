/* The depth estimator against transformers: tests/fixtures/depth/ (tests/reference/
 * make_dpt_fixtures.py) holds a tiny DPT-hybrid (BiT backbone) and a tiny ViT DPT and every
 * stage's output for one input. Each stage sdbatch computes (BiT stem and stages, embeddings,
 * each ViT layer, reassemble, neck convs, fusion, predicted depth) must be within
 * 1e-4 * max|want| + 1e-4 |want| of transformers' float32 result (same weights; summation order,
 * the host-side weight standardization and batch-norm folding differ in rounding only). Also
 * sd_op_interpolate against torch's F.interpolate (bilinear and bicubic, both align_corners, up,
 * down and identity sizes) within 1e-5 + 1e-5 |want|, and config errors naming file and field. */
#include "test_util.h"

#include "io/dpt_files.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/dpt.h"

#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEPTH_FIXTURES SD_TEST_FIXTURES "/depth"
#define STAGE_TOL      1e-4f

typedef struct stage_check {
  sd_backend *be;
  const sd_safetensors *ref;
  const char *model;
  int seen;
} stage_check;

static float *host_copy(const sd_st_tensor *t) {
  size_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= (size_t)t->shape[i];
  float *out = malloc(n * sizeof *out);
  sd_convert_to_f32(t->dtype, t->data, out, n);
  return out;
}

static void compare_stage(stage_check *c, const char *name, const sd_tensor *t) {
  const sd_st_tensor *want = sd_safetensors_find(c->ref, name);
  CHECK(want != NULL, "%s: stage %s missing in the fixture", c->model, name);
  if (!want)
    return;
  size_t n = (size_t)sd_tensor_numel(t), wn = 1;
  for (int i = 0; i < want->ndim; i++)
    wn *= (size_t)want->shape[i];
  CHECK(n == wn, "%s: stage %s has %zu values, transformers %zu", c->model, name, n, wn);
  if (n != wn)
    return;
  float *ref = host_copy(want), *got = malloc(n * sizeof *got);
  CHECK(sd_tensor_download_f32(c->be, t, got) == 0, "download %s", name);
  float amax = 0.0f;
  for (size_t i = 0; i < n; i++)
    amax = fabsf(ref[i]) > amax ? fabsf(ref[i]) : amax;
  char what[128];
  snprintf(what, sizeof what, "%s %s", c->model, name);
  sd_test_compare_f32(what, got, ref, n, STAGE_TOL * amax, STAGE_TOL);
  c->seen++;
  free(ref);
  free(got);
}

static void hook(void *ctx, const char *name, const sd_tensor *t) {
  compare_stage(ctx, name, t);
}

static void check_model(sd_backend *be, const char *folder, const char *stages, int want_stages) {
  char dir[1024], path[1024];
  snprintf(dir, sizeof dir, "%s/%s", DEPTH_FIXTURES, folder);
  snprintf(path, sizeof path, "%s/%s", DEPTH_FIXTURES, stages);
  sd_dpt_files *files = NULL;
  sd_weights *weights = NULL;
  sd_dpt *model = NULL;
  sd_safetensors *ref = NULL;
  int ok = sd_dpt_files_open(dir, &files) == 0 && sd_safetensors_open(path, &ref) == 0 &&
           sd_weights_upload(be, files->tensors, "depth_estimator", &weights) == 0 &&
           sd_dpt_create(be, &files->cfg, weights, &model) == 0;
  CHECK(ok, "%s: setup: %s", folder, sd_error_message());
  if (!ok)
    goto out;
  stage_check c = {be, ref, folder, 0};
  sd_dpt_set_stage_hook(model, hook, &c);
  const sd_st_tensor *px = sd_safetensors_find(ref, "pixel_values");
  const sd_st_tensor *want = sd_safetensors_find(ref, "predicted_depth");
  sd_tensor pixels = sd_tensor_make(be->ops->act_dtype, px->ndim, px->shape);
  sd_tensor depth = sd_tensor_make(be->ops->act_dtype, want->ndim, want->shape);
  float *host = host_copy(px);
  ok = sd_tensor_alloc_persistent(be, &pixels) == 0 &&
       sd_tensor_upload_f32(be, &pixels, host) == 0 && sd_tensor_alloc_persistent(be, &depth) == 0;
  free(host);
  CHECK(ok, "%s: tensors: %s", folder, sd_error_message());
  if (ok) {
    size_t used = be->arena.used_bytes;
    int rc = sd_dpt_forward(model, &pixels, &depth);
    CHECK(rc == 0, "%s: forward: %s", folder, sd_error_message());
    if (rc == 0)
      compare_stage(&c, "predicted_depth", &depth);
    CHECK(be->arena.used_bytes == used, "%s: forward left %zu arena bytes in use", folder,
          be->arena.used_bytes - used);
    sd_dpt_set_stage_hook(model, NULL, NULL);
    /* ViT at 48x48: position embeddings interpolated to a 3x3 grid */
    const sd_st_tensor *px48 = sd_safetensors_find(ref, "pixel_values.48");
    const sd_st_tensor *want48 = sd_safetensors_find(ref, "predicted_depth.48");
    CHECK(!px48 == !!strstr(folder, "hybrid"), "%s: 48x48 case present only for the ViT", folder);
    if (px48 && want48) {
      sd_tensor p48 = sd_tensor_make(be->ops->act_dtype, 4, px48->shape);
      sd_tensor d48 = sd_tensor_make(be->ops->act_dtype, 3, want48->shape);
      float *h48 = host_copy(px48);
      CHECK(sd_tensor_alloc_persistent(be, &p48) == 0 && sd_tensor_upload_f32(be, &p48, h48) == 0 &&
                sd_tensor_alloc_persistent(be, &d48) == 0 && sd_dpt_forward(model, &p48, &d48) == 0,
            "%s: 48x48 forward: %s", folder, sd_error_message());
      compare_stage(&c, "predicted_depth.48", &d48);
      free(h48);
      sd_tensor_free(be, &p48);
      sd_tensor_free(be, &d48);
    }
    /* a size the model cannot take is refused, naming the depth estimator */
    sd_tensor odd = sd_tensor_4d(be->ops->act_dtype, 1, 3, 40, 40);
    sd_error_clear();
    if (sd_tensor_alloc_persistent(be, &odd) == 0) {
      CHECK(sd_dpt_forward(model, &odd, &depth) == -1 && strstr(sd_error_message(), "depth"),
            "%s: a 40x40 input was not refused clearly: %s", folder, sd_error_message());
      sd_tensor_free(be, &odd);
    }
  }
  CHECK(c.seen == want_stages, "%s: %d stages compared, expected %d", folder, c.seen, want_stages);
  sd_tensor_free(be, &pixels);
  sd_tensor_free(be, &depth);
out:
  sd_dpt_free(model);
  sd_weights_free(weights);
  sd_dpt_files_close(files);
  sd_safetensors_close(ref);
}

/* sd_op_interpolate against torch's F.interpolate on (2, 3, 13, 17). */
static void check_interpolate(sd_backend *be) {
  char path[1024];
  snprintf(path, sizeof path, "%s/resize.safetensors", DEPTH_FIXTURES);
  sd_safetensors *ref = NULL;
  CHECK(sd_safetensors_open(path, &ref) == 0, "%s", sd_error_message());
  if (!ref)
    return;
  const sd_st_tensor *xs = sd_safetensors_find(ref, "x");
  sd_tensor x = sd_tensor_make(SD_DTYPE_F32, 4, xs->shape);
  float *hx = host_copy(xs);
  CHECK(sd_tensor_alloc_persistent(be, &x) == 0 && sd_tensor_upload_f32(be, &x, hx) == 0,
        "upload x");
  int cases = 0;
  for (size_t i = 0; i < sd_safetensors_count(ref); i++) {
    const sd_st_tensor *t = sd_safetensors_at(ref, i);
    if (strcmp(t->name, "x") == 0 || strncmp(t->name, "depth_map.", 10) == 0)
      continue;
    bool cubic = strncmp(t->name, "bicubic", 7) == 0;
    bool ac = strstr(t->name, ".1.") != NULL;
    sd_tensor y = sd_tensor_make(SD_DTYPE_F32, 4, t->shape);
    float *want = host_copy(t), *got = malloc((size_t)sd_tensor_numel(&y) * sizeof *got);
    CHECK(sd_tensor_alloc_persistent(be, &y) == 0 &&
              sd_op_interpolate(be, &x, cubic ? SD_INTERP_BICUBIC : SD_INTERP_BILINEAR, ac, &y) ==
                  0 &&
              sd_tensor_download_f32(be, &y, got) == 0,
          "interpolate %s: %s", t->name, sd_error_message());
    char what[96];
    snprintf(what, sizeof what, "interpolate vs torch %s", t->name);
    sd_test_compare_f32(what, got, want, (size_t)sd_tensor_numel(&y), 1e-5f, 1e-5f);
    sd_tensor_free(be, &y);
    free(want);
    free(got);
    cases++;
  }
  CHECK(cases == 16, "resize fixture: %d cases, expected 16", cases);
  sd_tensor_free(be, &x);
  free(hx);
  sd_safetensors_close(ref);
}

/* A copy of the hybrid config with one field's text replaced must be refused naming it. */
static void check_config_error(const char *from, const char *to, const char *field) {
  char src[1024];
  snprintf(src, sizeof src, "%s/tiny-dpt-hybrid/config.json", DEPTH_FIXTURES);
  char *text = sd_test_read_file(src, NULL);
  CHECK(text != NULL, "read %s", src);
  if (!text)
    return;
  char *at = strstr(text, from);
  CHECK(at != NULL, "'%s' not in the fixture config", from);
  char path[] = "/tmp/sd_dpt_config_XXXXXX";
  int fd = mkstemp(path);
  if (at && fd >= 0) {
    FILE *f = fdopen(fd, "w");
    fprintf(f, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    fclose(f);
    sd_dpt_config cfg;
    sd_error_clear();
    int rc = sd_dpt_config_read(path, &cfg);
    CHECK(rc == -1 && strstr(sd_error_message(), path) && strstr(sd_error_message(), field),
          "config with %s: rc %d, error '%s' should name the file and '%s'", to, rc,
          sd_error_message(), field);
    unlink(path);
  }
  free(text);
}

/* A DPT-hybrid config without backbone_config (transformers then builds its default BitConfig)
 * and without readout_type / neck_ignore_stages reads with those defaults. */
static void check_config_defaults(void) {
  char path[] = "/tmp/sd_dpt_defaults_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  if (fd < 0)
    return;
  FILE *f = fdopen(fd, "w");
  fputs("{\"model_type\": \"dpt\", \"is_hybrid\": true, \"backbone_out_indices\": [2, 5, 8, 11],"
        " \"neck_hidden_sizes\": [256, 512, 768, 768], \"reassemble_factors\": [1, 1, 1, 0.5]}",
        f);
  fclose(f);
  sd_dpt_config cfg;
  int rc = sd_dpt_config_read(path, &cfg);
  CHECK(rc == 0, "default hybrid config: %s", sd_error_message());
  CHECK(rc == 0 && cfg.is_hybrid && cfg.hidden_size == 768 && cfg.image_size == 384 &&
            cfg.bit_embedding_size == 64 && cfg.bit_num_groups == 32 && cfg.bit_depths[0] == 3 &&
            cfg.bit_depths[2] == 9 && cfg.bit_hidden_sizes[2] == 1024 &&
            cfg.bit_embedding_dynamic_padding && cfg.reassemble_down[3] == 2,
        "default hybrid config: BiT %d %d %d/%d, hidden %d", cfg.bit_embedding_size,
        cfg.bit_num_groups, cfg.bit_depths[2], cfg.bit_hidden_sizes[2], cfg.hidden_size);
  unlink(path);
}

int main(void) {
  sd_backend *be = sd_backend_cpu_create(0);
  if (!be) {
    fprintf(stderr, "cpu backend: %s\n", sd_error_message());
    return 1;
  }
  check_interpolate(be);
  /* hybrid: 4 BiT + embeddings + 4 layers + 2 reassemble + 4 convs + 4 fusion + depth */
  check_model(be, "tiny-dpt-hybrid", "stages-hybrid.safetensors", 20);
  /* ViT: embeddings + 4 layers + 4 reassemble + 4 convs + 4 fusion + depth, depth at 48x48 */
  check_model(be, "tiny-dpt-vit", "stages-vit.safetensors", 19);
  check_config_defaults();
  check_config_error("\"readout_type\": \"project\"", "\"readout_type\": \"add\"", "readout_type");
  check_config_error("\"layer_type\": \"bottleneck\"", "\"layer_type\": \"preactivation\"",
                     "layer_type");
  check_config_error("\"hidden_size\": 32", "\"hidden_size\": 1e9", "hidden_size");
  check_config_error("\"num_attention_heads\": 4", "\"num_attention_heads\": 5", "heads");
  check_config_error("\"add_projection\": false", "\"add_projection\": true", "add_projection");
  check_config_error("\"reassemble_factors\": [\n    1,", "\"reassemble_factors\": [\n    0.3,",
                     "reassemble_factors[0]");
  sd_backend_destroy(be);
  return sd_test_finish();
}
