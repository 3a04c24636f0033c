/* OpenAI CLIP's bpe_simple_vocab_16e6.txt.gz format: gzip bytes (decompressed with a limit),
 * header line and merge lines; a prompt encoded with what loaded. */
#include "fuzz.h"

#include "text/clip_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sd_tokenizer *tok;
  if (sd_tokenizer_parse_bpe_gz(data, size, "bpe.txt.gz", "<|endoftext|>", 77, &tok) != 0)
    return 0;
  int32_t ids[77];
  (void)sd_tokenizer_encode(tok, "a photo of an astronaut riding a horse, 東京 🌃", ids);
  sd_tokenizer_free(tok);
  return 0;
}
