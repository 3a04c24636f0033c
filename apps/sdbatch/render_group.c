/* The rank groups of sdbatch render under mpirun (render_group.h). */
#include "render_group.h"

#include "kernels/error.h"

#include <stdlib.h>
#include <string.h>

/* Started by mpirun / srun (Open MPI, PMI, PMIx): only then is MPI initialised, so that a plain
 * `sdbatch render` never starts an MPI singleton. */
static bool launched(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

int render_group_open(bool cfg_parallel, render_group *g) {
  memset(g, 0, sizeof *g);
  sd_cluster_init_single(&g->cluster);
  if (launched()) {
    if (sd_cluster_init(&g->cluster) < 0)
      return -1;
    g->mpi = true;
  }
  int rank = g->cluster.rank, size = g->cluster.size;
  if (cfg_parallel && size % 2)
    return SD_ERROR("--cfg-parallel needs an even number of ranks (mpirun -n 2, 4, ...), not %d",
                    size);
  if (size == 1)
    return 0;
  /* with CFG halves: ranks [0, half) run the unconditional half, [half, size) the conditional,
   * each half split into bands; rank r pairs with r + half */
  int half = cfg_parallel ? size / 2 : size;
  if (sd_comm_split_world(rank / half, rank % half, 0.0, &g->spatial) < 0)
    return sd_error_context("spatial group");
  if (cfg_parallel && sd_comm_split_world(rank % half, rank / half, 0.0, &g->cfg) < 0)
    return sd_error_context("CFG pair");
  g->group.spatial = g->spatial;
  g->group.cfg = g->cfg;
  return 0;
}

int render_group_default_threads(const render_group *g) {
  sd_cluster every_rank_renders = g->cluster;
  every_rank_renders.worker_local_size = g->cluster.size; /* one node assumed */
  return sd_cluster_default_threads(&every_rank_renders);
}

sd_image_group *render_group_get(render_group *g) {
  return g->cluster.size > 1 ? &g->group : NULL;
}

void render_group_close(render_group *g, bool failed) {
  if (failed && g->cluster.size > 1)
    sd_cluster_abort(1);
  sd_comm_free(g->cfg);
  sd_comm_free(g->spatial);
  if (g->mpi)
    sd_cluster_finalize();
}
