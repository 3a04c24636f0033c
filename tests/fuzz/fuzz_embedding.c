/* Textual-inversion embedding files (.safetensors, diffusers' and A1111's layouts), read with
 * the token from the file and with one given. */
#include "fuzz.h"

#include "io/embedding.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = sd_fuzz_file(data, size);
  if (!path)
    return 0;
  const char *tokens[] = {NULL, "<cat-toy>"};
  for (int i = 0; i < 2; i++) {
    sd_embedding embedding;
    if (sd_embedding_load(path, tokens[i], &embedding) == 0)
      sd_embedding_free(&embedding);
  }
  return 0;
}
