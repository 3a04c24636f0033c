/* The VAE decoder on row bands (sd_vae_decode_spatial) against the whole decode, under mpirun -n
 * N (ctest: 3), with the tiny SD 1.x VAE on the CPU backend: a random latent (1, 4, 47, 41) (odd
 * sides, 47 rows in uneven bands) decoded by bands and gathered equals sd_vae_decode within 1e-4
 * (3x3 convolutions on narrower GEMMs and GroupNorm statistics summed in another grouping round
 * differently in the last bits, docs/spatial.md); a latent that is not this rank's band is
 * refused. */
#include "test_util.h"

#include "cluster/cluster.h"
#include "cluster/comm.h"
#include "io/model_files.h"
#include "io/weights.h"
#include "model/vae.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LH 47
#define LW 41

int main(void) {
  sd_cluster world;
  if (sd_cluster_init(&world) < 0)
    return 2;
  char folder[512];
  snprintf(folder, sizeof folder, "%s/tiny-sd1", SD_TEST_FIXTURES);
  sd_model_files *files = NULL;
  sd_weights *weights = NULL;
  sd_vae *vae = NULL;
  sd_comm *comm = NULL;
  sd_spatial *sp = NULL;
  sd_backend *be = sd_backend_cpu_create(1);
  int ok = be && sd_model_files_open(folder, NULL, NULL, &files) == 0 &&
           sd_weights_upload(be, files->vae_tensors, "vae", &weights) == 0 &&
           sd_vae_create(be, &files->vae, weights, &vae) == 0 &&
           sd_comm_split_world(0, world.rank, 60.0, &comm) == 0;
  CHECK(ok, "setup: %s (%s)", sd_error_message(), sd_error_location());
  if (!ok)
    return sd_test_finish();
  const sd_vae_config *cfg = sd_vae_get_config(vae);
  int64_t f = (int64_t)1 << (cfg->num_levels - 1), b = 1, c = cfg->latent_channels;
  CHECK(sd_spatial_create(comm, be, f * LH, f * LW, cfg->num_levels, &sp) == 0, "spatial: %s",
        sd_error_message());
  int64_t rows = sd_spatial_rows(sp, LW, 0);

  sd_tensor z = sd_tensor_4d(SD_DTYPE_F32, b, c, LH, LW);
  sd_tensor image = sd_tensor_4d(SD_DTYPE_F32, b, cfg->out_channels, f * LH, f * LW);
  sd_tensor zb = sd_tensor_4d(SD_DTYPE_F32, b, c, rows, LW);
  sd_tensor band = sd_tensor_4d(SD_DTYPE_F32, b, cfg->out_channels, f * rows, f * LW);
  sd_tensor gathered = image;
  size_t nz = (size_t)sd_tensor_numel(&z), ni = (size_t)sd_tensor_numel(&image);
  float *host = malloc(nz * sizeof *host), *want = malloc(ni * sizeof *want);
  float *got = malloc(ni * sizeof *got);
  sd_test_fill_random(host, nz, 5, 2.0f);
  ok = sd_tensor_alloc_persistent(be, &z) == 0 && sd_tensor_alloc_persistent(be, &image) == 0 &&
       sd_tensor_alloc_persistent(be, &zb) == 0 && sd_tensor_alloc_persistent(be, &band) == 0 &&
       sd_tensor_alloc_persistent(be, &gathered) == 0 && sd_tensor_upload_f32(be, &z, host) == 0 &&
       (world.rank != 0 || sd_vae_decode(vae, &z, &image) == 0) &&
       sd_spatial_cut(be, sp, &z, &zb) == 0 && sd_vae_decode_spatial(vae, sp, &zb, &band) == 0 &&
       sd_spatial_gather(be, sp, &band, &gathered) == 0 &&
       sd_tensor_download_f32(be, &image, want) == 0 &&
       sd_tensor_download_f32(be, &gathered, got) == 0;
  CHECK(ok, "decode: %s (%s)", sd_error_message(), sd_error_location());
  if (ok && world.rank == 0) { /* rank 0 decodes whole and compares */
    char what[96];
    snprintf(what, sizeof what, "VAE on %d bands vs whole, rank %d", sd_spatial_size(sp),
             world.rank);
    sd_test_compare_f32(what, got, want, ni, 1e-4f, 1e-4f);
    sd_tensor wrong = z; /* the whole latent is not a band (N > 1) */
    CHECK(sd_spatial_size(sp) == 1 || sd_vae_decode_spatial(vae, sp, &wrong, &image) < 0,
          "a latent that is not this rank's band is refused");
  }
  free(host);
  free(want);
  free(got);
  sd_tensor_free(be, &z);
  sd_tensor_free(be, &image);
  sd_tensor_free(be, &zb);
  sd_tensor_free(be, &band);
  sd_tensor_free(be, &gathered);
  sd_spatial_free(sp);
  sd_comm_free(comm);
  sd_vae_free(vae);
  sd_weights_free(weights);
  sd_model_files_close(files);
  sd_backend_destroy(be);
  int status = sd_test_finish();
  sd_cluster_finalize();
  return status;
}
