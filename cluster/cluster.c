/* The parts of the process world that need no MPI: the node's name, the GPU a rank binds to and
 * a rank's default CPU thread count. */
#define _GNU_SOURCE
#include "cluster.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sd_cluster_init_single(sd_cluster *out) {
  memset(out, 0, sizeof *out);
  out->rank = 0;
  out->size = 1;
  out->worker_local_rank = 0;
  out->worker_local_size = 1;
  if (gethostname(out->host, sizeof out->host - 1) != 0)
    strcpy(out->host, "localhost");
}

int sd_cluster_gpu_for_rank(const sd_cluster *cluster, int gpu_count) {
  if (gpu_count <= 0 || cluster->worker_local_rank < 0)
    return -1;
  return cluster->worker_local_rank % gpu_count;
}

int sd_cluster_default_threads(const sd_cluster *cluster) {
  const char *omp = getenv("OMP_NUM_THREADS");
  if (omp && omp[0])
    return 0;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  if (online < 1)
    online = 1;
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof mask, &mask) == 0) {
    int bound = CPU_COUNT(&mask);
    if (bound >= 1 && bound < online)
      return bound;
  }
  int sharing = cluster->worker_local_size > 0 ? cluster->worker_local_size : 1;
  long threads = online / sharing;
  return threads >= 1 ? (int)threads : 1;
}
