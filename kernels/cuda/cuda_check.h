/* Checked calls into the CUDA runtime, cuBLAS(Lt) and cuDNN. Each macro evaluates the call once;
 * on failure it records "CUDA device <n>: <call text>: <library's message>" with the caller's
 * file and line through sd_error_set, and returns -1 from the enclosing function (which must
 * return int). CUDA_CHECK_LAUNCH follows every kernel launch: launches report configuration
 * errors (bad grid, too much shared memory) only through cudaGetLastError. */
#ifndef SD_CUDA_CHECK_H
#define SD_CUDA_CHECK_H

#include "../error.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

/* Records the failure of `call` on the current device; returns -1. */
static inline int sd_cuda_fail(const char *src_file, int src_line, const char *call,
                               const char *message) {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess)
    device = -1;
  return sd_error_set(src_file, src_line, "CUDA device %d: %s: %s", device, call, message);
}

#define CUDA_CHECK(call)                                                                           \
  do {                                                                                             \
    cudaError_t sd_cuda_err_ = (call);                                                             \
    if (sd_cuda_err_ != cudaSuccess)                                                               \
      return sd_cuda_fail(__FILE__, __LINE__, #call, cudaGetErrorString(sd_cuda_err_));            \
  } while (0)

#define CUBLAS_CHECK(call)                                                                         \
  do {                                                                                             \
    cublasStatus_t sd_cublas_status_ = (call);                                                     \
    if (sd_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                                \
      return sd_cuda_fail(__FILE__, __LINE__, #call, cublasGetStatusString(sd_cublas_status_));    \
  } while (0)

#define CUDNN_CHECK(call)                                                                          \
  do {                                                                                             \
    cudnnStatus_t sd_cudnn_status_ = (call);                                                       \
    if (sd_cudnn_status_ != CUDNN_STATUS_SUCCESS)                                                  \
      return sd_cuda_fail(__FILE__, __LINE__, #call, cudnnGetErrorString(sd_cudnn_status_));       \
  } while (0)

/* After `kernel<<<...>>>(...)`: reports a failed launch, naming the kernel. */
#define CUDA_CHECK_LAUNCH(kernel_name)                                                             \
  do {                                                                                             \
    cudaError_t sd_cuda_err_ = cudaGetLastError();                                                 \
    if (sd_cuda_err_ != cudaSuccess)                                                               \
      return sd_cuda_fail(__FILE__, __LINE__, "launch of " kernel_name,                            \
                          cudaGetErrorString(sd_cuda_err_));                                       \
  } while (0)

#endif
