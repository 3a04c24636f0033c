/* The x4 upscaler's low-resolution noising: sd_ddpm_add_noise with the low_res_scheduler config
 * (tests/fixtures/ddpm-noise.json, read by the scheduler config reader) against diffusers'
 * DDPMScheduler.add_noise at noise levels 0, 20, 350, 999 (make_ddpm_noise_fixture.py): equal
 * within 2 float32 ulps (1.5e-7 + 2.4e-7 |want|); levels outside [0, 1000) refused. */
#include "test_util.h"

#include "io/config_json.h"
#include "io/safetensors.h"
#include "sched/ddpm_noise.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  sd_scheduler_config cfg;
  sd_safetensors *ref = NULL;
  int rc = sd_scheduler_config_read(SD_TEST_FIXTURES "/ddpm-noise.json", &cfg);
  CHECK(rc == 0, "config: %s", sd_error_message());
  rc = rc == 0 ? sd_safetensors_open(SD_TEST_FIXTURES "/ddpm-noise.safetensors", &ref) : rc;
  sd_backend *be = sd_backend_cpu_create(0);
  CHECK(rc == 0 && be, "setup: %s", sd_error_message());
  if (rc < 0 || !be)
    return sd_test_finish();
  const sd_st_tensor *xs = sd_safetensors_find(ref, "x"), *ns = sd_safetensors_find(ref, "noise");
  sd_tensor x = sd_tensor_make(SD_DTYPE_F32, 4, xs->shape), noise = x, out = x;
  CHECK(sd_tensor_alloc_persistent(be, &x) == 0 && sd_tensor_upload_f32(be, &x, xs->data) == 0 &&
            sd_tensor_alloc_persistent(be, &noise) == 0 &&
            sd_tensor_upload_f32(be, &noise, ns->data) == 0 &&
            sd_tensor_alloc_persistent(be, &out) == 0,
        "tensors: %s", sd_error_message());
  size_t n = (size_t)sd_tensor_numel(&x);
  float *got = malloc(n * sizeof *got);
  static const int levels[4] = {0, 20, 350, 999};
  for (int i = 0; i < 4; i++) {
    char name[32];
    snprintf(name, sizeof name, "out.%d", levels[i]);
    const sd_st_tensor *want = sd_safetensors_find(ref, name);
    rc = sd_ddpm_add_noise(&cfg, levels[i], be, &x, &noise, &out);
    CHECK(rc == 0 && want, "%s: %s", name, sd_error_message());
    if (rc == 0 && want && sd_tensor_download_f32(be, &out, got) == 0)
      sd_test_compare_f32(name, got, want->data, n, 1.5e-7f, 2.4e-7f);
  }
  sd_error_clear();
  CHECK(sd_ddpm_add_noise(&cfg, 1000, be, &x, &noise, &out) == -1 &&
            strstr(sd_error_message(), "1000"),
        "noise level 1000 accepted: %s", sd_error_message());
  CHECK(sd_ddpm_add_noise(&cfg, -1, be, &x, &noise, &out) == -1, "noise level -1 accepted");
  free(got);
  sd_tensor_free(be, &x);
  sd_tensor_free(be, &noise);
  sd_tensor_free(be, &out);
  sd_backend_destroy(be);
  sd_safetensors_close(ref);
  return sd_test_finish();
}
