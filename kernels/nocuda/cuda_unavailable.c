/* Built without SDBATCH_CUDA: the CUDA backend reports that it is absent. */
#include "../error.h"
#include "../ops.h"

#include <stddef.h>

sd_backend *sd_backend_cuda_create(int device_index, sd_dtype act_dtype) {
  (void)device_index;
  (void)act_dtype;
  SD_ERROR("this sdbatch was built without CUDA (configure with -DSDBATCH_CUDA=ON)");
  return NULL;
}
