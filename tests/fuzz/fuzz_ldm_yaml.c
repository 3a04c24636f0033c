/* LDM-style YAML configs (--model-config): parsed alone, then with a real single-file checkpoint
 * (tests/fixtures/tiny-sd1.safetensors) as sdbatch opens it, so that every value meets the
 * checks against the checkpoint's shapes. */
#include "fuzz.h"

#include "io/ldm_yaml.h"
#include "io/model_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sd_ldm_yaml yaml;
  if (sd_ldm_yaml_parse((const char *)data, size, "model.yaml", &yaml) != 0)
    return 0;
  const char *path = sd_fuzz_file(data, size);
  sd_model_files *model;
  if (path &&
      sd_model_files_open(SD_FUZZ_FIXTURES "/tiny-sd1.safetensors", path, NULL, &model) == 0)
    sd_model_files_close(model);
  return 0;
}
