/* y (B, Ca + Cb, H, W) = cat(a, b) along channels: per image, a's planes then b's. */
#include "cpu_ops.h"

#include <string.h>

int sd_cpu_concat_channels(sd_backend *be, const sd_tensor *a, const sd_tensor *b, sd_tensor *y) {
  (void)be;
  int64_t batch = a->shape[0];
  size_t a_image = (size_t)(sd_tensor_numel(a) / batch); /* Ca * H * W */
  size_t b_image = (size_t)(sd_tensor_numel(b) / batch); /* Cb * H * W */
  const float *pa = a->data, *pb = b->data;
  float *dst = y->data;
  for (int64_t n = 0; n < batch; n++) {
    float *out = dst + (size_t)n * (a_image + b_image);
    memcpy(out, pa + (size_t)n * a_image, a_image * sizeof(float));
    memcpy(out + a_image, pb + (size_t)n * b_image, b_image * sizeof(float));
  }
  return 0;
}
