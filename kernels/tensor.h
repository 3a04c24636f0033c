/* Tensors: a typed view of backend memory with a PyTorch-ordered shape (outermost first).
 * A tensor never owns its memory by itself: memory comes from a backend, either persistent
 * (sd_tensor_alloc_persistent / sd_tensor_free, e.g. weights and latents) or from the backend's
 * scratch arena (sd_tensor_alloc, released in bulk with sd_arena_release). */
#ifndef SD_TENSOR_H
#define SD_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sd_dtype {
  SD_DTYPE_F32 = 0,
  SD_DTYPE_F16 = 1,
  SD_DTYPE_BF16 = 2,
  SD_DTYPE_I32 = 3,
} sd_dtype;

#define SD_MAX_DIMS 4

typedef struct sd_tensor {
  void *data; /* backend memory, contiguous, row-major */
  sd_dtype dtype;
  int ndim;
  int64_t shape[SD_MAX_DIMS];
} sd_tensor;

size_t sd_dtype_size(sd_dtype dtype);
const char *sd_dtype_name(sd_dtype dtype);

int64_t sd_tensor_numel(const sd_tensor *t);
size_t sd_tensor_bytes(const sd_tensor *t);

/* A tensor header with the given shape and no memory. */
sd_tensor sd_tensor_make(sd_dtype dtype, int ndim, const int64_t *shape);
sd_tensor sd_tensor_4d(sd_dtype dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
sd_tensor sd_tensor_3d(sd_dtype dtype, int64_t d0, int64_t d1, int64_t d2);
sd_tensor sd_tensor_2d(sd_dtype dtype, int64_t d0, int64_t d1);
sd_tensor sd_tensor_1d(sd_dtype dtype, int64_t d0);

/* Same memory, new shape with the same element count; returns -1 (with error) otherwise. */
int sd_tensor_reshape(const sd_tensor *t, int ndim, const int64_t *shape, sd_tensor *out);

/* Rows [first, first + count) of the outermost dimension, sharing memory. */
sd_tensor sd_tensor_slice0(const sd_tensor *t, int64_t first, int64_t count);

int sd_tensor_same_shape(const sd_tensor *a, const sd_tensor *b);

/* "(2, 4, 64, 64)" into buf; returns buf. */
const char *sd_tensor_shape_str(const sd_tensor *t, char *buf, size_t size);

/* Host conversions between float32 and the 16-bit formats (round to nearest even). */
float sd_f16_to_f32(uint16_t h);
uint16_t sd_f32_to_f16(float f);
float sd_bf16_to_f32(uint16_t h);
uint16_t sd_f32_to_bf16(float f);

/* Converts n elements of src (src_dtype) into float32. */
void sd_convert_to_f32(sd_dtype src_dtype, const void *src, float *dst, size_t n);

#ifdef __cplusplus
}
#endif

#endif
