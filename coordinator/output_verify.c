/* Verification of an output file's items (sd_output_verify_* in output.h): the chunk index of the
 * per-item chunked datasets, and each item's row and chunks read back. In schema 2 HDF5 checks
 * every image and latent chunk against its Fletcher32 checksum as it reads it, so a damaged
 * chunk fails to read; in schema 1 nothing checks the pixels, and only a chunk that HDF5 cannot
 * read at all is found. Used by `sdbatch inspect --verify` and by a resume. */
#include "output_schema.h"

#include "kernels/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The chunk index of ds (one item per chunk, every chunk allocated at creation): each item's
 * chunk is found and has the size the schema gives (bytes, plus 4 with Fletcher32). The chunks'
 * addresses are not checked: HDF5 1.10 gives them only through a call that walks the whole index
 * (H5Dget_chunk_info_by_coord: quadratic over a file), and has no linear walk (H5Dchunk_iter is
 * HDF5 1.14's). */
static int check_chunk_index(const sd_h5_dataset *ds, uint64_t bytes, bool fletcher32) {
  int64_t n = (int64_t)ds->dims[0];
  uint64_t want = bytes + (fletcher32 ? 4 : 0);
  for (int64_t i = 0; i < n; i++) {
    hsize_t offset[4] = {(hsize_t)i, 0, 0, 0};
    hsize_t size = 0;
    if (H5Dget_chunk_storage_size(ds->id, offset, &size) < 0)
      return SD_H5_ERROR("dataset '%s': the chunk index is damaged: item %lld's chunk cannot be "
                         "looked up",
                         ds->name, (long long)i);
    if (size != want)
      return SD_ERROR("dataset '%s': the chunk index is damaged: item %lld's chunk is %llu bytes, "
                      "expected %llu",
                      ds->name, (long long)i, (unsigned long long)size, (unsigned long long)want);
  }
  return 0;
}

int sd_output_verify_chunk_index(sd_output_reader *r) {
  const sd_output_info *info = sd_output_reader_info(r);
  const sd_h5_dataset *images = sd_output_reader_dataset(r, SD_DS_IMAGES);
  const bool v2 = info->schema_version >= 2;
  SD_TRY(check_chunk_index(images, (uint64_t)info->width * (uint64_t)info->height * 3u, v2));
  const sd_h5_dataset *latents = sd_output_reader_dataset(r, SD_DS_LATENTS);
  /* schema 1 latents are contiguous (the schema checks say so when the file is opened) */
  if (v2 && latents->id >= 0)
    SD_TRY(check_chunk_index(latents,
                             (uint64_t)info->latent_channels * (uint64_t)info->latent_h *
                                 (uint64_t)info->latent_w * sizeof(float),
                             true));
  return 0;
}

int sd_output_verify_item(sd_output_reader *r, int64_t index, const sd_output_record *rec,
                          char problem[SD_OUTPUT_PROBLEM_LEN]) {
  problem[0] = 0;
  if (rec->problem[0]) {
    snprintf(problem, SD_OUTPUT_PROBLEM_LEN, "row: %s", rec->problem);
    return 1;
  }
  const sd_output_info *info = sd_output_reader_info(r);
  size_t image_bytes = (size_t)info->width * (size_t)info->height * 3u;
  size_t latent_count = info->save_latents ? (size_t)info->latent_channels *
                                                 (size_t)info->latent_h * (size_t)info->latent_w
                                           : 0;
  void *scratch = malloc(image_bytes > latent_count * sizeof(float) ? image_bytes
                                                                    : latent_count * sizeof(float));
  if (!scratch)
    return SD_ERROR("out of memory for item %lld's image", (long long)index);
  const char *what = NULL;
  if (sd_output_read_image(r, index, scratch) < 0)
    what = "image chunk";
  else if (latent_count && sd_output_read_latents(r, index, scratch) < 0)
    what = "latents chunk";
  free(scratch);
  if (!what)
    return 0;
  /* the error's last part is HDF5's own message (a Fletcher32 mismatch says so) */
  const char *message = sd_error_message();
  const char *hdf5 = strstr(message, "(HDF5: ");
  snprintf(problem, SD_OUTPUT_PROBLEM_LEN, "%s cannot be read%s%s", what, hdf5 ? " " : "",
           hdf5 ? hdf5 : "");
  return 1;
}
