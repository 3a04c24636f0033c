/* The layout of a distributed run on one node, run under mpirun -n 4: rank 0 coordinates and
 * renders nothing; ranks 1..3 are the node's rendering ranks 0..2 and spread over the node's GPUs
 * (local worker rank modulo the GPU count, here pretending 2 and 3 GPUs); with no GPU, none. */
#include "test_util.h"

#include "cluster/cluster.h"

#include <stdio.h>

int main(void) {
  sd_cluster cluster;
  CHECK(sd_cluster_init(&cluster) == 0, "sd_cluster_init");
  CHECK(cluster.size == 4, "world of %d ranks, want 4 (run under mpirun -n 4)", cluster.size);
  if (cluster.rank == 0) {
    CHECK(cluster.worker_local_rank == -1, "the coordinator renders nothing: local worker rank %d",
          cluster.worker_local_rank);
  } else {
    int local = cluster.rank - 1;
    CHECK(cluster.worker_local_rank == local, "rank %d: local worker rank %d, want %d",
          cluster.rank, cluster.worker_local_rank, local);
    CHECK(cluster.worker_local_size == 3, "rank %d: %d local workers, want 3", cluster.rank,
          cluster.worker_local_size);
    CHECK(sd_cluster_gpu_for_rank(&cluster, 2) == local % 2, "rank %d: GPU %d of 2, want %d",
          cluster.rank, sd_cluster_gpu_for_rank(&cluster, 2), local % 2);
    CHECK(sd_cluster_gpu_for_rank(&cluster, 3) == local, "rank %d: GPU %d of 3, want %d",
          cluster.rank, sd_cluster_gpu_for_rank(&cluster, 3), local);
    CHECK(sd_cluster_gpu_for_rank(&cluster, 0) == -1, "rank %d: a GPU without GPUs", cluster.rank);
  }
  int status = sd_test_finish();
  sd_cluster_finalize();
  return status;
}
