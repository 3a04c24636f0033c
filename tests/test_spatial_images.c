/* Image-conditioned renders (img2img, inpainting with a 9-channel and a 4-channel model,
 * depth-to-image with a given map, the x4 upscaler) from a group of ranks against one rank's,
 * run under mpirun -n N (ctest: 2 and 3), tiny models on the CPU backend at one thread per rank.
 * Every rank prepares the whole conditioning and keeps its band (sd_cond_cut_to_band), so the
 * bounds are test_spatial_render's: spatial bands over all N ranks at most 1 level apart with
 * >= 99.9 % of the values exact and latents within 1e-3 (the bands' narrower GEMMs and GroupNorm
 * sums round differently in the last bit); CFG halves on 2 ranks bit-identical to one rank.
 * Sizes with odd latent sides (uneven bands) where the model allows. */
#include "test_util.h"

#include "cluster/cluster.h"
#include "cluster/comm.h"
#include "image/image.h"
#include "kernels/error.h"
#include "pipeline/engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct image_case {
  const char *name;
  const char *model; /* folder under the fixtures */
  sd_pipeline_kind kind;
  int width, height;             /* the output size */
  int image_width, image_height; /* the init image's size */
  int steps;
  sd_scheduler_kind scheduler;
  float strength, guidance;
  bool mask, depth;
  int noise_level;
  uint64_t seed;
} image_case;

/* An RGB picture of smooth gradients and a square, so that the VAE sees structure. */
static sd_image make_picture(int width, int height, bool mask) {
  sd_image img = {width, height, 3, malloc((size_t)width * height * 3)};
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++) {
      uint8_t *p = img.data + ((size_t)y * width + x) * 3;
      bool inside = x > width / 4 && x < width / 2 && y > height / 3 && y < 3 * height / 4;
      if (mask) {
        p[0] = p[1] = p[2] = inside ? 255 : 0;
      } else {
        p[0] = (uint8_t)(255 * x / (width - 1));
        p[1] = (uint8_t)(255 * y / (height - 1));
        p[2] = inside ? 230 : 40;
      }
    }
  return img;
}

static int render(sd_engine *engine, const image_case *c, sd_image_group *group,
                  sd_txt2img_result *out) {
  sd_image init = make_picture(c->image_width, c->image_height, false);
  sd_image mask = make_picture(c->width, c->height, true);
  int dh = 37, dw = 45;
  float *depth = malloc((size_t)dh * dw * sizeof *depth);
  for (int i = 0; i < dh * dw; i++)
    depth[i] = 5.0f + (float)(i % dw) * 0.25f + (float)(i / dw) * 0.5f;
  sd_image_cond cond = {&init, c->mask ? &mask : NULL, c->depth ? depth : NULL, dh, dw};
  sd_image_params params = {c->kind, c->strength, &cond, c->noise_level};
  sd_txt2img_batch batch = {c->width, c->height, c->steps, c->scheduler, false, SD_RNG_CUDA};
  sd_txt2img_item item = {"a red boat on a calm lake", "blurry", c->seed, c->guidance};
  int rc = sd_render_group(engine, group, &batch, &params, &item, 1, NULL, NULL, out);
  free(depth);
  sd_image_free(&mask);
  sd_image_free(&init);
  return rc;
}

static void compare(const char *what, const image_case *c, int latent_elems,
                    const sd_txt2img_result *got, const sd_txt2img_result *want, int max_diff,
                    double min_exact, float latent_tol) {
  size_t n = (size_t)c->width * c->height * 3;
  float *want_px = malloc(n * sizeof *want_px);
  for (size_t i = 0; i < n; i++)
    want_px[i] = want->rgb[i];
  char label[160];
  snprintf(label, sizeof label, "%s, %s: pixels", c->name, what);
  sd_test_compare_pixels(label, got->rgb, want_px, n, max_diff, min_exact);
  snprintf(label, sizeof label, "%s, %s: latents", c->name, what);
  sd_test_compare_f32(label, got->latents, want->latents, (size_t)latent_elems, latent_tol,
                      latent_tol);
  if (max_diff == 0)
    CHECK(memcmp(got->latents, want->latents, (size_t)latent_elems * sizeof(float)) == 0 &&
              memcmp(got->rgb, want->rgb, n) == 0,
          "%s, %s: bit-identical latents and pixels", c->name, what);
  free(want_px);
}

int main(void) {
  sd_cluster world;
  if (sd_cluster_init(&world) < 0) {
    fprintf(stderr, "cluster: %s\n", sd_error_message());
    return 2;
  }
  sd_comm *all = NULL, *halves = NULL, *pairs = NULL;
  int half = world.size / 2;
  if (sd_comm_split_world(0, world.rank, 120.0, &all) < 0 ||
      (world.size == 2 &&
       (sd_comm_split_world(world.rank / half, world.rank, 120.0, &halves) < 0 ||
        sd_comm_split_world(world.rank % half, world.rank, 120.0, &pairs) < 0))) {
    fprintf(stderr, "setup: %s\n", sd_error_message());
    return 2;
  }
  static const image_case cases[] = {
      {"img2img", "tiny-sd1", SD_PIPELINE_IMG2IMG, 264, 200, 264, 200, 5, SD_SCHED_EULER_A, 0.6f,
       7.5f, false, false, 0, 5},
      {"inpaint 9-channel", "tiny-sd1-inpaint", SD_PIPELINE_INPAINT, 256, 192, 200, 150, 4,
       SD_SCHED_DDIM, 1.0f, 7.5f, true, false, 0, 6},
      {"inpaint 4-channel (blend)", "tiny-sd1", SD_PIPELINE_INPAINT, 264, 200, 264, 200, 4,
       SD_SCHED_DPMPP_2M, 0.75f, 4.0f, true, false, 0, 7},
      {"depth2img", "tiny-sd2-depth", SD_PIPELINE_DEPTH, 256, 264, 256, 264, 4, SD_SCHED_DDIM, 0.8f,
       7.5f, false, true, 0, 8},
      {"x4 upscaler", "tiny-upscaler", SD_PIPELINE_UPSCALE, 128, 96, 32, 24, 3, SD_SCHED_EULER_A,
       1.0f, 9.0f, false, false, 20, 9},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const image_case *c = &cases[k];
    char model_dir[1024];
    snprintf(model_dir, sizeof model_dir, "%s/%s", SD_TEST_FIXTURES, c->model);
    sd_engine_params params;
    sd_engine_params_init(&params);
    params.model_path = model_dir;
    params.device = "cpu";
    params.threads = 1;
    params.vae_tiling = SD_VAE_TILING_OFF;
    params.no_depth_estimator = true;
    sd_engine *engine = NULL;
    if (sd_engine_open(&params, &engine) < 0) {
      CHECK(false, "%s: opening %s: %s", c->name, model_dir, sd_error_message());
      continue;
    }
    int factor = sd_engine_vae_scale_factor(engine);
    int latent_elems = 4 * (c->width / factor) * (c->height / factor);
    sd_txt2img_result one = {0}, spatial = {0}, cfg = {0};
    if (world.rank == 0)
      CHECK(render(engine, c, NULL, &one) == 0, "%s, one rank: %s", c->name, sd_error_message());
    CHECK(sd_comm_barrier(all) == 0, "barrier: %s", sd_error_message());

    sd_image_group group = {.spatial = all};
    CHECK(render(engine, c, &group, &spatial) == 0, "%s, %d ranks: %s", c->name, world.size,
          sd_error_message());
    if (world.rank == 0 && one.rgb && spatial.rgb) {
      char what[64];
      snprintf(what, sizeof what, "%d spatial ranks vs 1", world.size);
      compare(what, c, latent_elems, &spatial, &one, 1, 0.999, 1e-3f);
    }
    if (pairs) {
      sd_image_group cfg_group = {.spatial = halves, .cfg = pairs};
      CHECK(render(engine, c, &cfg_group, &cfg) == 0, "%s, CFG halves: %s", c->name,
            sd_error_message());
      if (world.rank == 0 && one.rgb && cfg.rgb)
        compare("CFG halves vs 1 rank", c, latent_elems, &cfg, &one, 0, 1.0, 0.0f);
    }
    sd_txt2img_result_free(&one);
    sd_txt2img_result_free(&spatial);
    sd_txt2img_result_free(&cfg);
    sd_engine_close(engine);
  }
  sd_comm_free(pairs);
  sd_comm_free(halves);
  sd_comm_free(all);
  int status = sd_test_finish();
  sd_cluster_finalize();
  return status;
}
