/* LoRA and textual-inversion parity: sdbatch with adapters against diffusers with the same files
 * (tests/reference/make_adapter_fixtures.py: diffusers/peft, old attention-processor and kohya-ss
 * LoRAs with LoCon convs and text-encoder layers, several scales, two LoRAs at once, a
 * one-vector diffusers embedding and a three-vector A1111 one), on the tiny SD 1.x model and (a
 * kohya LoRA with an embedding) the tiny SD 2.x model, CPU backend. Per case: the tokenizer ids of
 * the converted prompts (exact), the text encoder output (1e-4 abs + 1e-4 rel: diffusers runs the
 * LoRA as a separate low-rank branch, sdbatch merges it into the weights, so the sums are ordered
 * differently), the UNet output (same tolerance), and the whole image with the txt2img tolerances
 * (latents 1e-3 abs + 1e-3 rel; pixels within 1 level, at least 99.9% exact). Then bad files: each
 * error names the file and the key. */
#include "test_util.h"

#include "kernels/error.h"
#include "worker/io/embedding.h"
#include "worker/io/safetensors.h"
#include "worker/pipeline/engine_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STAGE_ATOL 1e-4f
#define STAGE_RTOL 1e-4f

static char adapters_dir[1024], model_dir[1024];

static const sd_st_tensor *require(const sd_safetensors *file, const char *name) {
  const sd_st_tensor *t = sd_safetensors_find(file, name);
  CHECK(t != NULL, "fixture tensor %s missing", name);
  return t;
}

static float *to_f32(const sd_st_tensor *t, size_t *n) {
  sd_tensor header = sd_tensor_make(t->dtype, t->ndim, t->shape);
  *n = (size_t)sd_tensor_numel(&header);
  float *out = malloc(*n * sizeof *out);
  if (out)
    sd_convert_to_f32(t->dtype, t->data, out, *n);
  return out;
}

/* Engine params for a case's "loras" [[file, scale]...] and "embeddings" [[file, token|null]...];
 * the specs' paths are written into paths (kept by the caller). */
static int case_params(const cJSON *c, sd_engine_params *params, sd_lora_spec *loras,
                       sd_embedding_spec *embeddings, char (*paths)[1024]) {
  sd_engine_params_init(params);
  params->model_path = model_dir;
  int used = 0;
  const cJSON *model = cJSON_GetObjectItem(c, "model");
  if (cJSON_IsString(model)) {
    snprintf(paths[used], 1024, "%s/%s", SD_TEST_FIXTURES, model->valuestring);
    params->model_path = paths[used++];
  }
  const cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItem(c, "loras")) {
    snprintf(paths[used], 1024, "%s/%s", adapters_dir, cJSON_GetArrayItem(e, 0)->valuestring);
    loras[params->lora_count].path = paths[used++];
    loras[params->lora_count++].scale = (float)cJSON_GetArrayItem(e, 1)->valuedouble;
  }
  cJSON_ArrayForEach(e, cJSON_GetObjectItem(c, "embeddings")) {
    snprintf(paths[used], 1024, "%s/%s", adapters_dir, cJSON_GetArrayItem(e, 0)->valuestring);
    const cJSON *token = cJSON_GetArrayItem(e, 1);
    embeddings[params->embedding_count].path = paths[used++];
    embeddings[params->embedding_count++].token = cJSON_IsString(token) ? token->valuestring : NULL;
  }
  params->loras = loras;
  params->embeddings = embeddings;
  return 0;
}

static void check_ids(sd_engine *engine, const sd_safetensors *expected, const char *name,
                      const char *prompt, const char *negative) {
  char key[128];
  snprintf(key, sizeof key, "ids.%s", name);
  const sd_st_tensor *want = require(expected, key);
  if (!want)
    return;
  int32_t got[2 * 77];
  const char *texts[2] = {prompt, negative};
  for (int i = 0; i < 2; i++) {
    char *expanded = NULL;
    int ok = sd_engine_expand_prompt(engine, texts[i], &expanded) == 0 &&
             sd_tokenizer_encode(engine->tokenizer, expanded, got + 77 * i) == 0;
    CHECK(ok, "%s: encode '%s': %s", name, texts[i], sd_error_message());
    free(expanded);
  }
  snprintf(key, sizeof key, "%s ids", name);
  sd_test_compare_i32(key, got, want->data, 2 * 77);
}

/* Text encoder on the converted prompt, and the UNet on the fixture's sample and context. */
static void check_stages(sd_engine *engine, const sd_safetensors *expected, const char *name) {
  sd_backend *be = engine->be;
  char key[128], what[128];
  snprintf(key, sizeof key, "ids.%s", name);
  const sd_st_tensor *ids = require(expected, key);
  snprintf(key, sizeof key, "te.%s", name);
  const sd_st_tensor *te = require(expected, key);
  snprintf(key, sizeof key, "unet.%s", name);
  const sd_st_tensor *unet = require(expected, key);
  const sd_st_tensor *sample = require(expected, "unet.sample");
  if (!ids || !te || !unet || !sample)
    return;
  size_t n_te, n_unet, n_sample;
  float *want_te = to_f32(te, &n_te), *want_unet = to_f32(unet, &n_unet);
  float *sample_f = to_f32(sample, &n_sample);
  float *got = malloc((n_te > n_unet ? n_te : n_unet) * sizeof *got);
  sd_tensor hidden = sd_tensor_3d(be->ops->act_dtype, 1, te->shape[1], te->shape[2]);
  sd_tensor x = sd_tensor_make(be->ops->act_dtype, 4, sample->shape);
  sd_tensor out = sd_tensor_make(be->ops->act_dtype, 4, unet->shape);
  int ok = sd_tensor_alloc_persistent(be, &hidden) == 0 &&
           sd_tensor_alloc_persistent(be, &x) == 0 && sd_tensor_alloc_persistent(be, &out) == 0;
  ok = ok && sd_clip_text_forward(engine->clip, ids->data, 1, &hidden) == 0 &&
       sd_tensor_download_f32(be, &hidden, got) == 0;
  CHECK(ok, "%s: text encoder: %s", name, sd_error_message());
  if (ok) {
    snprintf(what, sizeof what, "%s text encoder", name);
    sd_test_compare_f32(what, got, want_te, n_te, STAGE_ATOL, STAGE_RTOL);
  }
  ok = ok && sd_tensor_upload_f32(be, &hidden, want_te) == 0 &&
       sd_tensor_upload_f32(be, &x, sample_f) == 0 &&
       sd_unet_forward(engine->unet, &x, 981.0, &hidden, &out) == 0 &&
       sd_tensor_download_f32(be, &out, got) == 0;
  CHECK(ok, "%s: unet: %s", name, sd_error_message());
  if (ok) {
    snprintf(what, sizeof what, "%s unet", name);
    sd_test_compare_f32(what, got, want_unet, n_unet, STAGE_ATOL, STAGE_RTOL);
  }
  sd_tensor_free(be, &hidden);
  sd_tensor_free(be, &x);
  sd_tensor_free(be, &out);
  free(got);
  free(want_te);
  free(want_unet);
  free(sample_f);
}

static void check_image(sd_engine *engine, const sd_safetensors *expected, const char *name,
                        const cJSON *c, const char *prompt, const char *negative) {
  sd_txt2img_item item = {prompt, negative, (uint64_t)cJSON_GetObjectItem(c, "seed")->valuedouble,
                          (float)cJSON_GetObjectItem(c, "guidance_scale")->valuedouble};
  sd_txt2img_batch batch = {cJSON_GetObjectItem(c, "width")->valueint,
                            cJSON_GetObjectItem(c, "height")->valueint,
                            cJSON_GetObjectItem(c, "steps")->valueint,
                            SD_SCHED_DDIM,
                            false,
                            SD_RNG_CPU};
  char key[128], what[128];
  snprintf(key, sizeof key, "image.%s", name);
  const sd_st_tensor *image = require(expected, key);
  snprintf(key, sizeof key, "image.%s.latents", name);
  const sd_st_tensor *latents = require(expected, key);
  if (!image || !latents)
    return;
  sd_txt2img_result result;
  int rc = sd_txt2img(engine, &batch, &item, 1, NULL, NULL, &result);
  CHECK(rc == 0, "%s: txt2img: %s", name, sd_error_message());
  if (rc < 0)
    return;
  size_t n;
  float *want = to_f32(latents, &n);
  snprintf(what, sizeof what, "%s latents", name);
  sd_test_compare_f32(what, result.latents, want, n, 1e-3f, 1e-3f);
  free(want);
  want = to_f32(image, &n);
  snprintf(what, sizeof what, "%s image", name);
  sd_test_compare_pixels(what, result.rgb, want, n, 1, 0.999);
  free(want);
  sd_txt2img_result_free(&result);
}

static void run_case(const sd_safetensors *expected, const cJSON *c) {
  const char *name = c->string;
  const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
  const char *negative = cJSON_GetObjectItem(c, "negative_prompt")->valuestring;
  sd_engine_params params;
  sd_lora_spec loras[8];
  sd_embedding_spec embeddings[8];
  char paths[16][1024];
  case_params(c, &params, loras, embeddings, paths);
  sd_engine *engine = NULL;
  CHECK(sd_engine_open(&params, &engine) == 0, "%s: open: %s", name, sd_error_message());
  if (!engine)
    return;
  check_ids(engine, expected, name, prompt, negative);
  check_stages(engine, expected, name);
  check_image(engine, expected, name, c, prompt, negative);
  sd_engine_close(engine);
}

/* The fixtures' adapters really change the model (else parity would prove nothing). */
static void check_fixture_moves(const sd_safetensors *expected, const cJSON *cases) {
  const cJSON *c;
  cJSON_ArrayForEach(c, cases) {
    char key[128];
    const cJSON *model = cJSON_GetObjectItem(c, "model");
    snprintf(key, sizeof key, "unet.base.%s",
             cJSON_IsString(model) && strstr(model->valuestring, "sd2") ? "sd2" : "sd1");
    const sd_st_tensor *base = require(expected, key);
    snprintf(key, sizeof key, "unet.%s", c->string);
    const sd_st_tensor *t = require(expected, key);
    if (!base || !t)
      continue;
    size_t n, m;
    float *a = to_f32(base, &n), *b = to_f32(t, &m);
    float moved = 0;
    for (size_t i = 0; i < n && i < m; i++)
      moved = fmaxf(moved, fabsf(a[i] - b[i]));
    CHECK(moved > 1e-2f, "%s: the adapters move the UNet output by only %g", c->string,
          (double)moved);
    free(a);
    free(b);
  }
}

/* Writes a small LoRA / embedding file of the given tensors (float32, all values 0.01). */
static void write_file(const char *path, int count, const char *const *names, const int *ndims,
                       const int64_t (*shapes)[4]) {
  sd_st_tensor tensors[4];
  static float data[4][4096];
  for (int i = 0; i < count; i++) {
    memset(&tensors[i], 0, sizeof tensors[i]);
    tensors[i].name = names[i];
    tensors[i].dtype = SD_DTYPE_F32;
    tensors[i].ndim = ndims[i];
    size_t n = 1;
    for (int d = 0; d < ndims[i]; d++) {
      tensors[i].shape[d] = shapes[i][d];
      n *= (size_t)shapes[i][d];
    }
    for (size_t k = 0; k < n; k++)
      data[i][k] = 0.01f;
    tensors[i].data = data[i];
    tensors[i].bytes = n * sizeof(float);
  }
  CHECK(sd_safetensors_write(path, tensors, (size_t)count, NULL, NULL, 0) == 0, "write %s: %s",
        path, sd_error_message());
}

/* Opening the model with one bad adapter fails with an error holding every piece of want. */
static void expect_error(const char *what, const sd_lora_spec *lora, const sd_embedding_spec *emb,
                         const char *want1, const char *want2) {
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.model_path = model_dir;
  params.loras = lora;
  params.lora_count = lora ? 1 : 0;
  params.embeddings = emb;
  params.embedding_count = emb ? 1 : 0;
  sd_engine *engine = NULL;
  sd_error_clear();
  int rc = sd_engine_open(&params, &engine);
  CHECK(rc < 0 && !engine, "%s: accepted", what);
  const char *msg = sd_error_message();
  CHECK(strstr(msg, want1) && (!want2 || strstr(msg, want2)), "%s: error '%s' lacks '%s' / '%s'",
        what, msg, want1, want2 ? want2 : "");
  sd_engine_close(engine);
}

static void test_errors(void) {
  char dir[] = "/tmp/sdbatch_adapters_XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char path[1200];
  const int two[2] = {2, 2};
  const int64_t attn[2][4] = {{4, 32}, {32, 4}}; /* down (4, 32), up (32, 4): to_q fits */

  snprintf(path, sizeof path, "%s/no_layer.safetensors", dir);
  const char *no_layer[2] = {"lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight",
                             "lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight"};
  write_file(path, 2, no_layer, two, attn);
  sd_lora_spec lora = {path, 1.0f};
  expect_error("kohya key naming no layer", &lora, NULL, path, no_layer[0]);

  snprintf(path, sizeof path, "%s/shape.safetensors", dir);
  const char *shape_names[2] = {
      "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight",
      "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight"};
  const int64_t wrong[2][4] = {{4, 33}, {32, 4}};
  write_file(path, 2, shape_names, two, wrong);
  expect_error("shape mismatch", &lora, NULL, path, "(4, 33)");

  snprintf(path, sizeof path, "%s/half.safetensors", dir);
  write_file(path, 1, shape_names, two, attn);
  expect_error("down without up", &lora, NULL, path, shape_names[0]);

  snprintf(path, sizeof path, "%s/sdxl.safetensors", dir);
  const char *sdxl[2] = {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
                         "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"};
  write_file(path, 2, sdxl, two, attn);
  expect_error("SDXL LoRA", &lora, NULL, path, "SDXL");

  snprintf(path, sizeof path, "%s/dora.safetensors", dir);
  const char *dora[1] = {"lora_unet_down_blocks_0_attentions_0_proj_in.dora_scale"};
  write_file(path, 1, dora, two, attn);
  expect_error("DoRA", &lora, NULL, path, "DoRA");

  lora.scale = NAN;
  snprintf(path, sizeof path, "%s/shape.safetensors", dir);
  expect_error("NaN scale", &lora, NULL, path, "scale");

  sd_embedding_spec emb = {path, NULL};
  snprintf(path, sizeof path, "%s/learned_embeds.bin", dir);
  expect_error("pickle embedding", NULL, &emb, path, "pickle");

  snprintf(path, sizeof path, "%s/wide.safetensors", dir);
  const char *wide[1] = {"<wide>"};
  const int one[1] = {2};
  const int64_t wide_shape[1][4] = {{1, 48}};
  write_file(path, 1, wide, one, wide_shape);
  expect_error("embedding of another width", NULL, &emb, path, "48");

  emb.token = "cat";
  snprintf(path, sizeof path, "%s/cat_emb.safetensors", dir);
  const int64_t ok_shape[1][4] = {{1, 32}};
  write_file(path, 1, wide, one, ok_shape);
  expect_error("token already in the vocabulary", NULL, &emb, path, "'cat'");

  /* A1111 files name their token after the file */
  snprintf(path, sizeof path, "%s/style.safetensors", adapters_dir);
  sd_embedding e;
  CHECK(sd_embedding_load(path, NULL, &e) == 0 && !strcmp(e.token, "style") && e.vectors == 3 &&
            e.dim == 32,
        "A1111 embedding: %s (token '%s', %d x %d)", sd_error_message(), e.token, e.vectors, e.dim);
  sd_embedding_free(&e);

  const char *files[] = {"no_layer", "shape", "half", "sdxl", "dora", "wide", "cat_emb"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
}

int main(void) {
  snprintf(adapters_dir, sizeof adapters_dir, "%s/adapters", SD_TEST_FIXTURES);
  snprintf(model_dir, sizeof model_dir, "%s/tiny-sd1", SD_TEST_FIXTURES);
  char expected_path[1100];
  snprintf(expected_path, sizeof expected_path, "%s/expected.safetensors", adapters_dir);
  sd_safetensors *expected = NULL;
  CHECK(sd_safetensors_open(expected_path, &expected) == 0, "open %s: %s", expected_path,
        sd_error_message());
  if (expected) {
    cJSON *cases = cJSON_Parse(sd_safetensors_metadata(expected, "cases"));
    CHECK(cases && cJSON_GetArraySize(cases) >= 8, "%s: cases missing", expected_path);
    check_fixture_moves(expected, cases);
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) run_case(expected, c);
    cJSON_Delete(cases);
    sd_safetensors_close(expected);
  }
  test_errors();
  return sd_test_finish();
}
