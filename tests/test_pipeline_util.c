/* Helpers of the whole-pipeline parity tests, see test_pipeline_util.h. */
#include "test_pipeline_util.h"

#include "test_util.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>

float *sd_test_fixture_f32(const sd_safetensors *file, const char *name, size_t *n) {
  const sd_st_tensor *t = sd_safetensors_find(file, name);
  if (!CHECK(t != NULL, "fixture tensor %s missing", name))
    return NULL;
  *n = 1;
  for (int d = 0; d < t->ndim; d++)
    *n *= (size_t)t->shape[d];
  float *out = malloc(*n * sizeof *out);
  if (!CHECK(out != NULL, "out of memory for fixture tensor %s", name))
    return NULL;
  sd_convert_to_f32(t->dtype, t->data, out, *n);
  return out;
}

sd_engine *sd_test_open_engine(const char *model) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", SD_TEST_FIXTURES, model);
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.model_path = path;
  params.device = "cpu";
  sd_engine *engine = NULL;
  CHECK(sd_engine_open(&params, &engine) == 0, "open %s: %s", path, sd_error_message());
  return engine;
}
