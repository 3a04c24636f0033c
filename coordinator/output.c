/* The output file's writer: creation (atomic: a temporary file renamed into place), resume
 * checks, item writes and the flush that orders data before status (see output.h for the crash
 * safety argument and docs/output.md for the schema). */
#include "output_schema.h"

#include "kernels/error.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct sd_output {
  char *path;
  hid_t file;
  int fd;                        /* the file's descriptor (HDF5's sec2 driver), for fdatasync */
  sd_h5_dataset ds[SD_DS_COUNT]; /* latents: id -1 when not saved */
  hid_t updated;                 /* scalar time string dataset */
  hid_t scheduler_type, failure_type, time_type;
  int64_t n_items, n_prompts, n_inputs;
  bool save_latents;
  bool metadata_complete;
  int version;                /* the file's schema version */
  int64_t damaged_items;      /* done or failed items found damaged at open, rendered again */
  uint8_t *status;            /* (n_items) as written; on disk as of the last flush */
  int64_t dirty_lo, dirty_hi; /* status rows changed since the last flush: [lo, hi) */
  int64_t counts[3];
};

/* Makes the rename of a new file durable. */
static int fsync_parent_dir(const char *path) {
  char *copy = strdup(path);
  if (!copy)
    return SD_ERROR("out of memory");
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
  int rc = 0;
  if (fd < 0 || fsync(fd) < 0)
    rc = SD_ERROR("cannot sync its folder: %s", strerror(errno));
  if (fd >= 0)
    close(fd);
  free(copy);
  return rc;
}

/* Creates the file under a temporary name and renames it into place, so that a kill during
 * creation leaves no half-made file at path. */
static int create_new(const sd_output_spec *spec) {
  size_t len = strlen(spec->path) + sizeof ".creating";
  char *tmp = malloc(len);
  if (!tmp)
    return SD_ERROR("out of memory");
  snprintf(tmp, len, "%s.creating", spec->path);
  int rc = sd_output_create_file(spec, tmp);
  if (rc < 0) {
    sd_error_context("%s", tmp);
    unlink(tmp);
  } else if (rename(tmp, spec->path) < 0) {
    rc = SD_ERROR("cannot rename %s to %s: %s", tmp, spec->path, strerror(errno));
    unlink(tmp);
  } else if (fsync_parent_dir(spec->path) < 0) {
    rc = sd_error_context("%s", spec->path);
  }
  free(tmp);
  return rc;
}

/* Marks in damaged (n_items) the items a resume renders again: rows the reader flags
 * (sd_output_record.problem) and, in schema 2, done items whose image or latents chunk fails its
 * checksum. A damaged chunk index is an error: items would be written where it points. */
static int find_damaged_items(sd_output_reader *reader, int64_t n_items, uint8_t *damaged) {
  enum { BLOCK = 4096 };
  SD_TRY(sd_output_verify_chunk_index(reader));
  const bool read_chunks = sd_output_reader_info(reader)->schema_version >= 2;
  sd_output_record *records = malloc(BLOCK * sizeof *records);
  if (!records)
    return SD_ERROR("out of memory");
  int rc = 0;
  for (int64_t start = 0; rc == 0 && start < n_items; start += BLOCK) {
    int64_t count = n_items - start < BLOCK ? n_items - start : BLOCK;
    rc = sd_output_read_records(reader, start, count, records);
    for (int64_t i = 0; rc == 0 && i < count; i++) {
      damaged[start + i] = records[i].problem[0] != 0;
      if (damaged[start + i] || !read_chunks || records[i].status != SD_ITEM_DONE)
        continue;
      char problem[SD_OUTPUT_PROBLEM_LEN];
      int got = sd_output_verify_item(reader, start + i, &records[i], problem);
      if (got < 0)
        rc = -1;
      damaged[start + i] = got == 1;
    }
  }
  free(records);
  return rc;
}

/* Refuses a resume when an input file's SHA-256 differs from the one recorded at creation (the
 * paths are the job's: its hash, checked before, covers them). */
static int check_inputs(const sd_output_spec *spec, sd_output_reader *reader) {
  static const char *const kinds[SD_OUTPUT_INPUT_FILES] = {"image", "mask", "depth map"};
  for (int64_t i = 0; i < spec->n_inputs; i++) {
    sd_output_input row;
    if (sd_output_read_input(reader, i, &row) < 0)
      return sd_error_context("%s: reading its inputs; refusing to resume (left untouched)",
                              spec->path);
    int rc = 0;
    for (int k = 0; k < SD_OUTPUT_INPUT_FILES && rc == 0; k++) {
      const char *want = spec->input_sha256[i * SD_OUTPUT_INPUT_FILES + k];
      const char *file = spec->input_files[i * SD_OUTPUT_INPUT_FILES + k];
      if (strcmp(row.sha256[k], want ? want : "") != 0)
        rc = SD_ERROR("%s: input %lld's %s '%s' has changed since the file was created (SHA-256 "
                      "then %.16s..., now %.16s...); refusing to resume: restore the file, or "
                      "write this job to a new output",
                      spec->path, (long long)i, kinds[k], file ? file : "",
                      row.sha256[k][0] ? row.sha256[k] : "none", want && want[0] ? want : "none");
    }
    sd_output_input_free(&row);
    SD_TRY(rc);
  }
  return 0;
}

/* Checks that the existing file at spec->path was started by this job with these shapes, and
 * marks its damaged items in damaged (spec->n_items). */
static int check_existing(const sd_output_spec *spec, uint8_t *damaged) {
  sd_output_reader *reader = NULL;
  if (sd_output_reader_open(spec->path, &reader) < 0) {
    char message[1024];
    snprintf(message, sizeof message, "%s", sd_error_message());
    return SD_ERROR("%s; refusing to use it as the output (left untouched)", message);
  }
  const sd_output_info *info = sd_output_reader_info(reader);
  int rc = 0;
  if (strcmp(info->job_hash, spec->job_hash) != 0)
    rc = SD_ERROR("%s: belongs to another job (the file's job_hash %s, this job's %s); refusing to "
                  "touch it: move it away or change the job's output",
                  spec->path, info->job_hash, spec->job_hash);
  else if (strcmp(info->model_identity, spec->model_identity) != 0)
    rc = SD_ERROR("%s: was started with another model (the file's model_identity %s, this run's "
                  "%s); refusing to resume",
                  spec->path, info->model_identity, spec->model_identity);
  else if (strcmp(info->adapters, spec->adapters ? spec->adapters : "") != 0)
    rc = SD_ERROR("%s: was started with other adapter files or contents (the file's adapters "
                  "%s; this run's %s); an adapter file changed since (see the sha256 values): "
                  "refusing to resume",
                  spec->path, info->adapters[0] ? info->adapters : "none",
                  spec->adapters && spec->adapters[0] ? spec->adapters : "none");
  else if (info->n_inputs != spec->n_inputs)
    rc = SD_ERROR("%s: was started with %lld inputs, this run has %lld; refusing to resume",
                  spec->path, (long long)info->n_inputs, (long long)spec->n_inputs);
  else if (info->n_items != spec->n_items || info->width != spec->width ||
           info->height != spec->height || info->save_latents != spec->save_latents ||
           info->n_prompts != spec->n_prompts ||
           (spec->save_latents &&
            (info->latent_channels != spec->latent_channels || info->latent_h != spec->latent_h ||
             info->latent_w != spec->latent_w)))
    rc = SD_ERROR(
        "%s: same job but other shapes (the file: %lld items of %dx%d, %lld prompts, "
        "latents %s (%d, %d, %d); this run: %lld items of %dx%d, %lld prompts, latents "
        "%s (%d, %d, %d)); refusing to resume",
        spec->path, (long long)info->n_items, info->width, info->height, (long long)info->n_prompts,
        info->save_latents ? "on" : "off", info->latent_channels, info->latent_h, info->latent_w,
        (long long)spec->n_items, spec->width, spec->height, (long long)spec->n_prompts,
        spec->save_latents ? "on" : "off", spec->latent_channels, spec->latent_h, spec->latent_w);
  if (rc == 0)
    rc = check_inputs(spec, reader);
  if (rc == 0 && find_damaged_items(reader, spec->n_items, damaged) < 0)
    rc =
        sd_error_context("%s: checking its items; refusing to resume (left untouched)", spec->path);
  sd_output_reader_close(reader);
  return rc;
}

/* Loads the status column into memory and counts it; a damaged item (damaged[i], may be NULL)
 * that is not pending counts as pending, to be rendered again. */
static int load_status(sd_output *o, const uint8_t *damaged) {
  SD_TRY(sd_h5_dataset_read_rows(&o->ds[SD_DS_STATUS], H5T_NATIVE_UINT8, 0, o->n_items, o->status));
  for (int64_t i = 0; i < o->n_items; i++) {
    if ((damaged && damaged[i]) || o->status[i] > SD_ITEM_FAILED) {
      if (o->status[i] != SD_ITEM_PENDING)
        o->damaged_items++;
      o->status[i] = SD_ITEM_PENDING;
    }
    o->counts[o->status[i]]++;
  }
  return 0;
}

static int open_for_writing(sd_output *o, const uint8_t *damaged) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0 || H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_V18) < 0 ||
      H5Pset_file_locking(fapl, 1, 1) < 0) {
    SD_H5_ERROR("cannot set up file access");
    goto fail_fapl;
  }
  o->file = H5Fopen(o->path, H5F_ACC_RDWR, fapl);
  if (o->file < 0) {
    SD_H5_ERROR("cannot open for writing (is another sdbatch run writing it?)");
    goto fail_fapl;
  }
  int *fd = NULL;
  if (H5Fget_vfd_handle(o->file, fapl, (void **)&fd) < 0 || !fd) {
    SD_H5_ERROR("cannot get the file descriptor");
    goto fail_fapl;
  }
  o->fd = *fd;
  H5Pclose(fapl);
  int64_t version = 0;
  SD_TRY(sd_h5_attr_read_int(o->file, "schema_version", &version));
  o->version = (int)version;

  /* Images and latents bypass the chunk cache: each write goes straight to its chunk's place. */
  hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
  if (dapl < 0 || H5Pset_chunk_cache(dapl, 0, 0, 1.0) < 0) {
    SD_H5_ERROR("cannot set up dataset access");
    if (dapl >= 0)
      H5Pclose(dapl);
    return -1;
  }
  int status = 0;
  for (int d = 0; d < SD_DS_COUNT && status == 0; d++) {
    if ((d == SD_DS_LATENTS && !o->save_latents) ||
        !((sd_output_datasets[d].versions >> o->version) & 1u))
      continue;
    status =
        sd_h5_dataset_open(o->file, sd_output_dataset_names[d],
                           d == SD_DS_IMAGES || d == SD_DS_LATENTS ? dapl : H5P_DEFAULT, &o->ds[d]);
  }
  H5Pclose(dapl);
  SD_TRY(status);
  o->updated = H5Dopen2(o->file, "updated", H5P_DEFAULT);
  if (o->updated < 0)
    return SD_H5_ERROR("dataset 'updated' is missing");
  o->scheduler_type = sd_h5_fixed_string_type(SD_OUTPUT_SCHEDULER_LEN);
  o->failure_type = sd_h5_fixed_string_type(SD_OUTPUT_FAILURE_LEN);
  o->time_type = sd_h5_fixed_string_type(SD_OUTPUT_TIME_LEN);
  if (o->scheduler_type < 0 || o->failure_type < 0 || o->time_type < 0)
    return -1;
  return load_status(o, damaged);
fail_fapl:
  if (fapl >= 0)
    H5Pclose(fapl);
  return -1;
}

/* Releases everything; returns -1 when HDF5 could not close the file cleanly. */
static int release(sd_output *o) {
  int rc = 0;
  for (int d = 0; d < SD_DS_COUNT; d++)
    sd_h5_dataset_close(&o->ds[d]);
  if (o->updated >= 0)
    H5Dclose(o->updated);
  if (o->scheduler_type >= 0)
    H5Tclose(o->scheduler_type);
  if (o->failure_type >= 0)
    H5Tclose(o->failure_type);
  if (o->time_type >= 0)
    H5Tclose(o->time_type);
  if (o->file >= 0 && H5Fclose(o->file) < 0)
    rc = SD_H5_ERROR("%s: cannot close", o->path);
  free(o->status);
  free(o->path);
  free(o);
  return rc;
}

int sd_output_open(const sd_output_spec *spec, sd_output **out) {
  *out = NULL;
  sd_h5_silence();
  if (spec->n_items < 1)
    return SD_ERROR("%s: n_items is %lld, expected at least 1", spec->path,
                    (long long)spec->n_items);
  /* the items a resume renders again (an existing file's damaged ones); a new file has none,
   * and a job too large for the disk is refused by its creation before anything is allocated */
  uint8_t *damaged = NULL;
  struct stat st;
  int rc = 0;
  if (stat(spec->path, &st) == 0) {
    damaged = calloc((size_t)spec->n_items, 1);
    rc = damaged
             ? check_existing(spec, damaged)
             : SD_ERROR("%s: out of memory for %lld items", spec->path, (long long)spec->n_items);
  } else if (errno == ENOENT) {
    rc = create_new(spec);
  } else {
    rc = SD_ERROR("%s: %s", spec->path, strerror(errno));
  }
  sd_output *o = rc < 0 ? NULL : calloc(1, sizeof *o);
  if (!o) {
    free(damaged);
    return rc < 0 ? -1 : SD_ERROR("%s: out of memory", spec->path);
  }
  o->file = o->updated = o->scheduler_type = o->failure_type = o->time_type = -1;
  o->fd = -1;
  for (int d = 0; d < SD_DS_COUNT; d++)
    o->ds[d] = (sd_h5_dataset){.id = -1, .space = -1};
  o->path = strdup(spec->path);
  o->n_items = spec->n_items;
  o->n_prompts = spec->n_prompts;
  o->n_inputs = spec->n_inputs;
  o->save_latents = spec->save_latents;
  o->metadata_complete = spec->item_meta != NULL;
  o->status = calloc((size_t)spec->n_items, 1);
  o->dirty_lo = o->n_items;
  o->dirty_hi = 0;
  if (!o->path || !o->status) {
    release(o);
    free(damaged);
    return SD_ERROR("%s: out of memory for %lld statuses", spec->path, (long long)spec->n_items);
  }
  rc = open_for_writing(o, damaged);
  free(damaged);
  if (rc < 0) {
    sd_error_context("%s", spec->path);
    release(o);
    return -1;
  }
  /* The file's own record of how it was created wins over this run's spec. */
  int64_t complete = 0;
  if (sd_h5_attr_read_int(o->file, "metadata_complete", &complete) < 0) {
    sd_error_context("%s", spec->path);
    release(o);
    return -1;
  }
  o->metadata_complete = complete != 0;
  *out = o;
  return 0;
}

int sd_output_close(sd_output *output) {
  if (!output)
    return 0;
  int rc = sd_output_flush(output);
  if (release(output) < 0)
    rc = -1;
  return rc;
}

int64_t sd_output_damaged_items(const sd_output *o) {
  return o->damaged_items;
}

int sd_output_status(const sd_output *o, int64_t index) {
  if (index < 0 || index >= o->n_items)
    return SD_ERROR("%s: item %lld outside [0, %lld)", o->path, (long long)index,
                    (long long)o->n_items);
  return o->status[index];
}

int64_t sd_output_count(const sd_output *o, int status) {
  if (status < SD_ITEM_PENDING || status > SD_ITEM_FAILED)
    return SD_ERROR("unknown item status %d", status);
  return o->counts[status];
}

static int check_item(const sd_output *o, int64_t index, const sd_output_item_meta *meta) {
  if (index < 0 || index >= o->n_items)
    return SD_ERROR("item %lld outside [0, %lld)", (long long)index, (long long)o->n_items);
  if (o->status[index] == SD_ITEM_DONE)
    return SD_ERROR("item %lld is already done", (long long)index);
  if (!meta) {
    if (!o->metadata_complete)
      return SD_ERROR("item %lld: no metadata given, and the file was created without it",
                      (long long)index);
    return 0;
  }
  if (meta->prompt_index < 0 || meta->prompt_index >= o->n_prompts)
    return SD_ERROR("item %lld: prompt_index %d outside [0, %lld)", (long long)index,
                    meta->prompt_index, (long long)o->n_prompts);
  if (meta->scheduler && strlen(meta->scheduler) >= SD_OUTPUT_SCHEDULER_LEN)
    return SD_ERROR("item %lld: scheduler name '%s' longer than %d bytes", (long long)index,
                    meta->scheduler, SD_OUTPUT_SCHEDULER_LEN - 1);
  if (o->version >= 3 && meta->has_input &&
      (meta->input_index < 0 || meta->input_index >= o->n_inputs))
    return SD_ERROR("item %lld: input_index %d outside [0, %lld)", (long long)index,
                    meta->input_index, (long long)o->n_inputs);
  return 0;
}

static int write_meta(sd_output *o, int64_t index, const sd_output_item_meta *meta) {
  if (!meta)
    return 0;
  char scheduler[SD_OUTPUT_SCHEDULER_LEN];
  sd_output_copy_fixed(scheduler, sizeof scheduler, meta->scheduler);
  SD_TRY(sd_h5_dataset_write_rows(&o->ds[SD_DS_PROMPT_INDEX], H5T_NATIVE_INT32, index, 1,
                                  &meta->prompt_index));
  SD_TRY(sd_h5_dataset_write_rows(&o->ds[SD_DS_SEED], H5T_NATIVE_INT64, index, 1, &meta->seed));
  SD_TRY(sd_h5_dataset_write_rows(&o->ds[SD_DS_GUIDANCE], H5T_NATIVE_FLOAT, index, 1,
                                  &meta->guidance_scale));
  SD_TRY(sd_h5_dataset_write_rows(&o->ds[SD_DS_STEPS], H5T_NATIVE_INT32, index, 1, &meta->steps));
  SD_TRY(sd_h5_dataset_write_rows(&o->ds[SD_DS_SCHEDULER], o->scheduler_type, index, 1, scheduler));
  if (o->version < 3)
    return 0;
  sd_output_record rec = {0};
  sd_output_record_set_meta(&rec, meta);
  SD_TRY(sd_h5_dataset_write_rows(&o->ds[SD_DS_INPUT_INDEX], H5T_NATIVE_INT32, index, 1,
                                  &rec.input_index));
  SD_TRY(
      sd_h5_dataset_write_rows(&o->ds[SD_DS_STRENGTH], H5T_NATIVE_FLOAT, index, 1, &rec.strength));
  return sd_h5_dataset_write_rows(&o->ds[SD_DS_NOISE_LEVEL], H5T_NATIVE_INT32, index, 1,
                                  &rec.noise_level);
}

/* Schema 2: the row checksum of item index as it will be once status is flushed (written with
 * the row, before the status: a done status on disk implies its checksum is there). meta NULL:
 * the metadata already in the file. */
static int write_checksum(sd_output *o, int64_t index, const sd_output_item_meta *meta,
                          uint8_t status, const char failure[SD_OUTPUT_FAILURE_LEN]) {
  if (o->version < 2)
    return 0;
  sd_output_record rec = {.status = status};
  if (meta) {
    sd_output_record_set_meta(&rec, meta);
  } else {
    SD_TRY(sd_h5_dataset_read_rows(&o->ds[SD_DS_PROMPT_INDEX], H5T_NATIVE_INT32, index, 1,
                                   &rec.prompt_index));
    SD_TRY(sd_h5_dataset_read_rows(&o->ds[SD_DS_SEED], H5T_NATIVE_INT64, index, 1, &rec.seed));
    SD_TRY(sd_h5_dataset_read_rows(&o->ds[SD_DS_GUIDANCE], H5T_NATIVE_FLOAT, index, 1,
                                   &rec.guidance_scale));
    SD_TRY(sd_h5_dataset_read_rows(&o->ds[SD_DS_STEPS], H5T_NATIVE_INT32, index, 1, &rec.steps));
    SD_TRY(sd_h5_dataset_read_rows(&o->ds[SD_DS_SCHEDULER], o->scheduler_type, index, 1,
                                   rec.scheduler));
    if (o->version >= 3) {
      SD_TRY(sd_h5_dataset_read_rows(&o->ds[SD_DS_INPUT_INDEX], H5T_NATIVE_INT32, index, 1,
                                     &rec.input_index));
      SD_TRY(sd_h5_dataset_read_rows(&o->ds[SD_DS_STRENGTH], H5T_NATIVE_FLOAT, index, 1,
                                     &rec.strength));
      SD_TRY(sd_h5_dataset_read_rows(&o->ds[SD_DS_NOISE_LEVEL], H5T_NATIVE_INT32, index, 1,
                                     &rec.noise_level));
    }
  }
  uint32_t sum = sd_output_row_checksum(index, &rec, failure, o->version);
  return sd_h5_dataset_write_rows(&o->ds[SD_DS_CHECKSUM], H5T_NATIVE_UINT32, index, 1, &sum);
}

static void set_status(sd_output *o, int64_t index, uint8_t status) {
  o->counts[o->status[index]]--;
  o->counts[status]++;
  o->status[index] = status;
  if (index < o->dirty_lo)
    o->dirty_lo = index;
  if (index + 1 > o->dirty_hi)
    o->dirty_hi = index + 1;
}

int sd_output_write_done(sd_output *o, int64_t index, const sd_output_item_meta *meta,
                         const uint8_t *rgb, const float *latents) {
  if (check_item(o, index, meta) < 0)
    return sd_error_context("%s", o->path);
  if (!rgb || (o->save_latents && !latents))
    return SD_ERROR("%s: item %lld: no %s given", o->path, (long long)index,
                    rgb ? "latents (save_latents is on)" : "image");
  static const char no_failure[SD_OUTPUT_FAILURE_LEN];
  if (write_meta(o, index, meta) < 0 ||
      sd_h5_dataset_write_rows(&o->ds[SD_DS_IMAGES], H5T_NATIVE_UINT8, index, 1, rgb) < 0 ||
      (o->save_latents &&
       sd_h5_dataset_write_rows(&o->ds[SD_DS_LATENTS], H5T_NATIVE_FLOAT, index, 1, latents) < 0) ||
      sd_h5_dataset_write_rows(&o->ds[SD_DS_FAILURE], o->failure_type, index, 1, no_failure) < 0 ||
      write_checksum(o, index, meta, SD_ITEM_DONE, no_failure) < 0)
    return sd_error_context("%s: item %lld", o->path, (long long)index);
  set_status(o, index, SD_ITEM_DONE);
  return 0;
}

int sd_output_write_failed(sd_output *o, int64_t index, const sd_output_item_meta *meta,
                           const char *reason) {
  if (check_item(o, index, meta) < 0)
    return sd_error_context("%s", o->path);
  char text[SD_OUTPUT_FAILURE_LEN];
  sd_output_copy_fixed(text, sizeof text, reason && reason[0] ? reason : "(no reason given)");
  if (write_meta(o, index, meta) < 0 ||
      sd_h5_dataset_write_rows(&o->ds[SD_DS_FAILURE], o->failure_type, index, 1, text) < 0 ||
      write_checksum(o, index, meta, SD_ITEM_FAILED, text) < 0)
    return sd_error_context("%s: item %lld", o->path, (long long)index);
  set_status(o, index, SD_ITEM_FAILED);
  return 0;
}

/* Pushes HDF5's buffered raw data to the file and the file to the disk. */
static int flush_and_sync(sd_output *o) {
  if (H5Fflush(o->file, H5F_SCOPE_LOCAL) < 0)
    return SD_H5_ERROR("HDF5 flush failed");
  if (fdatasync(o->fd) < 0)
    return SD_ERROR("fdatasync failed: %s", strerror(errno));
  return 0;
}

int sd_output_flush(sd_output *o) {
  /* 1. the items' data, 2. their statuses: a done status never reaches the disk before its
   * image. */
  if (flush_and_sync(o) < 0)
    return sd_error_context("%s", o->path);
  if (o->dirty_hi <= o->dirty_lo)
    return 0;
  char updated[SD_OUTPUT_TIME_LEN];
  sd_output_time_now(updated);
  if (sd_h5_dataset_write_rows(&o->ds[SD_DS_STATUS], H5T_NATIVE_UINT8, o->dirty_lo,
                               o->dirty_hi - o->dirty_lo, o->status + o->dirty_lo) < 0)
    return sd_error_context("%s", o->path);
  if (H5Dwrite(o->updated, o->time_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, updated) < 0)
    return SD_H5_ERROR("%s: dataset 'updated': cannot write", o->path);
  if (flush_and_sync(o) < 0)
    return sd_error_context("%s", o->path);
  o->dirty_lo = o->n_items;
  o->dirty_hi = 0;
  return 0;
}
