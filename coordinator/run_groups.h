/* The rank groups of a run (the job's ranks_per_image, docs/jobs.md): which worker ranks render
 * each image together, and each rank's communicators in its group.
 *
 * Rank 0 coordinates and renders nothing, so groups are made of ranks 1 .. size - 1: node by
 * node (nodes in the order of their lowest rank), each node's workers in rank order cut into
 * groups of ranks_per_image; the workers left over on every node are then pooled in rank order
 * and cut the same way (groups across nodes); the last fewer than ranks_per_image stay idle.
 * A group's first rank (its lowest) is its leader: it alone talks to rank 0 (work requests,
 * results) and hands each batch to the others over the group's communicator. With
 * ranks_per_image 1 every worker is a group of its own, with no communicator. */
#ifndef SD_RUN_GROUPS_H
#define SD_RUN_GROUPS_H

#include "../cluster/comm.h"
#include "../worker/pipeline/engine.h"

#include <stdbool.h>

typedef struct sd_run_groups {
  int world_size;
  int ranks_per_image;
  int n_groups;
  int *group;    /* (world_size) each rank's group, -1 for rank 0 and idle ranks */
  int *position; /* (world_size) its place in the group, 0 = leader; -1 outside groups */
  int *members;  /* (n_groups * ranks_per_image) world ranks, group by group, in position order */
} sd_run_groups;

/* The groups from the ranks' nodes (nodes[r]: any id shared by the ranks of one node). A pure
 * function: every rank computes the same groups. Free with sd_run_groups_free. */
int sd_run_groups_plan(const int *nodes, int world_size, int ranks_per_image, sd_run_groups *out);
void sd_run_groups_free(sd_run_groups *groups);
/* World rank of group g's leader. */
int sd_run_groups_leader(const sd_run_groups *groups, int g);
/* "ranks 3-4" (consecutive) or "ranks 3, 6" for group g, into buf. */
const char *sd_run_groups_describe(const sd_run_groups *groups, int g, char *buf, size_t size);

/* One rank's communicators in its group (all NULL with ranks_per_image 1 or outside groups). */
typedef struct sd_run_group_comms {
  sd_comm *group;       /* every rank of the group, ordered by position (batches go out on it) */
  sd_comm *spatial;     /* the ranks sharing the rows of an image: the group, or its CFG half */
  sd_comm *cfg;         /* with cfg_parallel: this rank and its partner in the other half */
  sd_image_group image; /* what the renderer passes to sd_render_group */
} sd_run_group_comms;

/* Forms this rank's communicators (collective over the world: every rank calls it with the same
 * groups, rank 0 and idle ranks included). With cfg_parallel, positions [0, N/2) run the
 * unconditional half and [N/2, N) the conditional one, position p pairing with p + N/2.
 * timeout_s bounds every operation (0: SD_COMM_DEFAULT_TIMEOUT_S). */
int sd_run_groups_join(const sd_run_groups *groups, int rank, bool cfg_parallel, double timeout_s,
                       sd_run_group_comms *out);
/* The groups of a run and this rank's communicators, formed after the plan broadcast (collective
 * over the world: every rank of a multi-rank run calls it with the same ranks_per_image). With
 * ranks_per_image 1 it plans groups of one and calls nothing collective. */
int sd_run_groups_form(int rank, int world_size, int ranks_per_image, bool cfg_parallel,
                       double timeout_s, sd_run_groups *groups, sd_run_group_comms *comms);
/* The group a renderer passes to sd_render_group: NULL when this rank renders alone. */
sd_image_group *sd_run_group_image(sd_run_group_comms *comms);
/* Whether any of the communicators failed (the group is lost). */
bool sd_run_group_failed(const sd_run_group_comms *comms);
void sd_run_group_comms_free(sd_run_group_comms *comms);

#endif
