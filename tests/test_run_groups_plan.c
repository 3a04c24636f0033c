/* The rank groups of `sdbatch run` (coordinator/run_groups.h) for layouts of ranks on nodes:
 * every expected group written out by hand from the rule in docs/jobs.md (node by node in rank
 * order, leftovers pooled across nodes, the rest idle, rank 0 in none). */
#include "test_util.h"

#include "coordinator/run_groups.h"
#include "kernels/error.h"

#include <stdio.h>
#include <string.h>

/* want: the groups' members, group by group, -1 ending the list. */
static void check_layout(const char *what, const int *nodes, int size, int per_image,
                         const int *want, const char *first_description) {
  sd_run_groups g;
  CHECK(sd_run_groups_plan(nodes, size, per_image, &g) == 0, "%s: plan: %s", what,
        sd_error_message());
  int n_want = 0;
  while (want[n_want] >= 0)
    n_want++;
  CHECK(g.n_groups * per_image == n_want, "%s: %d groups, want %d", what, g.n_groups,
        n_want / per_image);
  int in_groups[64] = {0};
  for (int i = 0; i < n_want && i < g.n_groups * per_image; i++) {
    int r = g.members[i];
    CHECK(r == want[i], "%s: member %d of group %d is rank %d, want %d", what, i % per_image,
          i / per_image, r, want[i]);
    CHECK(g.group[r] == i / per_image && g.position[r] == i % per_image,
          "%s: rank %d: group %d position %d, want %d %d", what, r, g.group[r], g.position[r],
          i / per_image, i % per_image);
    in_groups[r]++;
  }
  for (int r = 0; r < size; r++) {
    CHECK(in_groups[r] <= 1, "%s: rank %d is in %d groups", what, r, in_groups[r]);
    if (!in_groups[r])
      CHECK(g.group[r] == -1 && g.position[r] == -1, "%s: rank %d (idle or rank 0) has group %d",
            what, r, g.group[r]);
  }
  CHECK(g.group[0] == -1, "%s: rank 0 renders in no group", what);
  if (first_description && g.n_groups > 0) {
    char buf[64];
    CHECK(!strcmp(sd_run_groups_describe(&g, 0, buf, sizeof buf), first_description),
          "%s: group 0 is '%s', want '%s'", what, buf, first_description);
    CHECK(sd_run_groups_leader(&g, 0) == want[0], "%s: leader %d", what,
          sd_run_groups_leader(&g, 0));
  }
  sd_run_groups_free(&g);
}

int main(void) {
  int one_node[16] = {0};
  /* 5 ranks, 2 per image: rank 0 coordinates, 4 workers make 2 groups */
  check_layout("5 ranks x 2", one_node, 5, 2, (const int[]){1, 2, 3, 4, -1}, "ranks 1-2");
  /* 6 ranks: the same 2 groups, rank 5 idle */
  check_layout("6 ranks x 2", one_node, 6, 2, (const int[]){1, 2, 3, 4, -1}, "ranks 1-2");
  check_layout("7 ranks x 3", one_node, 7, 3, (const int[]){1, 2, 3, 4, 5, 6, -1}, "ranks 1-3");
  /* fewer workers than a group: none */
  check_layout("3 ranks x 4", one_node, 3, 4, (const int[]){-1}, NULL);
  check_layout("1 rank x 2", one_node, 1, 2, (const int[]){-1}, NULL);
  /* 1 per image: every worker alone */
  check_layout("4 ranks x 1", one_node, 4, 1, (const int[]){1, 2, 3, -1}, "rank 1");

  /* two nodes of 4 ranks (ids are the nodes' lowest ranks) */
  int two_nodes[8] = {0, 0, 0, 0, 4, 4, 4, 4};
  /* node 0: workers 1, 2, 3 -> {1, 2}, 3 left; node 4: {4, 5}, {6, 7}; 3 alone stays idle */
  check_layout("2 nodes x 4, 2 per image", two_nodes, 8, 2, (const int[]){1, 2, 4, 5, 6, 7, -1},
               "ranks 1-2");
  /* 3 per image: {1, 2, 3} and {4, 5, 6}; 7 idle */
  check_layout("2 nodes x 4, 3 per image", two_nodes, 8, 3, (const int[]){1, 2, 3, 4, 5, 6, -1},
               "ranks 1-3");
  /* 4 per image: node 4 fills one group; node 0's 3 workers are pooled with nothing: idle */
  check_layout("2 nodes x 4, 4 per image", two_nodes, 8, 4, (const int[]){4, 5, 6, 7, -1},
               "ranks 4-7");

  /* ranks dealt round-robin over two nodes (a launcher's --map-by node): odd ranks on one node,
   * even on the other. Node of rank 1 first: {1, 3}, 5 left; then {2, 4}, 6 left; then the
   * leftovers across nodes: {5, 6} */
  int round_robin[7] = {0, 1, 0, 1, 0, 1, 0};
  check_layout("round robin, 2 per image", round_robin, 7, 2, (const int[]){1, 3, 2, 4, 5, 6, -1},
               "ranks 1, 3");
  /* three nodes with 2 workers each and 3 per image: only across nodes, in rank order */
  int three_nodes[7] = {0, 0, 0, 3, 3, 5, 5};
  check_layout("3 nodes x 2 workers, 3 per image", three_nodes, 7, 3,
               (const int[]){1, 2, 3, 4, 5, 6, -1}, "ranks 1-3");

  sd_run_groups g;
  CHECK(sd_run_groups_plan(one_node, 4, 0, &g) < 0, "0 ranks per image is refused");
  return sd_test_finish();
}
