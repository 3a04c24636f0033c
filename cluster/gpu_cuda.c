/* The GPU count of a CUDA build (cluster.h): what cudaGetDeviceCount reports, 0 on any driver
 * error (no GPU, no driver), so that device "auto" falls back to the CPU. */
#include "cluster.h"

#include <cuda_runtime_api.h>

int sd_cluster_gpu_count(void) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess)
    return 0;
  return count;
}
