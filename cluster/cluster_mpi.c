/* The process world over MPI (cluster.h): initialisation, the node-local layout of the rendering
 * ranks (MPI_Comm_split_type with MPI_COMM_TYPE_SHARED), broadcasts and byte messages. */
#include "cluster.h"
#include "mpi_check.h"

#include "../kernels/error.h"

#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <time.h>

int sd_mpi_error(const char *call, int code, const char *src_file, int src_line) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS)
    snprintf(text, sizeof text, "MPI error code %d", code);
  int initialized = 0, finalized = 0, rank = -1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized)
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return sd_error_set(src_file, src_line, "%s failed on rank %d: %s", call, rank, text);
}

/* The rendering ranks' layout on this node: every rank when the world is one process, all but
 * the coordinator otherwise. */
static int init_worker_layout(sd_cluster *out) {
  int renders = out->size == 1 || out->rank != 0;
  MPI_Comm renderers = MPI_COMM_NULL;
  SD_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, renders ? 0 : MPI_UNDEFINED, out->rank, &renderers));
  if (!renders) {
    out->worker_local_rank = -1;
    out->worker_local_size = 0;
    return 0;
  }
  MPI_Comm node = MPI_COMM_NULL;
  int rc = MPI_Comm_split_type(renderers, MPI_COMM_TYPE_SHARED, out->rank, MPI_INFO_NULL, &node);
  if (rc == MPI_SUCCESS)
    rc = MPI_Comm_rank(node, &out->worker_local_rank);
  if (rc == MPI_SUCCESS)
    rc = MPI_Comm_size(node, &out->worker_local_size);
  if (node != MPI_COMM_NULL)
    MPI_Comm_free(&node);
  MPI_Comm_free(&renderers);
  if (rc != MPI_SUCCESS)
    return sd_mpi_error("MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)", rc, __FILE__, __LINE__);
  return 0;
}

int sd_cluster_init(sd_cluster *out) {
  sd_cluster_init_single(out);
  int initialized = 0;
  SD_MPI_CHECK(MPI_Initialized(&initialized));
  if (!initialized)
    SD_MPI_CHECK(MPI_Init(NULL, NULL));
  SD_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  SD_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &out->rank));
  SD_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &out->size));
  return init_worker_layout(out);
}

int sd_cluster_finalize(void) {
  int finalized = 0;
  SD_MPI_CHECK(MPI_Finalized(&finalized));
  if (!finalized)
    SD_MPI_CHECK(MPI_Finalize());
  return 0;
}

void sd_cluster_abort(int status) {
  MPI_Abort(MPI_COMM_WORLD, status);
}

static int check_count(size_t bytes, const char *what) {
  if (bytes > (size_t)INT_MAX)
    return SD_ERROR("%s of %zu bytes: more than MPI's int count allows", what, bytes);
  return 0;
}

int sd_cluster_bcast(void *data, size_t bytes) {
  SD_TRY(check_count(bytes, "broadcast"));
  SD_MPI_CHECK(MPI_Bcast(data, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD));
  return 0;
}

int sd_cluster_node_ids(int *nodes) {
  int rank = 0;
  SD_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  MPI_Comm node = MPI_COMM_NULL;
  SD_MPI_CHECK(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
  int first = rank;
  int rc = MPI_Allreduce(&rank, &first, 1, MPI_INT, MPI_MIN, node);
  MPI_Comm_free(&node);
  if (rc != MPI_SUCCESS)
    return sd_mpi_error("MPI_Allreduce(MPI_MIN) on the node", rc, __FILE__, __LINE__);
  SD_MPI_CHECK(MPI_Allgather(&first, 1, MPI_INT, nodes, 1, MPI_INT, MPI_COMM_WORLD));
  return 0;
}

int sd_msg_send(int dest, int tag, const void *data, size_t bytes) {
  SD_TRY(check_count(bytes, "message"));
  SD_MPI_CHECK(MPI_Send(data, (int)bytes, MPI_BYTE, dest, tag, MPI_COMM_WORLD));
  return 0;
}

/* A blocking MPI_Probe spins on a core for as long as it waits. A waiting rank here polls
 * without pause for the first SPIN_NS (an answer usually comes within that), then sleeps
 * between polls (20 us, doubling up to 1 ms), so that ranks sharing cores leave them to those
 * that render. */
#define POLL_SPIN_NS      1000000L
#define POLL_SLEEP_MIN_NS 20000L
#define POLL_SLEEP_MAX_NS 1000000L

static long elapsed_ns(const struct timespec *since) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - since->tv_sec) * 1000000000L + (now.tv_nsec - since->tv_nsec);
}

int sd_msg_probe(int source, bool wait, sd_msg *msg, bool *found) {
  MPI_Status status;
  int from = source == SD_MSG_ANY_SOURCE ? MPI_ANY_SOURCE : source;
  int flag = 0;
  long sleep_ns = POLL_SLEEP_MIN_NS;
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    SD_MPI_CHECK(MPI_Iprobe(from, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &status));
    if (flag || !wait)
      break;
    if (elapsed_ns(&start) < POLL_SPIN_NS)
      continue;
    struct timespec pause = {0, sleep_ns};
    nanosleep(&pause, NULL);
    sleep_ns = sleep_ns * 2 < POLL_SLEEP_MAX_NS ? sleep_ns * 2 : POLL_SLEEP_MAX_NS;
  }
  *found = flag != 0;
  if (!flag)
    return 0;
  int count = 0;
  SD_MPI_CHECK(MPI_Get_count(&status, MPI_BYTE, &count));
  msg->source = status.MPI_SOURCE;
  msg->tag = status.MPI_TAG;
  msg->bytes = (size_t)count;
  return 0;
}

int sd_msg_recv(const sd_msg *msg, void *buf) {
  SD_MPI_CHECK(MPI_Recv(buf, (int)msg->bytes, MPI_BYTE, msg->source, msg->tag, MPI_COMM_WORLD,
                        MPI_STATUS_IGNORE));
  return 0;
}
