/* Depth maps given by the user as .npy files (docs/depth.md), through the strict reader. */
#include "fuzz.h"

#include "io/npy.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = sd_fuzz_file(data, size);
  if (!path)
    return 0;
  float *depth = NULL;
  int height, width;
  if (sd_npy_read_depth(path, &depth, &height, &width) == 0)
    free(depth);
  return 0;
}
