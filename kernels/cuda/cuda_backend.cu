/* The CUDA backend: device memory and the vtable of kernels/cuda ops. The compute ops land with
 * the CUDA backend work (issue 4); until then the backend creates, allocates and copies, and each
 * compute op reports that it is not available on CUDA yet. */
#include "../error.h"
#include "../ops.h"

#include <cuda_runtime.h>
#include <stdlib.h>

#define CUDA_CHECK(call)                                                                           \
  do {                                                                                             \
    cudaError_t cuda_check_err_ = (call);                                                          \
    if (cuda_check_err_ != cudaSuccess)                                                            \
      return sd_error_set(__FILE__, __LINE__, "%s: %s", #call,                                     \
                          cudaGetErrorString(cuda_check_err_));                                    \
  } while (0)

extern "C" {

sd_backend *sd_backend_cuda_create(int device_index, sd_dtype act_dtype) {
  (void)act_dtype;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    SD_ERROR("no CUDA device available (%s)", err != cudaSuccess ? cudaGetErrorString(err)
                                                                 : "device count is 0");
    return NULL;
  }
  if (device_index < 0 || device_index >= count) {
    SD_ERROR("CUDA device %d requested, %d present", device_index, count);
    return NULL;
  }
  SD_ERROR("the CUDA backend's compute ops are not implemented yet; use --device cpu");
  return NULL;
}

} /* extern "C" */
