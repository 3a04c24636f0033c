/* The process world of a distributed run: ranks, node-local ranks, the GPU a rank binds to, and
 * point-to-point messages between the coordinator (rank 0) and the workers.
 *
 * This is the one header behind which MPI compiles out. Built with SDBATCH_MPI (the default) the
 * functions below are MPI (cluster_mpi.c); built without it they are the inline stubs at the
 * end of this file: a world of one process, where nothing is ever sent. Started without a
 * launcher (no mpirun or srun), an MPI build is a world of one process too (MPI singleton).
 *
 * The same goes for CUDA: sd_cluster_gpu_count is cudaGetDeviceCount in a CUDA build, 0
 * otherwise. */
#ifndef SD_CLUSTER_H
#define SD_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_cluster {
  int rank; /* in the world, 0 = the coordinator */
  int size; /* ranks in the world */
  /* Among the ranks that render on this node (MPI_COMM_TYPE_SHARED), rank 0 excluded when it
   * only coordinates (size > 1); -1 and 0 on that coordinator. */
  int worker_local_rank;
  int worker_local_size;
  char host[256]; /* this node's name */
} sd_cluster;

/* Any source, for sd_msg_probe. */
#define SD_MSG_ANY_SOURCE (-1)

/* What sd_msg_probe found: a message waiting to be received with sd_msg_recv. */
typedef struct sd_msg {
  int source;
  int tag;
  size_t bytes;
} sd_msg;

#ifdef SDBATCH_HAVE_CUDA
/* GPUs this process sees (cudaGetDeviceCount; 0 when none or the driver fails); never an
 * error. */
int sd_cluster_gpu_count(void);
#else
static inline int sd_cluster_gpu_count(void) {
  return 0;
}
#endif
/* The GPU a rendering rank binds to: its node-local worker rank modulo the device count, so the
 * workers of a node spread over its GPUs. -1 when gpu_count is 0. */
int sd_cluster_gpu_for_rank(const sd_cluster *cluster, int gpu_count);
/* CPU threads for a rendering rank when none are asked for: the cores of its affinity mask when
 * the launcher bound it to fewer than the node has, else the node's cores shared among the
 * node's rendering ranks; at least 1. OMP_NUM_THREADS, when set, wins (0 is returned: the
 * OpenMP default). */
int sd_cluster_default_threads(const sd_cluster *cluster);

/* Fills host and the single-process fields; used by both builds. */
void sd_cluster_init_single(sd_cluster *out);

#ifdef SDBATCH_HAVE_MPI

/* MPI_Init (once per process) and the world's layout. Errors are returned, not fatal: MPI
 * calls on the world communicator report failures through the SD_MPI_CHECK wrapper. */
int sd_cluster_init(sd_cluster *out);
/* MPI_Finalize. */
int sd_cluster_finalize(void);
/* MPI_Abort on the world: the last resort when ranks cannot be stopped cleanly. */
void sd_cluster_abort(int status);

/* Broadcast of bytes from rank 0 to every rank (collective). */
int sd_cluster_bcast(void *data, size_t bytes);
/* The node of every rank (collective): nodes[r] (size entries) is the lowest world rank on rank
 * r's node (MPI_Comm_split_type with MPI_COMM_TYPE_SHARED), so ranks on one node share a value. */
int sd_cluster_node_ids(int *nodes);

/* Sends bytes to rank dest with tag (blocking until the buffer may be reused). */
int sd_msg_send(int dest, int tag, const void *data, size_t bytes);
/* Looks for a message from source (or SD_MSG_ANY_SOURCE). wait: until one arrives (polling,
 * with sleeps of up to 1 ms between looks rather than a spinning core);
 * otherwise *found says whether one is there. */
int sd_msg_probe(int source, bool wait, sd_msg *msg, bool *found);
/* Receives the message msg describes into buf (msg->bytes long). */
int sd_msg_recv(const sd_msg *msg, void *buf);

#else /* one process: nothing to start, nothing to send */

#include "../kernels/error.h"

static inline int sd_cluster_init(sd_cluster *out) {
  sd_cluster_init_single(out);
  return 0;
}
static inline int sd_cluster_finalize(void) {
  return 0;
}
static inline void sd_cluster_abort(int status) {
  (void)status;
}
static inline int sd_cluster_bcast(void *data, size_t bytes) {
  (void)data;
  (void)bytes;
  return 0;
}
static inline int sd_cluster_node_ids(int *nodes) {
  nodes[0] = 0;
  return 0;
}
static inline int sd_msg_send(int dest, int tag, const void *data, size_t bytes) {
  (void)tag;
  (void)data;
  (void)bytes;
  return SD_ERROR("cannot send to rank %d: sdbatch was built without MPI (SDBATCH_MPI=OFF)", dest);
}
static inline int sd_msg_probe(int source, bool wait, sd_msg *msg, bool *found) {
  (void)source;
  (void)wait;
  (void)msg;
  *found = false;
  return SD_ERROR("no messages: sdbatch was built without MPI (SDBATCH_MPI=OFF)");
}
static inline int sd_msg_recv(const sd_msg *msg, void *buf) {
  (void)msg;
  (void)buf;
  return SD_ERROR("no messages: sdbatch was built without MPI (SDBATCH_MPI=OFF)");
}

#endif

#ifdef __cplusplus
}
#endif

#endif
