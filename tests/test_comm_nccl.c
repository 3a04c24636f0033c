/* The NCCL communicator (cluster/comm_nccl.c) on GPUs, run directly or under mpirun -n N with at
 * least N GPUs (rank r uses GPU r): all-gather of unequal parts and the neighbour exchange on
 * device buffers, the host all-reduce over MPI, the barrier; values checked exactly against what
 * each rank computes for the others. Skipped (77) without a GPU per rank. */
#include "test_util.h"

#include "cluster/cluster.h"
#include "cluster/comm.h"
#include "kernels/error.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float value(int r, size_t i) {
  return 1000.0f * (float)r + (float)i + 0.25f;
}

int main(void) {
  sd_cluster world;
  if (sd_cluster_init(&world) < 0) {
    fprintf(stderr, "cluster: %s\n", sd_error_message());
    return 2;
  }
  int gpus = sd_cluster_gpu_count();
  if (gpus < world.size) {
    printf("skipped: %d GPU(s) for %d rank(s)\n", gpus, world.size);
    sd_cluster_finalize();
    return 77;
  }
  sd_comm *mpi = NULL, *nccl = NULL;
  CHECK(cudaSetDevice(world.rank) == cudaSuccess, "cudaSetDevice(%d)", world.rank);
  CHECK(sd_comm_split_world(0, world.rank, 60.0, &mpi) == 0, "mpi: %s", sd_error_message());
  CHECK(sd_comm_create_nccl(mpi, world.rank, &nccl) == 0, "nccl: %s", sd_error_message());
  if (!nccl) {
    sd_cluster_finalize();
    return sd_test_finish();
  }
  CHECK(sd_comm_device_memory(nccl) && strcmp(sd_comm_kind(nccl), "nccl") == 0, "kind %s",
        sd_comm_kind(nccl));
  int rank = sd_comm_rank(nccl), size = sd_comm_size(nccl);

  /* all-gather: rank r sends r + 3 floats */
  size_t *bytes = malloc((size_t)size * sizeof *bytes), total = 0;
  for (int r = 0; r < size; r++) {
    bytes[r] = (size_t)(r + 3) * sizeof(float);
    total += bytes[r];
  }
  float *host = malloc(total), *send_d = NULL, *recv_d = NULL;
  for (size_t i = 0; i < (size_t)rank + 3; i++)
    host[i] = value(rank, i);
  CHECK(cudaMalloc((void **)&send_d, bytes[rank]) == cudaSuccess &&
            cudaMalloc((void **)&recv_d, total) == cudaSuccess &&
            cudaMemcpy(send_d, host, bytes[rank], cudaMemcpyHostToDevice) == cudaSuccess,
        "device buffers");
  CHECK(sd_comm_allgatherv(nccl, send_d, recv_d, bytes) == 0, "allgatherv: %s", sd_error_message());
  CHECK(cudaMemcpy(host, recv_d, total, cudaMemcpyDeviceToHost) == cudaSuccess, "copy back");
  size_t at = 0, wrong = 0;
  for (int r = 0; r < size; r++)
    for (size_t i = 0; i < (size_t)r + 3; i++)
      wrong += host[at++] != value(r, i);
  CHECK(wrong == 0, "rank %d: %zu gathered values wrong", rank, wrong);

  /* neighbour exchange of 5 floats each way */
  float out[2][5], in[2][5];
  for (int i = 0; i < 5; i++) {
    out[0][i] = -value(rank, (size_t)i);
    out[1][i] = value(rank, (size_t)i);
  }
  float *d = NULL; /* to_prev, to_next, from_prev, from_next */
  CHECK(cudaMalloc((void **)&d, 4 * sizeof out[0]) == cudaSuccess &&
            cudaMemcpy(d, out, sizeof out, cudaMemcpyHostToDevice) == cudaSuccess,
        "exchange buffers");
  CHECK(sd_comm_exchange_neighbors(nccl, d, d + 10, d + 5, d + 15, sizeof out[0]) == 0,
        "exchange: %s", sd_error_message());
  CHECK(cudaMemcpy(in, d + 10, sizeof in, cudaMemcpyDeviceToHost) == cudaSuccess, "copy back");
  for (int i = 0; i < 5; i++) {
    if (rank > 0)
      CHECK(in[0][i] == value(rank - 1, (size_t)i), "from_prev[%d]", i);
    if (rank < size - 1)
      CHECK(in[1][i] == -value(rank + 1, (size_t)i), "from_next[%d]", i);
  }

  double sums[2] = {1.0 + rank, 0.5};
  CHECK(sd_comm_allreduce_sum_f64(nccl, sums, 2) == 0, "allreduce: %s", sd_error_message());
  CHECK(sums[0] == size * (size + 1) / 2.0 && sums[1] == 0.5 * size, "allreduce %g %g", sums[0],
        sums[1]);
  CHECK(sd_comm_barrier(nccl) == 0, "barrier: %s", sd_error_message());

  cudaFree(d);
  cudaFree(send_d);
  cudaFree(recv_d);
  free(host);
  free(bytes);
  sd_comm_free(nccl);
  sd_comm_free(mpi);
  int status = sd_test_finish();
  sd_cluster_finalize();
  return status;
}
