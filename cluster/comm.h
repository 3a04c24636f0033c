/* Communicators of a group of ranks that render one image together (spatial and CFG
 * parallelism, docs/spatial.md): all-gather, all-reduce sum, the exchange of boundary rows with
 * the previous and next rank, and a barrier. Three implementations behind one interface:
 *  - "self": a group of this process alone (every build; collectives are copies);
 *  - "mpi":  a sub-communicator of the MPI world (SDBATCH_MPI; buffers in host memory);
 *  - "nccl": NCCL over the ranks of an MPI communicator (SDBATCH_NCCL; buffers in CUDA device
 *    memory, except sd_comm_allreduce_sum_f64, which is on the host and goes over MPI).
 *
 * Every operation waits at most the communicator's timeout for its peers, then fails with an
 * error naming the operation and the rank (never a hang): a dead or stuck peer fails the image.
 * After a timeout the communicator is unusable (its operations may still be pending): free it
 * and fail the item. Results are identical on every rank of the group (the all-reduce adds in
 * rank order), so ranks that share an image never disagree on a statistic. */
#ifndef SD_COMM_H
#define SD_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_comm sd_comm;

/* Seconds an operation waits for its peers when no timeout is given. */
#define SD_COMM_DEFAULT_TIMEOUT_S 300.0

/* A communicator of this process alone (rank 0 of 1). */
int sd_comm_create_self(sd_comm **out);
/* Collective over the MPI world: ranks passing the same color >= 0 form one communicator,
 * ordered by key (ties by world rank); a rank passing color < 0 joins none (*out = NULL).
 * timeout_s > 0 bounds every later operation (0: SD_COMM_DEFAULT_TIMEOUT_S). Fails in a build
 * without MPI. */
int sd_comm_split_world(int color, int key, double timeout_s, sd_comm **out);
/* NCCL over the ranks of parent (an "mpi" communicator; collective over it), on CUDA device
 * `device` (already the current device of this process). The new communicator keeps a
 * reference to parent for host all-reduces: free it before parent. Fails in a build without
 * SDBATCH_NCCL. */
int sd_comm_create_nccl(sd_comm *parent, int device, sd_comm **out);
void sd_comm_free(sd_comm *comm);

int sd_comm_rank(const sd_comm *comm);
int sd_comm_size(const sd_comm *comm);
/* "self", "mpi" or "nccl". */
const char *sd_comm_kind(const sd_comm *comm);
/* Whether sd_comm_allgatherv and sd_comm_exchange_neighbors take CUDA device memory (nccl)
 * rather than host memory (self, mpi). */
bool sd_comm_device_memory(const sd_comm *comm);
/* Whether an operation of this communicator has failed (a timeout, a peer's error): every later
 * operation then fails at once, and the group it belongs to is lost (free it). */
bool sd_comm_failed(const sd_comm *comm);
/* Bytes this rank has sent so far (all operations; for benchmarks). */
uint64_t sd_comm_bytes_sent(const sd_comm *comm);

/* recv = the concatenation in rank order of every rank's send, where rank r sends bytes[r]
 * (bytes has size entries, the same on every rank); send holds bytes[rank]. recv must not
 * overlap send. */
int sd_comm_allgatherv(sd_comm *comm, const void *send, void *recv, const size_t *bytes);
/* data (n doubles, host memory) = the sum over ranks, in place, added in rank order so that
 * every rank gets the same bits. */
int sd_comm_allreduce_sum_f64(sd_comm *comm, double *data, size_t n);
/* With the previous (rank - 1) and next (rank + 1) rank: to_prev goes to the previous rank's
 * from_next, to_next to the next rank's from_prev, `bytes` each. The first rank has no previous
 * and the last no next: their to_ / from_ buffers are not touched (may be NULL). */
int sd_comm_exchange_neighbors(sd_comm *comm, const void *to_prev, void *from_prev,
                               const void *to_next, void *from_next, size_t bytes);
int sd_comm_barrier(sd_comm *comm);

#ifdef __cplusplus
}
#endif

#endif
