/* How big a new output file will grow, and whether its file system has room for it. */
#include "output_size.h"

#include "kernels/error.h"
#include "kernels/file.h"
#include "output_schema.h"

#include <errno.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

/* Bytes per item of dataset d in a file of schema version, or 0 when it has no such dataset. */
static uint64_t item_bytes(const sd_output_dataset_desc *d, const sd_output_spec *spec,
                           int version) {
  if (!((d->versions >> version) & 1u))
    return 0;
  /* a checksummed chunk (one item's) carries its 4-byte Fletcher32 */
  uint64_t checksum = (d->fletcher32 >> version) & 1u ? 4 : 0;
  switch (d->shape) {
  case SD_SHAPE_ITEMS:
    return d->size;
  case SD_SHAPE_IMAGES:
    return (uint64_t)spec->width * (uint64_t)spec->height * 3u + checksum;
  case SD_SHAPE_LATENTS:
    return spec->save_latents ? (uint64_t)spec->latent_channels * (uint64_t)spec->latent_h *
                                        (uint64_t)spec->latent_w * d->size +
                                    checksum
                              : 0;
  default:
    return 0;
  }
}

double sd_output_estimated_bytes(const sd_output_spec *spec, int version) {
  uint64_t per_item = 0;
  for (int d = 0; d < SD_DS_COUNT; d++)
    per_item += item_bytes(&sd_output_datasets[d], spec, version);
  double prompts = 0;
  for (int64_t i = 0; i < spec->n_prompts; i++)
    prompts += spec->prompts && spec->prompts[i] ? (double)strlen(spec->prompts[i]) + 16 : 16;
  /* HDF5's own structures (headers, chunk indexes) are small next to the data: a margin */
  return (double)spec->n_items * (double)per_item + prompts + (64 << 10);
}

void sd_output_format_bytes(double bytes, char *buf, size_t size) {
  static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    u++;
  }
  snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

int sd_output_check_space(const sd_output_spec *spec, int version, const char *path) {
  char folder[PATH_MAX];
  if (sd_file_parent_folder(path, folder, sizeof folder) < 0)
    return SD_ERROR("%s: the path is too long", path);
  struct statvfs fs;
  if (statvfs(folder, &fs) < 0)
    return SD_ERROR("%s: cannot tell the free space of its file system: %s", folder,
                    strerror(errno));
  double free_bytes = (double)fs.f_bavail * (double)fs.f_frsize;
  double need = sd_output_estimated_bytes(spec, version);
  if (need <= free_bytes)
    return 0;
  char need_text[32], free_text[32];
  sd_output_format_bytes(need, need_text, sizeof need_text);
  sd_output_format_bytes(free_bytes, free_text, sizeof free_text);
  return SD_ERROR("the output of %lld items will take about %s, and its file system has %s free; "
                  "refused before creating it (fewer items, a smaller size, no latents, or "
                  "another place)",
                  (long long)spec->n_items, need_text, free_text);
}
