/* diffusers' get_timestep_embedding of one timestep on the host: row 0 of out (B, dim) from
 * kernels/timestep_embedding.h (the function worker/model's sd_unet_time_proj and the CUDA kernel
 * use), copied to the other rows. */
#include "cpu_internal.h"

#include "../timestep_embedding.h"

#include <string.h>

int sd_cpu_timestep_embedding(sd_backend *be, double timestep, bool flip_sin_to_cos,
                              float freq_shift, double max_period, sd_tensor *out) {
  float *dst = out->data;
  int64_t batch = out->shape[0], dim = out->shape[1];
  sd_timestep_embedding_args args =
      sd_timestep_embedding_setup(timestep, dim, flip_sin_to_cos, freq_shift, max_period);
  for (int64_t k = 0; k < dim; k++)
    dst[k] = sd_timestep_embedding_element(args, k);
  for (int64_t b = 1; b < batch; b++)
    memcpy(dst + b * dim, dst, (size_t)dim * sizeof *dst);
  return 0;
}
