/* The communicators of rank groups (cluster/comm.h), run under mpirun -n N (N >= 1; ctest uses
 * 1 and 3): the "self" communicator; an "mpi" communicator of the whole world and one of a split
 * into two groups; all-gather with unequal parts, the rank-ordered all-reduce (the same bits on
 * every rank), the neighbour exchange, the barrier, the byte counter; and a peer that does not
 * answer turning into a timeout error instead of a hang. Every value is checked exactly against
 * what each rank computes for the others independently. */
#include "test_util.h"

#include "cluster/cluster.h"
#include "cluster/comm.h"
#include "kernels/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The value rank r puts at index i of its parts. */
static double value(int r, size_t i) {
  return 1000.0 * r + (double)i + 0.125;
}

/* Rank r of a group sends r + 1 doubles (unequal parts). */
static void check_allgatherv(sd_comm *c, const char *what) {
  int rank = sd_comm_rank(c), size = sd_comm_size(c);
  size_t *bytes = malloc((size_t)size * sizeof *bytes), total = 0;
  for (int r = 0; r < size; r++) {
    bytes[r] = (size_t)(r + 1) * sizeof(double);
    total += bytes[r];
  }
  double *send = malloc(bytes[rank]), *recv = malloc(total);
  for (size_t i = 0; i <= (size_t)rank; i++)
    send[i] = value(rank, i);
  CHECK(sd_comm_allgatherv(c, send, recv, bytes) == 0, "%s: allgatherv: %s", what,
        sd_error_message());
  size_t at = 0, wrong = 0;
  for (int r = 0; r < size; r++)
    for (size_t i = 0; i <= (size_t)r; i++)
      wrong += recv[at++] != value(r, i);
  CHECK(wrong == 0, "%s: rank %d: %zu of %zu gathered values wrong", what, rank, wrong, at);
  free(send);
  free(recv);
  free(bytes);
}

/* Values whose float sum depends on the order: every rank must still get the same bits, the
 * rank-ordered sum. */
static void check_allreduce(sd_comm *c, const char *what) {
  int rank = sd_comm_rank(c), size = sd_comm_size(c);
  enum { N = 5 };
  double data[N], want[N];
  for (size_t i = 0; i < N; i++) {
    data[i] = (rank % 2 ? 1e16 : 1.0) * (double)(i + 1) + 0.1 * rank;
    want[i] = 0.0;
    for (int r = 0; r < size; r++)
      want[i] += (r % 2 ? 1e16 : 1.0) * (double)(i + 1) + 0.1 * r;
  }
  CHECK(sd_comm_allreduce_sum_f64(c, data, N) == 0, "%s: allreduce: %s", what, sd_error_message());
  CHECK(memcmp(data, want, sizeof data) == 0, "%s: rank %d: all-reduce %.17g, want %.17g", what,
        rank, data[0], want[0]);
}

static void check_exchange(sd_comm *c, const char *what) {
  int rank = sd_comm_rank(c), size = sd_comm_size(c);
  enum { N = 7 };
  double to_prev[N], to_next[N], from_prev[N], from_next[N];
  for (size_t i = 0; i < N; i++) {
    to_prev[i] = -value(rank, i);
    to_next[i] = value(rank, i);
    from_prev[i] = from_next[i] = 0.5;
  }
  CHECK(sd_comm_exchange_neighbors(c, to_prev, from_prev, to_next, from_next, sizeof to_prev) == 0,
        "%s: exchange: %s", what, sd_error_message());
  for (size_t i = 0; i < N; i++) {
    double want_prev = rank > 0 ? value(rank - 1, i) : 0.5;
    double want_next = rank < size - 1 ? -value(rank + 1, i) : 0.5;
    CHECK(from_prev[i] == want_prev && from_next[i] == want_next,
          "%s: rank %d: from_prev[%zu] %g (want %g), from_next %g (want %g)", what, rank, i,
          from_prev[i], want_prev, from_next[i], want_next);
  }
}

static void check_group(sd_comm *c, const char *what, int want_size) {
  CHECK(sd_comm_size(c) == want_size, "%s: %d ranks, want %d", what, sd_comm_size(c), want_size);
  CHECK(!sd_comm_device_memory(c), "%s: host memory", what);
  uint64_t before = sd_comm_bytes_sent(c);
  check_allgatherv(c, what);
  check_allreduce(c, what);
  check_exchange(c, what);
  CHECK(sd_comm_barrier(c) == 0, "%s: barrier: %s", what, sd_error_message());
  int rank = sd_comm_rank(c), size = sd_comm_size(c);
  uint64_t want = (uint64_t)(rank + 1) * 8 * (size - 1) + 5 * 8 * (uint64_t)(size - 1) +
                  7 * 8 * (uint64_t)((rank > 0) + (rank < size - 1));
  CHECK(sd_comm_bytes_sent(c) - before == want, "%s: rank %d sent %llu bytes, want %llu", what,
        rank, (unsigned long long)(sd_comm_bytes_sent(c) - before), (unsigned long long)want);
}

#ifdef SDBATCH_HAVE_MPI
/* Rank 0 waits at a barrier the others join only after its timeout of 0.3 s: an error, not a
 * hang (the others wait up to 30 s). */
static void check_timeout(const sd_cluster *world) {
  sd_comm *c = NULL;
  CHECK(sd_comm_split_world(0, world->rank, world->rank == 0 ? 0.3 : 30.0, &c) == 0, "split: %s",
        sd_error_message());
  if (!c)
    return;
  if (world->rank == 0) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = sd_comm_barrier(c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    CHECK(rc < 0 && strstr(sd_error_message(), "no answer from the group"),
          "a barrier nobody joins fails with a timeout (rc %d, '%s')", rc, sd_error_message());
    CHECK(waited >= 0.29 && waited < 5.0, "the timeout of 0.3 s took %.2f s", waited);
    printf("timeout error: %s\n", sd_error_message());
    /* the group is lost: later operations fail at once */
    CHECK(sd_comm_failed(c), "the communicator is marked failed after the timeout");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double one = 1.0;
    rc = sd_comm_allreduce_sum_f64(c, &one, 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    waited = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    CHECK(rc < 0 && strstr(sd_error_message(), "failed earlier") && waited < 0.1,
          "an operation after the failure is refused at once (rc %d, %.3f s, '%s')", rc, waited,
          sd_error_message());
  } else {
    usleep(600000); /* past rank 0's deadline, then complete its pending barrier */
    CHECK(sd_comm_barrier(c) == 0, "late barrier: %s", sd_error_message());
    CHECK(!sd_comm_failed(c), "a communicator whose operations succeed is not marked failed");
  }
  sd_comm_free(c);
}
#endif

int main(void) {
  sd_cluster world;
  CHECK(sd_cluster_init(&world) == 0, "sd_cluster_init: %s", sd_error_message());

  sd_comm *self = NULL;
  CHECK(sd_comm_create_self(&self) == 0, "self: %s", sd_error_message());
  CHECK(strcmp(sd_comm_kind(self), "self") == 0, "kind %s", sd_comm_kind(self));
  check_group(self, "self", 1);
  sd_comm_free(self);

#ifndef SDBATCH_HAVE_MPI
  sd_comm *none = NULL;
  CHECK(sd_comm_split_world(0, 0, 30.0, &none) < 0 && !none &&
            strstr(sd_error_message(), "without MPI"),
        "a build without MPI refuses MPI communicators");
  return sd_test_finish();
#else
  sd_comm *all = NULL;
  CHECK(sd_comm_split_world(0, world.rank, 30.0, &all) == 0, "world: %s", sd_error_message());
  CHECK(all && strcmp(sd_comm_kind(all), "mpi") == 0, "an mpi communicator");
  if (all) {
    CHECK(sd_comm_rank(all) == world.rank, "rank %d in the world communicator, want %d",
          sd_comm_rank(all), world.rank);
    check_group(all, "world", world.size);
  }

  /* two groups: ranks below half and the rest, ordered backwards (key) */
  int half = (world.size + 1) / 2, color = world.rank < half;
  sd_comm *group = NULL;
  CHECK(sd_comm_split_world(color, -world.rank, 30.0, &group) == 0, "split: %s",
        sd_error_message());
  if (group) {
    int want_size = color ? half : world.size - half;
    int first = color ? 0 : half;
    CHECK(sd_comm_rank(group) == want_size - 1 - (world.rank - first),
          "world rank %d is rank %d of its group, want %d", world.rank, sd_comm_rank(group),
          want_size - 1 - (world.rank - first));
    check_group(group, color ? "first group" : "second group", want_size);
    sd_comm_free(group);
  }

  /* a rank that joins no group */
  sd_comm *none = NULL;
  CHECK(sd_comm_split_world(world.rank == 0 ? -1 : 0, 0, 30.0, &none) == 0, "split: %s",
        sd_error_message());
  CHECK((none == NULL) == (world.rank == 0), "color -1 joins no communicator");
  sd_comm_free(none);

  if (world.size > 1)
    check_timeout(&world);
  if (all)
    CHECK(sd_comm_barrier(all) == 0, "final barrier: %s", sd_error_message());
  sd_comm_free(all);
  int status = sd_test_finish();
  sd_cluster_finalize();
  return status;
#endif
}
