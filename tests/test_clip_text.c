/* CLIP text encoder parity: text.ids -> text.hidden against transformers' CLIPTextModel
 * (last_hidden_state) for the tiny SD 1.x (quick_gelu) and SD 2.x (gelu) fixture models, on the
 * CPU backend; plus the arena being released and weight errors naming the tensor. */
#include "test_util.h"

#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/clip_text.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* float32 reference data vs the encoder's result; the CPU computes in float32 from the same fp16
 * weights transformers cast to float32, so only summation order differs. */
#define HIDDEN_ATOL 1e-4f
#define HIDDEN_RTOL 1e-4f

/* A stage tensor as host float32 (malloc'd), checked against the expected shape. */
static float *stage_f32(const sd_safetensors *file, const char *name, int ndim,
                        const int64_t *shape) {
  const sd_st_tensor *t = sd_safetensors_find(file, name);
  CHECK(t != NULL, "%s: tensor %s missing", sd_safetensors_path(file), name);
  if (!t)
    return NULL;
  int same = t->ndim == ndim;
  for (int i = 0; same && i < ndim; i++)
    same = t->shape[i] == shape[i];
  CHECK(same, "%s: tensor %s has an unexpected shape", sd_safetensors_path(file), name);
  if (!same)
    return NULL;
  size_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= (size_t)shape[i];
  float *out = malloc(n * sizeof *out);
  if (t->dtype == SD_DTYPE_I32) {
    int32_t v;
    for (size_t i = 0; i < n; i++) {
      memcpy(&v, (const char *)t->data + i * sizeof v, sizeof v);
      out[i] = (float)v;
    }
  } else {
    sd_convert_to_f32(t->dtype, t->data, out, n);
  }
  return out;
}

static void test_model(const char *family, sd_activation want_act) {
  char folder[512], stages_path[512];
  snprintf(folder, sizeof folder, "%s/tiny-%s", SD_TEST_FIXTURES, family);
  snprintf(stages_path, sizeof stages_path, "%s/stages-%s.safetensors", SD_TEST_FIXTURES, family);

  sd_model_files *files = NULL;
  sd_safetensors *stages = NULL;
  sd_backend *be = sd_backend_cpu_create(0);
  sd_weights *weights = NULL;
  sd_clip_text *clip = NULL;
  float *ids_f = NULL, *want = NULL, *got = NULL;
  int32_t *ids = NULL;
  sd_tensor hidden = {0};

  int ok = be && sd_model_files_open(folder, NULL, NULL, &files) == 0 &&
           sd_safetensors_open(stages_path, &stages) == 0 &&
           sd_weights_upload(be, files->clip_tensors, "text_encoder", &weights) == 0 &&
           sd_clip_text_create(be, &files->clip, weights, &clip) == 0;
  CHECK(ok, "%s: setup: %s (%s)", family, sd_error_message(), sd_error_location());
  if (!ok)
    goto out;
  CHECK(files->clip.hidden_act == want_act, "%s: hidden_act %d, want %d", family,
        (int)files->clip.hidden_act, (int)want_act);

  const int64_t batch = 2, len = files->clip.max_position_embeddings, c = files->clip.hidden_size;
  const int64_t ids_shape[2] = {batch, len}, hidden_shape[3] = {batch, len, c};
  ids_f = stage_f32(stages, "text.ids", 2, ids_shape);
  want = stage_f32(stages, "text.hidden", 3, hidden_shape);
  if (!ids_f || !want)
    goto out;
  ids = malloc((size_t)(batch * len) * sizeof *ids);
  for (int64_t i = 0; i < batch * len; i++)
    ids[i] = (int32_t)ids_f[i];

  const size_t n = (size_t)(batch * len * c);
  got = malloc(n * sizeof *got);
  hidden = sd_tensor_3d(be->ops->act_dtype, batch, len, c);
  ok = sd_tensor_alloc_persistent(be, &hidden) == 0 &&
       sd_clip_text_forward(clip, ids, (int)batch, &hidden) == 0 &&
       sd_tensor_download_f32(be, &hidden, got) == 0;
  CHECK(ok, "%s: forward: %s (%s)", family, sd_error_message(), sd_error_location());
  if (!ok)
    goto out;
  char what[64];
  snprintf(what, sizeof what, "%s text.hidden", family);
  sd_test_compare_f32(what, got, want, n, HIDDEN_ATOL, HIDDEN_RTOL);
  CHECK(be->arena.used_bytes == 0, "%s: %zu arena bytes still in use after forward", family,
        be->arena.used_bytes);

  CHECK(sd_clip_text_forward(clip, ids, 1, &(sd_tensor){0}) < 0,
        "%s: forward accepted an output without memory", family);

  /* The uncond row alone (batch 1) gives the same result as in the batch of two. */
  sd_tensor row = sd_tensor_slice0(&hidden, 0, 1);
  ok = sd_clip_text_forward(clip, ids, 1, &row) == 0 && sd_tensor_download_f32(be, &row, got) == 0;
  CHECK(ok, "%s: batch-1 forward: %s", family, sd_error_message());
  if (ok) {
    snprintf(what, sizeof what, "%s text.hidden[0] (batch 1)", family);
    sd_test_compare_f32(what, got, want, (size_t)(len * c), HIDDEN_ATOL, HIDDEN_RTOL);
  }

  /* A config that disagrees with the weights fails at create, naming the tensor. */
  sd_clip_config bad = files->clip;
  bad.intermediate_size += 1;
  sd_clip_text *bad_model = NULL;
  sd_error_clear();
  CHECK(sd_clip_text_create(be, &bad, weights, &bad_model) < 0 && !bad_model,
        "%s: create accepted a wrong intermediate_size", family);
  CHECK(strstr(sd_error_message(), "encoder.layers.0.mlp.fc1.weight") != NULL,
        "%s: error does not name the tensor: %s", family, sd_error_message());

out:
  free(ids_f);
  free(ids);
  free(want);
  free(got);
  if (be)
    sd_tensor_free(be, &hidden);
  sd_clip_text_free(clip);
  sd_weights_free(weights);
  sd_safetensors_close(stages);
  sd_model_files_close(files);
  sd_backend_destroy(be);
}

int main(void) {
  test_model("sd1", SD_ACT_QUICK_GELU);
  test_model("sd2", SD_ACT_GELU);
  return sd_test_finish();
}
