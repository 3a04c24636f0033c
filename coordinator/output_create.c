/* Creation of an output file: every dataset's storage is allocated (H5D_ALLOC_TIME_EARLY, fixed
 * dims) and every attribute written before the file is first closed, so that later writes touch
 * raw data only (see output.h). Schema 2 (the default): HDF5's 1.8 file format (superblock 2,
 * object headers with checksums; not the 1.10 format, whose superblock records "open for writing"
 * and so refuses a file after a kill), fixed-length strings only, images and latents chunked one
 * item per chunk with HDF5's Fletcher32 checksum (HDF5 then writes every chunk, zeros with their
 * checksum, at creation: the file takes its full size at once), prompts chunked and checksummed,
 * a CRC-32 per item row (item_checksum) and a SHA-256 over the attributes (header_sha256).
 * Schema 1: the 1.0 format, variable-length strings, no checksums; only status is filled and the
 * rest left as holes, so an empty file takes little disk space whatever its size. */
#include "output_schema.h"
#include "output_size.h"

#include "kernels/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SDBATCH_VERSION
#define SDBATCH_VERSION "unknown"
#endif

/* Items whose metadata is gathered per write when item_meta is given. */
#define META_BLOCK 65536

static int check_spec(const sd_output_spec *spec) {
  if (spec->n_items < 1)
    return SD_ERROR("n_items is %lld, expected at least 1", (long long)spec->n_items);
  if (spec->width < 1 || spec->height < 1)
    return SD_ERROR("image size %dx%d is not positive", spec->width, spec->height);
  if (spec->save_latents && (spec->latent_channels < 1 || spec->latent_h < 1 || spec->latent_w < 1))
    return SD_ERROR("latent shape (%d, %d, %d) is not positive", spec->latent_channels,
                    spec->latent_h, spec->latent_w);
  if (spec->n_prompts < 1 || !spec->prompts)
    return SD_ERROR("no prompts (n_prompts %lld)", (long long)spec->n_prompts);
  for (int64_t i = 0; i < spec->n_prompts; i++)
    if (!spec->prompts[i])
      return SD_ERROR("prompt %lld is NULL", (long long)i);
  if (!spec->job_yaml || !spec->job_hash || !spec->model_path || !spec->model_identity)
    return SD_ERROR("job_yaml, job_hash, model_path and model_identity are required");
  if (spec->n_inputs < 0 || spec->n_inputs > SD_OUTPUT_MAX_INPUTS ||
      (spec->n_inputs > 0 && (!spec->input_files || !spec->input_sha256)))
    return SD_ERROR("%lld inputs (0 to %d, with their files and SHA-256)",
                    (long long)spec->n_inputs, SD_OUTPUT_MAX_INPUTS);
  for (int64_t i = 0; i < spec->n_inputs * SD_OUTPUT_INPUT_FILES; i++) {
    const char *file = spec->input_files[i], *sum = spec->input_sha256[i];
    size_t sum_len = sum ? strlen(sum) : 0;
    if (file && strlen(file) > SD_OUTPUT_MAX_PATH)
      return SD_ERROR("input %lld: a path of %zu bytes (at most %d)",
                      (long long)(i / SD_OUTPUT_INPUT_FILES), strlen(file), SD_OUTPUT_MAX_PATH);
    if (sum_len != 0 && sum_len != 64)
      return SD_ERROR("input %lld: a SHA-256 of %zu characters",
                      (long long)(i / SD_OUTPUT_INPUT_FILES), sum_len);
  }
  return 0;
}

/* Filters of create_dataset. */
enum { FILTER_FLETCHER32 = 1, FILTER_DEFLATE = 2 };

/* Creates dataset name with fixed dims (rank 0: a scalar), storage allocated now; fill_now
 * writes the fill value (zeros) over it, otherwise the storage is left as it is (holes in a new
 * file; a filtered dataset is always filled). chunk NULL: contiguous. */
static int create_dataset_filled(hid_t file, const char *name, hid_t type, int rank,
                                 const hsize_t *dims, const hsize_t *chunk, bool fill_now,
                                 unsigned filters, hid_t fill_type, const void *fill) {
  int rc = -1;
  hid_t space = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (space < 0 || dcpl < 0) {
    SD_H5_ERROR("dataset '%s': cannot make its dataspace", name);
    goto out;
  }
  if ((chunk ? H5Pset_chunk(dcpl, rank, chunk) : H5Pset_layout(dcpl, H5D_CONTIGUOUS)) < 0 ||
      H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) < 0 ||
      H5Pset_fill_time(dcpl, fill_now || filters ? H5D_FILL_TIME_ALLOC : H5D_FILL_TIME_NEVER) < 0 ||
      H5Pset_obj_track_times(dcpl, 0) < 0 ||
      ((filters & FILTER_DEFLATE) && H5Pset_deflate(dcpl, 6) < 0) ||
      ((filters & FILTER_FLETCHER32) && H5Pset_fletcher32(dcpl) < 0) ||
      (fill && H5Pset_fill_value(dcpl, fill_type, fill) < 0)) {
    SD_H5_ERROR("dataset '%s': cannot set its layout", name);
    goto out;
  }
  hid_t dset = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (dset < 0) {
    SD_H5_ERROR("dataset '%s': cannot create it", name);
    goto out;
  }
  H5Dclose(dset);
  rc = 0;
out:
  if (dcpl >= 0)
    H5Pclose(dcpl);
  if (space >= 0)
    H5Sclose(space);
  return rc;
}

static int create_dataset(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims,
                          const hsize_t *chunk, bool fill_now, unsigned filters) {
  return create_dataset_filled(file, name, type, rank, dims, chunk, fill_now, filters, -1, NULL);
}

/* A table of fixed-length strings of len bytes, rows x cols (cols 1: a 1-D dataset of rows;
 * NULL values: ""), in chunks of about 1 MB of whole rows, compressed (the padding is mostly
 * zeros) and checksummed. */
static int write_string_table(hid_t file, const char *name, const char *const *values, int64_t rows,
                              int cols, size_t len) {
  size_t row_bytes = len * (size_t)cols;
  int64_t chunk_rows = (int64_t)((1 << 20) / row_bytes);
  chunk_rows = chunk_rows < 1 ? 1 : chunk_rows > rows ? rows : chunk_rows;
  hid_t type = sd_h5_fixed_string_type(len);
  if (type < 0)
    return -1;
  const hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
  const hsize_t chunk[2] = {(hsize_t)chunk_rows, (hsize_t)cols};
  char *block = calloc((size_t)chunk_rows, row_bytes);
  sd_h5_dataset ds = {.id = -1, .space = -1};
  int rc = -1;
  if (!block) {
    SD_ERROR("out of memory for %lld rows of %zu bytes", (long long)chunk_rows, row_bytes);
    goto out;
  }
  if (create_dataset(file, name, type, cols == 1 ? 1 : 2, dims, chunk, true,
                     FILTER_DEFLATE | FILTER_FLETCHER32) < 0 ||
      sd_h5_dataset_open(file, name, H5P_DEFAULT, &ds) < 0)
    goto out;
  for (int64_t start = 0; start < rows; start += chunk_rows) {
    int64_t count = rows - start < chunk_rows ? rows - start : chunk_rows;
    memset(block, 0, (size_t)chunk_rows * row_bytes);
    for (int64_t i = 0; i < count * cols; i++) {
      const char *v = values[start * cols + i];
      if (v)
        memcpy(block + (size_t)i * len, v, strlen(v));
    }
    if (sd_h5_dataset_write_rows(&ds, type, start, count, block) < 0)
      goto out;
  }
  rc = 0;
out:
  sd_h5_dataset_close(&ds);
  free(block);
  H5Tclose(type);
  return rc;
}

/* Schema 2 and later prompts: fixed-length strings as long as the longest prompt (+ NUL). */
static int write_fixed_prompts(hid_t file, const sd_output_spec *spec) {
  size_t len = 1;
  for (int64_t i = 0; i < spec->n_prompts; i++) {
    size_t n = strlen(spec->prompts[i]) + 1;
    if (n > SD_OUTPUT_MAX_PROMPT)
      return SD_ERROR("prompt %lld is %zu bytes; the output stores prompts of up to %d bytes",
                      (long long)i, n - 1, SD_OUTPUT_MAX_PROMPT - 1);
    if (n > len)
      len = n;
  }
  return write_string_table(file, "prompts", spec->prompts, spec->n_prompts, 1, len);
}

/* Schema 3: the inputs' paths (as long as the longest + NUL) and SHA-256 values. */
static int write_inputs(hid_t file, const sd_output_spec *spec) {
  size_t len = 1;
  for (int64_t i = 0; i < spec->n_inputs * SD_OUTPUT_INPUT_FILES; i++)
    if (spec->input_files[i] && strlen(spec->input_files[i]) + 1 > len)
      len = strlen(spec->input_files[i]) + 1;
  SD_TRY(write_string_table(file, "inputs", spec->input_files, spec->n_inputs,
                            SD_OUTPUT_INPUT_FILES, len));
  return write_string_table(file, "input_sha256", spec->input_sha256, spec->n_inputs,
                            SD_OUTPUT_INPUT_FILES, 65);
}

static int write_prompts(hid_t file, const sd_output_spec *spec, int version) {
  if (version >= 2)
    return write_fixed_prompts(file, spec);
  hid_t type = sd_h5_vlen_string_type();
  if (type < 0)
    return -1;
  int rc = -1;
  hsize_t dims[1] = {(hsize_t)spec->n_prompts};
  hid_t space = H5Screate_simple(1, dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (space < 0 || dcpl < 0 || H5Pset_obj_track_times(dcpl, 0) < 0) {
    SD_H5_ERROR("dataset 'prompts': cannot make its dataspace");
    goto out;
  }
  hid_t dset = H5Dcreate2(file, "prompts", type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (dset < 0) {
    SD_H5_ERROR("dataset 'prompts': cannot create it");
    goto out;
  }
  if (H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, spec->prompts) < 0)
    SD_H5_ERROR("dataset 'prompts': cannot write %lld prompts", (long long)spec->n_prompts);
  else
    rc = 0;
  H5Dclose(dset);
out:
  if (dcpl >= 0)
    H5Pclose(dcpl);
  if (space >= 0)
    H5Sclose(space);
  H5Tclose(type);
  return rc;
}

/* The checksum (schema >= 2) of a pending item's row with this metadata (meta NULL: the rows a
 * file without item_meta starts with: zeros, and no input). */
static uint32_t pending_checksum(int64_t index, const sd_output_item_meta *meta, int version) {
  static const sd_output_item_meta none = {0};
  sd_output_record rec = {0};
  sd_output_record_set_meta(&rec, meta ? meta : &none);
  static const char no_failure[SD_OUTPUT_FAILURE_LEN];
  return sd_output_row_checksum(index, &rec, no_failure, version);
}

/* Schema 2 and later without item_meta: the checksums of the rows of pending items. */
static int write_zero_checksums(hid_t file, int64_t n_items, int version) {
  int64_t block = n_items < META_BLOCK ? n_items : META_BLOCK;
  uint32_t *sums = malloc((size_t)block * sizeof *sums);
  sd_h5_dataset ds = {.id = -1, .space = -1};
  int rc = -1;
  if (!sums) {
    SD_ERROR("out of memory for a block of %lld checksums", (long long)block);
    goto out;
  }
  if (sd_h5_dataset_open(file, sd_output_dataset_names[SD_DS_CHECKSUM], H5P_DEFAULT, &ds) < 0)
    goto out;
  for (int64_t start = 0; start < n_items; start += block) {
    int64_t count = n_items - start < block ? n_items - start : block;
    for (int64_t i = 0; i < count; i++)
      sums[i] = pending_checksum(start + i, NULL, version);
    if (sd_h5_dataset_write_rows(&ds, H5T_NATIVE_UINT32, start, count, sums) < 0)
      goto out;
  }
  rc = 0;
out:
  sd_h5_dataset_close(&ds);
  free(sums);
  return rc;
}

/* Writes every item's metadata, asked of spec->item_meta, in blocks of META_BLOCK items (and in
 * schema 2 each row's checksum). */
static int write_all_meta(hid_t file, const sd_output_spec *spec, hid_t scheduler_type,
                          int version) {
  sd_h5_dataset ds[SD_DS_COUNT];
  for (int d = 0; d < SD_DS_COUNT; d++)
    ds[d] = (sd_h5_dataset){.id = -1, .space = -1};
  int64_t block = spec->n_items < META_BLOCK ? spec->n_items : META_BLOCK;
  int32_t *prompt_index = malloc((size_t)block * sizeof *prompt_index);
  int64_t *seed = malloc((size_t)block * sizeof *seed);
  float *guidance = malloc((size_t)block * sizeof *guidance);
  int32_t *steps = malloc((size_t)block * sizeof *steps);
  char *scheduler = malloc((size_t)block * SD_OUTPUT_SCHEDULER_LEN);
  uint32_t *sums = malloc((size_t)block * sizeof *sums);
  int32_t *input_index = malloc((size_t)block * sizeof *input_index);
  float *strength = malloc((size_t)block * sizeof *strength);
  int32_t *noise_level = malloc((size_t)block * sizeof *noise_level);
  int rc = -1;
  if (!prompt_index || !seed || !guidance || !steps || !scheduler || !sums || !input_index ||
      !strength || !noise_level) {
    SD_ERROR("out of memory for a block of %lld items' metadata", (long long)block);
    goto out;
  }
  const sd_output_dataset meta_sets[] = {SD_DS_PROMPT_INDEX, SD_DS_SEED, SD_DS_GUIDANCE,
                                         SD_DS_STEPS, SD_DS_SCHEDULER};
  for (size_t k = 0; k < sizeof meta_sets / sizeof meta_sets[0]; k++) {
    sd_output_dataset d = meta_sets[k];
    if (sd_h5_dataset_open(file, sd_output_dataset_names[d], H5P_DEFAULT, &ds[d]) < 0)
      goto out;
  }
  if (version >= 2 && sd_h5_dataset_open(file, sd_output_dataset_names[SD_DS_CHECKSUM], H5P_DEFAULT,
                                         &ds[SD_DS_CHECKSUM]) < 0)
    goto out;
  for (int d = SD_DS_INPUT_INDEX; version >= 3 && d <= SD_DS_NOISE_LEVEL; d++)
    if (sd_h5_dataset_open(file, sd_output_dataset_names[d], H5P_DEFAULT, &ds[d]) < 0)
      goto out;
  for (int64_t start = 0; start < spec->n_items; start += block) {
    int64_t count = spec->n_items - start < block ? spec->n_items - start : block;
    for (int64_t i = 0; i < count; i++) {
      sd_output_item_meta meta = {0};
      if (spec->item_meta(spec->item_meta_ctx, start + i, &meta) < 0) {
        sd_error_context("metadata of item %lld", (long long)(start + i));
        goto out;
      }
      if (meta.prompt_index < 0 || meta.prompt_index >= spec->n_prompts) {
        SD_ERROR("item %lld: prompt_index %d outside [0, %lld)", (long long)(start + i),
                 meta.prompt_index, (long long)spec->n_prompts);
        goto out;
      }
      if (meta.scheduler && strlen(meta.scheduler) >= SD_OUTPUT_SCHEDULER_LEN) {
        SD_ERROR("item %lld: scheduler name '%s' longer than %d bytes", (long long)(start + i),
                 meta.scheduler, SD_OUTPUT_SCHEDULER_LEN - 1);
        goto out;
      }
      prompt_index[i] = meta.prompt_index;
      seed[i] = meta.seed;
      guidance[i] = meta.guidance_scale;
      steps[i] = meta.steps;
      sd_output_copy_fixed(scheduler + i * SD_OUTPUT_SCHEDULER_LEN, SD_OUTPUT_SCHEDULER_LEN,
                           meta.scheduler);
      if (version >= 3 && meta.has_input &&
          (meta.input_index < 0 || meta.input_index >= spec->n_inputs)) {
        SD_ERROR("item %lld: input_index %d outside [0, %lld)", (long long)(start + i),
                 meta.input_index, (long long)spec->n_inputs);
        goto out;
      }
      sd_output_record rec = {0};
      sd_output_record_set_meta(&rec, &meta);
      input_index[i] = rec.input_index;
      strength[i] = rec.strength;
      noise_level[i] = rec.noise_level;
      sums[i] = pending_checksum(start + i, &meta, version);
    }
    if (sd_h5_dataset_write_rows(&ds[SD_DS_PROMPT_INDEX], H5T_NATIVE_INT32, start, count,
                                 prompt_index) < 0 ||
        sd_h5_dataset_write_rows(&ds[SD_DS_SEED], H5T_NATIVE_INT64, start, count, seed) < 0 ||
        sd_h5_dataset_write_rows(&ds[SD_DS_GUIDANCE], H5T_NATIVE_FLOAT, start, count, guidance) <
            0 ||
        sd_h5_dataset_write_rows(&ds[SD_DS_STEPS], H5T_NATIVE_INT32, start, count, steps) < 0 ||
        sd_h5_dataset_write_rows(&ds[SD_DS_SCHEDULER], scheduler_type, start, count, scheduler) <
            0 ||
        (version >= 2 && sd_h5_dataset_write_rows(&ds[SD_DS_CHECKSUM], H5T_NATIVE_UINT32, start,
                                                  count, sums) < 0) ||
        (version >= 3 && (sd_h5_dataset_write_rows(&ds[SD_DS_INPUT_INDEX], H5T_NATIVE_INT32, start,
                                                   count, input_index) < 0 ||
                          sd_h5_dataset_write_rows(&ds[SD_DS_STRENGTH], H5T_NATIVE_FLOAT, start,
                                                   count, strength) < 0 ||
                          sd_h5_dataset_write_rows(&ds[SD_DS_NOISE_LEVEL], H5T_NATIVE_INT32, start,
                                                   count, noise_level) < 0)))
      goto out;
  }
  rc = 0;
out:
  for (int d = 0; d < SD_DS_COUNT; d++)
    sd_h5_dataset_close(&ds[d]);
  free(prompt_index);
  free(seed);
  free(guidance);
  free(steps);
  free(scheduler);
  free(sums);
  free(input_index);
  free(strength);
  free(noise_level);
  return rc;
}

/* The root attributes, in table order: schema 1 as variable-length strings, schema 2 as
 * fixed-length ones with the header checksum over all the others. */
static int write_attributes(hid_t file, const sd_output_spec *spec, int version) {
  char created[SD_OUTPUT_TIME_LEN];
  sd_output_time_now(created);
  sd_output_header h = {{0}, {0}};
  h.strings[SD_ATTR_FORMAT] = SD_OUTPUT_FORMAT_NAME;
  h.ints[SD_ATTR_SCHEMA_VERSION] = version;
  h.strings[SD_ATTR_JOB_YAML] = spec->job_yaml;
  h.strings[SD_ATTR_JOB_PATH] = spec->job_path ? spec->job_path : "";
  h.strings[SD_ATTR_JOB_HASH] = spec->job_hash;
  h.strings[SD_ATTR_MODEL] = spec->model_path;
  h.strings[SD_ATTR_MODEL_IDENTITY] = spec->model_identity;
  h.strings[SD_ATTR_ADAPTERS] = spec->adapters ? spec->adapters : "";
  h.ints[SD_ATTR_WIDTH] = spec->width;
  h.ints[SD_ATTR_HEIGHT] = spec->height;
  h.ints[SD_ATTR_LATENT_CHANNELS] = spec->latent_channels;
  h.ints[SD_ATTR_LATENT_HEIGHT] = spec->latent_h;
  h.ints[SD_ATTR_LATENT_WIDTH] = spec->latent_w;
  h.ints[SD_ATTR_SAVE_LATENTS] = spec->save_latents;
  h.ints[SD_ATTR_METADATA_COMPLETE] = spec->item_meta != NULL;
  h.strings[SD_ATTR_CREATED] = created;
  h.strings[SD_ATTR_SDBATCH_VERSION] = SDBATCH_VERSION;
  h.ints[SD_ATTR_N_INPUTS] = spec->n_inputs;
  char hex[65];
  if (version >= 2) {
    sd_output_header_sha256(&h, hex);
    h.strings[SD_ATTR_HEADER_CHECKSUM] = hex;
  }
  for (int a = 0; a < SD_ATTR_COUNT; a++) {
    const sd_output_attr_desc *d = &sd_output_attrs[a];
    if (!((d->versions >> version) & 1u))
      continue;
    if (d->kind == SD_ATTR_INT) {
      SD_TRY(sd_h5_attr_write_int(file, d->name, h.ints[a]));
      continue;
    }
    /* what the reader would refuse is not written */
    if (strlen(h.strings[a]) > (size_t)d->max)
      return SD_ERROR("attribute '%s' would be %zu bytes, more than the %lld the schema allows",
                      d->name, strlen(h.strings[a]), (long long)d->max);
    SD_TRY(version >= 2 ? sd_h5_attr_write_fixed_string(file, d->name, h.strings[a])
                        : sd_h5_attr_write_string(file, d->name, h.strings[a]));
  }
  return 0;
}

static int fsync_path(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return SD_ERROR("cannot open it to sync: %s", strerror(errno));
  int rc = fsync(fd);
  int err = errno;
  close(fd);
  if (rc < 0)
    return SD_ERROR("fsync failed: %s", strerror(err));
  return 0;
}

static int create_layout(hid_t file, const sd_output_spec *spec, int version) {
  const bool meta_known = spec->item_meta != NULL;
  const hsize_t n = (hsize_t)spec->n_items;
  int rc = -1;
  hid_t scheduler_type = sd_h5_fixed_string_type(SD_OUTPUT_SCHEDULER_LEN);
  hid_t failure_type = sd_h5_fixed_string_type(SD_OUTPUT_FAILURE_LEN);
  hid_t time_type = sd_h5_fixed_string_type(SD_OUTPUT_TIME_LEN);
  if (scheduler_type < 0 || failure_type < 0 || time_type < 0)
    goto out;

  const unsigned checksum = version >= 2 ? FILTER_FLETCHER32 : 0;
  const hsize_t image_dims[4] = {n, (hsize_t)spec->height, (hsize_t)spec->width, 3};
  const hsize_t image_chunk[4] = {1, (hsize_t)spec->height, (hsize_t)spec->width, 3};
  if (create_dataset(file, "images", H5T_STD_U8LE, 4, image_dims, image_chunk, false, checksum) < 0)
    goto out;
  if (spec->save_latents) {
    const hsize_t latent_dims[4] = {n, (hsize_t)spec->latent_channels, (hsize_t)spec->latent_h,
                                    (hsize_t)spec->latent_w};
    const hsize_t latent_chunk[4] = {1, latent_dims[1], latent_dims[2], latent_dims[3]};
    if (create_dataset(file, "latents", H5T_IEEE_F32LE, 4, latent_dims,
                       version >= 2 ? latent_chunk : NULL, false, checksum) < 0)
      goto out;
  }
  if (write_prompts(file, spec, version) < 0)
    goto out;
  const hsize_t dims[1] = {n};
  if (create_dataset(file, "prompt_index", H5T_STD_I32LE, 1, dims, NULL, !meta_known, 0) < 0 ||
      create_dataset(file, "seed", H5T_STD_I64LE, 1, dims, NULL, !meta_known, 0) < 0 ||
      create_dataset(file, "guidance_scale", H5T_IEEE_F32LE, 1, dims, NULL, !meta_known, 0) < 0 ||
      create_dataset(file, "steps", H5T_STD_I32LE, 1, dims, NULL, !meta_known, 0) < 0 ||
      create_dataset(file, "scheduler", scheduler_type, 1, dims, NULL, !meta_known, 0) < 0 ||
      create_dataset(file, "status", H5T_STD_U8LE, 1, dims, NULL, true, 0) < 0 ||
      create_dataset(file, "failure", failure_type, 1, dims, NULL, version >= 2, 0) < 0 ||
      (version >= 2 && create_dataset(file, sd_output_dataset_names[SD_DS_CHECKSUM], H5T_STD_U32LE,
                                      1, dims, NULL, false, 0) < 0) ||
      create_dataset(file, "updated", time_type, 0, NULL, NULL, true, 0) < 0)
    goto out;
  if (version >= 3) {
    /* rows of items without an input until their metadata is written */
    const int32_t no_index = -1;
    const float full_strength = 1.0f;
    if (create_dataset_filled(file, "input_index", H5T_STD_I32LE, 1, dims, NULL, !meta_known, 0,
                              H5T_NATIVE_INT32, &no_index) < 0 ||
        create_dataset_filled(file, "strength", H5T_IEEE_F32LE, 1, dims, NULL, !meta_known, 0,
                              H5T_NATIVE_FLOAT, &full_strength) < 0 ||
        create_dataset_filled(file, "noise_level", H5T_STD_I32LE, 1, dims, NULL, !meta_known, 0,
                              H5T_NATIVE_INT32, &no_index) < 0)
      goto out;
    if (spec->n_inputs > 0 && write_inputs(file, spec) < 0)
      goto out;
  }
  if (meta_known && write_all_meta(file, spec, scheduler_type, version) < 0)
    goto out;
  if (!meta_known && version >= 2 && write_zero_checksums(file, spec->n_items, version) < 0)
    goto out;
  if (write_attributes(file, spec, version) < 0)
    goto out;
  rc = 0;
out:
  if (scheduler_type >= 0)
    H5Tclose(scheduler_type);
  if (failure_type >= 0)
    H5Tclose(failure_type);
  if (time_type >= 0)
    H5Tclose(time_type);
  return rc;
}

int sd_output_create_file(const sd_output_spec *spec, const char *path) {
  sd_h5_silence();
  SD_TRY(check_spec(spec));
  int version = spec->schema_version ? spec->schema_version : SD_OUTPUT_SCHEMA_VERSION;
  if (version < SD_OUTPUT_SCHEMA_OLDEST || version > SD_OUTPUT_SCHEMA_NEWEST)
    return SD_ERROR("schema version %d: this sdbatch writes versions %d to %d", version,
                    SD_OUTPUT_SCHEMA_OLDEST, SD_OUTPUT_SCHEMA_NEWEST);
  if (spec->n_inputs > 0 && version < 3)
    return SD_ERROR("schema version %d has no inputs (a job with images needs schema 3 or later)",
                    version);
  SD_TRY(sd_output_check_space(spec, version, path));
  /* Schema 1: the oldest format (superblock 0). Schema 2: the 1.8 format (superblock 2 and
   * object headers with checksums). Neither is the 1.10 format, whose superblock 3 records an
   * "open for writing" flag that a killed writer would leave set. */
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  hid_t file = -1;
  if (fapl < 0 ||
      H5Pset_libver_bounds(fapl, version >= 2 ? H5F_LIBVER_V18 : H5F_LIBVER_EARLIEST,
                           H5F_LIBVER_V18) < 0 ||
      H5Pset_file_locking(fapl, 1, 1) < 0)
    SD_H5_ERROR("cannot set up file access");
  else if ((file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0)
    SD_H5_ERROR("cannot create the file");
  if (fapl >= 0)
    H5Pclose(fapl);
  if (file < 0)
    return -1;
  int rc = create_layout(file, spec, version);
  if (H5Fclose(file) < 0 && rc == 0)
    rc = SD_H5_ERROR("cannot close the new file");
  if (rc == 0)
    rc = fsync_path(path);
  return rc;
}
