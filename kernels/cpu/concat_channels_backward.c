/* Backward of concat_channels: per image, dy's first Ca planes to da, the rest to db. */
#include "cpu_ops.h"

#include <string.h>

int sd_cpu_concat_channels_backward(sd_backend *be, const sd_tensor *dy, sd_tensor *da,
                                    sd_tensor *db) {
  (void)be;
  int64_t batch = dy->shape[0];
  size_t a_image = (size_t)(sd_tensor_numel(da) / batch); /* Ca * H * W */
  size_t b_image = (size_t)(sd_tensor_numel(db) / batch); /* Cb * H * W */
  const float *src = dy->data;
  float *pa = da->data, *pb = db->data;
  for (int64_t n = 0; n < batch; n++) {
    const float *in = src + (size_t)n * (a_image + b_image);
    memcpy(pa + (size_t)n * a_image, in, a_image * sizeof(float));
    memcpy(pb + (size_t)n * b_image, in + a_image, b_image * sizeof(float));
  }
  return 0;
}
