/* The "nccl" communicator (comm.h): NCCL over the ranks of an "mpi" communicator, for buffers in
 * CUDA device memory. The NCCL communicator is non-blocking (config.blocking = 0) and every
 * operation runs on the communicator's own stream, then is waited for by polling the stream and
 * ncclCommGetAsyncError with a deadline: a peer that never answers aborts the communicator
 * (ncclCommAbort) and fails the operation with an error instead of hanging. Callers hand over
 * buffers whose contents are ready (they synchronize the backend first). Host all-reduces and
 * the barrier go over the parent MPI communicator. */
#include "comm_internal.h"
#include "mpi_check.h"

#include "../kernels/error.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>
#include <time.h>

#define NCCL_POLL_NS 20000L

typedef struct nccl_comm {
  sd_comm *parent; /* "mpi", for host all-reduces, the barrier and the unique id */
  ncclComm_t comm;
  cudaStream_t stream;
  bool aborted;
} nccl_comm;

static int nccl_error(const char *call, ncclResult_t rc, const char *file, int line) {
  return sd_error_set(file, line, "%s failed: %s", call, ncclGetErrorString(rc));
}

static int cuda_error(const char *call, cudaError_t rc, const char *file, int line) {
  return sd_error_set(file, line, "%s failed: %s", call, cudaGetErrorString(rc));
}

/* ncclInProgress is the normal answer of a non-blocking communicator. */
#define NCCL_CHECK(call)                                                                           \
  do {                                                                                             \
    ncclResult_t sd_nccl_rc_ = (call);                                                             \
    if (sd_nccl_rc_ != ncclSuccess && sd_nccl_rc_ != ncclInProgress)                               \
      return nccl_error(#call, sd_nccl_rc_, __FILE__, __LINE__);                                   \
  } while (0)

#define CUDA_CHECK(call)                                                                           \
  do {                                                                                             \
    cudaError_t sd_cuda_rc_ = (call);                                                              \
    if (sd_cuda_rc_ != cudaSuccess)                                                                \
      return cuda_error(#call, sd_cuda_rc_, __FILE__, __LINE__);                                   \
  } while (0)

static double seconds_since(const struct timespec *t0) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - t0->tv_sec) + 1e-9 * (double)(now.tv_nsec - t0->tv_nsec);
}

/* Waits until the communicator is idle (init or a group call has finished enqueueing) and, when
 * stream is set, until the stream has run everything; aborts after the timeout. */
static int wait_done(sd_comm *c, bool stream, const char *what) {
  nccl_comm *n = c->impl;
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    ncclResult_t state = ncclSuccess;
    NCCL_CHECK(ncclCommGetAsyncError(n->comm, &state));
    if (state != ncclSuccess && state != ncclInProgress)
      return nccl_error(what, state, __FILE__, __LINE__);
    if (state == ncclSuccess) {
      if (!stream)
        return 0;
      cudaError_t q = cudaStreamQuery(n->stream);
      if (q == cudaSuccess)
        return 0;
      if (q != cudaErrorNotReady)
        return cuda_error("cudaStreamQuery", q, __FILE__, __LINE__);
    }
    double waited = seconds_since(&start);
    if (waited > c->timeout_s) {
      ncclCommAbort(n->comm);
      n->aborted = true;
      return SD_ERROR("%s: no answer from the group after %.0f s (a peer died or is stuck); "
                      "NCCL communicator aborted",
                      what, waited);
    }
    struct timespec pause = {0, NCCL_POLL_NS};
    nanosleep(&pause, NULL);
  }
}

static int nccl_allgatherv(sd_comm *c, const void *send, void *recv, const size_t *bytes) {
  nccl_comm *n = c->impl;
  size_t offset = 0;
  NCCL_CHECK(ncclGroupStart());
  for (int r = 0; r < c->size; r++) {
    char *dst = (char *)recv + offset;
    ncclResult_t rc =
        ncclBroadcast(r == c->rank ? send : dst, dst, bytes[r], ncclUint8, r, n->comm, n->stream);
    if (rc != ncclSuccess && rc != ncclInProgress) {
      ncclGroupEnd();
      return nccl_error("ncclBroadcast", rc, __FILE__, __LINE__);
    }
    offset += bytes[r];
  }
  NCCL_CHECK(ncclGroupEnd());
  return wait_done(c, true, "ncclBroadcast group (all-gather)");
}

static int nccl_allgather_f64(sd_comm *c, const double *data, size_t count, double *all) {
  nccl_comm *n = c->impl;
  return sd_comm_mpi_allgather_f64(n->parent, data, count, all);
}

static int nccl_exchange(sd_comm *c, const void *to_prev, void *from_prev, const void *to_next,
                         void *from_next, size_t bytes) {
  nccl_comm *n = c->impl;
  NCCL_CHECK(ncclGroupStart());
  if (c->rank > 0) {
    NCCL_CHECK(ncclSend(to_prev, bytes, ncclUint8, c->rank - 1, n->comm, n->stream));
    NCCL_CHECK(ncclRecv(from_prev, bytes, ncclUint8, c->rank - 1, n->comm, n->stream));
  }
  if (c->rank < c->size - 1) {
    NCCL_CHECK(ncclSend(to_next, bytes, ncclUint8, c->rank + 1, n->comm, n->stream));
    NCCL_CHECK(ncclRecv(from_next, bytes, ncclUint8, c->rank + 1, n->comm, n->stream));
  }
  NCCL_CHECK(ncclGroupEnd());
  return wait_done(c, true, "ncclSend/ncclRecv with the neighbours");
}

static int nccl_barrier(sd_comm *c) {
  nccl_comm *n = c->impl;
  SD_TRY(wait_done(c, true, "NCCL stream before the barrier"));
  return sd_comm_barrier(n->parent);
}

static void nccl_destroy(sd_comm *c) {
  nccl_comm *n = c->impl;
  if (!n)
    return;
  if (n->comm && !n->aborted)
    ncclCommDestroy(n->comm);
  if (n->stream)
    cudaStreamDestroy(n->stream);
  free(n);
}

static const sd_comm_ops nccl_ops = {
    .kind = "nccl",
    .device_memory = true,
    .allgatherv = nccl_allgatherv,
    .allgather_f64 = nccl_allgather_f64,
    .exchange_neighbors = nccl_exchange,
    .barrier = nccl_barrier,
    .destroy = nccl_destroy,
};

/* The unique id made on rank 0 of parent and shared with the others over it. */
static int share_unique_id(sd_comm *parent, ncclUniqueId *id) {
  size_t bytes[SD_COMM_MAX_NCCL_RANKS];
  if (parent->size > SD_COMM_MAX_NCCL_RANKS)
    return SD_ERROR("NCCL groups of more than %d ranks are not supported", SD_COMM_MAX_NCCL_RANKS);
  if (parent->rank == 0)
    NCCL_CHECK(ncclGetUniqueId(id));
  ncclUniqueId *all = malloc((size_t)parent->size * sizeof *all);
  if (!all)
    return SD_ERROR("out of memory");
  for (int r = 0; r < parent->size; r++)
    bytes[r] = sizeof *id;
  int rc = sd_comm_allgatherv(parent, id, all, bytes);
  if (rc == 0)
    *id = all[0];
  free(all);
  return rc;
}

int sd_comm_create_nccl(sd_comm *parent, int device, sd_comm **out) {
  *out = NULL;
  if (!parent || sd_comm_device_memory(parent) || parent->size < 1)
    return SD_ERROR("NCCL communicators are made from an MPI communicator");
  ncclUniqueId id;
  SD_TRY(share_unique_id(parent, &id));
  sd_comm *c = calloc(1, sizeof *c);
  nccl_comm *n = calloc(1, sizeof *n);
  if (!c || !n) {
    free(c);
    free(n);
    return SD_ERROR("communicator: out of memory");
  }
  n->parent = parent;
  *c = (sd_comm){.ops = &nccl_ops,
                 .rank = parent->rank,
                 .size = parent->size,
                 .timeout_s = parent->timeout_s,
                 .impl = n};
  int rc = 0;
  cudaError_t cuda_rc = cudaSetDevice(device);
  if (cuda_rc == cudaSuccess)
    cuda_rc = cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking);
  if (cuda_rc != cudaSuccess)
    rc = cuda_error("cudaSetDevice/cudaStreamCreateWithFlags", cuda_rc, __FILE__, __LINE__);
  if (rc == 0) {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t nrc = ncclCommInitRankConfig(&n->comm, c->size, id, c->rank, &config);
    if (nrc != ncclSuccess && nrc != ncclInProgress)
      rc = nccl_error("ncclCommInitRankConfig", nrc, __FILE__, __LINE__);
  }
  if (rc == 0)
    rc = wait_done(c, false, "ncclCommInitRankConfig");
  if (rc < 0) {
    sd_comm_free(c);
    return sd_error_context("NCCL communicator on device %d (rank %d of %d)", device, parent->rank,
                            parent->size);
  }
  *out = c;
  return 0;
}
