/* Benchmark of the output file (run by hand, figures in docs/output.md):
 *   bench_output write DIR N SIZE [latents]   items/s of sd_output_write_done with a flush every
 *                                             second (as the runner does), SIZE x SIZE images
 *   bench_output create DIR N SIZE            creation of an N-item file with every item's
 *                                             metadata: time, file size (apparent, on disk), RSS
 *   bench_output compare DIR N SIZE [latents] schema 1 (no checksums) and schema 2 (Fletcher32
 *                                             chunks, row CRCs) side by side, 3 rounds
 *                                             interleaved: creation, writing every item, the
 *                                             file's size, and a resume's open (which in schema 2
 *                                             reads every done item's chunks back)
 * DIR is where the file goes (its file system decides the cost of fdatasync). SD_BENCH_SCHEMA=1
 * makes write and create use schema 1. */
#include "coordinator/output.h"
#include "kernels/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static const char *const prompts[] = {"a photo of an astronaut riding a horse",
                                      "a watercolor painting of a lighthouse at dawn"};

static sd_output_item_meta meta_of(int64_t i) {
  return (sd_output_item_meta){.prompt_index = (int32_t)(i % 2),
                               .seed = 100000 + i / 2,
                               .guidance_scale = 7.5f,
                               .steps = 25,
                               .scheduler = "dpmpp_2m"};
}

static int meta_callback(void *ctx, int64_t index, sd_output_item_meta *meta) {
  (void)ctx;
  *meta = meta_of(index);
  return 0;
}

/* The schema version of the files made (0: the newest). */
static int schema_version = 0;

static sd_output_spec spec_for(const char *path, int64_t n, int size, int latents) {
  return (sd_output_spec){.path = path,
                          .schema_version = schema_version,
                          .n_items = n,
                          .width = size,
                          .height = size,
                          .latent_channels = 4,
                          .latent_h = size / 8,
                          .latent_w = size / 8,
                          .save_latents = latents != 0,
                          .job_yaml = "model: bench\n",
                          .job_hash = "bench",
                          .model_path = "bench",
                          .model_identity = "bench",
                          .n_prompts = 2,
                          .prompts = prompts,
                          .job_path = "bench.yaml",
                          .item_meta = meta_callback};
}

static int bench_write(const char *path, int64_t n, int size, int latents) {
  sd_output_spec spec = spec_for(path, n, size, latents);
  sd_output *o = NULL;
  if (sd_output_open(&spec, &o) < 0)
    return -1;
  size_t pixels = (size_t)size * size * 3;
  uint8_t *rgb = malloc(pixels);
  float *lat = calloc((size_t)4 * (size / 8) * (size / 8), sizeof(float));
  if (!rgb || !lat)
    return SD_ERROR("out of memory");
  for (size_t k = 0; k < pixels; k++)
    rgb[k] = (uint8_t)(k * 31);
  int flushes = 0;
  double t0 = now_s(), last_flush = t0, flush_max = 0;
  for (int64_t i = 0; i < n; i++) {
    rgb[0] = (uint8_t)i;
    SD_TRY(sd_output_write_done(o, i, NULL, rgb, latents ? lat : NULL));
    if (now_s() - last_flush >= 1.0) {
      double f0 = now_s();
      SD_TRY(sd_output_flush(o));
      flushes++;
      last_flush = now_s();
      flush_max = last_flush - f0 > flush_max ? last_flush - f0 : flush_max;
    }
  }
  SD_TRY(sd_output_close(o));
  double seconds = now_s() - t0;
  printf("write: %lld items of %dx%d%s in %.3f s: %.0f items/s, %.1f MB/s of pixels; %d "
         "periodic flushes (longest %.3f s) + the final one\n",
         (long long)n, size, size, latents ? " + latents" : "", seconds, (double)n / seconds,
         (double)n * (double)pixels / seconds / 1e6, flushes, flush_max);
  free(rgb);
  free(lat);
  return 0;
}

static int bench_create(const char *path, int64_t n, int size) {
  sd_output_spec spec = spec_for(path, n, size, 0);
  sd_output *o = NULL;
  double t0 = now_s();
  SD_TRY(sd_output_open(&spec, &o));
  double created = now_s() - t0;
  SD_TRY(sd_output_close(o));
  t0 = now_s();
  SD_TRY(sd_output_open(&spec, &o));
  double reopened = now_s() - t0;
  SD_TRY(sd_output_close(o));
  struct stat st;
  if (stat(path, &st) < 0)
    return SD_ERROR("%s: cannot stat", path);
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  printf("create: %lld items of %dx%d: created in %.2f s, reopened in %.3f s; file %.1f GB "
         "apparent, %.1f MB on disk; peak RSS %.1f MB\n",
         (long long)n, size, size, created, reopened, (double)st.st_size / 1e9,
         (double)st.st_blocks * 512 / 1e6, (double)usage.ru_maxrss / 1024);
  return 0;
}

/* Writes every item of an open file, flushing every second; returns the seconds taken. */
static double write_all(sd_output *o, int64_t n, int size, int latents, const uint8_t *image,
                        uint8_t *rgb, const float *lat) {
  size_t pixels = (size_t)size * size * 3;
  double t0 = now_s(), last_flush = t0;
  for (int64_t i = 0; i < n; i++) {
    memcpy(rgb, image, pixels);
    rgb[0] = (uint8_t)i;
    if (sd_output_write_done(o, i, NULL, rgb, latents ? lat : NULL) < 0)
      return -1;
    if (now_s() - last_flush >= 1.0) {
      if (sd_output_flush(o) < 0)
        return -1;
      last_flush = now_s();
    }
  }
  if (sd_output_flush(o) < 0)
    return -1;
  return now_s() - t0;
}

static int bench_compare(const char *path, int64_t n, int size, int latents) {
  size_t pixels = (size_t)size * size * 3;
  uint8_t *image = malloc(pixels), *rgb = malloc(pixels);
  float *lat = calloc((size_t)4 * (size / 8) * (size / 8), sizeof(float));
  if (!image || !rgb || !lat)
    return SD_ERROR("out of memory");
  for (size_t k = 0; k < pixels; k++)
    image[k] = (uint8_t)(k * 31);
  printf("compare: %lld items of %dx%d%s, 3 rounds, schema 1 and 2 interleaved\n", (long long)n,
         size, size, latents ? " + latents (4 x SIZE/8 x SIZE/8)" : "");
  int rc = 0;
  for (int round = 1; round <= 3 && rc == 0; round++) {
    for (int version = 1; version <= 2 && rc == 0; version++) {
      schema_version = version;
      unlink(path);
      sd_output_spec spec = spec_for(path, n, size, latents);
      sd_output *o = NULL;
      double t0 = now_s();
      if (sd_output_open(&spec, &o) < 0) {
        rc = -1;
        break;
      }
      double created = now_s() - t0;
      double written = write_all(o, n, size, latents, image, rgb, lat);
      if (sd_output_close(o) < 0 || written < 0) {
        rc = -1;
        break;
      }
      t0 = now_s();
      if (sd_output_open(&spec, &o) < 0) {
        rc = -1;
        break;
      }
      double resumed = now_s() - t0;
      if (sd_output_close(o) < 0) {
        rc = -1;
        break;
      }
      struct stat st;
      if (stat(path, &st) < 0) {
        rc = SD_ERROR("%s: cannot stat", path);
        break;
      }
      printf("round %d schema %d: create %.3f s; write %.3f s = %.0f items/s (%.1f MB/s of "
             "pixels); resume open %.3f s; file %.1f MB apparent, %.1f MB on disk\n",
             round, version, created, written, (double)n / written,
             (double)n * (double)pixels / written / 1e6, resumed, (double)st.st_size / 1e6,
             (double)st.st_blocks * 512 / 1e6);
    }
  }
  free(image);
  free(rgb);
  free(lat);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: bench_output write|create|compare DIR N SIZE [latents]\n");
    return 2;
  }
  const char *schema = getenv("SD_BENCH_SCHEMA");
  schema_version = schema ? atoi(schema) : 0;
  char path[4096];
  snprintf(path, sizeof path, "%s/bench_output.h5", argv[2]);
  unlink(path);
  int64_t n = atoll(argv[3]);
  int size = atoi(argv[4]);
  int rc = strcmp(argv[1], "write") == 0     ? bench_write(path, n, size, argc > 5)
           : strcmp(argv[1], "create") == 0  ? bench_create(path, n, size)
           : strcmp(argv[1], "compare") == 0 ? bench_compare(path, n, size, argc > 5)
                                             : SD_ERROR("unknown mode '%s'", argv[1]);
  unlink(path);
  if (rc < 0) {
    fprintf(stderr, "bench_output: %s\n", sd_error_message());
    return 1;
  }
  return 0;
}
