/* Tokenizer files: vocab.json + merges.txt (the input split at a line "#merges.txt#"; the same
 * input also as tokenizer.json), each loaded as SD 1.x and SD 2.x load them (pad
 * "<|endoftext|>" or "!"), then a few prompts encoded with what loaded. */
#include "fuzz.h"

#include "text/clip_tokenizer.h"

#include <stdlib.h>

static const char *const prompts[] = {
    "a photo of an astronaut riding a horse",
    "",
    "<|startoftext|>x<|endoftext|>!! 東京の夜景 🌃 Ünïcödé",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa b c d e",
};

static void encode_all(sd_tokenizer *tok) {
  int32_t *ids = malloc((size_t)sd_tokenizer_max_length(tok) * sizeof *ids);
  for (size_t i = 0; ids && i < sizeof prompts / sizeof prompts[0]; i++)
    (void)sd_tokenizer_encode(tok, prompts[i], ids);
  free(ids);
  sd_tokenizer_free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const pads[] = {"<|endoftext|>", "!"};
  size_t vocab_len, merges_at;
  sd_fuzz_split(data, size, "\n#merges.txt#\n", &vocab_len, &merges_at);
  for (int p = 0; p < 2; p++) {
    sd_tokenizer *tok;
    if (sd_tokenizer_parse_vocab_merges((const char *)data, vocab_len, "vocab.json",
                                        (const char *)data + merges_at, size - merges_at,
                                        "merges.txt", pads[p], 77, &tok) == 0)
      encode_all(tok);
    if (sd_tokenizer_parse_tokenizer_json((const char *)data, size, "tokenizer.json", pads[p], 77,
                                          &tok) == 0)
      encode_all(tok);
  }
  return 0;
}
