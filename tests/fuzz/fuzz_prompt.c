/* Prompts through the CLIP tokenizer: the input (as a C string) encoded with CLIP's own
 * vocabulary (third_party/clip) at 77 tokens, and at 8 tokens (truncation inside words). */
#include "fuzz.h"

#include "text/clip_tokenizer.h"

#include <stdlib.h>

static sd_tokenizer *load(int max_length) {
  sd_tokenizer *tok = NULL;
  if (sd_tokenizer_load_bpe_gz(SD_SOURCE_DIR "/third_party/clip/bpe_simple_vocab_16e6.txt.gz",
                               "<|endoftext|>", max_length, &tok) != 0)
    abort(); /* the harness itself is broken */
  return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static sd_tokenizer *full, *short8;
  if (!full) {
    full = load(77);
    short8 = load(8);
  }
  char *prompt = sd_fuzz_string(data, size);
  if (!prompt)
    return 0;
  int32_t ids[77];
  (void)sd_tokenizer_encode(full, prompt, ids);
  (void)sd_tokenizer_encode(short8, prompt, ids);
  free(prompt);
  return 0;
}
