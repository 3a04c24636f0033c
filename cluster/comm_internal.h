/* Private to cluster/comm*.c: the communicator object and the vtable each implementation
 * fills. Arguments reach an implementation already checked (comm.c). */
#ifndef SD_COMM_INTERNAL_H
#define SD_COMM_INTERNAL_H

#include "comm.h"

typedef struct sd_comm_ops {
  const char *kind;
  bool device_memory;
  int (*allgatherv)(sd_comm *comm, const void *send, void *recv, const size_t *bytes);
  /* every rank's n doubles into all (size * n), rank by rank */
  int (*allgather_f64)(sd_comm *comm, const double *data, size_t n, double *all);
  int (*exchange_neighbors)(sd_comm *comm, const void *to_prev, void *from_prev,
                            const void *to_next, void *from_next, size_t bytes);
  int (*barrier)(sd_comm *comm);
  void (*destroy)(sd_comm *comm);
} sd_comm_ops;

struct sd_comm {
  const sd_comm_ops *ops;
  int rank, size;
  double timeout_s;    /* how long an operation waits for its peers */
  bool failed;         /* an operation failed: later ones are refused (comm.h) */
  uint64_t bytes_sent; /* by this rank, all operations */
  void *impl;
};

/* Ranks of an NCCL group (bounds the unique-id exchange). */
#define SD_COMM_MAX_NCCL_RANKS 1024

/* The "mpi" implementation's allgather_f64, which "nccl" borrows for host all-reduces. */
int sd_comm_mpi_allgather_f64(sd_comm *comm, const double *data, size_t n, double *all);

#endif
