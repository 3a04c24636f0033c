/* Spatial parallelism benchmark (run by hand, not a ctest; docs/performance.md):
 *
 *   mpirun -n 2 --oversubscribe build/tests/bench_spatial [MODEL] [SIZE] [STEPS]   ("" = default)
 *
 * One image of SIZE x SIZE (default 1024) with the model (default the tiny SD 1.x fixture),
 * STEPS DDIM steps (default 4), VAE tiling off, one CPU thread per rank: first rendered by rank 0
 * alone (the other ranks wait), then by all ranks as row bands. Prints both times, the speedup,
 * the bytes rank 0 sent per denoising step and in all, the share of its time spent in
 * collectives (including waiting for the slower rank), the device, and whether the pixels match
 * (max level difference, exact share). */
#include "test_util.h"

#include "cluster/cluster.h"
#include "cluster/comm.h"
#include "kernels/error.h"
#include "pipeline/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  sd_cluster world;
  if (sd_cluster_init(&world) < 0) {
    fprintf(stderr, "cluster: %s\n", sd_error_message());
    return 1;
  }
  char default_model[1024];
  snprintf(default_model, sizeof default_model, "%s/tiny-sd1", SD_TEST_FIXTURES);
  const char *model = argc > 1 && argv[1][0] ? argv[1] : default_model;
  int size = argc > 2 ? atoi(argv[2]) : 1024, steps = argc > 3 ? atoi(argv[3]) : 4;
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.model_path = model;
  params.device = "cpu";
  params.threads = 1;
  params.vae_tiling = SD_VAE_TILING_OFF;
  sd_engine *engine = NULL;
  sd_comm *all = NULL;
  if (sd_engine_open(&params, &engine) < 0 ||
      sd_comm_split_world(0, world.rank, 3600.0, &all) < 0) {
    fprintf(stderr, "setup: %s\n", sd_error_message());
    return 1;
  }
  sd_txt2img_batch batch = {size, size, steps, SD_SCHED_DDIM, false, SD_RNG_CUDA};
  sd_txt2img_item item = {"a lighthouse on a cliff at dusk", "", 42, 7.5f};
  sd_txt2img_result one = {0}, many = {0};
  double t_one = 0.0;
  if (world.rank == 0) {
    double t0 = now();
    if (sd_txt2img(engine, &batch, &item, 1, NULL, NULL, &one) < 0) {
      fprintf(stderr, "one rank: %s\n", sd_error_message());
      sd_cluster_abort(1);
    }
    t_one = now() - t0;
  }
  if (sd_comm_barrier(all) < 0) {
    fprintf(stderr, "barrier: %s\n", sd_error_message());
    return 1;
  }
  sd_image_group group = {.spatial = all};
  double t0 = now();
  if (sd_txt2img_group(engine, &group, &batch, &item, 1, NULL, NULL, &many) < 0) {
    fprintf(stderr, "%d ranks: %s\n", world.size, sd_error_message());
    sd_cluster_abort(1);
  }
  double t_many = now() - t0;
  if (world.rank == 0) {
    size_t n = (size_t)size * size * 3, exact = 0;
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
      int d = abs((int)one.rgb[i] - (int)many.rgb[i]);
      exact += d == 0;
      worst = d > worst ? d : worst;
    }
    printf("device: %s, 1 thread per rank\n", sd_engine_backend(engine)->device_name);
    printf("image: %s, %dx%d, %d DDIM steps + VAE decode (tiling off)\n", model, size, size, steps);
    printf("1 rank:  %8.2f s\n", t_one);
    printf("%d ranks: %8.2f s   speedup %.2fx\n", world.size, t_many, t_one / t_many);
    printf("rank 0 sent %.1f MB: %.2f MB per denoising step, %.1f MB in the latent gather and "
           "VAE; %.2f s in collectives (%.0f %% of its time, waiting for the other rank "
           "included)\n",
           (double)group.bytes_sent / 1e6, (double)group.loop_bytes_sent / 1e6 / steps,
           (double)(group.bytes_sent - group.loop_bytes_sent) / 1e6, group.comm_seconds,
           100.0 * group.comm_seconds / t_many);
    printf("pixels vs 1 rank: max diff %d, %.4f %% exact\n", worst, 100.0 * (double)exact / n);
  }
  sd_txt2img_result_free(&one);
  sd_txt2img_result_free(&many);
  sd_comm_free(all);
  sd_engine_close(engine);
  sd_cluster_finalize();
  return 0;
}
