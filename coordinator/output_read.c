/* Reading output files (sd_output_reader in output.h). Every attribute and dataset is checked
 * against the schema tables (output_schema.c) before anything is read from it, so that a
 * damaged or hand-made file gets one clear error instead of a read sized by what the file claims.
 * Per-item rows are checked as they are read (ranges, strings and, in schema 2, the row
 * checksum) and flagged rather than trusted. Opens read-only and without file locking: it never
 * changes the file and works while a run writes it. */
#include "output_schema.h"

#include "kernels/error.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The most steps and the highest noise level an item can claim (sanity bounds on read values). */
#define MAX_STEPS       100000
#define MAX_NOISE_LEVEL 100000
/* The probe's exit status for an error sdbatch itself found (the same reads then give it here
 * with its message); any other non-zero status is a failure inside libhdf5 (a sanitizer build
 * exits 1 on the memory errors a damaged heap leads it into). */
#define PROBE_CLEAN_ERROR 3
/* Seconds the schema 1 string probe may take before it counts as hung. */
#define PROBE_TIMEOUT_S 120

/* String attributes the reader keeps, in sd_output_info. */
static const sd_output_attr info_strings[] = {
    SD_ATTR_JOB_YAML,       SD_ATTR_JOB_PATH, SD_ATTR_JOB_HASH,        SD_ATTR_MODEL,
    SD_ATTR_MODEL_IDENTITY, SD_ATTR_CREATED,  SD_ATTR_SDBATCH_VERSION,
};
enum { N_INFO_STRINGS = sizeof info_strings / sizeof info_strings[0] };

struct sd_output_reader {
  hid_t file;
  uint64_t file_size;
  sd_output_info info;
  char *strings[N_INFO_STRINGS];
  char *adapters; /* "" when the file has no adapters attribute */
  char updated[SD_OUTPUT_TIME_LEN + 1];
  sd_h5_dataset ds[SD_DS_COUNT]; /* latents: id -1 when not saved; item_checksum: v2 only */
  sd_h5_dataset prompts;
  size_t prompt_len; /* the prompts' fixed length (schema 2); 0: variable length (schema 1) */
  sd_h5_dataset inputs, input_sha256; /* schema 3 with n_inputs > 0; id -1 otherwise */
  size_t input_len;                   /* the input paths' fixed length */
  hid_t scheduler_type, failure_type, prompt_type;
};

/* Whether the HDF5 signature is at offset 0, 512, 1024, ... (where HDF5 looks for it). */
static int has_hdf5_signature(const char *path, bool *found) {
  static const unsigned char signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  *found = false;
  int fd = open(path, O_RDONLY | O_NONBLOCK);
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
static int open_file(const char *path, hid_t *file, uint64_t *file_size) {
  struct stat st;
  if (stat(path, &st) < 0)
    return SD_ERROR("%s", strerror(errno));
  if (!S_ISREG(st.st_mode))
    return SD_ERROR("not a regular file");
  *file_size = (uint64_t)st.st_size;
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

/* The format attribute and the string attributes of sd_output_info. */
static int read_strings(sd_output_reader *r) {
  int version = r->info.schema_version;
  char *format = NULL;
  SD_TRY(sd_output_attr_get_string(r->file, &sd_output_attrs[SD_ATTR_FORMAT], version, &format));
  bool ours = strcmp(format, SD_OUTPUT_FORMAT_NAME) == 0;
  if (!ours)
    SD_ERROR("an HDF5 file but not an sdbatch output (format '%s')", format);
  free(format);
  if (!ours)
    return -1;
  for (int s = 0; s < N_INFO_STRINGS; s++)
    SD_TRY(sd_output_attr_get_string(r->file, &sd_output_attrs[info_strings[s]], version,
                                     &r->strings[s]));
  /* optional in schema 1: files written before adapters existed have none */
  const sd_output_attr_desc *adapters = &sd_output_attrs[SD_ATTR_ADAPTERS];
  htri_t has_adapters = H5Aexists(r->file, adapters->name);
  H5Eclear2(H5E_DEFAULT);
  if (has_adapters < 0)
    return SD_ERROR("cannot tell whether the file has an '%s' attribute", adapters->name);
  free(r->adapters);
  r->adapters = NULL;
  if (has_adapters > 0 || !((adapters->optional >> version) & 1u))
    SD_TRY(sd_output_attr_get_string(r->file, adapters, version, &r->adapters));
  else if (!(r->adapters = strdup("")))
    return SD_ERROR("out of memory");
  return 0;
}

/* The child's half of probe_v1_strings: every variable-length string of the file, read. */
static int read_every_v1_string(sd_output_reader *r) {
  SD_TRY(read_strings(r));
  hid_t prompts = H5Dopen2(r->file, "prompts", H5P_DEFAULT);
  if (prompts < 0)
    return -1;
  hid_t space = H5Dget_space(prompts), type = H5Dget_type(prompts);
  hid_t mem_type = sd_h5_vlen_string_type();
  int rc = -1;
  if (space >= 0 && type >= 0 && mem_type >= 0 && H5Sget_simple_extent_ndims(space) == 1 &&
      H5Tget_class(type) == H5T_STRING && H5Tis_variable_str(type) > 0) {
    hssize_t n = H5Sget_simple_extent_npoints(space);
    char **values = n > 0 && n < (1 << 26) ? calloc((size_t)n, sizeof *values) : NULL;
    if (values && H5Dread(prompts, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values) >= 0)
      rc = 0;
    free(values); /* the child exits next: the strings themselves are not freed */
  }
  return rc;
}

/* Schema 1 keeps its strings in HDF5's global heap, which has no checksum: libhdf5 follows a
 * damaged heap blindly and can crash (SIGSEGV in H5HG_read). So a child process reads every one
 * of them first; if it crashes, hangs or fails inside libhdf5, the file is refused here with a
 * clear error, and if it does not, the same reads are safe in this process. */
static int probe_v1_strings(sd_output_reader *r) {
  pid_t pid = fork();
  if (pid < 0)
    return SD_ERROR("cannot start a process to check the file's strings: %s", strerror(errno));
  if (pid == 0) {
    alarm(PROBE_TIMEOUT_S);
    _exit(read_every_v1_string(r) == 0 ? 0 : PROBE_CLEAN_ERROR);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return SD_ERROR("waiting for the string check: %s", strerror(errno));
  if (WIFSIGNALED(status))
    return SD_ERROR("damaged schema 1 file: reading its variable-length strings %s libhdf5 "
                    "(signal %d: %s); schema 1 keeps them in HDF5's global heap, which has no "
                    "checksum",
                    WTERMSIG(status) == SIGALRM ? "hung" : "crashed", WTERMSIG(status),
                    strsignal(WTERMSIG(status)));
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != PROBE_CLEAN_ERROR)
    return SD_ERROR("damaged schema 1 file: reading its variable-length strings failed inside "
                    "libhdf5 (exit status %d); schema 1 keeps them in HDF5's global heap, which "
                    "has no checksum",
                    WEXITSTATUS(status));
  return 0;
}

static int read_info(sd_output_reader *r) {
  hid_t f = r->file;
  htri_t has_format = H5Aexists(f, sd_output_attrs[SD_ATTR_FORMAT].name);
  if (has_format < 0)
    return SD_H5_ERROR("damaged HDF5 file: cannot read the root group's attributes");
  if (has_format == 0)
    return SD_ERROR("an HDF5 file but not an sdbatch output (no 'format' attribute)");
  int64_t v = 0;
  SD_TRY(sd_output_attr_get_int(f, &sd_output_attrs[SD_ATTR_SCHEMA_VERSION], 1, &v));
  if (v < SD_OUTPUT_SCHEMA_OLDEST || v > SD_OUTPUT_SCHEMA_NEWEST)
    return SD_ERROR("schema version %lld; this sdbatch reads versions %d to %d", (long long)v,
                    SD_OUTPUT_SCHEMA_OLDEST, SD_OUTPUT_SCHEMA_NEWEST);
  sd_output_info *info = &r->info;
  info->schema_version = (int)v;
  if (v == 1)
    SD_TRY(probe_v1_strings(r));
  SD_TRY(read_strings(r));
  info->job_yaml = r->strings[0];
  info->job_path = r->strings[1];
  info->job_hash = r->strings[2];
  info->model_path = r->strings[3];
  info->model_identity = r->strings[4];
  info->created = r->strings[5];
  info->sdbatch_version = r->strings[6];
  info->adapters = r->adapters;
  static const sd_output_attr int_attrs[] = {
      SD_ATTR_WIDTH,        SD_ATTR_HEIGHT,       SD_ATTR_LATENT_CHANNELS,   SD_ATTR_LATENT_HEIGHT,
      SD_ATTR_LATENT_WIDTH, SD_ATTR_SAVE_LATENTS, SD_ATTR_METADATA_COMPLETE,
  };
  int64_t ints[7];
  for (int i = 0; i < 7; i++)
    SD_TRY(
        sd_output_attr_get_int(f, &sd_output_attrs[int_attrs[i]], info->schema_version, &ints[i]));
  info->width = (int)ints[0];
  info->height = (int)ints[1];
  info->latent_channels = (int)ints[2];
  info->latent_h = (int)ints[3];
  info->latent_w = (int)ints[4];
  info->save_latents = ints[5] != 0;
  info->metadata_complete = ints[6] != 0;
  if (info->save_latents && (info->latent_channels < 1 || info->latent_h < 1 || info->latent_w < 1))
    return SD_ERROR("save_latents is 1 but the latent shape (%d, %d, %d) is empty",
                    info->latent_channels, info->latent_h, info->latent_w);
  if (info->schema_version >= 3)
    SD_TRY(sd_output_attr_get_int(f, &sd_output_attrs[SD_ATTR_N_INPUTS], info->schema_version,
                                  &info->n_inputs));
  if (info->schema_version < 2)
    return 0;
  sd_output_header h = {{0}, {0}};
  h.strings[SD_ATTR_FORMAT] = SD_OUTPUT_FORMAT_NAME;
  h.ints[SD_ATTR_SCHEMA_VERSION] = v;
  for (int s = 0; s < N_INFO_STRINGS; s++)
    h.strings[info_strings[s]] = r->strings[s];
  h.strings[SD_ATTR_ADAPTERS] = r->adapters;
  for (int i = 0; i < 7; i++)
    h.ints[int_attrs[i]] = ints[i];
  h.ints[SD_ATTR_N_INPUTS] = info->n_inputs;
  char want[65], *stored = NULL;
  sd_output_header_sha256(&h, want);
  SD_TRY(sd_output_attr_get_string(f, &sd_output_attrs[SD_ATTR_HEADER_CHECKSUM], 2, &stored));
  bool same = strcmp(stored, want) == 0;
  if (!same)
    SD_ERROR("damaged header: the attributes' SHA-256 is %.16s..., header_sha256 says %.16s...",
             want, stored);
  free(stored);
  return same ? 0 : -1;
}

/* The first dimension of a rank-rank dataset (N of images, P of prompts), read from its
 * dataspace only. */
static int leading_dim(hid_t file, const char *name, int rank, int64_t *n) {
  htri_t exists = H5Lexists(file, name, H5P_DEFAULT);
  H5Eclear2(H5E_DEFAULT);
  if (exists <= 0)
    return SD_ERROR("dataset '%s' is missing", name);
  hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
  if (ds < 0)
    return SD_H5_ERROR("dataset '%s': cannot open it", name);
  hid_t space = H5Dget_space(ds);
  hsize_t dims[H5S_MAX_RANK];
  int got = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
  int rc = 0;
  if (got != rank || H5Sget_simple_extent_dims(space, dims, NULL) < 0)
    rc = SD_ERROR("dataset '%s' has %d dimensions, expected %d", name, got, rank);
  else if (dims[0] < 1 || dims[0] > (hsize_t)INT64_MAX / 2)
    rc = SD_ERROR("dataset '%s' has %llu rows", name, (unsigned long long)dims[0]);
  else
    *n = (int64_t)dims[0];
  H5Eclear2(H5E_DEFAULT);
  if (space >= 0)
    H5Sclose(space);
  H5Dclose(ds);
  return rc;
}

/* Opens every dataset, each checked against the schema and the attributes. */
static int open_datasets(sd_output_reader *r) {
  sd_output_info *info = &r->info;
  int version = info->schema_version;
  SD_TRY(leading_dim(r->file, "images", 4, &info->n_items));
  SD_TRY(leading_dim(r->file, "prompts", 1, &info->n_prompts));
  const sd_output_shape shape = {info->n_items,  info->n_prompts,       info->width,
                                 info->height,   info->latent_channels, info->latent_h,
                                 info->latent_w, info->n_inputs};
  for (int d = 0; d < SD_DS_COUNT; d++) {
    if ((d == SD_DS_LATENTS && !info->save_latents) ||
        !((sd_output_datasets[d].versions >> version) & 1u))
      continue;
    SD_TRY(sd_output_dataset_open_checked(r->file, &sd_output_datasets[d], version, &shape,
                                          r->file_size, H5P_DEFAULT, &r->ds[d], NULL));
  }
  SD_TRY(sd_output_dataset_open_checked(r->file, &sd_output_prompts_desc, version, &shape,
                                        r->file_size, H5P_DEFAULT, &r->prompts, &r->prompt_len));
  if (info->n_inputs > 0) {
    SD_TRY(sd_output_dataset_open_checked(r->file, &sd_output_inputs_desc, version, &shape,
                                          r->file_size, H5P_DEFAULT, &r->inputs, &r->input_len));
    SD_TRY(sd_output_dataset_open_checked(r->file, &sd_output_input_sha256_desc, version, &shape,
                                          r->file_size, H5P_DEFAULT, &r->input_sha256, NULL));
  }

  sd_h5_dataset updated;
  SD_TRY(sd_output_dataset_open_checked(r->file, &sd_output_updated_desc, version, &shape,
                                        r->file_size, H5P_DEFAULT, &updated, NULL));
  hid_t time_type = sd_h5_fixed_string_type(SD_OUTPUT_TIME_LEN);
  herr_t rc = time_type < 0
                  ? -1
                  : H5Dread(updated.id, time_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->updated);
  if (time_type >= 0)
    H5Tclose(time_type);
  sd_h5_dataset_close(&updated);
  if (rc < 0)
    return SD_H5_ERROR("dataset 'updated': cannot read");
  if (!sd_output_fixed_string_ok(r->updated, SD_OUTPUT_TIME_LEN))
    return SD_ERROR("dataset 'updated' is not a NUL-padded UTF-8 string");
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
  r->inputs = r->input_sha256 = (sd_h5_dataset){.id = -1, .space = -1};
  for (int d = 0; d < SD_DS_COUNT; d++)
    r->ds[d] = (sd_h5_dataset){.id = -1, .space = -1};
  if (open_file(path, &r->file, &r->file_size) < 0 || read_info(r) < 0 || open_datasets(r) < 0)
    goto fail;
  r->scheduler_type = sd_h5_fixed_string_type(SD_OUTPUT_SCHEDULER_LEN);
  r->failure_type = sd_h5_fixed_string_type(SD_OUTPUT_FAILURE_LEN);
  r->prompt_type =
      r->prompt_len ? sd_h5_fixed_string_type(r->prompt_len) : sd_h5_vlen_string_type();
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
  sd_h5_dataset_close(&r->inputs);
  sd_h5_dataset_close(&r->input_sha256);
  if (r->scheduler_type >= 0)
    H5Tclose(r->scheduler_type);
  if (r->failure_type >= 0)
    H5Tclose(r->failure_type);
  if (r->prompt_type >= 0)
    H5Tclose(r->prompt_type);
  if (r->file >= 0)
    H5Fclose(r->file);
  for (int s = 0; s < N_INFO_STRINGS; s++)
    free(r->strings[s]);
  free(r->adapters);
  free(r);
}

const sd_output_info *sd_output_reader_info(const sd_output_reader *reader) {
  return &reader->info;
}

const sd_h5_dataset *sd_output_reader_dataset(const sd_output_reader *reader, sd_output_dataset d) {
  return &reader->ds[d];
}

/* Sets rec->problem when the row is not sound (the first problem found). */
static void check_record(const sd_output_reader *r, int64_t index, sd_output_record *rec,
                         const char *failure, const uint32_t *checksum) {
  const sd_output_info *info = &r->info;
  bool meta_known = rec->status != SD_ITEM_PENDING || info->metadata_complete;
  char *p = rec->problem;
  size_t n = SD_OUTPUT_PROBLEM_LEN;
  p[0] = 0;
  if (rec->status > SD_ITEM_FAILED)
    snprintf(p, n, "status %u (expected 0, 1 or 2)", rec->status);
  else if (!sd_output_fixed_string_ok(rec->scheduler, SD_OUTPUT_SCHEDULER_LEN))
    snprintf(p, n, "scheduler name is not a NUL-padded UTF-8 string");
  else if (rec->prompt_index < 0 || rec->prompt_index >= info->n_prompts)
    snprintf(p, n, "prompt_index %d outside [0, %lld)", rec->prompt_index,
             (long long)info->n_prompts);
  else if (rec->steps < (meta_known ? 1 : 0) || rec->steps > MAX_STEPS)
    snprintf(p, n, "steps %d outside [%d, %d]", rec->steps, meta_known ? 1 : 0, MAX_STEPS);
  else if (!isfinite(rec->guidance_scale))
    snprintf(p, n, "guidance_scale is not finite");
  else if (rec->input_index < -1 || rec->input_index >= info->n_inputs)
    snprintf(p, n, "input_index %d outside [-1, %lld)", rec->input_index,
             (long long)info->n_inputs);
  else if (!(rec->strength >= 0.0f && rec->strength <= 1.0f))
    snprintf(p, n, "strength outside [0, 1]");
  else if (rec->noise_level < -1 || rec->noise_level > MAX_NOISE_LEVEL)
    snprintf(p, n, "noise_level %d outside [-1, %d]", rec->noise_level, MAX_NOISE_LEVEL);
  else if (failure && !sd_output_fixed_string_ok(failure, SD_OUTPUT_FAILURE_LEN))
    snprintf(p, n, "failure reason is not a NUL-padded UTF-8 string");
  else if (checksum && rec->status == SD_ITEM_DONE) {
    uint32_t want = sd_output_row_checksum(index, rec, failure, info->schema_version);
    if (want != *checksum)
      snprintf(p, n, "row checksum %08x does not match its contents (%08x)", *checksum, want);
  }
}

int sd_output_read_records(sd_output_reader *r, int64_t start, int64_t count,
                           sd_output_record *out) {
  if (count < 1)
    return SD_ERROR("no records asked for (%lld)", (long long)count);
  /* one column at a time through a scratch buffer sized for the widest column */
  bool v2 = r->ds[SD_DS_CHECKSUM].id >= 0;
  char *scratch = malloc((size_t)count * SD_OUTPUT_SCHEDULER_LEN);
  char *failures = v2 ? malloc((size_t)count * SD_OUTPUT_FAILURE_LEN) : NULL;
  uint32_t *checksums = v2 ? malloc((size_t)count * sizeof *checksums) : NULL;
  int rc = -1;
  if (!scratch || (v2 && (!failures || !checksums))) {
    SD_ERROR("out of memory for %lld records", (long long)count);
    goto out;
  }
  memset(out, 0, (size_t)count * sizeof *out);
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
  for (int64_t i = 0; i < count; i++)
    memcpy(out[i].scheduler, scratch + i * SD_OUTPUT_SCHEDULER_LEN, SD_OUTPUT_SCHEDULER_LEN);
  if (sd_h5_dataset_read_rows(&r->ds[SD_DS_STATUS], H5T_NATIVE_UINT8, start, count, scratch) < 0)
    goto out;
  for (int64_t i = 0; i < count; i++) {
    out[i].status = (uint8_t)scratch[i];
    out[i].input_index = -1;
    out[i].strength = 1.0f;
    out[i].noise_level = -1;
  }
  if (r->ds[SD_DS_INPUT_INDEX].id >= 0) {
    if (sd_h5_dataset_read_rows(&r->ds[SD_DS_INPUT_INDEX], H5T_NATIVE_INT32, start, count,
                                scratch) < 0)
      goto out;
    for (int64_t i = 0; i < count; i++)
      memcpy(&out[i].input_index, scratch + i * sizeof(int32_t), sizeof(int32_t));
    if (sd_h5_dataset_read_rows(&r->ds[SD_DS_STRENGTH], H5T_NATIVE_FLOAT, start, count, scratch) <
        0)
      goto out;
    for (int64_t i = 0; i < count; i++)
      memcpy(&out[i].strength, scratch + i * sizeof(float), sizeof(float));
    if (sd_h5_dataset_read_rows(&r->ds[SD_DS_NOISE_LEVEL], H5T_NATIVE_INT32, start, count,
                                scratch) < 0)
      goto out;
    for (int64_t i = 0; i < count; i++)
      memcpy(&out[i].noise_level, scratch + i * sizeof(int32_t), sizeof(int32_t));
  }
  if (v2 && (sd_h5_dataset_read_rows(&r->ds[SD_DS_FAILURE], r->failure_type, start, count,
                                     failures) < 0 ||
             sd_h5_dataset_read_rows(&r->ds[SD_DS_CHECKSUM], H5T_NATIVE_UINT32, start, count,
                                     checksums) < 0))
    goto out;
  for (int64_t i = 0; i < count; i++) {
    check_record(r, start + i, &out[i], v2 ? failures + i * SD_OUTPUT_FAILURE_LEN : NULL,
                 v2 ? &checksums[i] : NULL);
    /* a damaged row still gets a terminated scheduler string */
    out[i].scheduler[SD_OUTPUT_SCHEDULER_LEN - 1] = 0;
  }
  rc = 0;
out:
  free(scratch);
  free(failures);
  free(checksums);
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
  if (!sd_output_fixed_string_ok(reason, SD_OUTPUT_FAILURE_LEN)) {
    reason[0] = 0;
    return SD_ERROR("item %lld: the failure reason is not a NUL-padded UTF-8 string",
                    (long long)index);
  }
  return 0;
}

int sd_output_read_prompt(sd_output_reader *r, int64_t i, char **out) {
  *out = NULL;
  if (r->prompt_len) {
    char *value = calloc(r->prompt_len + 1, 1);
    if (!value)
      return SD_ERROR("out of memory for prompt %lld", (long long)i);
    if (sd_h5_dataset_read_rows(&r->prompts, r->prompt_type, i, 1, value) < 0) {
      free(value);
      return -1;
    }
    if (!sd_output_fixed_string_ok(value, r->prompt_len)) {
      free(value);
      return SD_ERROR("prompt %lld is not a NUL-padded UTF-8 string", (long long)i);
    }
    *out = value;
    return 0;
  }
  char *value = NULL;
  SD_TRY(sd_h5_dataset_read_rows(&r->prompts, r->prompt_type, i, 1, &value));
  *out = strdup(value ? value : "");
  H5free_memory(value);
  if (!*out)
    return SD_ERROR("out of memory for prompt %lld", (long long)i);
  return 0;
}

int sd_output_read_input(sd_output_reader *r, int64_t i, sd_output_input *out) {
  memset(out, 0, sizeof *out);
  if (i < 0 || i >= r->info.n_inputs)
    return SD_ERROR("input %lld outside [0, %lld)", (long long)i, (long long)r->info.n_inputs);
  size_t len = r->input_len;
  char *packed = calloc(SD_OUTPUT_INPUT_FILES, len); /* one row: FILES strings of len bytes */
  char sums[SD_OUTPUT_INPUT_FILES][65];
  hid_t path_type = sd_h5_fixed_string_type(len);
  hid_t sum_type = sd_h5_fixed_string_type(65);
  int rc = -1;
  if (!packed || path_type < 0 || sum_type < 0) {
    SD_ERROR("out of memory for input %lld", (long long)i);
    goto out;
  }
  if (sd_h5_dataset_read_rows(&r->inputs, path_type, i, 1, packed) < 0 ||
      sd_h5_dataset_read_rows(&r->input_sha256, sum_type, i, 1, sums) < 0)
    goto out;
  for (int k = 0; k < SD_OUTPUT_INPUT_FILES; k++) {
    const char *field = packed + (size_t)k * len;
    if (!sd_output_fixed_string_ok(field, len) || !sd_output_fixed_string_ok(sums[k], 65)) {
      SD_ERROR("input %lld: a path or SHA-256 that is not a NUL-padded UTF-8 string", (long long)i);
      goto out;
    }
    if (!(out->files[k] = strndup(field, len))) {
      SD_ERROR("out of memory for input %lld", (long long)i);
      goto out;
    }
    memcpy(out->sha256[k], sums[k], 65);
  }
  rc = 0;
out:
  if (rc < 0)
    sd_output_input_free(out);
  free(packed);
  if (path_type >= 0)
    H5Tclose(path_type);
  if (sum_type >= 0)
    H5Tclose(sum_type);
  return rc;
}

void sd_output_input_free(sd_output_input *input) {
  for (int k = 0; k < SD_OUTPUT_INPUT_FILES; k++) {
    free(input->files[k]);
    input->files[k] = NULL;
  }
}
