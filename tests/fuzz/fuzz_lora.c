/* LoRA files (.safetensors in the diffusers/peft, attention-processor and kohya-ss layouts)
 * merged into the tiny SD 1.x model (tests/fixtures/tiny-sd1, opened once): key names, shapes,
 * alphas and the adapter metadata JSON. Every input starts from fresh copies of the weight
 * maps. */
#include "fuzz.h"

#include "io/lora.h"
#include "io/model_files.h"

#include <stdlib.h>

/* A new map with src's records (the data stays borrowed from the model's files). */
static sd_tensor_map *copy_map(const sd_tensor_map *src) {
  sd_tensor_map *map = sd_tensor_map_create();
  for (size_t i = 0; map && i < sd_tensor_map_count(src); i++) {
    const sd_st_tensor *t = sd_tensor_map_at(src, i);
    if (sd_tensor_map_put(map, t->name, t->dtype, t->ndim, t->shape, t->data) != 0) {
      sd_tensor_map_free(map);
      return NULL;
    }
  }
  return map;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static sd_model_files *model;
  if (!model && sd_model_files_open(SD_FUZZ_FIXTURES "/tiny-sd1", NULL, NULL, &model) != 0)
    abort(); /* the harness itself is broken */
  const char *path = sd_fuzz_file(data, size);
  sd_tensor_map *unet = copy_map(model->unet_tensors);
  sd_tensor_map *text = copy_map(model->clip_tensors);
  sd_patched *patched = NULL;
  if (path && unet && text && sd_patched_create(&patched) == 0)
    (void)sd_lora_merge(path, 0.75f, unet, text, patched);
  sd_patched_free(patched);
  sd_tensor_map_free(unet);
  sd_tensor_map_free(text);
  return 0;
}
