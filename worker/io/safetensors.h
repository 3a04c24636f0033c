/* safetensors files: read through mmap with a validated header, and written (demo models,
 * fixtures). Format: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data; offsets are relative to the end of the header. */
#ifndef SD_SAFETENSORS_H
#define SD_SAFETENSORS_H

#include "../../kernels/tensor.h"

#include <stddef.h>

/* One tensor of a file; data points into the mapping (valid until the file is closed). */
typedef struct sd_st_tensor {
  const char *name;
  sd_dtype dtype;
  int ndim;
  int64_t shape[SD_MAX_DIMS];
  const void *data;
  size_t bytes;
} sd_st_tensor;

typedef struct sd_safetensors sd_safetensors;

/* Opens and validates a file: header length sane (inside the file, at most the format's 100 MB),
 * JSON well formed, every dtype one the format defines (others are an error naming the tensor),
 * shape x dtype size == byte range, ranges inside the data section and not overlapping, names
 * unique, "__metadata__" values strings. Errors name the file and the tensor.
 * Tensors of dtype F32, F16, BF16 and I32 (0 to SD_MAX_DIMS dims) are listed; tensors of the
 * format's other dtypes (e.g. the I64 position_ids buffer SD 1.x text encoders carry) are
 * validated and left out of the list, as if absent. */
int sd_safetensors_open(const char *path, sd_safetensors **out);
void sd_safetensors_close(sd_safetensors *file);

const char *sd_safetensors_path(const sd_safetensors *file);
size_t sd_safetensors_count(const sd_safetensors *file);
const sd_st_tensor *sd_safetensors_at(const sd_safetensors *file, size_t index);
/* NULL when absent (no error set). */
const sd_st_tensor *sd_safetensors_find(const sd_safetensors *file, const char *name);
/* Value of a "__metadata__" string entry, NULL when absent. */
const char *sd_safetensors_metadata(const sd_safetensors *file, const char *key);

/* Writes tensors (name, dtype, shape, data) to path, atomically (temporary file + rename).
 * metadata_keys/values may be NULL (n_metadata 0). */
int sd_safetensors_write(const char *path, const sd_st_tensor *tensors, size_t count,
                         const char *const *metadata_keys, const char *const *metadata_values,
                         size_t n_metadata);

#endif
