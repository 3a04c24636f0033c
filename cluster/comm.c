/* Communicators (comm.h): argument checks and dispatch, the all-reduce built on an all-gather
 * (so that every rank adds the same numbers in the same order), and the "self" communicator of
 * one process. Builds without MPI or NCCL get constructors that say so. */
#include "comm_internal.h"

#include "../kernels/error.h"

#include <stdlib.h>
#include <string.h>

static int self_allgatherv(sd_comm *comm, const void *send, void *recv, const size_t *bytes) {
  memcpy(recv, send, bytes[0]);
  return 0;
}

static int self_allgather_f64(sd_comm *comm, const double *data, size_t n, double *all) {
  memcpy(all, data, n * sizeof *data);
  return 0;
}

static int self_exchange(sd_comm *comm, const void *to_prev, void *from_prev, const void *to_next,
                         void *from_next, size_t bytes) {
  return 0; /* no neighbours */
}

static int self_barrier(sd_comm *comm) {
  return 0;
}

static void self_destroy(sd_comm *comm) {}

static const sd_comm_ops self_ops = {
    .kind = "self",
    .device_memory = false,
    .allgatherv = self_allgatherv,
    .allgather_f64 = self_allgather_f64,
    .exchange_neighbors = self_exchange,
    .barrier = self_barrier,
    .destroy = self_destroy,
};

int sd_comm_create_self(sd_comm **out) {
  *out = calloc(1, sizeof **out);
  if (!*out)
    return SD_ERROR("communicator: out of memory");
  **out = (sd_comm){.ops = &self_ops, .rank = 0, .size = 1, .timeout_s = 0.0};
  return 0;
}

#ifndef SDBATCH_HAVE_MPI
int sd_comm_split_world(int color, int key, double timeout_s, sd_comm **out) {
  *out = NULL;
  return SD_ERROR("no MPI communicators: sdbatch was built without MPI (SDBATCH_MPI=OFF)");
}
#endif

#ifndef SDBATCH_HAVE_NCCL
int sd_comm_create_nccl(sd_comm *parent, int device, sd_comm **out) {
  *out = NULL;
  return SD_ERROR("no NCCL communicators: sdbatch was built without NCCL (SDBATCH_NCCL=OFF)");
}
#endif

void sd_comm_free(sd_comm *comm) {
  if (!comm)
    return;
  comm->ops->destroy(comm);
  free(comm);
}

int sd_comm_rank(const sd_comm *comm) {
  return comm->rank;
}

int sd_comm_size(const sd_comm *comm) {
  return comm->size;
}

const char *sd_comm_kind(const sd_comm *comm) {
  return comm->ops->kind;
}

bool sd_comm_device_memory(const sd_comm *comm) {
  return comm->ops->device_memory;
}

bool sd_comm_failed(const sd_comm *comm) {
  return comm->failed;
}

/* Refuses an operation on a communicator that failed before. */
static int check_usable(const sd_comm *comm, const char *what) {
  if (comm->failed)
    return SD_ERROR("%s %s (rank %d of %d): the communicator failed earlier (its group is lost)",
                    comm->ops->kind, what, comm->rank, comm->size);
  return 0;
}

uint64_t sd_comm_bytes_sent(const sd_comm *comm) {
  return comm->bytes_sent;
}

int sd_comm_allgatherv(sd_comm *comm, const void *send, void *recv, const size_t *bytes) {
  if (!recv || (bytes[comm->rank] && !send))
    return SD_ERROR("%s all-gather: NULL buffer on rank %d", comm->ops->kind, comm->rank);
  SD_TRY(check_usable(comm, "all-gather"));
  if (comm->ops->allgatherv(comm, send, recv, bytes) < 0) {
    comm->failed = true;
    return sd_error_context("%s all-gather (rank %d of %d)", comm->ops->kind, comm->rank,
                            comm->size);
  }
  comm->bytes_sent += bytes[comm->rank] * (uint64_t)(comm->size - 1);
  return 0;
}

int sd_comm_allreduce_sum_f64(sd_comm *comm, double *data, size_t n) {
  if (n == 0)
    return 0;
  SD_TRY(check_usable(comm, "all-reduce"));
  double *all = malloc((size_t)comm->size * n * sizeof *all);
  if (!all)
    return SD_ERROR("%s all-reduce: out of memory for %d x %zu doubles", comm->ops->kind,
                    comm->size, n);
  int rc = comm->ops->allgather_f64(comm, data, n, all);
  if (rc == 0) {
    for (size_t i = 0; i < n; i++) {
      double sum = all[i];
      for (int r = 1; r < comm->size; r++)
        sum += all[(size_t)r * n + i];
      data[i] = sum;
    }
    comm->bytes_sent += n * sizeof *data * (uint64_t)(comm->size - 1);
  }
  if (rc < 0) {
    /* the failed all-gather may still be pending on `all` (a late peer can complete it): the
     * buffer stays allocated for good */
    comm->failed = true;
    return sd_error_context("%s all-reduce of %zu doubles (rank %d of %d)", comm->ops->kind, n,
                            comm->rank, comm->size);
  }
  free(all);
  return 0;
}

int sd_comm_exchange_neighbors(sd_comm *comm, const void *to_prev, void *from_prev,
                               const void *to_next, void *from_next, size_t bytes) {
  bool has_prev = comm->rank > 0, has_next = comm->rank < comm->size - 1;
  if ((has_prev && (!to_prev || !from_prev)) || (has_next && (!to_next || !from_next)))
    return SD_ERROR("%s neighbour exchange: NULL buffer on rank %d", comm->ops->kind, comm->rank);
  if (bytes == 0)
    return 0;
  SD_TRY(check_usable(comm, "neighbour exchange"));
  if (comm->ops->exchange_neighbors(comm, to_prev, from_prev, to_next, from_next, bytes) < 0) {
    comm->failed = true;
    return sd_error_context("%s neighbour exchange of %zu bytes (rank %d of %d)", comm->ops->kind,
                            bytes, comm->rank, comm->size);
  }
  comm->bytes_sent += bytes * (uint64_t)(has_prev + has_next);
  return 0;
}

int sd_comm_barrier(sd_comm *comm) {
  SD_TRY(check_usable(comm, "barrier"));
  if (comm->ops->barrier(comm) < 0) {
    comm->failed = true;
    return sd_error_context("%s barrier (rank %d of %d)", comm->ops->kind, comm->rank, comm->size);
  }
  return 0;
}
