/* Rank groups of a run (run_groups.h). */
#include "run_groups.h"

#include "../cluster/cluster.h"
#include "../kernels/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sd_run_groups_free(sd_run_groups *groups) {
  free(groups->group);
  free(groups->position);
  free(groups->members);
  memset(groups, 0, sizeof *groups);
}

/* Appends the ranks ranks[0 .. n) as groups of N while N remain; returns how many were used. */
static int cut_groups(sd_run_groups *g, const int *ranks, int n) {
  int N = g->ranks_per_image, used = 0;
  for (; n - used >= N; used += N) {
    int id = g->n_groups++;
    for (int p = 0; p < N; p++) {
      int r = ranks[used + p];
      g->group[r] = id;
      g->position[r] = p;
      g->members[id * N + p] = r;
    }
  }
  return used;
}

int sd_run_groups_plan(const int *nodes, int world_size, int ranks_per_image, sd_run_groups *out) {
  memset(out, 0, sizeof *out);
  if (world_size < 1 || ranks_per_image < 1)
    return SD_ERROR("rank groups: %d ranks, %d per image", world_size, ranks_per_image);
  out->world_size = world_size;
  out->ranks_per_image = ranks_per_image;
  size_t n = (size_t)world_size;
  out->group = malloc(n * sizeof *out->group);
  out->position = malloc(n * sizeof *out->position);
  out->members = malloc(n * sizeof *out->members);
  int *node_ranks = malloc(n * sizeof *node_ranks), *pool = malloc(n * sizeof *pool);
  bool *placed = calloc(n, sizeof *placed);
  if (!out->group || !out->position || !out->members || !node_ranks || !pool || !placed) {
    free(node_ranks);
    free(pool);
    free(placed);
    sd_run_groups_free(out);
    return SD_ERROR("rank groups: out of memory for %d ranks", world_size);
  }
  for (int r = 0; r < world_size; r++)
    out->group[r] = out->position[r] = -1;
  /* the workers are ranks 1 .. size - 1 (rank 0 coordinates); in a world of one, none */
  int n_pool = 0;
  for (int r = 1; r < world_size; r++) {
    if (placed[r])
      continue;
    int count = 0; /* r's node: r is its lowest worker not looked at */
    for (int s = r; s < world_size; s++)
      if (!placed[s] && nodes[s] == nodes[r]) {
        node_ranks[count++] = s;
        placed[s] = true;
      }
    int used = cut_groups(out, node_ranks, count);
    for (int k = used; k < count; k++)
      pool[n_pool++] = node_ranks[k];
  }
  /* leftovers of every node in rank order: groups across nodes */
  for (int i = 1; i < n_pool; i++)
    for (int k = i; k > 0 && pool[k - 1] > pool[k]; k--) {
      int t = pool[k];
      pool[k] = pool[k - 1];
      pool[k - 1] = t;
    }
  cut_groups(out, pool, n_pool);
  free(node_ranks);
  free(pool);
  free(placed);
  return 0;
}

int sd_run_groups_leader(const sd_run_groups *groups, int g) {
  return groups->members[g * groups->ranks_per_image];
}

const char *sd_run_groups_describe(const sd_run_groups *groups, int g, char *buf, size_t size) {
  int N = groups->ranks_per_image;
  const int *m = &groups->members[g * N];
  bool consecutive = true;
  for (int p = 1; p < N; p++)
    consecutive = consecutive && m[p] == m[p - 1] + 1;
  if (N == 1) {
    snprintf(buf, size, "rank %d", m[0]);
  } else if (consecutive) {
    snprintf(buf, size, "ranks %d-%d", m[0], m[N - 1]);
  } else {
    size_t at = (size_t)snprintf(buf, size, "ranks %d", m[0]);
    for (int p = 1; p < N && at < size; p++)
      at += (size_t)snprintf(buf + at, size - at, ", %d", m[p]);
  }
  return buf;
}

int sd_run_groups_join(const sd_run_groups *groups, int rank, bool cfg_parallel, double timeout_s,
                       sd_run_group_comms *out) {
  memset(out, 0, sizeof *out);
  int N = groups->ranks_per_image;
  if (N == 1)
    return 0; /* no communicators: nothing collective to do */
  int g = groups->group[rank], p = groups->position[rank];
  bool in = g >= 0;
  /* every rank takes part in every split (MPI_Comm_split is collective over the world) */
  int rc = sd_comm_split_world(in ? g : -1, p, timeout_s, &out->group);
  if (rc < 0)
    sd_error_context("the communicator of a rank group");
  if (rc == 0 && cfg_parallel) {
    int half = N / 2;
    rc = sd_comm_split_world(in ? 2 * g + p / half : -1, p % half, timeout_s, &out->spatial);
    if (rc < 0)
      sd_error_context("the spatial communicator of a CFG half");
    if (rc == 0 && (rc = sd_comm_split_world(in ? g * half + p % half : -1, p / half, timeout_s,
                                             &out->cfg)) < 0)
      sd_error_context("the communicator of a CFG pair");
  } else if (rc == 0) {
    rc = sd_comm_split_world(in ? g : -1, p, timeout_s, &out->spatial);
    if (rc < 0)
      sd_error_context("the spatial communicator of a rank group");
  }
  if (rc < 0) {
    sd_run_group_comms_free(out);
    return -1;
  }
  out->image.spatial = out->spatial;
  out->image.cfg = out->cfg;
  return 0;
}

int sd_run_groups_form(int rank, int world_size, int ranks_per_image, bool cfg_parallel,
                       double timeout_s, sd_run_groups *groups, sd_run_group_comms *comms) {
  memset(comms, 0, sizeof *comms);
  int *nodes = calloc((size_t)world_size, sizeof *nodes);
  if (!nodes)
    return SD_ERROR("rank groups: out of memory for %d ranks", world_size);
  int rc = 0;
  if (ranks_per_image > 1 && (rc = sd_cluster_node_ids(nodes)) < 0)
    sd_error_context("finding the node of every rank");
  if (rc == 0)
    rc = sd_run_groups_plan(nodes, world_size, ranks_per_image, groups);
  free(nodes);
  SD_TRY(rc);
  if (sd_run_groups_join(groups, rank, cfg_parallel, timeout_s, comms) < 0) {
    sd_run_groups_free(groups);
    return -1;
  }
  return 0;
}

sd_image_group *sd_run_group_image(sd_run_group_comms *comms) {
  return comms->group ? &comms->image : NULL;
}

bool sd_run_group_failed(const sd_run_group_comms *comms) {
  return (comms->group && sd_comm_failed(comms->group)) ||
         (comms->spatial && sd_comm_failed(comms->spatial)) ||
         (comms->cfg && sd_comm_failed(comms->cfg));
}

void sd_run_group_comms_free(sd_run_group_comms *comms) {
  sd_comm_free(comms->cfg);
  sd_comm_free(comms->spatial);
  sd_comm_free(comms->group);
  memset(comms, 0, sizeof *comms);
}
