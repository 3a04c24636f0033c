/* sdbatch render under mpirun: every rank of the world renders the one image together (spatial
 * bands, and with --cfg-parallel the two CFG halves on two halves of the world), rank 0 writes
 * it. Without a launcher the world is this process alone. */
#ifndef SD_RENDER_GROUP_H
#define SD_RENDER_GROUP_H

#include "cluster/cluster.h"
#include "cluster/comm.h"
#include "worker/pipeline/engine.h"

typedef struct render_group {
  sd_cluster cluster;
  bool mpi;         /* MPI initialised (started by a launcher) */
  sd_comm *spatial; /* the ranks sharing the image's rows (NULL when alone) */
  sd_comm *cfg;     /* the CFG pair of this rank (NULL without --cfg-parallel) */
  sd_image_group group;
} render_group;

/* Joins the world and forms the communicators (collective). */
int render_group_open(bool cfg_parallel, render_group *g);
/* CPU threads for this rank when none are asked for: the node's cores shared by its ranks. */
int render_group_default_threads(const render_group *g);
/* The group to pass to sd_txt2img_group (NULL when this process renders alone). */
sd_image_group *render_group_get(render_group *g);
/* Frees the communicators and leaves the world; after a failure, aborts the other ranks
 * instead (they may be waiting for this one). */
void render_group_close(render_group *g, bool failed);

#endif
