/* safetensors: a write/read round trip (every supported dtype, a scalar, metadata, 8-byte
 * aligned data) and one clean error per kind of bad file, naming the file and the tensor;
 * tensor maps (put, replace, lookup). */
#include "test_util.h"

#include "io/safetensors.h"
#include "io/tensor_map.h"

#include "error.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char scratch[256];

static const char *scratch_path(const char *name) {
  static char paths[4][512];
  static int next;
  char *p = paths[next++ % 4];
  snprintf(p, 512, "%s/%s", scratch, name);
  return p;
}

/* A file of the 8-byte little-endian length `declared`, the header text, and data_bytes bytes
 * of a counting pattern. */
static const char *write_raw(const char *name, uint64_t declared, const char *header,
                             size_t data_bytes) {
  const char *path = scratch_path(name);
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL, "cannot write %s", path);
  if (!f)
    return path;
  unsigned char length[8];
  for (int i = 0; i < 8; i++)
    length[i] = (unsigned char)(declared >> (8 * i));
  fwrite(length, 1, 8, f);
  fwrite(header, 1, strlen(header), f);
  for (size_t i = 0; i < data_bytes; i++)
    fputc((int)(i & 0xff), f);
  fclose(f);
  return path;
}

static const char *write_header(const char *name, const char *header, size_t data_bytes) {
  return write_raw(name, strlen(header), header, data_bytes);
}

/* Opening must fail with a message holding every non-NULL fragment. */
static void expect_open_error(const char *path, const char *a, const char *b, const char *c) {
  sd_safetensors *file = (sd_safetensors *)1;
  sd_error_clear();
  int rc = sd_safetensors_open(path, &file);
  const char *msg = sd_error_message();
  int ok = rc == -1 && file == NULL && strstr(msg, path) && (!a || strstr(msg, a)) &&
           (!b || strstr(msg, b)) && (!c || strstr(msg, c));
  CHECK(ok, "%s: rc %d, message '%s' (want '%s' '%s' '%s')", path, rc, msg, a ? a : "", b ? b : "",
        c ? c : "");
  if (rc == 0)
    sd_safetensors_close(file);
}

static void test_round_trip(void) {
  float f32[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
  uint16_t f16[4] = {sd_f32_to_f16(1.0f), sd_f32_to_f16(-0.5f), 0x7bff, 0x0001};
  uint16_t bf16[4] = {sd_f32_to_bf16(3.0f), sd_f32_to_bf16(-1e20f), 0, 0x8000};
  int32_t i32[3] = {-7, 0, 2147483647};
  float scalar = 0.18215f;
  sd_st_tensor tensors[5] = {
      {"a.weight", SD_DTYPE_F32, 2, {2, 3}, f32, sizeof f32},
      {"b.half", SD_DTYPE_F16, 1, {4}, f16, sizeof f16},
      {"c.bf16", SD_DTYPE_BF16, 4, {2, 2, 1, 1}, bf16, sizeof bf16},
      {"d.ids", SD_DTYPE_I32, 1, {3}, i32, sizeof i32},
      {"e.scalar", SD_DTYPE_F32, 0, {0}, &scalar, sizeof scalar},
  };
  const char *keys[2] = {"format", "note"}, *values[2] = {"pt", "sdbatch \"test\""};
  const char *path = scratch_path("round.safetensors");
  int rc = sd_safetensors_write(path, tensors, 5, keys, values, 2);
  CHECK(rc == 0, "write: %s", sd_error_message());
  sd_safetensors *file = NULL;
  rc = sd_safetensors_open(path, &file);
  CHECK(rc == 0, "open: %s", sd_error_message());
  if (rc != 0)
    return;
  CHECK(sd_safetensors_count(file) == 5, "count %zu", sd_safetensors_count(file));
  CHECK(strcmp(sd_safetensors_path(file), path) == 0, "path");
  for (int i = 0; i < 5; i++) {
    const sd_st_tensor *want = &tensors[i];
    const sd_st_tensor *got = sd_safetensors_find(file, want->name);
    int same = got && got->dtype == want->dtype && got->ndim == want->ndim &&
               got->bytes == want->bytes && memcmp(got->data, want->data, want->bytes) == 0;
    for (int d = 0; same && d < want->ndim; d++)
      same = got->shape[d] == want->shape[d];
    CHECK(same, "round trip of %s", want->name);
    CHECK(got && ((uintptr_t)got->data % sd_dtype_size(want->dtype)) == 0, "%s aligned",
          want->name);
    CHECK(sd_safetensors_at(file, (size_t)i) == got, "tensors listed in file order");
  }
  CHECK(sd_safetensors_at(file, 5) == NULL && sd_safetensors_find(file, "a") == NULL,
        "absent tensors");
  const char *format = sd_safetensors_metadata(file, "format");
  const char *note = sd_safetensors_metadata(file, "note");
  CHECK(format && strcmp(format, "pt") == 0 && note && strcmp(note, values[1]) == 0 &&
            sd_safetensors_metadata(file, "other") == NULL,
        "metadata");
  sd_safetensors_close(file);

  /* the writer's checks, and no temporary file left behind */
  sd_st_tensor twice[2] = {tensors[0], tensors[0]};
  CHECK(sd_safetensors_write(scratch_path("twice.safetensors"), twice, 2, NULL, NULL, 0) == -1 &&
            strstr(sd_error_message(), "'a.weight' given twice"),
        "duplicate names rejected: %s", sd_error_message());
  sd_st_tensor short_data = tensors[0];
  short_data.bytes = 8;
  CHECK(sd_safetensors_write(scratch_path("short.safetensors"), &short_data, 1, NULL, NULL, 0) ==
                -1 &&
            strstr(sd_error_message(), "shape needs 24"),
        "size mismatch rejected: %s", sd_error_message());
  CHECK(sd_safetensors_write("/nonexistent-dir/x.safetensors", tensors, 1, NULL, NULL, 0) == -1 &&
            strstr(sd_error_message(), "/nonexistent-dir/x.safetensors"),
        "unwritable path: %s", sd_error_message());
  DIR *dir = opendir(scratch);
  int leftovers = 0;
  for (struct dirent *e; dir && (e = readdir(dir));)
    leftovers += strstr(e->d_name, ".tmp.") != NULL;
  if (dir)
    closedir(dir);
  CHECK(leftovers == 0, "%d temporary files left", leftovers);
}

static void test_bad_files(void) {
  const char *good = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
  const char *path;

  path = write_raw("tiny.safetensors", 0, "", 0);
  CHECK(truncate(path, 5) == 0, "truncate %s", path);
  expect_open_error(path, "5 bytes", "too short", NULL);

  path = write_raw("hugelen.safetensors", 1ull << 40, good, 16);
  expect_open_error(path, "header length 1099511627776", "limit", NULL);

  path = write_raw("longlen.safetensors", 4096, good, 16);
  expect_open_error(path, "header length 4096", "exceeds", NULL);

  path = write_header("truncated.safetensors", good, 10);
  expect_open_error(path, "tensor 't'", "data_offsets [0, 16]", "truncated");

  path = write_header("badjson.safetensors", "{\"t\":{\"dtype\":\"F32\",", 0);
  expect_open_error(path, "not valid JSON", NULL, NULL);

  path = write_header("array.safetensors", "[1, 2]", 0);
  expect_open_error(path, "not a JSON object", NULL, NULL);

  path = write_header("trailing.safetensors", "{} x", 0);
  expect_open_error(path, "trailing bytes", NULL, NULL);

  /* a second "__metadata__" (a heap overflow once), empty or not, and a repeated key in it */
  path = write_header("dup_metadata.safetensors",
                      "{\"__metadata__\":{\"a\":\"b\"},\"__metadata__\":{\"c\":\"d\"}}", 0);
  expect_open_error(path, "\"__metadata__\" appears twice", NULL, NULL);
  path = write_header("dup_metadata_empty.safetensors",
                      "{\"__metadata__\":{\"a\":\"b\"},\"__metadata__\":{}}", 0);
  expect_open_error(path, "\"__metadata__\" appears twice", NULL, NULL);
  path = write_header("dup_metadata_key.safetensors",
                      "{\"__metadata__\":{\"a\":\"b\",\"a\":\"c\"}}", 0);
  expect_open_error(path, "\"__metadata__\" entry 'a' appears twice", NULL, NULL);
  /* a repeated name is refused also for tensors of dtypes that are not loaded */
  path = write_header("dup_i64.safetensors",
                      "{\"p\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                      "\"p\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}}",
                      16);
  expect_open_error(path, "tensor 'p' appears twice", NULL, NULL);

  path = write_header("range.safetensors",
                      "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,32]}}", 16);
  expect_open_error(path, "tensor 't'", "[16, 32]", "beyond the data section of 16 bytes");

  path = write_header("overlap.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                      "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[8,16]}}",
                      16);
  expect_open_error(path, "'a' [0, 16]", "'b' [8, 16]", "overlap");

  /* the issue's own example */
  path = write_header("x.safetensors",
                      "{\"conv_in.weight\":{\"dtype\":\"F16\",\"shape\":[4,4,3,3],"
                      "\"data_offsets\":[0,96]}}",
                      96);
  expect_open_error(path,
                    "x.safetensors: tensor 'conv_in.weight': data_offsets [0, 96] do not match "
                    "shape (4, 4, 3, 3) x F16 = 288 bytes",
                    NULL, NULL);

  path = write_header("reversed.safetensors",
                      "{\"t\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,0]}}", 16);
  expect_open_error(path, "tensor 't'", "end before they begin", NULL);

  path = write_header("dtype.safetensors",
                      "{\"t\":{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
  expect_open_error(path, "tensor 't'", "unknown dtype 'F17'", NULL);

  path = write_header("nodtype.safetensors", "{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
  expect_open_error(path, "tensor 't'", "dtype", NULL);

  path = write_header("negative.safetensors",
                      "{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8);
  expect_open_error(path, "tensor 't'", "shape entry 0", NULL);

  path =
      write_header("dims.safetensors",
                   "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8);
  expect_open_error(path, "tensor 't'", "5 dimensions", NULL);

  path = write_header("dup.safetensors",
                      "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      8);
  expect_open_error(path, "tensor 't' appears twice", NULL, NULL);

  path = write_header("meta.safetensors", "{\"__metadata__\":{\"step\":5}}", 0);
  expect_open_error(path, "\"__metadata__\" entry 'step'", NULL, NULL);

  path = write_header("offsets.safetensors",
                      "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4);
  expect_open_error(path, "tensor 't'", "data_offsets", NULL);

  expect_open_error(scratch_path("missing.safetensors"), "cannot open", NULL, NULL);

  /* the format's other dtypes are validated and left out: SD 1.x's I64 position_ids */
  path =
      write_header("int64.safetensors",
                   "{\"position_ids\":{\"dtype\":\"I64\",\"shape\":[1,2],\"data_offsets\":[0,16]},"
                   "\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[16,20]}}",
                   20);
  sd_safetensors *file = NULL;
  int rc = sd_safetensors_open(path, &file);
  CHECK(rc == 0 && sd_safetensors_count(file) == 1 &&
            sd_safetensors_find(file, "position_ids") == NULL &&
            sd_safetensors_find(file, "w") != NULL,
        "I64 tensor skipped: %s", sd_error_message());
  if (rc == 0)
    sd_safetensors_close(file);
  path = write_header(
      "int64bad.safetensors",
      "{\"position_ids\":{\"dtype\":\"I64\",\"shape\":[1,2],\"data_offsets\":[0,8]}}", 8);
  expect_open_error(path, "tensor 'position_ids'", "x I64 = 16 bytes", NULL);
}

static void test_tensor_map(void) {
  sd_tensor_map *map = sd_tensor_map_create();
  CHECK(map != NULL, "create");
  if (!map)
    return;
  float a[6] = {0}, b[6] = {0};
  int64_t shape23[2] = {2, 3}, shape6[1] = {6};
  char name[64];
  int ok = 1;
  for (int i = 0; i < 1000 && ok; i++) {
    snprintf(name, sizeof name, "layer.%d.weight", i);
    ok = sd_tensor_map_put(map, name, SD_DTYPE_F32, 2, shape23, a) == 0;
  }
  CHECK(ok && sd_tensor_map_count(map) == 1000, "1000 puts");
  CHECK(sd_tensor_map_put(map, "layer.7.weight", SD_DTYPE_F16, 1, shape6, b) == 0, "replace");
  const sd_st_tensor *t = sd_tensor_map_get(map, "layer.7.weight");
  CHECK(sd_tensor_map_count(map) == 1000 && t && t->dtype == SD_DTYPE_F16 && t->ndim == 1 &&
            t->shape[0] == 6 && t->bytes == 12 && t->data == b &&
            strcmp(t->name, "layer.7.weight") == 0 && sd_tensor_map_at(map, 7) == t,
        "replaced record keeps its place");
  t = sd_tensor_map_get(map, "layer.999.weight");
  CHECK(t && t->data == a && t->bytes == 24 && sd_tensor_map_at(map, 999) == t, "lookup");
  CHECK(sd_tensor_map_get(map, "layer.1000.weight") == NULL && sd_tensor_map_at(map, 1000) == NULL,
        "absent");
  int64_t shape5[5] = {1, 1, 1, 1, 1};
  CHECK(sd_tensor_map_put(map, "five", SD_DTYPE_F32, 5, shape5, a) == -1 &&
            strstr(sd_error_message(), "'five'"),
        "too many dims rejected");
  sd_tensor_map_free(map);
}

int main(void) {
  snprintf(scratch, sizeof scratch, "/tmp/sd_test_safetensors.XXXXXX");
  if (!mkdtemp(scratch)) {
    perror("mkdtemp");
    return 1;
  }
  test_round_trip();
  test_bad_files();
  test_tensor_map();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", scratch);
  return sd_test_finish();
}
