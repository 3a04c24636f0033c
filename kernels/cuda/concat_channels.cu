/* y (B, Ca + Cb, H, W) = cat(a (B, Ca, H, W), b (B, Cb, H, W)) along channels: per image, a's
 * planes then b's, as two device-to-device copies per image (batches are small). */
#include "cuda_internal.h"

int sd_cuda_concat_channels(sd_backend *be, const sd_tensor *a, const sd_tensor *b, sd_tensor *y) {
  sd_cuda *cu = sd_cuda_of(be);
  int64_t batch = a->shape[0];
  if (batch == 0)
    return 0;
  size_t a_image = sd_tensor_bytes(a) / (size_t)batch; /* Ca * H * W values */
  size_t b_image = sd_tensor_bytes(b) / (size_t)batch; /* Cb * H * W values */
  for (int64_t n = 0; n < batch; n++) {
    char *out = (char *)y->data + (size_t)n * (a_image + b_image);
    if (a_image)
      CUDA_CHECK(cudaMemcpyAsync(out, (const char *)a->data + (size_t)n * a_image, a_image,
                                 cudaMemcpyDeviceToDevice, cu->stream));
    if (b_image)
      CUDA_CHECK(cudaMemcpyAsync(out + a_image, (const char *)b->data + (size_t)n * b_image,
                                 b_image, cudaMemcpyDeviceToDevice, cu->stream));
  }
  return 0;
}
