/* Reading output files (sd_output_reader in output.h): validation that a file is an sdbatch
 * output of this schema, its attributes, and row-wise access to its datasets. Opens read-only
 * and without file locking, so that it never changes the file and works while a run writes it. */
#include "output_internal.h"

#include "kernels/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Strings of sd_output_info the reader owns. */
enum {
  STR_JOB_YAML,
  STR_JOB_PATH,
  STR_JOB_HASH,
  STR_MODEL,
  STR_MODEL_IDENTITY,
  STR_CREATED,
  STR_VERSION,
  STR_ADAPTERS,
  STR_COUNT
};

struct sd_output_reader {
  hid_t file;
  sd_output_info info;
  char *strings[STR_COUNT];
  char updated[SD_OUTPUT_TIME_LEN + 1];
  sd_h5_dataset ds[SD_DS_COUNT]; /* latents: id -1 when not saved */
  sd_h5_dataset prompts;
  hid_t scheduler_type, failure_type, prompt_type;
};

/* Whether the HDF5 signature is at offset 0, 512, 1024, ... (where HDF5 looks for it). */
static int has_hdf5_signature(const char *path, bool *found) {
  static const unsigned char signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  *found = false;
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return SD_ERROR("cannot open: %s", strerror(errno));
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int err = errno;
    close(fd);
    return SD_ERROR("cannot stat: %s", strerror(err));
  }
  for (off_t offset = 0; offset + 8 <= st.st_size && !*found; offset = offset ? offset * 2 : 512) {
    unsigned char head[8];
    if (pread(fd, head, sizeof head, offset) != (ssize_t)sizeof head)
      break;
    *found = memcmp(head, signature, sizeof head) == 0;
  }
  close(fd);
  return 0;
}

/* Opens the HDF5 file read-only, telling "not HDF5" from "damaged" when it cannot. */
static int open_file(const char *path, hid_t *file) {
  struct stat st;
  if (stat(path, &st) < 0)
    return SD_ERROR("%s", strerror(errno));
  if (!S_ISREG(st.st_mode))
    return SD_ERROR("not a regular file");
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  *file = -1;
  if (fapl < 0 || H5Pset_file_locking(fapl, 0, 1) < 0) {
    SD_H5_ERROR("cannot set up file access");
  } else {
    *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (*file < 0)
      SD_H5_ERROR("cannot open");
  }
  if (fapl >= 0)
    H5Pclose(fapl);
  if (*file >= 0)
    return 0;
  char hdf5_message[512];
  snprintf(hdf5_message, sizeof hdf5_message, "%s", sd_error_message());
  bool is_hdf5 = false;
  SD_TRY(has_hdf5_signature(path, &is_hdf5));
  if (!is_hdf5)
    return SD_ERROR("not an HDF5 file (%lld bytes, no HDF5 signature)", (long long)st.st_size);
  return SD_ERROR("damaged or truncated HDF5 file: %s", hdf5_message);
}

static int read_info(sd_output_reader *r) {
  hid_t f = r->file;
  char *format = NULL;
  if (H5Aexists(f, "format") <= 0 || sd_h5_attr_read_string(f, "format", &format) < 0)
    return SD_ERROR("an HDF5 file but not an sdbatch output (no 'format' attribute)");
  bool ours = strcmp(format, SD_OUTPUT_FORMAT_NAME) == 0;
  if (!ours)
    SD_ERROR("an HDF5 file but not an sdbatch output (format '%s')", format);
  free(format);
  if (!ours)
    return -1;
  int64_t v = 0;
  SD_TRY(sd_h5_attr_read_int(f, "schema_version", &v));
  if (v != SD_OUTPUT_SCHEMA_VERSION)
    return SD_ERROR("schema version %lld; this sdbatch reads version %d", (long long)v,
                    SD_OUTPUT_SCHEMA_VERSION);
  sd_output_info *info = &r->info;
  info->schema_version = (int)v;
  static const char *const string_names[STR_COUNT] = {
      [STR_JOB_YAML] = "job_yaml",
      [STR_JOB_PATH] = "job_path",
      [STR_JOB_HASH] = "job_hash",
      [STR_MODEL] = "model",
      [STR_MODEL_IDENTITY] = "model_identity",
      [STR_CREATED] = "created",
      [STR_VERSION] = "sdbatch_version",
  };
  for (int s = 0; s < STR_ADAPTERS; s++)
    SD_TRY(sd_h5_attr_read_string(f, string_names[s], &r->strings[s]));
  /* optional: files written before adapters existed have none */
  htri_t has_adapters = H5Aexists(f, "adapters");
  if (has_adapters > 0)
    SD_TRY(sd_h5_attr_read_string(f, "adapters", &r->strings[STR_ADAPTERS]));
  else if (!(r->strings[STR_ADAPTERS] = strdup("")))
    return SD_ERROR("out of memory");
  info->adapters = r->strings[STR_ADAPTERS];
  info->job_yaml = r->strings[STR_JOB_YAML];
  info->job_path = r->strings[STR_JOB_PATH];
  info->job_hash = r->strings[STR_JOB_HASH];
  info->model_path = r->strings[STR_MODEL];
  info->model_identity = r->strings[STR_MODEL_IDENTITY];
  info->created = r->strings[STR_CREATED];
  info->sdbatch_version = r->strings[STR_VERSION];
  static const char *const int_names[] = {
      "width",        "height",       "latent_channels",  "latent_height",
      "latent_width", "save_latents", "metadata_complete"};
  int64_t ints[7];
  for (int i = 0; i < 7; i++) {
    SD_TRY(sd_h5_attr_read_int(f, int_names[i], &ints[i]));
    if (ints[i] < 0 || ints[i] > 1 << 20)
      return SD_ERROR("attribute '%s' is %lld, out of range", int_names[i], (long long)ints[i]);
  }
  info->width = (int)ints[0];
  info->height = (int)ints[1];
  info->latent_channels = (int)ints[2];
  info->latent_h = (int)ints[3];
  info->latent_w = (int)ints[4];
  info->save_latents = ints[5] != 0;
  info->metadata_complete = ints[6] != 0;
  return 0;
}

/* Opens the datasets and checks their shapes against the attributes. */
static int open_datasets(sd_output_reader *r) {
  sd_output_info *info = &r->info;
  for (int d = 0; d < SD_DS_COUNT; d++) {
    if (d == SD_DS_LATENTS && !info->save_latents)
      continue;
    SD_TRY(sd_h5_dataset_open(r->file, sd_output_dataset_names[d], H5P_DEFAULT, &r->ds[d]));
  }
  const sd_h5_dataset *images = &r->ds[SD_DS_IMAGES];
  if (images->rank != 4 || images->dims[1] != (hsize_t)info->height ||
      images->dims[2] != (hsize_t)info->width || images->dims[3] != 3)
    return SD_ERROR("dataset 'images' is not (N, %d, %d, 3)", info->height, info->width);
  info->n_items = (int64_t)images->dims[0];
  for (int d = 0; d < SD_DS_COUNT; d++) {
    const sd_h5_dataset *ds = &r->ds[d];
    if (ds->id >= 0 && ds->dims[0] != images->dims[0])
      return SD_ERROR("dataset '%s' has %llu rows, 'images' %llu", ds->name,
                      (unsigned long long)ds->dims[0], (unsigned long long)images->dims[0]);
  }
  const sd_h5_dataset *latents = &r->ds[SD_DS_LATENTS];
  if (latents->id >= 0 &&
      (latents->rank != 4 || latents->dims[1] != (hsize_t)info->latent_channels ||
       latents->dims[2] != (hsize_t)info->latent_h || latents->dims[3] != (hsize_t)info->latent_w))
    return SD_ERROR("dataset 'latents' is not (N, %d, %d, %d)", info->latent_channels,
                    info->latent_h, info->latent_w);
  SD_TRY(sd_h5_dataset_open(r->file, "prompts", H5P_DEFAULT, &r->prompts));
  info->n_prompts = (int64_t)r->prompts.dims[0];

  hid_t updated = H5Dopen2(r->file, "updated", H5P_DEFAULT);
  if (updated < 0)
    return SD_H5_ERROR("dataset 'updated' is missing");
  hid_t time_type = sd_h5_fixed_string_type(SD_OUTPUT_TIME_LEN);
  herr_t rc =
      time_type < 0 ? -1 : H5Dread(updated, time_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->updated);
  if (time_type >= 0)
    H5Tclose(time_type);
  H5Dclose(updated);
  if (rc < 0)
    return SD_H5_ERROR("dataset 'updated': cannot read");
  r->updated[SD_OUTPUT_TIME_LEN] = 0;
  info->updated = r->updated;
  return 0;
}

int sd_output_reader_open(const char *path, sd_output_reader **out) {
  *out = NULL;
  sd_h5_silence();
  sd_output_reader *r = calloc(1, sizeof *r);
  if (!r)
    return SD_ERROR("%s: out of memory", path);
  r->file = r->scheduler_type = r->failure_type = r->prompt_type = -1;
  r->prompts = (sd_h5_dataset){.id = -1, .space = -1};
  for (int d = 0; d < SD_DS_COUNT; d++)
    r->ds[d] = (sd_h5_dataset){.id = -1, .space = -1};
  if (open_file(path, &r->file) < 0 || read_info(r) < 0 || open_datasets(r) < 0)
    goto fail;
  r->scheduler_type = sd_h5_fixed_string_type(SD_OUTPUT_SCHEDULER_LEN);
  r->failure_type = sd_h5_fixed_string_type(SD_OUTPUT_FAILURE_LEN);
  r->prompt_type = sd_h5_vlen_string_type();
  if (r->scheduler_type < 0 || r->failure_type < 0 || r->prompt_type < 0)
    goto fail;
  *out = r;
  return 0;
fail:
  sd_error_context("%s", path);
  sd_output_reader_close(r);
  return -1;
}

void sd_output_reader_close(sd_output_reader *r) {
  if (!r)
    return;
  for (int d = 0; d < SD_DS_COUNT; d++)
    sd_h5_dataset_close(&r->ds[d]);
  sd_h5_dataset_close(&r->prompts);
  if (r->scheduler_type >= 0)
    H5Tclose(r->scheduler_type);
  if (r->failure_type >= 0)
    H5Tclose(r->failure_type);
  if (r->prompt_type >= 0)
    H5Tclose(r->prompt_type);
  if (r->file >= 0)
    H5Fclose(r->file);
  for (int s = 0; s < STR_COUNT; s++)
    free(r->strings[s]);
  free(r);
}

const sd_output_info *sd_output_reader_info(const sd_output_reader *reader) {
  return &reader->info;
}

int sd_output_read_records(sd_output_reader *r, int64_t start, int64_t count,
                           sd_output_record *out) {
  /* one column at a time through a scratch buffer sized for the widest column */
  size_t widest = SD_OUTPUT_SCHEDULER_LEN;
  char *scratch = malloc((size_t)count * widest);
  if (!scratch)
    return SD_ERROR("out of memory for %lld records", (long long)count);
  int rc = -1;
  if (sd_h5_dataset_read_rows(&r->ds[SD_DS_PROMPT_INDEX], H5T_NATIVE_INT32, start, count, scratch) <
      0)
    goto out;
  for (int64_t i = 0; i < count; i++)
    memcpy(&out[i].prompt_index, scratch + i * sizeof(int32_t), sizeof(int32_t));
  if (sd_h5_dataset_read_rows(&r->ds[SD_DS_SEED], H5T_NATIVE_INT64, start, count, scratch) < 0)
    goto out;
  for (int64_t i = 0; i < count; i++)
    memcpy(&out[i].seed, scratch + i * sizeof(int64_t), sizeof(int64_t));
  if (sd_h5_dataset_read_rows(&r->ds[SD_DS_GUIDANCE], H5T_NATIVE_FLOAT, start, count, scratch) < 0)
    goto out;
  for (int64_t i = 0; i < count; i++)
    memcpy(&out[i].guidance_scale, scratch + i * sizeof(float), sizeof(float));
  if (sd_h5_dataset_read_rows(&r->ds[SD_DS_STEPS], H5T_NATIVE_INT32, start, count, scratch) < 0)
    goto out;
  for (int64_t i = 0; i < count; i++)
    memcpy(&out[i].steps, scratch + i * sizeof(int32_t), sizeof(int32_t));
  if (sd_h5_dataset_read_rows(&r->ds[SD_DS_SCHEDULER], r->scheduler_type, start, count, scratch) <
      0)
    goto out;
  for (int64_t i = 0; i < count; i++) {
    memcpy(out[i].scheduler, scratch + i * SD_OUTPUT_SCHEDULER_LEN, SD_OUTPUT_SCHEDULER_LEN);
    out[i].scheduler[SD_OUTPUT_SCHEDULER_LEN - 1] = 0;
  }
  if (sd_h5_dataset_read_rows(&r->ds[SD_DS_STATUS], H5T_NATIVE_UINT8, start, count, scratch) < 0)
    goto out;
  for (int64_t i = 0; i < count; i++)
    out[i].status = (uint8_t)scratch[i];
  rc = 0;
out:
  free(scratch);
  return rc;
}

int sd_output_read_image(sd_output_reader *r, int64_t index, uint8_t *rgb) {
  return sd_h5_dataset_read_rows(&r->ds[SD_DS_IMAGES], H5T_NATIVE_UINT8, index, 1, rgb);
}

int sd_output_read_latents(sd_output_reader *r, int64_t index, float *latents) {
  if (r->ds[SD_DS_LATENTS].id < 0)
    return SD_ERROR("the file has no latents (save_latents was off)");
  return sd_h5_dataset_read_rows(&r->ds[SD_DS_LATENTS], H5T_NATIVE_FLOAT, index, 1, latents);
}

int sd_output_read_failure(sd_output_reader *r, int64_t index, char *reason) {
  SD_TRY(sd_h5_dataset_read_rows(&r->ds[SD_DS_FAILURE], r->failure_type, index, 1, reason));
  reason[SD_OUTPUT_FAILURE_LEN - 1] = 0;
  return 0;
}

int sd_output_read_prompt(sd_output_reader *r, int64_t i, char **out) {
  *out = NULL;
  char *value = NULL;
  SD_TRY(sd_h5_dataset_read_rows(&r->prompts, r->prompt_type, i, 1, &value));
  *out = strdup(value ? value : "");
  H5free_memory(value);
  if (!*out)
    return SD_ERROR("out of memory for prompt %lld", (long long)i);
  return 0;
}
