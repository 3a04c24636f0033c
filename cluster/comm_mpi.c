/* The "mpi" communicator (comm.h): a sub-communicator of the world, every operation a
 * non-blocking MPI call completed by a polling wait with a deadline. The wait spins briefly and
 * then sleeps between polls (as sd_msg_probe does), so that ranks sharing cores leave them to
 * the ranks that compute, and a peer that never answers turns into an error after the
 * communicator's timeout instead of a hang. */
#include "comm_internal.h"
#include "mpi_check.h"

#include "../kernels/error.h"

#include <limits.h>
#include <stdlib.h>
#include <time.h>

#define WAIT_SPIN_NS      200000L
#define WAIT_SLEEP_MIN_NS 10000L
#define WAIT_SLEEP_MAX_NS 1000000L

/* Tags of the neighbour exchange: data travelling towards lower and higher ranks. */
#define TAG_TO_PREV 1
#define TAG_TO_NEXT 2

typedef struct mpi_comm {
  MPI_Comm comm;
  bool broken; /* an operation timed out: requests may still be pending on comm */
} mpi_comm;

static MPI_Comm comm_of(const sd_comm *c) {
  return ((const mpi_comm *)c->impl)->comm;
}

static double seconds_since(const struct timespec *t0) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - t0->tv_sec) + 1e-9 * (double)(now.tv_nsec - t0->tv_nsec);
}

/* Completes n requests or fails after the communicator's timeout. */
static int wait_all(sd_comm *c, int n, MPI_Request *requests, const char *what) {
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  long sleep_ns = WAIT_SLEEP_MIN_NS;
  for (;;) {
    int done = 0;
    SD_MPI_CHECK(MPI_Testall(n, requests, &done, MPI_STATUSES_IGNORE));
    if (done)
      return 0;
    double waited = seconds_since(&start);
    if (waited > c->timeout_s) {
      ((mpi_comm *)c->impl)->broken = true;
      return SD_ERROR("%s: no answer from the group after %.1f s (a peer died or is stuck)", what,
                      waited);
    }
    if (waited * 1e9 < WAIT_SPIN_NS)
      continue;
    struct timespec pause = {0, sleep_ns};
    nanosleep(&pause, NULL);
    sleep_ns = sleep_ns * 2 < WAIT_SLEEP_MAX_NS ? sleep_ns * 2 : WAIT_SLEEP_MAX_NS;
  }
}

static int check_count(size_t bytes, const char *what) {
  if (bytes > (size_t)INT_MAX)
    return SD_ERROR("%s of %zu bytes: more than MPI's int count allows", what, bytes);
  return 0;
}

static int mpi_allgatherv(sd_comm *c, const void *send, void *recv, const size_t *bytes) {
  int *counts = malloc(2 * (size_t)c->size * sizeof *counts);
  if (!counts)
    return SD_ERROR("out of memory");
  int *displs = counts + c->size;
  size_t offset = 0;
  int rc = 0;
  for (int r = 0; r < c->size && rc == 0; r++) {
    rc = check_count(bytes[r], "all-gather part");
    if (rc == 0)
      rc = check_count(offset, "all-gather offset");
    counts[r] = (int)bytes[r];
    displs[r] = (int)offset;
    offset += bytes[r];
  }
  MPI_Request request = MPI_REQUEST_NULL;
  if (rc == 0) {
    int mpi_rc = MPI_Iallgatherv(send, counts[c->rank], MPI_BYTE, recv, counts, displs, MPI_BYTE,
                                 comm_of(c), &request);
    if (mpi_rc != MPI_SUCCESS)
      rc = sd_mpi_error("MPI_Iallgatherv", mpi_rc, __FILE__, __LINE__);
  }
  if (rc == 0)
    rc = wait_all(c, 1, &request, "MPI_Iallgatherv");
  free(counts);
  return rc;
}

int sd_comm_mpi_allgather_f64(sd_comm *c, const double *data, size_t n, double *all) {
  SD_TRY(check_count(n, "all-gather of doubles"));
  MPI_Request request = MPI_REQUEST_NULL;
  SD_MPI_CHECK(
      MPI_Iallgather(data, (int)n, MPI_DOUBLE, all, (int)n, MPI_DOUBLE, comm_of(c), &request));
  return wait_all(c, 1, &request, "MPI_Iallgather");
}

static int mpi_exchange(sd_comm *c, const void *to_prev, void *from_prev, const void *to_next,
                        void *from_next, size_t bytes) {
  SD_TRY(check_count(bytes, "neighbour exchange"));
  MPI_Comm comm = comm_of(c);
  MPI_Request requests[4];
  int n = 0, count = (int)bytes;
  if (c->rank > 0) {
    SD_MPI_CHECK(
        MPI_Irecv(from_prev, count, MPI_BYTE, c->rank - 1, TAG_TO_NEXT, comm, &requests[n++]));
    SD_MPI_CHECK(
        MPI_Isend(to_prev, count, MPI_BYTE, c->rank - 1, TAG_TO_PREV, comm, &requests[n++]));
  }
  if (c->rank < c->size - 1) {
    SD_MPI_CHECK(
        MPI_Irecv(from_next, count, MPI_BYTE, c->rank + 1, TAG_TO_PREV, comm, &requests[n++]));
    SD_MPI_CHECK(
        MPI_Isend(to_next, count, MPI_BYTE, c->rank + 1, TAG_TO_NEXT, comm, &requests[n++]));
  }
  return wait_all(c, n, requests, "MPI_Isend/MPI_Irecv with the neighbours");
}

static int mpi_barrier(sd_comm *c) {
  MPI_Request request = MPI_REQUEST_NULL;
  SD_MPI_CHECK(MPI_Ibarrier(comm_of(c), &request));
  return wait_all(c, 1, &request, "MPI_Ibarrier");
}

static void mpi_destroy(sd_comm *c) {
  mpi_comm *m = c->impl;
  if (!m)
    return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  /* a communicator with requests that timed out is left to MPI_Finalize: freeing it under a
   * pending operation crashes Open MPI */
  if (!finalized && m->comm != MPI_COMM_NULL && !m->broken)
    MPI_Comm_free(&m->comm);
  free(m);
}

static const sd_comm_ops mpi_ops = {
    .kind = "mpi",
    .device_memory = false,
    .allgatherv = mpi_allgatherv,
    .allgather_f64 = sd_comm_mpi_allgather_f64,
    .exchange_neighbors = mpi_exchange,
    .barrier = mpi_barrier,
    .destroy = mpi_destroy,
};

int sd_comm_split_world(int color, int key, double timeout_s, sd_comm **out) {
  *out = NULL;
  MPI_Comm comm = MPI_COMM_NULL;
  SD_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, color < 0 ? MPI_UNDEFINED : color, key, &comm));
  if (comm == MPI_COMM_NULL)
    return 0;
  int rc = MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  sd_comm *c = calloc(1, sizeof *c);
  mpi_comm *m = calloc(1, sizeof *m);
  if (rc != MPI_SUCCESS || !c || !m) {
    free(c);
    free(m);
    MPI_Comm_free(&comm);
    if (rc != MPI_SUCCESS)
      return sd_mpi_error("MPI_Comm_set_errhandler", rc, __FILE__, __LINE__);
    return SD_ERROR("communicator: out of memory");
  }
  m->comm = comm;
  *c = (sd_comm){.ops = &mpi_ops,
                 .timeout_s = timeout_s > 0.0 ? timeout_s : SD_COMM_DEFAULT_TIMEOUT_S,
                 .impl = m};
  if (MPI_Comm_rank(comm, &c->rank) != MPI_SUCCESS ||
      MPI_Comm_size(comm, &c->size) != MPI_SUCCESS) {
    sd_comm_free(c);
    return SD_ERROR("MPI_Comm_rank/size of a new communicator failed");
  }
  *out = c;
  return 0;
}
