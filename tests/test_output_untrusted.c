/* Output files from untrusted hands: hand-made files with attributes and datasets of the wrong
 * type, shape, size or value, truncated files, garbage, and a real damaged file that crashed
 * libhdf5 (tests/fixtures/output/demo-5-bitflips.h5, five flipped bits in the quick start's
 * output). Each must be refused by sd_output_reader_open with one error that names the file and
 * the attribute or dataset at fault, or (bad values in per-item rows) open and flag exactly the
 * damaged rows; never crash, never read past what the schema sizes. Each case on a file of each
 * schema version; schema 2's checksums: a flipped bit in an image or latents chunk reported for
 * that item only and rendered again by a resume, rows and header edits found. Runs under the
 * sanitizer build too. */
#include "coordinator/output.h"
#include "kernels/error.h"
#include "test_util.h"

#include <hdf5.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { N_ITEMS = 6, W = 16, H = 8 };

static char tmp_dir[] = "/tmp/sd_test_output_untrusted_XXXXXX";
static char good_path[512];
/* The schema version of the good file the cases edit (main runs them for each version). */
static int schema = 1;
static const char *const prompts[] = {"a red cube", "a lighthouse"};

static int meta_callback(void *ctx, int64_t i, sd_output_item_meta *meta) {
  (void)ctx;
  *meta = (sd_output_item_meta){(int32_t)(i % 2), 100 + i, 7.5f, 20, "euler", false, 0, 0.0f, 0};
  return 0;
}

static sd_output_spec good_spec(const char *path) {
  return (sd_output_spec){.path = path,
                          .n_items = N_ITEMS,
                          .width = W,
                          .height = H,
                          .latent_channels = 4,
                          .latent_h = 1,
                          .latent_w = 2,
                          .save_latents = true,
                          .job_yaml = "model: m\n",
                          .job_hash = "abcd",
                          .model_path = "/models/m",
                          .model_identity = "id",
                          .n_prompts = 2,
                          .prompts = prompts,
                          .job_path = "job.yaml",
                          .item_meta = meta_callback,
                          .schema_version = schema};
}

/* A good file: 6 items, 4 done, 1 failed, 1 pending. */
static void make_good(const char *path) {
  sd_output_spec spec = good_spec(path);
  sd_output *o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0, "create: %s", sd_error_message());
  uint8_t rgb[W * H * 3];
  float latents[8] = {0};
  for (int64_t i = 0; i < 4; i++) {
    memset(rgb, (int)(i * 40), sizeof rgb);
    CHECK(sd_output_write_done(o, i, NULL, rgb, latents) == 0, "write: %s", sd_error_message());
  }
  CHECK(sd_output_write_failed(o, 4, NULL, "out of memory") == 0, "fail: %s", sd_error_message());
  CHECK(sd_output_close(o) == 0, "close: %s", sd_error_message());
}

static void copy_file(const char *from, const char *to) {
  size_t n = 0;
  char *data = sd_test_read_file(from, &n);
  FILE *f = fopen(to, "wb");
  CHECK(data && f && fwrite(data, 1, n, f) == n, "copy %s", to);
  if (f)
    fclose(f);
  free(data);
}

static char *case_path(const char *name) {
  static char path[600];
  snprintf(path, sizeof path, "%s/v%d-%s.h5", tmp_dir, schema, name);
  return path;
}

/* A copy of the good file opened for editing. */
static hid_t edit(const char *name) {
  char *path = case_path(name);
  copy_file(good_path, path);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  CHECK(f >= 0, "%s: open for editing", name);
  return f;
}

static void replace_attr(hid_t f, const char *name, hid_t type, int rank, hsize_t n,
                         const void *value) {
  if (H5Aexists(f, name) > 0)
    H5Adelete(f, name);
  hsize_t dims[1] = {n};
  hid_t space = rank ? H5Screate_simple(1, dims, NULL) : H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  CHECK(a >= 0 && H5Awrite(a, type, value) >= 0, "attribute %s", name);
  H5Aclose(a);
  H5Sclose(space);
}

static hid_t string_type(size_t len) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, len);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

/* Replaces dataset name by one of type, rank and dims (chunk: NULL contiguous; in schema 2 with
 * the Fletcher32 filter), filled from data when not NULL. alloc_late leaves its storage
 * unallocated. */
static void replace_dataset(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims,
                            const hsize_t *chunk, const void *data, bool alloc_late) {
  if (H5Lexists(f, name, H5P_DEFAULT) > 0)
    H5Ldelete(f, name, H5P_DEFAULT);
  hid_t space = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (chunk)
    H5Pset_chunk(dcpl, rank, chunk);
  if (chunk && schema >= 2)
    H5Pset_fletcher32(dcpl);
  H5Pset_alloc_time(dcpl, alloc_late ? H5D_ALLOC_TIME_INCR : H5D_ALLOC_TIME_EARLY);
  hid_t d = H5Dcreate2(f, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  CHECK(d >= 0, "dataset %s", name);
  if (data)
    CHECK(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0, "write %s", name);
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(space);
}

/* Overwrites element index of a 1-D dataset in place. */
static void poke(hid_t f, const char *name, hid_t mem_type, hsize_t index, const void *value) {
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  hid_t space = H5Dget_space(d);
  hsize_t one = 1;
  H5Sselect_hyperslab(space, H5S_SELECT_SET, &index, NULL, &one, NULL);
  hid_t mem = H5Screate_simple(1, &one, NULL);
  CHECK(H5Dwrite(d, mem_type, mem, space, H5P_DEFAULT, value) >= 0, "poke %s", name);
  H5Sclose(mem);
  H5Sclose(space);
  H5Dclose(d);
}

/* The file must be refused with an error naming it and containing want. */
static void expect_refused(const char *name, const char *want) {
  char *path = case_path(name);
  sd_output_reader *r = NULL;
  int rc = sd_output_reader_open(path, &r);
  const char *msg = sd_error_message();
  CHECK(rc < 0 && strstr(msg, path) && strstr(msg, want), "%s: refused with '%s' (got rc %d: %s)",
        name, want, rc, msg);
  sd_output_reader_close(r);
}

/* The file opens and exactly item bad's row is flagged, with a problem containing want. */
static void expect_row_flagged(const char *name, int64_t bad, const char *want) {
  sd_output_reader *r = NULL;
  CHECK(sd_output_reader_open(case_path(name), &r) == 0, "%s: opens: %s", name, sd_error_message());
  if (!r)
    return;
  sd_output_record rec[N_ITEMS];
  CHECK(sd_output_read_records(r, 0, N_ITEMS, rec) == 0, "%s: records", name);
  for (int64_t i = 0; i < N_ITEMS; i++) {
    if (i == bad)
      CHECK(strstr(rec[i].problem, want), "%s: item %lld flagged '%s' (got '%s')", name,
            (long long)i, want, rec[i].problem);
    else
      CHECK(!rec[i].problem[0], "%s: item %lld sound (got '%s')", name, (long long)i,
            rec[i].problem);
  }
  sd_output_reader_close(r);
}

static void test_attributes(void) {
  int64_t ints[512] = {1};
  hid_t f = edit("schema_version_array");
  replace_attr(f, "schema_version", H5T_NATIVE_INT64, 1, 512, ints);
  H5Fclose(f);
  expect_refused("schema_version_array", "attribute 'schema_version' holds 512 values");

  f = edit("width_string");
  hid_t t = string_type(8);
  replace_attr(f, "width", t, 0, 1, "16\0\0\0\0\0\0");
  H5Fclose(f);
  expect_refused("width_string", "attribute 'width' is not an integer");

  static char hashes[1000][64];
  f = edit("job_hash_array");
  hid_t t64 = string_type(64);
  replace_attr(f, "job_hash", t64, 1, 1000, hashes);
  H5Fclose(f);
  expect_refused("job_hash_array", "attribute 'job_hash' holds 1000 values");

  /* the optional adapters attribute is checked like the others when present */
  f = edit("adapters_array");
  replace_attr(f, "adapters", t64, 1, 1000, hashes);
  H5Fclose(f);
  expect_refused("adapters_array", "attribute 'adapters' holds 1000 values");
  f = edit("adapters_int");
  int64_t one = 1;
  replace_attr(f, "adapters", H5T_NATIVE_INT64, 0, 1, &one);
  H5Fclose(f);
  expect_refused("adapters_int", "attribute 'adapters' is not a string");

  f = edit("format_missing");
  H5Adelete(f, "format");
  H5Fclose(f);
  expect_refused("format_missing", "not an sdbatch output (no 'format' attribute)");

  f = edit("format_other");
  replace_attr(f, "format", t, 0, 1, "netcdf\0\0");
  H5Fclose(f);
  expect_refused("format_other", "not an sdbatch output (format 'netcdf')");

  int64_t v = 99;
  f = edit("schema_99");
  replace_attr(f, "schema_version", H5T_NATIVE_INT64, 0, 1, &v);
  H5Fclose(f);
  expect_refused("schema_99", "schema version 99");

  v = (int64_t)1 << 40;
  f = edit("height_huge");
  replace_attr(f, "height", H5T_NATIVE_INT64, 0, 1, &v);
  H5Fclose(f);
  expect_refused("height_huge", "attribute 'height' is 1099511627776, outside");

  v = 9;
  f = edit("height_other");
  replace_attr(f, "height", H5T_NATIVE_INT64, 0, 1, &v);
  H5Fclose(f);
  /* schema 2: the header checksum finds the edit before the shapes disagree */
  expect_refused("height_other",
                 schema == 1 ? "dataset 'images' has shape (6, 8, 16, 3), expected (6, 9, 16, 3)"
                             : "damaged header: the attributes' SHA-256");

  static char big[SD_OUTPUT_FAILURE_LEN * 20];
  memset(big, 'x', sizeof big - 1);
  hid_t tbig = string_type(sizeof big);
  f = edit("job_hash_long");
  replace_attr(f, "job_hash", tbig, 0, 1, big);
  H5Fclose(f);
  expect_refused("job_hash_long", "attribute 'job_hash' is a 5120-byte string");

  f = edit("model_not_utf8");
  replace_attr(f, "model", t, 0, 1, "\xff\xfe/m\0\0\0\0");
  H5Fclose(f);
  expect_refused("model_not_utf8", "attribute 'model' is not valid UTF-8");
  H5Tclose(t);
  H5Tclose(t64);
  H5Tclose(tbig);
}

static void test_datasets(void) {
  hsize_t dims2[2] = {N_ITEMS, 4096};
  hid_t f = edit("status_2d");
  replace_dataset(f, "status", H5T_STD_U8LE, 2, dims2, NULL, NULL, false);
  H5Fclose(f);
  expect_refused("status_2d", "dataset 'status' has shape (6, 4096), expected (6)");

  hsize_t n = N_ITEMS;
  f = edit("seed_float");
  replace_dataset(f, "seed", H5T_IEEE_F64LE, 1, &n, NULL, NULL, false);
  H5Fclose(f);
  expect_refused("seed_float", "dataset 'seed' is not of signed 8-byte integers");

  hid_t t = string_type(64);
  f = edit("scheduler_64");
  replace_dataset(f, "scheduler", t, 1, &n, NULL, NULL, false);
  H5Fclose(f);
  expect_refused("scheduler_64", "dataset 'scheduler' holds 64-byte strings, expected 32");
  H5Tclose(t);

  hsize_t thousand = 1000;
  hid_t t32 = string_type(32);
  f = edit("updated_array");
  replace_dataset(f, "updated", t32, 1, &thousand, NULL, NULL, false);
  H5Fclose(f);
  expect_refused("updated_array", "dataset 'updated' has shape (1000), expected ()");
  H5Tclose(t32);

  f = edit("prompts_missing");
  H5Ldelete(f, "prompts", H5P_DEFAULT);
  H5Fclose(f);
  expect_refused("prompts_missing", "dataset 'prompts' is missing");

  hsize_t image_dims[4] = {N_ITEMS, H, W, 3};
  f = edit("images_contiguous");
  replace_dataset(f, "images", H5T_STD_U8LE, 4, image_dims, NULL, NULL, false);
  H5Fclose(f);
  expect_refused("images_contiguous", "dataset 'images' is not chunked");

  hsize_t half_chunk[4] = {1, H / 2, W, 3};
  f = edit("images_half_chunks");
  replace_dataset(f, "images", H5T_STD_U8LE, 4, image_dims, half_chunk, NULL, false);
  H5Fclose(f);
  expect_refused("images_half_chunks", "dataset 'images' has chunks that are not whole rows");

  /* 2^40 rows declared in a file of a few hundred KB (chunks never allocated) */
  hsize_t huge_dims[4] = {(hsize_t)1 << 40, H, W, 3}, chunk[4] = {1, H, W, 3};
  f = edit("huge_n_items");
  replace_dataset(f, "images", H5T_STD_U8LE, 4, huge_dims, chunk, NULL, true);
  H5Fclose(f);
  expect_refused("huge_n_items", "dataset 'images' declares 1099511627776 rows");

  hsize_t latent_dims[4] = {N_ITEMS, 4, 2, 2};
  f = edit("latents_shape");
  replace_dataset(f, "latents", H5T_IEEE_F32LE, 4, latent_dims, NULL, NULL, false);
  H5Fclose(f);
  expect_refused("latents_shape",
                 "dataset 'latents' has shape (6, 4, 2, 2), expected (6, 4, 1, 2)");

  f = edit("prompts_2d");
  hsize_t pdims[2] = {2, 2};
  hid_t tp = string_type(16);
  replace_dataset(f, "prompts", tp, 2, pdims, NULL, NULL, false);
  H5Fclose(f);
  expect_refused("prompts_2d", "dataset 'prompts' has 2 dimensions, expected 1");
  H5Tclose(tp);
}

static void test_rows(void) {
  uint8_t status = 7;
  hid_t f = edit("status_7");
  poke(f, "status", H5T_NATIVE_UINT8, 2, &status);
  H5Fclose(f);
  expect_row_flagged("status_7", 2, "status 7");

  int32_t prompt_index = 99;
  f = edit("prompt_index_99");
  poke(f, "prompt_index", H5T_NATIVE_INT32, 1, &prompt_index);
  H5Fclose(f);
  expect_row_flagged("prompt_index_99", 1, "prompt_index 99 outside [0, 2)");

  int32_t steps = -5;
  f = edit("steps_negative");
  poke(f, "steps", H5T_NATIVE_INT32, 5, &steps);
  H5Fclose(f);
  expect_row_flagged("steps_negative", 5, "steps -5 outside");

  char scheduler[32] = "eu\xffler";
  hid_t t = string_type(32);
  f = edit("scheduler_not_utf8");
  poke(f, "scheduler", t, 3, scheduler);
  H5Fclose(f);
  expect_row_flagged("scheduler_not_utf8", 3, "scheduler name is not a NUL-padded UTF-8");
  H5Tclose(t);

  float nan = __builtin_nanf("");
  f = edit("guidance_nan");
  poke(f, "guidance_scale", H5T_NATIVE_FLOAT, 0, &nan);
  H5Fclose(f);
  expect_row_flagged("guidance_nan", 0, "guidance_scale is not finite");

  /* a damaged failure reason: an error from read_failure, not garbage */
  char reason[SD_OUTPUT_FAILURE_LEN];
  memset(reason, 'x', sizeof reason);
  hid_t tf = string_type(SD_OUTPUT_FAILURE_LEN);
  f = edit("failure_unterminated");
  poke(f, "failure", tf, 4, reason);
  H5Fclose(f);
  H5Tclose(tf);
  sd_output_reader *r = NULL;
  CHECK(sd_output_reader_open(case_path("failure_unterminated"), &r) == 0, "opens");
  char got[SD_OUTPUT_FAILURE_LEN];
  CHECK(r && sd_output_read_failure(r, 4, got) < 0 && strstr(sd_error_message(), "item 4"),
        "unterminated failure reason refused: %s", sd_error_message());
  sd_output_reader_close(r);
}

/* Every prefix length in a coarse sweep, plus garbage with and without the HDF5 signature. */
static void test_truncated_and_garbage(void) {
  size_t size = 0;
  char *good = sd_test_read_file(good_path, &size);
  CHECK(good && size > 4096, "good file read");
  if (!good)
    return;
  int refused = 0, cases = 0;
  for (size_t len = 0; len < size; len += len < 4096 ? 512 : size / 16) {
    char *path = case_path("truncated");
    FILE *f = fopen(path, "wb");
    if (len)
      fwrite(good, 1, len, f);
    fclose(f);
    sd_output_reader *r = NULL;
    cases++;
    if (sd_output_reader_open(path, &r) < 0) {
      refused++;
      CHECK(strstr(sd_error_message(), path) != NULL, "truncated at %zu: error names the file (%s)",
            len, sd_error_message());
    } else {
      /* HDF5 accepts a file cut inside raw data (its end-of-file check aside): then reading must
       * fail or succeed cleanly */
      sd_output_record rec[N_ITEMS];
      uint8_t rgb[W * H * 3];
      if (sd_output_read_records(r, 0, N_ITEMS, rec) == 0)
        for (int64_t i = 0; i < N_ITEMS; i++)
          (void)sd_output_read_image(r, i, rgb);
      sd_output_reader_close(r);
    }
  }
  CHECK(refused == cases, "every truncated file refused (%d of %d)", refused, cases);

  char *path = case_path("garbage");
  FILE *f = fopen(path, "wb");
  uint32_t x = 12345;
  for (int i = 0; i < 8192; i++) {
    x = x * 1664525u + 1013904223u;
    fputc((int)(x >> 24), f);
  }
  fclose(f);
  expect_refused("garbage", "not an HDF5 file (8192 bytes, no HDF5 signature)");

  /* the signature, then garbage */
  f = fopen(case_path("signature_garbage"), "wb");
  fwrite(good, 1, 8, f);
  for (int i = 0; i < 8192; i++) {
    x = x * 1664525u + 1013904223u;
    fputc((int)(x >> 24), f);
  }
  fclose(f);
  expect_refused("signature_garbage", "damaged or truncated HDF5 file");
  free(good);

  sd_output_reader *r = NULL;
  CHECK(sd_output_reader_open(tmp_dir, &r) < 0 && strstr(sd_error_message(), "not a regular file"),
        "a folder refused: %s", sd_error_message());
}

/* The file offset of item index's chunk of dataset name. */
static haddr_t chunk_address(const char *path, const char *name, hsize_t index) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  hsize_t offset[4] = {index, 0, 0, 0}, size = 0;
  unsigned mask = 0;
  haddr_t addr = HADDR_UNDEF;
  CHECK(H5Dget_chunk_info_by_coord(d, offset, &mask, &addr, &size) >= 0 && addr != HADDR_UNDEF,
        "%s: chunk %llu found", name, (unsigned long long)index);
  H5Dclose(d);
  H5Fclose(f);
  return addr;
}

/* Flips one bit of the byte at offset. */
static void flip_bit(const char *path, uint64_t offset) {
  FILE *f = fopen(path, "r+b");
  int c = f && fseek(f, (long)offset, SEEK_SET) == 0 ? fgetc(f) : EOF;
  CHECK(c != EOF && fseek(f, (long)offset, SEEK_SET) == 0 && fputc(c ^ 0x08, f) != EOF,
        "flip a bit at %llu", (unsigned long long)offset);
  if (f)
    fclose(f);
}

/* A copy of the good file with one bit flipped inside item bad's chunk of dataset name: the item
 * must be reported damaged (and no other), its read must fail with HDF5's checksum error, and a
 * resume must render it again and nothing else. */
static void expect_chunk_damage_found(const char *name, const char *dataset, int64_t bad,
                                      const char *want) {
  char path[600];
  snprintf(path, sizeof path, "%s", case_path(name));
  copy_file(good_path, path);
  flip_bit(path, chunk_address(path, dataset, (hsize_t)bad) + 5);
  sd_output_reader *r = NULL;
  CHECK(sd_output_reader_open(path, &r) == 0, "%s: opens: %s", name, sd_error_message());
  if (!r)
    return;
  CHECK(sd_output_verify_chunk_index(r) == 0, "%s: chunk index sound: %s", name,
        sd_error_message());
  sd_output_record rec[N_ITEMS];
  CHECK(sd_output_read_records(r, 0, N_ITEMS, rec) == 0, "%s: records", name);
  for (int64_t i = 0; i < N_ITEMS; i++) {
    char problem[SD_OUTPUT_PROBLEM_LEN];
    int got = sd_output_verify_item(r, i, &rec[i], problem);
    if (i == bad)
      CHECK(got == 1 && strstr(problem, want) && strstr(problem, "Fletcher32"),
            "%s: item %lld reported '%s' (got %d '%s')", name, (long long)i, want, got, problem);
    else
      CHECK(got == 0, "%s: item %lld sound (got %d '%s')", name, (long long)i, got, problem);
  }
  uint8_t rgb[W * H * 3];
  float latents[8];
  int rc = strcmp(dataset, "images") == 0 ? sd_output_read_image(r, bad, rgb)
                                          : sd_output_read_latents(r, bad, latents);
  CHECK(rc < 0 && strstr(sd_error_message(), "Fletcher32 checksum"),
        "%s: reading item %lld fails: %s", name, (long long)bad, sd_error_message());
  sd_output_reader_close(r);

  sd_output_spec spec = good_spec(path);
  sd_output *o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0, "%s: resumes: %s", name, sd_error_message());
  if (!o)
    return;
  CHECK(sd_output_damaged_items(o) == 1 && sd_output_status(o, bad) == SD_ITEM_PENDING &&
            sd_output_count(o, SD_ITEM_DONE) == 3,
        "%s: the resume renders item %lld again (damaged %lld, done %lld)", name, (long long)bad,
        (long long)sd_output_damaged_items(o), (long long)sd_output_count(o, SD_ITEM_DONE));
  memset(rgb, 7, sizeof rgb);
  memset(latents, 0, sizeof latents);
  CHECK(sd_output_write_done(o, bad, NULL, rgb, latents) == 0 && sd_output_close(o) == 0,
        "%s: item rewritten: %s", name, sd_error_message());
  r = NULL;
  uint8_t back[W * H * 3];
  CHECK(sd_output_reader_open(path, &r) == 0 && sd_output_read_image(r, bad, back) == 0 &&
            memcmp(back, rgb, sizeof rgb) == 0 && sd_output_read_latents(r, bad, latents) == 0,
        "%s: the rewritten item reads back: %s", name, sd_error_message());
  sd_output_reader_close(r);
}

/* Schema 2's checksums: chunks (Fletcher32), rows (CRC-32), the header (SHA-256), and what a
 * schema 2 file must not be (variable-length strings, chunks without a checksum). */
static void test_v2_checksums(void) {
  expect_chunk_damage_found("image_bit", "images", 2, "image chunk");
  expect_chunk_damage_found("latents_bit", "latents", 1, "latents chunk");

  /* a done row whose seed changed; a pending row that reads as done */
  int64_t seed = 12345;
  hid_t f = edit("seed_changed");
  poke(f, "seed", H5T_NATIVE_INT64, 1, &seed);
  H5Fclose(f);
  expect_row_flagged("seed_changed", 1, "row checksum");
  uint8_t done = SD_ITEM_DONE;
  f = edit("pending_to_done");
  poke(f, "status", H5T_NATIVE_UINT8, 5, &done);
  H5Fclose(f);
  expect_row_flagged("pending_to_done", 5, "row checksum");

  hid_t t = string_type(9);
  f = edit("job_path_changed");
  replace_attr(f, "job_path", t, 0, 1, "job2.yaml");
  H5Fclose(f);
  H5Tclose(t);
  expect_refused("job_path_changed", "damaged header");

  hid_t vlen = H5Tcopy(H5T_C_S1);
  H5Tset_size(vlen, H5T_VARIABLE);
  H5Tset_cset(vlen, H5T_CSET_UTF8);
  const char *model = "/models/m";
  f = edit("model_vlen");
  replace_attr(f, "model", vlen, 0, 1, &model);
  H5Fclose(f);
  H5Tclose(vlen);
  char vlen_refusal[128];
  snprintf(vlen_refusal, sizeof vlen_refusal,
           "attribute 'model' is a variable-length string; schema version %d", schema);
  expect_refused("model_vlen", vlen_refusal);

  hsize_t image_dims[4] = {N_ITEMS, H, W, 3}, chunk[4] = {1, H, W, 3};
  f = edit("images_no_checksum");
  H5Ldelete(f, "images", H5P_DEFAULT);
  hid_t space = H5Screate_simple(4, image_dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 4, chunk);
  H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
  hid_t d = H5Dcreate2(f, "images", H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  CHECK(d >= 0, "images without a checksum");
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Fclose(f);
  expect_refused("images_no_checksum", "dataset 'images' has no Fletcher32 checksum filter");
}

/* Two mutants of the quick start's output (issue 16's reproducers) that overflowed buffers inside
 * libhdf5 itself when read: refused by the schema checks before anything is read. */
static void test_libhdf5_mutants(void) {
  static const struct {
    const char *file, *want;
  } cases[] = {
      {"libhdf5_mutant_6ca21413ce85.h5", "dataset 'images' is not of unsigned 1-byte integers"},
      {"libhdf5_mutant_chunkdim_0a9d8263de1b.h5",
       "dataset 'images' has chunks that are not whole rows"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    char path[512];
    snprintf(path, sizeof path, "%s/output/%s", SD_TEST_FIXTURES, cases[k].file);
    sd_output_reader *r = NULL;
    CHECK(sd_output_reader_open(path, &r) < 0 && strstr(sd_error_message(), cases[k].file) &&
              strstr(sd_error_message(), cases[k].want),
          "%s refused with '%s': %s", cases[k].file, cases[k].want, sd_error_message());
    sd_output_reader_close(r);
  }
}

/* The quick start's output with five flipped bits: libhdf5 crashes reading its global heap. */
static void test_crashing_file(void) {
  const char *path = SD_TEST_FIXTURES "/output/demo-5-bitflips.h5";
  sd_output_reader *r = NULL;
  CHECK(sd_output_reader_open(path, &r) < 0 &&
            strstr(sd_error_message(), "demo-5-bitflips.h5: damaged schema 1 file"),
        "crashing v1 file refused: %s", sd_error_message());
  sd_output_reader_close(r);
}

int main(void) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (!mkdtemp(tmp_dir)) {
    perror("mkdtemp");
    return 1;
  }
  /* the reader's checks on files of both schema versions */
  for (schema = 1; schema <= SD_OUTPUT_SCHEMA_VERSION; schema++) {
    snprintf(good_path, sizeof good_path, "%s/good-v%d.h5", tmp_dir, schema);
    make_good(good_path);
    test_attributes();
    test_datasets();
    test_rows();
    test_truncated_and_garbage();
    if (schema >= 2)
      test_v2_checksums();
  }
  test_crashing_file();
  test_libhdf5_mutants();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmp_dir);
  return sd_test_finish();
}
