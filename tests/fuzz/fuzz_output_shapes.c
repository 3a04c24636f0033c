/* The HDF5 output reader on files whose shapes are crafted, not only damaged: a good small output
 * is written, then the input's bytes pick schema attributes and datasets and replace each by one
 * of another type, rank or extent (chunked and unallocated when huge, so the file stays small),
 * and the reader (open, records, images, latents, failures, prompts, the chunk index and item
 * checks of inspect --verify) runs on the result, for files of both schema versions. libhdf5
 * only ever sees well-formed files here, so what is fuzzed is sdbatch's checks of what the file
 * claims (docs/security.md; damaged bytes are test_run_mutants' part). */
#include "fuzz.h"

#include "coordinator/output.h"
#include "coordinator/output_schema.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_ITEMS 3
#define SIDE    4

static const char *const prompts[] = {"a red cube", "a lighthouse"};

static int meta(void *ctx, int64_t i, sd_output_item_meta *out) {
  (void)ctx;
  /* schema 3's items name the two inputs, with a strength and no noise level */
  *out = (sd_output_item_meta){(int32_t)(i % 2), 7 + i, 7.5f, 2, "euler", true,
                               (int32_t)(i % 2), 0.5f,  -1};
  return 0;
}

/* The good files, one per schema version, written once per process; the bytes of one are copied
 * for every input. */
static char template_paths[3][64], case_path[64];
static const char *const input_files[] = {"a.png", "m.png", NULL, "b.jpg", "m.png", NULL};
static const char *const input_sha256[] = {
    "1111111111111111111111111111111111111111111111111111111111111111",
    "2222222222222222222222222222222222222222222222222222222222222222",
    NULL,
    "3333333333333333333333333333333333333333333333333333333333333333",
    "2222222222222222222222222222222222222222222222222222222222222222",
    NULL};

static int write_template(int version) {
  char *template_path = template_paths[version - 1];
  snprintf(template_path, sizeof template_paths[0], "/tmp/sd_fuzz_output_%d_v%d.h5", (int)getpid(),
           version);
  sd_output_spec spec = {.path = template_path,
                         .schema_version = version,
                         .n_items = N_ITEMS,
                         .width = SIDE,
                         .height = SIDE,
                         .latent_channels = 4,
                         .latent_h = 1,
                         .latent_w = 1,
                         .save_latents = true,
                         .job_yaml = "model: m\n",
                         .job_hash = "ab",
                         .model_path = "m",
                         .model_identity = "id",
                         .n_prompts = 2,
                         .prompts = prompts,
                         .job_path = "job.yaml",
                         .item_meta = meta,
                         .n_inputs = version >= 3 ? 2 : 0,
                         .input_files = input_files,
                         .input_sha256 = input_sha256};
  sd_output *o = NULL;
  if (sd_output_open(&spec, &o) < 0)
    return -1;
  uint8_t rgb[SIDE * SIDE * 3] = {0};
  float latents[4] = {0};
  int rc = sd_output_write_done(o, 0, NULL, rgb, latents);
  if (rc == 0)
    rc = sd_output_write_failed(o, 1, NULL, "out of memory");
  return sd_output_close(o) < 0 ? -1 : rc;
}

static int copy_template(int version) {
  FILE *in = fopen(template_paths[version - 1], "rb"), *out = fopen(case_path, "wb");
  char buf[65536];
  size_t n;
  int rc = in && out ? 0 : -1;
  while (rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
    if (fwrite(buf, 1, n, out) != n)
      rc = -1;
  if (in)
    fclose(in);
  if (out && fclose(out) != 0)
    rc = -1;
  return rc;
}

/* A byte reader over the input: 0 once it runs out. */
typedef struct bytes {
  const uint8_t *data;
  size_t size, at;
} bytes;

static unsigned next(bytes *b) {
  return b->at < b->size ? b->data[b->at++] : 0;
}

/* An element type from one byte (the caller closes it). */
static hid_t pick_type(unsigned k) {
  switch (k % 8) {
  case 0:
    return H5Tcopy(H5T_STD_U8LE);
  case 1:
    return H5Tcopy(H5T_STD_I32LE);
  case 2:
    return H5Tcopy(H5T_STD_I64LE);
  case 3:
    return H5Tcopy(H5T_IEEE_F32LE);
  case 4:
    return H5Tcopy(H5T_IEEE_F64BE);
  case 5: {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 1 + k / 8 * 7);
    return t;
  }
  case 6: {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    return t;
  }
  default:
    return H5Tcopy(H5T_STD_U16BE);
  }
}

/* A dimension from one byte: small, or a power of two up to 2^40 (never allocated). */
static hsize_t pick_dim(unsigned k) {
  return k < 200 ? k % 9 : (hsize_t)1 << (k - 200);
}

/* Replaces attribute or dataset `name` of the root group by a crafted one. */
static void replace(hid_t file, const char *name, bool attribute, bytes *b) {
  hid_t type = pick_type(next(b));
  int rank = (int)(next(b) % 4);
  hsize_t dims[3] = {1, 1, 1}, chunk[3] = {1, 1, 1};
  hsize_t elements = 1;
  for (int d = 0; d < rank; d++) {
    dims[d] = pick_dim(next(b));
    elements = dims[d] && elements < ((hsize_t)1 << 40) ? elements * dims[d] : elements;
  }
  hid_t space = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
  if (attribute) {
    if (H5Aexists(file, name) > 0)
      H5Adelete(file, name);
    /* attributes live in the object header: keep them small */
    if (elements <= 4096) {
      hid_t a = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
      if (a >= 0)
        H5Aclose(a);
    }
  } else {
    if (H5Lexists(file, name, H5P_DEFAULT) > 0)
      H5Ldelete(file, name, H5P_DEFAULT);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (rank > 0) {
      H5Pset_chunk(dcpl, rank, chunk);
      H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_INCR);
    }
    hid_t d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d >= 0)
      H5Dclose(d);
    H5Pclose(dcpl);
  }
  H5Sclose(space);
  H5Tclose(type);
}

static void read_everything(void) {
  sd_output_reader *r = NULL;
  if (sd_output_reader_open(case_path, &r) < 0)
    return;
  const sd_output_info *info = sd_output_reader_info(r);
  int64_t n = info->n_items < 64 ? info->n_items : 64;
  sd_output_record *records = calloc((size_t)(n > 0 ? n : 1), sizeof *records);
  if (records && sd_output_read_records(r, 0, n, records) == 0) {
    size_t image_bytes = (size_t)info->width * (size_t)info->height * 3;
    size_t latent_count = (size_t)info->latent_channels * info->latent_h * info->latent_w;
    uint8_t *rgb = image_bytes <= (64u << 20) ? malloc(image_bytes ? image_bytes : 1) : NULL;
    float *latents =
        latent_count <= (16u << 20) ? malloc((latent_count ? latent_count : 1) * 4) : NULL;
    char reason[SD_OUTPUT_FAILURE_LEN], problem[SD_OUTPUT_PROBLEM_LEN];
    for (int64_t i = 0; i < n && i < 4; i++) {
      if (rgb)
        sd_output_read_image(r, i, rgb);
      if (latents && info->save_latents)
        sd_output_read_latents(r, i, latents);
      sd_output_read_failure(r, i, reason);
    }
    /* what inspect --verify and a resume do */
    sd_output_verify_chunk_index(r);
    for (int64_t i = 0; i < n && i < 4; i++)
      sd_output_verify_item(r, i, &records[i], problem);
    free(rgb);
    free(latents);
  }
  free(records);
  for (int64_t i = 0; i < info->n_inputs && i < 4; i++) {
    sd_output_input input;
    if (sd_output_read_input(r, i, &input) == 0)
      sd_output_input_free(&input);
  }
  for (int64_t p = 0; p < info->n_prompts && p < 4; p++) {
    char *prompt = NULL;
    if (sd_output_read_prompt(r, p, &prompt) == 0)
      free(prompt);
  }
  sd_output_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready = 0;
  if (!ready) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    snprintf(case_path, sizeof case_path, "/tmp/sd_fuzz_output_%d_case.h5", (int)getpid());
    ready = write_template(1) == 0 && write_template(2) == 0 && write_template(3) == 0 ? 1 : -1;
  }
  bytes b = {data, size, 0};
  /* the first byte picks the schema: 1 (no header checksum, so crafted attributes reach the
   * shape checks behind it), 2, or 3 (with inputs) */
  int version = 1 + (int)(next(&b) % 3);
  if (ready < 0 || copy_template(version) < 0)
    return 0;
  hid_t file = H5Fopen(case_path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (file < 0)
    return 0;
  /* up to 4 replacements: attributes of the schema table (adapters included), its datasets,
   * prompts and updated */
  for (int step = 0; step < 4 && b.at < b.size; step++) {
    unsigned which = next(&b) % (SD_ATTR_COUNT + SD_DS_COUNT + 4);
    if (which < SD_ATTR_COUNT)
      replace(file, sd_output_attrs[which].name, true, &b);
    else if (which < SD_ATTR_COUNT + SD_DS_COUNT)
      replace(file, sd_output_datasets[which - SD_ATTR_COUNT].name, false, &b);
    else if (which == SD_ATTR_COUNT + SD_DS_COUNT)
      replace(file, sd_output_prompts_desc.name, false, &b);
    else if (which == SD_ATTR_COUNT + SD_DS_COUNT + 2)
      replace(file, sd_output_inputs_desc.name, false, &b);
    else if (which == SD_ATTR_COUNT + SD_DS_COUNT + 3)
      replace(file, sd_output_input_sha256_desc.name, false, &b);
    else
      replace(file, sd_output_updated_desc.name, false, &b);
  }
  H5Fclose(file);
  read_everything();
  return 0;
}
