/* The output file (coordinator/output.h) and contact sheets (coordinator/contact_sheet.h):
 * round trip of every dataset and attribute, refusals (done items, foreign, damaged and other
 * jobs' files, left untouched), that after creation only raw data bytes ever change (read from
 * HDF5's own storage addresses), that a status reaches the disk only at flush, and the layout
 * and pixels of contact sheets against an independent computation. Exact comparisons (the file
 * stores what it is given; sheets copy or box-average pixels, recomputed here). */
#include "coordinator/contact_sheet.h"
#include "coordinator/output.h"
#include "kernels/error.h"
#include "test_util.h"

#include <fcntl.h>
#include <hdf5.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_dir[] = "/tmp/sd_test_output_XXXXXX";
/* The schema version the writer tests create files in (main runs them for each). */
static int schema_version = SD_OUTPUT_SCHEMA_VERSION;

static char *tmp_path(const char *name) {
  static char paths[32][256];
  static int next = 0;
  char *p = paths[next++ % 32];
  snprintf(p, 256, "%s/v%d-%s", tmp_dir, schema_version, name);
  return p;
}

/* Deterministic contents of item index. */
static uint8_t pixel(int64_t index, int y, int x, int c) {
  return (uint8_t)(index * 37 + y * 7 + x * 3 + c * 101);
}
static void make_image(int64_t index, int w, int h, uint8_t *rgb) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++)
        rgb[((size_t)y * w + x) * 3 + c] = pixel(index, y, x, c);
}
static void make_latents(int64_t index, int n, float *latents) {
  for (int k = 0; k < n; k++)
    latents[k] = (float)index + 0.001f * (float)k - 0.5f;
}

static const char *const prompts3[] = {"a red cube", "caf\xc3\xa9 \xe2\x98\x95 at dawn",
                                       "a lighthouse"};

static sd_output_item_meta meta_of(int64_t i) {
  static const char *const schedulers[] = {"euler", "ddim"};
  return (sd_output_item_meta){.prompt_index = (int32_t)(i % 3),
                               .seed = 1000 + i * 11,
                               .guidance_scale = 1.5f + (float)(i % 2),
                               .steps = 20 + (int32_t)(i % 4),
                               .scheduler = schedulers[i % 2]};
}

static int meta_callback(void *ctx, int64_t index, sd_output_item_meta *meta) {
  (void)ctx;
  *meta = meta_of(index);
  return 0;
}

static sd_output_spec base_spec(const char *path) {
  return (sd_output_spec){.path = path,
                          .n_items = 12,
                          .width = 24,
                          .height = 16,
                          .latent_channels = 4,
                          .latent_h = 2,
                          .latent_w = 3,
                          .save_latents = true,
                          .job_yaml = "model: m\nprompts: [...]\n",
                          .job_hash = "1111aaaa",
                          .model_path = "/models/tiny",
                          .model_identity = "ident-1",
                          .n_prompts = 3,
                          .prompts = prompts3,
                          .job_path = "jobs/sweep.yaml",
                          .schema_version = schema_version};
}

static bool same_file(const char *before, size_t before_size, const char *path) {
  size_t size = 0;
  char *now = sd_test_read_file(path, &size);
  bool same = now && size == before_size && memcmp(now, before, size) == 0;
  free(now);
  return same;
}

static void test_round_trip(void) {
  const char *path = tmp_path("round_trip.h5");
  sd_output_spec spec = base_spec(path);
  sd_output *o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0, "create: %s", sd_error_message());
  if (!o)
    return;
  CHECK(access(tmp_path("round_trip.h5.creating"), F_OK) != 0, "no temporary file left");
  uint8_t rgb[16 * 24 * 3];
  float latents[24];
  for (int64_t i = 0; i < 8; i++) {
    sd_output_item_meta m = meta_of(i);
    if (i == 5) {
      CHECK(sd_output_write_failed(o, i, &m, "CUDA error: out of memory") == 0, "fail 5: %s",
            sd_error_message());
      continue;
    }
    make_image(i, 24, 16, rgb);
    make_latents(i, 24, latents);
    CHECK(sd_output_write_done(o, i, &m, rgb, latents) == 0, "write %lld: %s", (long long)i,
          sd_error_message());
  }
  /* a reason longer than the field, cut inside a 3-byte character */
  char long_reason[400];
  memset(long_reason, 'x', 253);
  strcpy(long_reason + 253, "\xe2\x98\x95 and more");
  sd_output_item_meta m9 = meta_of(9);
  CHECK(sd_output_write_failed(o, 9, &m9, long_reason) == 0, "fail 9: %s", sd_error_message());
  CHECK(sd_output_count(o, SD_ITEM_DONE) == 7 && sd_output_count(o, SD_ITEM_FAILED) == 2 &&
            sd_output_count(o, SD_ITEM_PENDING) == 3,
        "counts %lld/%lld/%lld", (long long)sd_output_count(o, 1), (long long)sd_output_count(o, 2),
        (long long)sd_output_count(o, 0));
  CHECK(sd_output_flush(o) == 0, "flush: %s", sd_error_message());
  /* retry of a failed item */
  sd_output_item_meta m5 = meta_of(5);
  make_image(5, 24, 16, rgb);
  make_latents(5, 24, latents);
  CHECK(sd_output_write_done(o, 5, &m5, rgb, latents) == 0, "retry 5: %s", sd_error_message());
  CHECK(sd_output_close(o) == 0, "close: %s", sd_error_message());

  sd_output_reader *r = NULL;
  CHECK(sd_output_reader_open(path, &r) == 0, "reader: %s", sd_error_message());
  if (!r)
    return;
  const sd_output_info *info = sd_output_reader_info(r);
  CHECK(info->schema_version == schema_version && info->n_items == 12 && info->n_prompts == 3 &&
            info->width == 24 && info->height == 16 && info->latent_channels == 4 &&
            info->latent_h == 2 && info->latent_w == 3 && info->save_latents &&
            !info->metadata_complete,
        "info shapes");
  CHECK(strcmp(info->job_yaml, spec.job_yaml) == 0 && strcmp(info->job_hash, "1111aaaa") == 0 &&
            strcmp(info->job_path, "jobs/sweep.yaml") == 0 &&
            strcmp(info->model_path, "/models/tiny") == 0 &&
            strcmp(info->model_identity, "ident-1") == 0,
        "info strings");
  CHECK(strlen(info->created) == 20 && info->created[10] == 'T' && strlen(info->updated) == 20,
        "times '%s' '%s'", info->created, info->updated);
  sd_output_record rec[12];
  CHECK(sd_output_read_records(r, 0, 12, rec) == 0, "records: %s", sd_error_message());
  for (int64_t i = 0; i < 12; i++) {
    int want = i < 8 ? SD_ITEM_DONE : i == 9 ? SD_ITEM_FAILED : SD_ITEM_PENDING;
    CHECK(rec[i].status == want, "item %lld status %d, want %d", (long long)i, rec[i].status, want);
    if (want == SD_ITEM_PENDING)
      continue;
    sd_output_item_meta m = meta_of(i);
    CHECK(rec[i].prompt_index == m.prompt_index && rec[i].seed == m.seed &&
              rec[i].guidance_scale == m.guidance_scale && rec[i].steps == m.steps &&
              strcmp(rec[i].scheduler, m.scheduler) == 0,
          "item %lld metadata", (long long)i);
    char reason[SD_OUTPUT_FAILURE_LEN];
    CHECK(sd_output_read_failure(r, i, reason) == 0, "failure %lld", (long long)i);
    if (want == SD_ITEM_DONE) {
      uint8_t got[16 * 24 * 3];
      float got_latents[24];
      make_image(i, 24, 16, rgb);
      make_latents(i, 24, latents);
      CHECK(sd_output_read_image(r, i, got) == 0 && memcmp(got, rgb, sizeof rgb) == 0,
            "item %lld pixels", (long long)i);
      CHECK(sd_output_read_latents(r, i, got_latents) == 0 &&
                memcmp(got_latents, latents, sizeof latents) == 0,
            "item %lld latents", (long long)i);
      CHECK(reason[0] == 0, "done item %lld has failure '%s'", (long long)i, reason);
    } else {
      CHECK(strlen(reason) == 253 && strncmp(reason, long_reason, 253) == 0,
            "long reason cut at the character boundary (%zu bytes)", strlen(reason));
    }
  }
  char *prompt = NULL;
  CHECK(sd_output_read_prompt(r, 1, &prompt) == 0 && strcmp(prompt, prompts3[1]) == 0,
        "UTF-8 prompt '%s'", prompt ? prompt : "");
  free(prompt);
  sd_output_reader_close(r);

  /* resume: statuses come back from the file */
  o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0, "reopen: %s", sd_error_message());
  if (o) {
    CHECK(sd_output_count(o, SD_ITEM_DONE) == 8 && sd_output_count(o, SD_ITEM_FAILED) == 1 &&
              sd_output_status(o, 9) == SD_ITEM_FAILED && sd_output_status(o, 10) == 0,
          "statuses after reopen");
    CHECK(sd_output_status(o, 12) < 0, "status out of range refused");
    sd_output_close(o);
  }
}

static void test_refusals(void) {
  const char *path = tmp_path("refusals.h5");
  sd_output_spec spec = base_spec(path);
  sd_output *o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0, "create: %s", sd_error_message());
  if (!o)
    return;
  uint8_t rgb[16 * 24 * 3], other[16 * 24 * 3];
  float latents[24];
  make_image(2, 24, 16, rgb);
  make_latents(2, 24, latents);
  memset(other, 7, sizeof other);
  sd_output_item_meta m = meta_of(2);
  CHECK(sd_output_write_done(o, 2, &m, rgb, latents) == 0, "write: %s", sd_error_message());
  CHECK(sd_output_write_done(o, 2, &m, other, latents) < 0 &&
            strstr(sd_error_message(), "already done") && strstr(sd_error_message(), path),
        "second write of a done item refused: %s", sd_error_message());
  CHECK(sd_output_write_failed(o, 2, &m, "late") < 0, "failing a done item refused");
  CHECK(sd_output_write_done(o, 12, &m, rgb, latents) < 0 && strstr(sd_error_message(), "outside"),
        "index out of range: %s", sd_error_message());
  CHECK(sd_output_write_done(o, 3, NULL, rgb, latents) < 0, "no metadata refused");
  CHECK(sd_output_write_done(o, 3, &m, rgb, NULL) < 0 && strstr(sd_error_message(), "latents"),
        "missing latents: %s", sd_error_message());
  sd_output_item_meta bad = m;
  bad.prompt_index = 3;
  CHECK(sd_output_write_done(o, 3, &bad, rgb, latents) < 0 &&
            strstr(sd_error_message(), "prompt_index"),
        "prompt_index out of range: %s", sd_error_message());
  bad = m;
  bad.scheduler = "a_scheduler_name_longer_than_31_bytes";
  CHECK(sd_output_write_done(o, 3, &bad, rgb, latents) < 0 &&
            strstr(sd_error_message(), "scheduler"),
        "long scheduler name: %s", sd_error_message());
  CHECK(sd_output_count(o, SD_ITEM_DONE) == 1 && sd_output_status(o, 3) == SD_ITEM_PENDING,
        "refused writes change nothing");
  CHECK(sd_output_close(o) == 0, "close: %s", sd_error_message());
  sd_output_reader *r = NULL;
  uint8_t got[16 * 24 * 3];
  CHECK(sd_output_reader_open(path, &r) == 0 && sd_output_read_image(r, 2, got) == 0 &&
            memcmp(got, rgb, sizeof rgb) == 0,
        "done pixels intact after the refused rewrite");
  sd_output_reader_close(r);
}

/* sd_output_open on an existing file must fail with `want` (and `want2`) in the message and
 * leave the file byte for byte as it was. */
static void expect_refused(const sd_output_spec *spec, const char *want, const char *want2) {
  size_t size = 0;
  char *before = sd_test_read_file(spec->path, &size);
  sd_output *o = NULL;
  int rc = sd_output_open(spec, &o);
  CHECK(rc < 0 && !o, "%s: refused", spec->path);
  const char *msg = sd_error_message();
  CHECK(strstr(msg, spec->path) && strstr(msg, want) && (!want2 || strstr(msg, want2)),
        "message names the file and '%s': %s", want, msg);
  CHECK(before && same_file(before, size, spec->path), "%s left untouched", spec->path);
  if (o)
    sd_output_close(o);
  free(before);
}

static void test_foreign_files(void) {
  sd_output_spec spec = base_spec(tmp_path("foreign.txt"));
  FILE *f = fopen(spec.path, "w");
  fputs("these are someone's notes, not an HDF5 file\n", f);
  fclose(f);
  expect_refused(&spec, "not an HDF5 file", NULL);

  /* an HDF5 file that is not ours */
  spec.path = tmp_path("foreign.h5");
  hid_t file = H5Fcreate(spec.path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(file);
  expect_refused(&spec, "not an sdbatch output", NULL);

  /* a valid output of this job, then a truncated copy of it */
  const char *good = tmp_path("good.h5");
  spec = base_spec(good);
  sd_output *o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0 && sd_output_close(o) == 0, "create: %s",
        sd_error_message());
  size_t size = 0;
  char *bytes = sd_test_read_file(good, &size);
  spec.path = tmp_path("truncated.h5");
  f = fopen(spec.path, "wb");
  fwrite(bytes, 1, size / 2, f);
  fclose(f);
  free(bytes);
  expect_refused(&spec, "truncated", NULL);

  /* another job's file */
  spec = base_spec(good);
  spec.job_hash = "2222bbbb";
  expect_refused(&spec, "1111aaaa", "2222bbbb");
  spec = base_spec(good);
  spec.width = 32;
  expect_refused(&spec, "other shapes", NULL);
  spec = base_spec(good);
  spec.model_identity = "ident-2";
  expect_refused(&spec, "another model", "ident-2");
}

/* [start, end) byte ranges of every dataset's raw data, from HDF5's own storage addresses. */
typedef struct byte_range {
  haddr_t start, end;
} byte_range;

static int raw_ranges(const char *path, byte_range *ranges, int max) {
  int n = 0;
  hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  const char *names[] = {"images",         "latents", "prompt_index", "seed",
                         "guidance_scale", "steps",   "scheduler",    "status",
                         "failure",        "updated", "item_checksum"};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    if (H5Lexists(file, names[k], H5P_DEFAULT) <= 0)
      continue;
    hid_t d = H5Dopen2(file, names[k], H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(d);
    if (H5Pget_layout(dcpl) == H5D_CHUNKED) {
      hid_t space = H5Dget_space(d);
      hsize_t nchunks = 0;
      H5Dget_num_chunks(d, space, &nchunks);
      for (hsize_t c = 0; c < nchunks && n < max; c++) {
        hsize_t offset[4];
        unsigned mask;
        haddr_t addr;
        hsize_t chunk_size;
        H5Dget_chunk_info(d, space, c, offset, &mask, &addr, &chunk_size);
        ranges[n++] = (byte_range){addr, addr + chunk_size};
      }
      H5Sclose(space);
    } else if (n < max) {
      haddr_t addr = H5Dget_offset(d);
      ranges[n++] = (byte_range){addr, addr + H5Dget_storage_size(d)};
    }
    H5Pclose(dcpl);
    H5Dclose(d);
  }
  H5Fclose(file);
  return n;
}

/* The crash-safety design: once created, the file's metadata is never written again. */
static void test_only_raw_data_changes(bool with_meta) {
  const char *path = tmp_path(with_meta ? "raw_only_meta.h5" : "raw_only.h5");
  sd_output_spec spec = base_spec(path);
  if (with_meta)
    spec.item_meta = meta_callback;
  sd_output *o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0 && sd_output_close(o) == 0, "create: %s",
        sd_error_message());
  size_t size = 0;
  char *created = sd_test_read_file(path, &size);
  byte_range ranges[64];
  int n_ranges = raw_ranges(path, ranges, 64);
  /* schema 1: 12 image chunks, latents and 8 more contiguous datasets; schema 2: 12 image and 12
   * latent chunks, 8 contiguous datasets and item_checksum */
  int want_ranges = schema_version == 1 ? 12 + 9 : 12 + 12 + 9;
  CHECK(n_ranges == want_ranges, "schema %d: raw ranges: %d, expected %d", schema_version, n_ranges,
        want_ranges);

  o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0, "reopen: %s", sd_error_message());
  if (!o) {
    free(created);
    return;
  }
  uint8_t rgb[16 * 24 * 3];
  float latents[24];
  for (int64_t i = 0; i < 12; i += 2) {
    sd_output_item_meta m = meta_of(i);
    make_image(i, 24, 16, rgb);
    make_latents(i, 24, latents);
    CHECK(sd_output_write_done(o, i, with_meta ? NULL : &m, rgb, latents) == 0, "write: %s",
          sd_error_message());
  }
  sd_output_item_meta m = meta_of(3);
  CHECK(sd_output_write_failed(o, 3, &m, "boom") == 0, "fail: %s", sd_error_message());
  CHECK(sd_output_flush(o) == 0 && sd_output_close(o) == 0, "flush, close: %s", sd_error_message());

  size_t after_size = 0;
  char *after = sd_test_read_file(path, &after_size);
  CHECK(after && after_size == size, "file size unchanged: %zu -> %zu", size, after_size);
  size_t changed = 0, outside = 0, first_outside = 0;
  for (size_t b = 0; after && b < size && b < after_size; b++) {
    if (created[b] == after[b])
      continue;
    changed++;
    bool raw = false;
    for (int k = 0; k < n_ranges && !raw; k++)
      raw = b >= ranges[k].start && b < ranges[k].end;
    if (!raw && outside++ == 0)
      first_outside = b;
  }
  CHECK(changed > 6 * sizeof rgb, "the items were written (%zu bytes changed)", changed);
  CHECK(outside == 0, "%zu changed bytes outside raw data (first at %zu)", outside, first_outside);
  free(created);
  free(after);
}

/* pread of item index's status byte, at the address HDF5 gives the status dataset. */
static int status_on_disk(const char *path, haddr_t status_addr, int64_t index) {
  int fd = open(path, O_RDONLY);
  uint8_t byte = 0xFF;
  if (fd >= 0) {
    if (pread(fd, &byte, 1, (off_t)(status_addr + (haddr_t)index)) != 1)
      byte = 0xFF;
    close(fd);
  }
  return byte;
}

static void test_status_written_at_flush(void) {
  const char *path = tmp_path("flush_order.h5");
  sd_output_spec spec = base_spec(path);
  sd_output *o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0 && sd_output_close(o) == 0, "create: %s",
        sd_error_message());
  hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(file, "status", H5P_DEFAULT);
  haddr_t addr = H5Dget_offset(d);
  H5Dclose(d);
  H5Fclose(file);
  o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0, "reopen: %s", sd_error_message());
  if (!o)
    return;
  uint8_t rgb[16 * 24 * 3] = {0};
  float latents[24] = {0};
  sd_output_item_meta m = meta_of(4);
  CHECK(sd_output_write_done(o, 4, &m, rgb, latents) == 0, "write: %s", sd_error_message());
  CHECK(status_on_disk(path, addr, 4) == SD_ITEM_PENDING, "status not on disk before flush");
  CHECK(sd_output_flush(o) == 0, "flush: %s", sd_error_message());
  CHECK(status_on_disk(path, addr, 4) == SD_ITEM_DONE, "status on disk after flush");
  CHECK(status_on_disk(path, addr, 5) == SD_ITEM_PENDING, "neighbour still pending");
  sd_output_close(o);
}

static void test_item_meta_at_creation(void) {
  const char *path = tmp_path("meta.h5");
  sd_output_spec spec = base_spec(path);
  spec.item_meta = meta_callback;
  spec.save_latents = false;
  sd_output *o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0, "create: %s", sd_error_message());
  if (!o)
    return;
  uint8_t rgb[16 * 24 * 3];
  make_image(0, 24, 16, rgb);
  CHECK(sd_output_write_done(o, 0, NULL, rgb, NULL) == 0, "write without meta: %s",
        sd_error_message());
  sd_output_close(o);
  sd_output_reader *r = NULL;
  CHECK(sd_output_reader_open(path, &r) == 0, "reader: %s", sd_error_message());
  if (!r)
    return;
  CHECK(sd_output_reader_info(r)->metadata_complete && !sd_output_reader_info(r)->save_latents,
        "metadata_complete, no latents");
  float latents[24];
  CHECK(sd_output_read_latents(r, 0, latents) < 0, "no latents dataset");
  sd_output_record rec[12];
  CHECK(sd_output_read_records(r, 0, 12, rec) == 0, "records");
  for (int64_t i = 0; i < 12; i++) {
    sd_output_item_meta m = meta_of(i);
    CHECK(rec[i].status == (i == 0) && rec[i].prompt_index == m.prompt_index &&
              rec[i].seed == m.seed && rec[i].guidance_scale == m.guidance_scale &&
              rec[i].steps == m.steps && strcmp(rec[i].scheduler, m.scheduler) == 0,
          "pending item %lld carries its metadata", (long long)i);
  }
  sd_output_reader_close(r);
}

/* Many prompts, one of them long: schema 2 pads every prompt to the longest and deflates the
 * chunks, so the file is far smaller than the prompts' padded size, and must still open. */
static void test_many_prompts(void) {
  enum { P = 1000, LONG = 20000 };
  const char *path = tmp_path("prompts.h5");
  static char long_prompt[LONG + 1];
  static char short_prompts[P][16];
  static const char *list[P];
  memset(long_prompt, 'a', LONG);
  for (int i = 0; i < P; i++) {
    snprintf(short_prompts[i], sizeof short_prompts[i], "prompt %d", i);
    list[i] = i == 7 ? long_prompt : short_prompts[i];
  }
  sd_output_spec spec = base_spec(path);
  spec.n_prompts = P;
  spec.prompts = list;
  sd_output *o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0 && sd_output_close(o) == 0, "create: %s",
        sd_error_message());
  sd_output_reader *r = NULL;
  CHECK(sd_output_reader_open(path, &r) == 0, "schema %d: %d prompts, one of %d bytes: opens: %s",
        schema_version, P, LONG, sd_error_message());
  if (!r)
    return;
  char *got = NULL;
  CHECK(sd_output_read_prompt(r, 7, &got) == 0 && got && strcmp(got, long_prompt) == 0,
        "the long prompt reads back");
  free(got);
  got = NULL;
  CHECK(sd_output_read_prompt(r, 999, &got) == 0 && got && strcmp(got, "prompt 999") == 0,
        "the last prompt reads back");
  free(got);
  sd_output_reader_close(r);
}

static void test_stale_creating_file(void) {
  const char *path = tmp_path("stale.h5");
  const char *stale = tmp_path("stale.h5.creating");
  FILE *f = fopen(stale, "w");
  fputs("half-made", f);
  fclose(f);
  sd_output_spec spec = base_spec(path);
  sd_output *o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0 && sd_output_close(o) == 0, "create over a stale temp: %s",
        sd_error_message());
  CHECK(access(stale, F_OK) != 0 && access(path, F_OK) == 0, "temp replaced and renamed");
}

/* --- contact sheets -------------------------------------------------------------------------- */

/* A sweep of 2 prompts x 3 seeds x 2 guidance scales (job order) of 40x32 images. */
enum { SW_W = 40, SW_H = 32, SW_N = 12 };
static sd_output_item_meta sweep_meta(int64_t i) {
  return (sd_output_item_meta){.prompt_index = (int32_t)(i / 6),
                               .seed = 42 + (i / 2) % 3,
                               .guidance_scale = i % 2 ? 7.5f : 1.5f,
                               .steps = 20,
                               .scheduler = "ddim"};
}
static int sweep_callback(void *ctx, int64_t index, sd_output_item_meta *meta) {
  (void)ctx;
  *meta = sweep_meta(index);
  return 0;
}

static int64_t sweep_state(int64_t i) {
  return i == 7 ? SD_ITEM_FAILED : (i == 4 || i == 9 || i == 10) ? SD_ITEM_PENDING : SD_ITEM_DONE;
}

static void write_sweep_file(const char *path) {
  sd_output_spec spec = base_spec(path);
  spec.n_items = SW_N;
  spec.width = SW_W;
  spec.height = SW_H;
  spec.save_latents = false;
  spec.n_prompts = 2;
  spec.item_meta = sweep_callback;
  sd_output *o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0, "sweep file: %s", sd_error_message());
  if (!o)
    return;
  uint8_t rgb[SW_W * SW_H * 3];
  for (int64_t i = 0; i < SW_N; i++) {
    if (sweep_state(i) == SD_ITEM_DONE) {
      make_image(i, SW_W, SW_H, rgb);
      CHECK(sd_output_write_done(o, i, NULL, rgb, NULL) == 0, "write %lld", (long long)i);
    } else if (sweep_state(i) == SD_ITEM_FAILED) {
      CHECK(sd_output_write_failed(o, i, NULL, "NaN in latents") == 0, "fail %lld", (long long)i);
    }
  }
  CHECK(sd_output_close(o) == 0, "close: %s", sd_error_message());
}

static bool region_has(const uint8_t *rgb, int width, int x0, int y0, int w, int h,
                       const uint8_t color[3]) {
  for (int y = y0; y < y0 + h; y++)
    for (int x = x0; x < x0 + w; x++)
      if (memcmp(rgb + ((size_t)y * width + x) * 3, color, 3) == 0)
        return true;
  return false;
}

/* Independent box average of item index's image at destination pixel (x, y) of a dw x dh cell. */
static void naive_shrunk_pixel(int64_t index, int dw, int dh, int x, int y, uint8_t out[3]) {
  int x0 = x * SW_W / dw, x1 = (x + 1) * SW_W / dw;
  int y0 = y * SW_H / dh, y1 = (y + 1) * SW_H / dh;
  if (x1 == x0)
    x1++;
  if (y1 == y0)
    y1++;
  for (int c = 0; c < 3; c++) {
    unsigned sum = 0, n = 0;
    for (int sy = y0; sy < y1; sy++)
      for (int sx = x0; sx < x1; sx++, n++)
        sum += pixel(index, sy, sx, c);
    out[c] = (uint8_t)((sum + n / 2) / n);
  }
}

/* Checks every cell of sheet `sheet` (prompt index) against the items. */
static void check_sheet(sd_output_reader *r, const sd_sweep *sweep, const sd_sheet_plan *p,
                        int64_t sheet) {
  uint8_t *rgb = NULL;
  char title[512];
  CHECK(sd_sheet_render(r, sweep, p, sheet, &rgb, title, sizeof title, NULL) == 0, "render: %s",
        sd_error_message());
  if (!rgb)
    return;
  CHECK(strstr(title, prompts3[sheet]) != NULL, "title names the prompt: %s", title);
  static const uint8_t black[3] = {0, 0, 0}, red[3] = {200, 30, 30}, grey[3] = {205, 205, 205};
  for (int row = 0; row < 3; row++) {
    int y = p->top + row * (p->cell_h + p->gap);
    CHECK(region_has(rgb, p->sheet_w, 0, y, p->left, p->cell_h, black), "row %d labelled", row);
    for (int col = 0; col < 2; col++) {
      int x = p->left + col * (p->cell_w + p->gap);
      if (row == 0)
        CHECK(region_has(rgb, p->sheet_w, x, 0, p->cell_w, p->top, black), "column %d labelled",
              col);
      int64_t index = sheet * 6 + row * 2 + col; /* rows seeds, columns guidance */
      int state = (int)sweep_state(index);
      if (state == SD_ITEM_FAILED) {
        CHECK(region_has(rgb, p->sheet_w, x, y, p->cell_w, p->cell_h, red), "item %lld failed",
              (long long)index);
        continue;
      }
      if (state == SD_ITEM_PENDING) {
        CHECK(region_has(rgb, p->sheet_w, x, y, p->cell_w, p->cell_h, grey) &&
                  !region_has(rgb, p->sheet_w, x, y, p->cell_w, p->cell_h, red),
              "item %lld pending", (long long)index);
        continue;
      }
      int bad = 0;
      for (int cy = 0; cy < p->cell_h; cy++)
        for (int cx = 0; cx < p->cell_w; cx++) {
          uint8_t want[3];
          naive_shrunk_pixel(index, p->cell_w, p->cell_h, cx, cy, want);
          bad += memcmp(rgb + ((size_t)(y + cy) * p->sheet_w + x + cx) * 3, want, 3) != 0;
        }
      CHECK(bad == 0, "item %lld: %d cell pixels differ from its (%dx%d) image", (long long)index,
            bad, p->cell_w, p->cell_h);
    }
  }
  free(rgb);
}

static void test_contact_sheet(void) {
  const char *path = tmp_path("sweep.h5");
  write_sweep_file(path);
  sd_output_reader *r = NULL;
  sd_sweep *sweep = NULL;
  CHECK(sd_output_reader_open(path, &r) == 0 && sd_sweep_scan(r, &sweep) == 0, "scan: %s",
        sd_error_message());
  if (!sweep) {
    sd_output_reader_close(r);
    return;
  }
  CHECK(sd_sweep_axis_count(sweep, SD_AXIS_PROMPT) == 2 &&
            sd_sweep_axis_count(sweep, SD_AXIS_SEED) == 3 &&
            sd_sweep_axis_count(sweep, SD_AXIS_GUIDANCE) == 2 &&
            sd_sweep_axis_count(sweep, SD_AXIS_STEPS) == 1 &&
            sd_sweep_axis_count(sweep, SD_AXIS_SCHEDULER) == 1,
        "axis value counts");
  CHECK(sd_sweep_status_count(sweep, SD_ITEM_DONE) == 8 &&
            sd_sweep_status_count(sweep, SD_ITEM_FAILED) == 1 &&
            sd_sweep_status_count(sweep, SD_ITEM_PENDING) == 3 && sd_sweep_known_items(sweep) == 12,
        "status counts");
  char value[64];
  sd_sweep_axis_value_text(sweep, SD_AXIS_GUIDANCE, 1, value, sizeof value);
  CHECK(strcmp(value, "7.5") == 0, "guidance value text '%s'", value);
  const int64_t *failures = NULL;
  CHECK(sd_sweep_first_failures(sweep, &failures) == 1 && failures[0] == 7, "first failure");

  sd_sheet_options options = sd_sheet_options_default();
  sd_sheet_plan plan;
  CHECK(sd_sheet_plan_make(sweep, sd_output_reader_info(r), &options, &plan) == 0, "plan: %s",
        sd_error_message());
  CHECK(plan.rows == SD_AXIS_SEED && plan.cols == SD_AXIS_GUIDANCE && plan.n_sheets == 2 &&
            plan.n_written == 2 && plan.n_rows == 3 && plan.n_cols == 2,
        "default axes: rows %s, columns %s, %lld sheets", sd_axis_name(plan.rows),
        sd_axis_name(plan.cols), (long long)plan.n_sheets);
  CHECK(plan.cell_w == SW_W && plan.cell_h == SW_H, "full-size cells %dx%d", plan.cell_w,
        plan.cell_h);
  check_sheet(r, sweep, &plan, 0);
  check_sheet(r, sweep, &plan, 1);

  /* shrunk cells */
  options.max_side = 90;
  CHECK(sd_sheet_plan_make(sweep, sd_output_reader_info(r), &options, &plan) == 0, "plan: %s",
        sd_error_message());
  CHECK(plan.sheet_w <= 90 && plan.sheet_h <= 90 && plan.cell_w < SW_W && plan.cell_w >= 8,
        "shrunk to fit 90 px: sheet %dx%d, cells %dx%d", plan.sheet_w, plan.sheet_h, plan.cell_w,
        plan.cell_h);
  check_sheet(r, sweep, &plan, 1);

  options = sd_sheet_options_default();
  options.rows = options.cols = SD_AXIS_PROMPT;
  CHECK(sd_sheet_plan_make(sweep, sd_output_reader_info(r), &options, &plan) < 0,
        "rows == columns refused");
  options.rows = SD_AXIS_PROMPT;
  options.cols = SD_AXIS_SEED;
  options.max_sheets = 1;
  CHECK(sd_sheet_plan_make(sweep, sd_output_reader_info(r), &options, &plan) == 0 &&
            plan.n_sheets == 2 && plan.n_written == 1,
        "max_sheets caps the sheets written");
  sd_axis axis;
  CHECK(sd_axis_parse("cfg", &axis) == 0 && axis == SD_AXIS_GUIDANCE &&
            sd_axis_parse("colour", &axis) < 0,
        "axis names");
  sd_sweep_free(sweep);
  sd_output_reader_close(r);
}

/* Schema 3's inputs: the table and each item's input, strength and noise level round trip; a
 * changed input SHA-256 or another input count refuses the resume; the row checksum covers the
 * new columns; older schemas refuse inputs. */
static const char *const input_files[] = {"in/a.png", "in/m.png", NULL,
                                          "in/b.jpg", "in/m.png", NULL};
static const char *const input_sums[] = {
    "aa00000000000000000000000000000000000000000000000000000000000000",
    "bb00000000000000000000000000000000000000000000000000000000000000",
    NULL,
    "cc00000000000000000000000000000000000000000000000000000000000000",
    "bb00000000000000000000000000000000000000000000000000000000000000",
    NULL};

static int input_meta(void *ctx, int64_t index, sd_output_item_meta *meta) {
  (void)ctx;
  *meta = meta_of(index);
  meta->has_input = index % 3 != 2; /* every third item has none */
  meta->input_index = (int32_t)(index % 2);
  meta->strength = 0.25f * (float)(index % 4);
  meta->noise_level = index % 2 ? 20 : -1;
  return 0;
}

/* An input loader that paints input i as (11 i, 22 i, 33 i). */
static int fill_input(void *ctx, int64_t input, int w, int h, uint8_t *rgb, size_t stride) {
  (void)ctx;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++)
        rgb[(size_t)y * stride + (size_t)x * 3 + (size_t)c] = (uint8_t)(11 * (c + 1) * input);
  return 0;
}

static void test_inputs(void) {
  const char *path = tmp_path("inputs.h5");
  sd_output_spec spec = base_spec(path);
  spec.n_inputs = 2;
  spec.input_files = input_files;
  spec.input_sha256 = input_sums;
  spec.item_meta = input_meta;
  sd_output *o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0, "create with inputs: %s", sd_error_message());
  if (!o)
    return;
  uint8_t rgb[24 * 16 * 3];
  float latents[4 * 2 * 3];
  make_image(4, 24, 16, rgb);
  make_latents(4, 24, latents);
  CHECK(sd_output_write_done(o, 4, NULL, rgb, latents) == 0, "write item 4: %s",
        sd_error_message());
  CHECK(sd_output_close(o) == 0, "close: %s", sd_error_message());

  sd_output_reader *r = NULL;
  CHECK(sd_output_reader_open(path, &r) == 0, "read: %s", sd_error_message());
  if (r) {
    const sd_output_info *info = sd_output_reader_info(r);
    CHECK(info->schema_version == 3 && info->n_inputs == 2, "schema %d, %lld inputs",
          info->schema_version, (long long)info->n_inputs);
    sd_output_record rec[12];
    CHECK(sd_output_read_records(r, 0, 12, rec) == 0, "records: %s", sd_error_message());
    int wrong = 0;
    for (int i = 0; i < 12; i++) {
      sd_output_item_meta m;
      input_meta(NULL, i, &m);
      bool has = i % 3 != 2;
      if (rec[i].problem[0] || rec[i].input_index != (has ? i % 2 : -1) ||
          rec[i].strength != (has ? m.strength : 1.0f) ||
          rec[i].noise_level != (has ? m.noise_level : -1))
        wrong++;
    }
    CHECK(wrong == 0, "%d of 12 rows have other inputs, strengths or noise levels", wrong);
    sd_output_input in;
    CHECK(sd_output_read_input(r, 1, &in) == 0 && !strcmp(in.files[0], "in/b.jpg") &&
              !strcmp(in.files[1], "in/m.png") && !strcmp(in.files[2], "") &&
              !strcmp(in.sha256[0], input_sums[3]) && !strcmp(in.sha256[1], input_sums[4]) &&
              !strcmp(in.sha256[2], ""),
          "input 1 read back: %s", sd_error_message());
    sd_output_input_free(&in);
    CHECK(sd_output_read_input(r, 2, &in) < 0, "input 2 is out of range");
    sd_output_reader_close(r);
  }

  /* the row checksum covers the strength: a done row edited there is damaged */
  size_t before_size = 0;
  char *before = sd_test_read_file(path, &before_size);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t d = f >= 0 ? H5Dopen2(f, "strength", H5P_DEFAULT) : -1;
  hsize_t start[1] = {4}, count[1] = {1};
  hid_t fs = d >= 0 ? H5Dget_space(d) : -1, ms = H5Screate_simple(1, count, NULL);
  float changed = 0.5f;
  CHECK(fs >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
            H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, &changed) >= 0,
        "edit item 4's strength");
  H5Sclose(ms);
  if (fs >= 0)
    H5Sclose(fs);
  if (d >= 0)
    H5Dclose(d);
  if (f >= 0)
    H5Fclose(f);
  r = NULL;
  if (sd_output_reader_open(path, &r) == 0) {
    sd_output_record rec;
    CHECK(sd_output_read_records(r, 4, 1, &rec) == 0 && strstr(rec.problem, "row checksum"),
          "an edited strength fails the row checksum: '%s'", rec.problem);
    sd_output_reader_close(r);
  }
  if (before) {
    FILE *w = fopen(path, "wb");
    CHECK(w && fwrite(before, 1, before_size, w) == before_size && fclose(w) == 0, "restore");
  }

  /* resumes: the same inputs resume; a changed SHA-256 or another count is refused */
  o = NULL;
  CHECK(sd_output_open(&spec, &o) == 0 && sd_output_count(o, SD_ITEM_DONE) == 1,
        "resume with the same inputs: %s", sd_error_message());
  sd_output_close(o);
  const char *changed_sums[6];
  memcpy(changed_sums, input_sums, sizeof changed_sums);
  changed_sums[4] = "dd00000000000000000000000000000000000000000000000000000000000000";
  sd_output_spec other = spec;
  other.input_sha256 = changed_sums;
  o = NULL;
  CHECK(sd_output_open(&other, &o) < 0 &&
            strstr(sd_error_message(), "input 1's mask 'in/m.png' has changed since"),
        "a changed mask is refused: %s", sd_error_message());
  sd_output_close(o);
  other = spec;
  other.n_inputs = 1;
  o = NULL;
  CHECK(sd_output_open(&other, &o) < 0 &&
            strstr(sd_error_message(), "was started with 2 inputs, this run has 1"),
        "another input count is refused: %s", sd_error_message());
  sd_output_close(o);
  size_t after_size = 0;
  CHECK(before && same_file(before, before_size, path), "refused resumes leave the file as it was");
  (void)after_size;
  free(before);

  /* contact sheets: strength and input are axes; the input column shows the sheet's input */
  r = NULL;
  if (sd_output_reader_open(path, &r) == 0) {
    sd_sweep *sweep = NULL;
    CHECK(sd_sweep_scan(r, &sweep) == 0 && sd_sweep_axis_count(sweep, SD_AXIS_INPUT) == 3 &&
              sd_sweep_axis_count(sweep, SD_AXIS_STRENGTH) == 5 &&
              sd_sweep_axis_count(sweep, SD_AXIS_NOISE_LEVEL) == 2,
          "sweep over inputs (-1, 0, 1), 5 strengths and noise levels (-1, 20)");
    sd_sheet_options options = sd_sheet_options_default();
    options.cols = SD_AXIS_STRENGTH;
    sd_sheet_plan plan;
    if (sweep && sd_sheet_plan_make(sweep, sd_output_reader_info(r), &options, &plan) == 0) {
      CHECK(plan.input_column == 1 && plan.cols == SD_AXIS_STRENGTH && plan.n_cols == 5,
            "an input column beside 5 strength columns");
      uint8_t *rgb = NULL;
      char title[512];
      int64_t sheet = -1;
      /* the first sheet whose fixed input is input 1 */
      for (int64_t k = 0; k < plan.n_written && sheet < 0; k++) {
        CHECK(sd_sheet_render_inputs(r, sweep, &plan, k, fill_input, NULL, &rgb, title,
                                     sizeof title, NULL) == 0,
              "render sheet %lld: %s", (long long)k, sd_error_message());
        if (strstr(title, "input 1: in/b.jpg"))
          sheet = k;
        else
          free(rgb);
      }
      CHECK(sheet >= 0, "a sheet is titled with input 1's image");
      if (sheet >= 0) {
        const uint8_t *px = rgb + ((size_t)(plan.top + 1) * plan.sheet_w + plan.left + 1) * 3;
        CHECK(px[0] == 11 && px[1] == 22 && px[2] == 33,
              "the input cell holds what the loader drew for input 1 (%d %d %d)", px[0], px[1],
              px[2]);
        free(rgb);
      }
    }
    sd_sweep_free(sweep);
    sd_output_reader_close(r);
  }

  other = spec;
  other.path = tmp_path("inputs-v2.h5");
  other.schema_version = 2;
  o = NULL;
  CHECK(sd_output_open(&other, &o) < 0 &&
            strstr(sd_error_message(), "schema version 2 has no inputs"),
        "schema 2 refuses inputs: %s", sd_error_message());
  sd_output_close(o);
}

int main(void) {
  if (!mkdtemp(tmp_dir)) {
    perror("mkdtemp");
    return 1;
  }
  /* the writer's tests on files of both schema versions (version 1 is still resumed) */
  for (schema_version = 1; schema_version <= SD_OUTPUT_SCHEMA_VERSION; schema_version++) {
    test_round_trip();
    test_refusals();
    test_only_raw_data_changes(false);
    test_only_raw_data_changes(true);
    test_status_written_at_flush();
    test_item_meta_at_creation();
    test_many_prompts();
  }
  schema_version = SD_OUTPUT_SCHEMA_VERSION;
  test_foreign_files();
  test_stale_creating_file();
  test_contact_sheet();
  test_inputs();
  char command[512];
  snprintf(command, sizeof command, "rm -rf '%s'", tmp_dir);
  if (system(command) != 0)
    fprintf(stderr, "could not remove %s\n", tmp_dir);
  return sd_test_finish();
}
