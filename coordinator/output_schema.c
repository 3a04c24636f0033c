/* The output file's schema tables and the checks that hold a file to them (output_schema.h).
 * Everything here looks at types, dataspaces and storage layouts only; values are read after the
 * checks pass, into buffers sized by the schema, never by the file. */
#include "output_schema.h"

#include "jobs/sha256.h"
#include "kernels/error.h"

#include <stdlib.h>
#include <string.h>

#define V1  SD_SCHEMA_V1
#define V2  SD_SCHEMA_V2_ON /* version 2 and later */
#define V3  SD_SCHEMA_V3
#define ALL SD_SCHEMA_ALL

const sd_output_attr_desc sd_output_attrs[SD_ATTR_COUNT] = {
    [SD_ATTR_FORMAT] = {"format", SD_ATTR_STRING, 0, 64, ALL},
    [SD_ATTR_SCHEMA_VERSION] = {"schema_version", SD_ATTR_INT, 1, 1000, ALL},
    [SD_ATTR_JOB_YAML] = {"job_yaml", SD_ATTR_STRING, 0, SD_OUTPUT_MAX_TEXT, ALL},
    [SD_ATTR_JOB_PATH] = {"job_path", SD_ATTR_STRING, 0, 4096, ALL},
    [SD_ATTR_JOB_HASH] = {"job_hash", SD_ATTR_STRING, 0, 256, ALL},
    [SD_ATTR_MODEL] = {"model", SD_ATTR_STRING, 0, 4096, ALL},
    [SD_ATTR_MODEL_IDENTITY] = {"model_identity", SD_ATTR_STRING, 0, 256, ALL},
    /* JSON of the job's LoRA and embedding files; schema 1 files written before adapters existed
     * have none */
    [SD_ATTR_ADAPTERS] = {"adapters", SD_ATTR_STRING, 0, SD_OUTPUT_MAX_TEXT, ALL, V1},
    [SD_ATTR_WIDTH] = {"width", SD_ATTR_INT, 1, SD_OUTPUT_MAX_SIDE, ALL},
    [SD_ATTR_HEIGHT] = {"height", SD_ATTR_INT, 1, SD_OUTPUT_MAX_SIDE, ALL},
    [SD_ATTR_LATENT_CHANNELS] = {"latent_channels", SD_ATTR_INT, 0, 4096, ALL},
    [SD_ATTR_LATENT_HEIGHT] = {"latent_height", SD_ATTR_INT, 0, SD_OUTPUT_MAX_SIDE, ALL},
    [SD_ATTR_LATENT_WIDTH] = {"latent_width", SD_ATTR_INT, 0, SD_OUTPUT_MAX_SIDE, ALL},
    [SD_ATTR_SAVE_LATENTS] = {"save_latents", SD_ATTR_INT, 0, 1, ALL},
    [SD_ATTR_METADATA_COMPLETE] = {"metadata_complete", SD_ATTR_INT, 0, 1, ALL},
    [SD_ATTR_CREATED] = {"created", SD_ATTR_STRING, 0, SD_OUTPUT_TIME_LEN, ALL},
    [SD_ATTR_SDBATCH_VERSION] = {"sdbatch_version", SD_ATTR_STRING, 0, 64, ALL},
    [SD_ATTR_N_INPUTS] = {"n_inputs", SD_ATTR_INT, 0, SD_OUTPUT_MAX_INPUTS, V3},
    [SD_ATTR_HEADER_CHECKSUM] = {"header_sha256", SD_ATTR_STRING, 64, 64, V2},
};

const sd_output_dataset_desc sd_output_datasets[SD_DS_COUNT] = {
    [SD_DS_IMAGES] = {"images", SD_ELEM_UINT, 1, SD_SHAPE_IMAGES, ALL, V2},
    [SD_DS_LATENTS] = {"latents", SD_ELEM_FLOAT, 4, SD_SHAPE_LATENTS, ALL, V2},
    [SD_DS_PROMPT_INDEX] = {"prompt_index", SD_ELEM_INT, 4, SD_SHAPE_ITEMS, ALL, 0},
    [SD_DS_SEED] = {"seed", SD_ELEM_INT, 8, SD_SHAPE_ITEMS, ALL, 0},
    [SD_DS_GUIDANCE] = {"guidance_scale", SD_ELEM_FLOAT, 4, SD_SHAPE_ITEMS, ALL, 0},
    [SD_DS_STEPS] = {"steps", SD_ELEM_INT, 4, SD_SHAPE_ITEMS, ALL, 0},
    [SD_DS_SCHEDULER] = {"scheduler", SD_ELEM_FIXED_STRING, SD_OUTPUT_SCHEDULER_LEN, SD_SHAPE_ITEMS,
                         ALL, 0},
    [SD_DS_STATUS] = {"status", SD_ELEM_UINT, 1, SD_SHAPE_ITEMS, ALL, 0},
    [SD_DS_FAILURE] = {"failure", SD_ELEM_FIXED_STRING, SD_OUTPUT_FAILURE_LEN, SD_SHAPE_ITEMS, ALL,
                       0},
    [SD_DS_CHECKSUM] = {"item_checksum", SD_ELEM_UINT, 4, SD_SHAPE_ITEMS, V2, 0},
    [SD_DS_INPUT_INDEX] = {"input_index", SD_ELEM_INT, 4, SD_SHAPE_ITEMS, V3, 0},
    [SD_DS_STRENGTH] = {"strength", SD_ELEM_FLOAT, 4, SD_SHAPE_ITEMS, V3, 0},
    [SD_DS_NOISE_LEVEL] = {"noise_level", SD_ELEM_INT, 4, SD_SHAPE_ITEMS, V3, 0},
};

const sd_output_dataset_desc sd_output_inputs_desc = {
    "inputs", SD_ELEM_STRING, 0, SD_SHAPE_INPUTS, V3, V3};
const sd_output_dataset_desc sd_output_input_sha256_desc = {
    "input_sha256", SD_ELEM_FIXED_STRING, 65, SD_SHAPE_INPUTS, V3, V3};

const sd_output_dataset_desc sd_output_prompts_desc = {
    "prompts", SD_ELEM_STRING, 0, SD_SHAPE_PROMPTS, ALL, V2};
const sd_output_dataset_desc sd_output_updated_desc = {
    "updated", SD_ELEM_FIXED_STRING, SD_OUTPUT_TIME_LEN, SD_SHAPE_SCALAR, ALL, 0};

static bool in_version(unsigned versions, int version) {
  return version >= 0 && version < 32 && (versions >> version) & 1u;
}

int sd_output_attr_check(hid_t obj, const sd_output_attr_desc *d, int version, bool *is_vlen) {
  if (is_vlen)
    *is_vlen = false;
  htri_t exists = H5Aexists(obj, d->name);
  if (exists < 0)
    return SD_H5_ERROR("attribute '%s': cannot look it up", d->name);
  if (exists == 0)
    return SD_ERROR("attribute '%s' is missing", d->name);
  hid_t attr = H5Aopen(obj, d->name, H5P_DEFAULT);
  if (attr < 0)
    return SD_H5_ERROR("attribute '%s': cannot open it", d->name);
  int rc = -1;
  hid_t space = H5Aget_space(attr), type = H5Aget_type(attr);
  if (space < 0 || type < 0) {
    SD_H5_ERROR("attribute '%s': cannot read its type", d->name);
    goto out;
  }
  if (H5Sget_simple_extent_type(space) != H5S_SCALAR) {
    SD_ERROR("attribute '%s' holds %lld values, expected a single one", d->name,
             (long long)H5Sget_simple_extent_npoints(space));
    goto out;
  }
  H5T_class_t cls = H5Tget_class(type);
  size_t size = H5Tget_size(type);
  if (d->kind == SD_ATTR_INT) {
    if (cls != H5T_INTEGER || size < 1 || size > 8) {
      SD_ERROR("attribute '%s' is not an integer of at most 8 bytes", d->name);
      goto out;
    }
  } else {
    htri_t vlen = cls == H5T_STRING ? H5Tis_variable_str(type) : 0;
    if (cls != H5T_STRING || vlen < 0) {
      SD_ERROR("attribute '%s' is not a string", d->name);
      goto out;
    }
    if (vlen > 0 && version != 1) {
      SD_ERROR("attribute '%s' is a variable-length string; schema version %d stores fixed-length "
               "strings only",
               d->name, version);
      goto out;
    }
    if (vlen == 0 && (size < 1 || size > (size_t)d->max + 1)) {
      SD_ERROR("attribute '%s' is a %zu-byte string, more than the %lld bytes allowed", d->name,
               size, (long long)d->max);
      goto out;
    }
    if (is_vlen)
      *is_vlen = vlen > 0;
  }
  rc = 0;
out:
  if (type >= 0)
    H5Tclose(type);
  if (space >= 0)
    H5Sclose(space);
  H5Aclose(attr);
  return rc;
}

int sd_output_attr_get_int(hid_t obj, const sd_output_attr_desc *d, int version, int64_t *out) {
  *out = 0;
  SD_TRY(sd_output_attr_check(obj, d, version, NULL));
  hid_t attr = H5Aopen(obj, d->name, H5P_DEFAULT);
  if (attr < 0)
    return SD_H5_ERROR("attribute '%s': cannot open it", d->name);
  int64_t value = 0;
  herr_t rc = H5Aread(attr, H5T_NATIVE_INT64, &value);
  H5Aclose(attr);
  if (rc < 0)
    return SD_H5_ERROR("attribute '%s': cannot read it", d->name);
  if (value < d->min || value > d->max)
    return SD_ERROR("attribute '%s' is %lld, outside [%lld, %lld]", d->name, (long long)value,
                    (long long)d->min, (long long)d->max);
  *out = value;
  return 0;
}

/* Whether s[0, n) is valid UTF-8 (no overlong forms, no surrogates). */
static bool utf8_ok(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > n)
      return false;
    uint32_t cp = len == 1 ? c : c & (0x7Fu >> len);
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80)
        return false;
      cp = cp << 6 | (s[i + k] & 0x3Fu);
    }
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

bool sd_output_fixed_string_ok(const char *field, size_t len) {
  const char *end = memchr(field, 0, len);
  if (!end)
    return false;
  for (const char *p = end; p < field + len; p++)
    if (*p)
      return false;
  return utf8_ok((const unsigned char *)field, (size_t)(end - field));
}

int sd_output_attr_get_string(hid_t obj, const sd_output_attr_desc *d, int version, char **out) {
  *out = NULL;
  bool vlen = false;
  SD_TRY(sd_output_attr_check(obj, d, version, &vlen));
  hid_t attr = H5Aopen(obj, d->name, H5P_DEFAULT);
  if (attr < 0)
    return SD_H5_ERROR("attribute '%s': cannot open it", d->name);
  int rc = -1;
  hid_t file_type = H5Aget_type(attr), mem_type = -1;
  char *value = NULL;
  if (file_type < 0) {
    SD_H5_ERROR("attribute '%s': cannot read its type", d->name);
    goto out;
  }
  if (vlen) {
    if ((mem_type = sd_h5_vlen_string_type()) < 0)
      goto out;
    char *heap_value = NULL;
    if (H5Aread(attr, mem_type, &heap_value) < 0) {
      SD_H5_ERROR("attribute '%s': cannot read it", d->name);
      goto out;
    }
    size_t n = heap_value ? strlen(heap_value) : 0;
    if (n > (size_t)d->max) {
      SD_ERROR("attribute '%s' is %zu bytes, more than the %lld allowed", d->name, n,
               (long long)d->max);
      H5free_memory(heap_value);
      goto out;
    }
    value = strdup(heap_value ? heap_value : "");
    H5free_memory(heap_value);
  } else {
    /* the file's own type (ASCII or UTF-8, any padding): no conversion; the extra byte of the
     * buffer terminates a string that fills its field */
    size_t size = H5Tget_size(file_type);
    if ((mem_type = H5Tcopy(file_type)) < 0) {
      SD_H5_ERROR("attribute '%s': cannot copy its type", d->name);
      goto out;
    }
    value = calloc(size + 1, 1);
    if (value && H5Aread(attr, mem_type, value) < 0) {
      SD_H5_ERROR("attribute '%s': cannot read it", d->name);
      goto out;
    }
  }
  if (!value) {
    SD_ERROR("attribute '%s': out of memory", d->name);
    goto out;
  }
  size_t n = strlen(value);
  if (!utf8_ok((const unsigned char *)value, n)) {
    SD_ERROR("attribute '%s' is not valid UTF-8", d->name);
    goto out;
  }
  if ((int64_t)n < d->min) {
    SD_ERROR("attribute '%s' is %zu bytes, expected at least %lld", d->name, n, (long long)d->min);
    goto out;
  }
  *out = value;
  value = NULL;
  rc = 0;
out:
  free(value);
  if (mem_type >= 0)
    H5Tclose(mem_type);
  if (file_type >= 0)
    H5Tclose(file_type);
  H5Aclose(attr);
  return rc;
}

/* The expected rank and dims of rule, and the chunk dims (0 rank: contiguous expected). */
static int expected_dims(sd_shape_rule rule, const sd_output_shape *s, hsize_t *dims) {
  switch (rule) {
  case SD_SHAPE_SCALAR:
    return 0;
  case SD_SHAPE_ITEMS:
    dims[0] = (hsize_t)s->n_items;
    return 1;
  case SD_SHAPE_PROMPTS:
    dims[0] = (hsize_t)s->n_prompts;
    return 1;
  case SD_SHAPE_INPUTS:
    dims[0] = (hsize_t)s->n_inputs;
    dims[1] = SD_OUTPUT_INPUT_FILES;
    return 2;
  case SD_SHAPE_IMAGES:
    dims[0] = (hsize_t)s->n_items;
    dims[1] = (hsize_t)s->height;
    dims[2] = (hsize_t)s->width;
    dims[3] = 3;
    return 4;
  case SD_SHAPE_LATENTS:
    dims[0] = (hsize_t)s->n_items;
    dims[1] = (hsize_t)s->latent_channels;
    dims[2] = (hsize_t)s->latent_h;
    dims[3] = (hsize_t)s->latent_w;
    return 4;
  }
  return 0;
}

static void dims_text(int rank, const hsize_t *dims, char *buf, size_t size) {
  int n = snprintf(buf, size, "(");
  for (int i = 0; i < rank && n > 0 && (size_t)n < size; i++)
    n += snprintf(buf + n, size - (size_t)n, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
  if (n > 0 && (size_t)n < size)
    snprintf(buf + n, size - (size_t)n, ")");
}

/* Checks the element type of ds against d; *string_size receives a string's fixed length. */
static int check_type(hid_t type, const sd_output_dataset_desc *d, int version,
                      size_t *string_size) {
  H5T_class_t cls = H5Tget_class(type);
  size_t size = H5Tget_size(type);
  switch (d->elem) {
  case SD_ELEM_UINT:
  case SD_ELEM_INT: {
    H5T_sign_t sign = cls == H5T_INTEGER ? H5Tget_sign(type) : H5T_SGN_ERROR;
    bool want_signed = d->elem == SD_ELEM_INT;
    if (cls != H5T_INTEGER || size != d->size || (sign == H5T_SGN_2) != want_signed)
      return SD_ERROR("dataset '%s' is not of %s %zu-byte integers", d->name,
                      want_signed ? "signed" : "unsigned", d->size);
    return 0;
  }
  case SD_ELEM_FLOAT:
    if (cls != H5T_FLOAT || size != d->size)
      return SD_ERROR("dataset '%s' is not of %zu-byte floats", d->name, d->size);
    return 0;
  case SD_ELEM_FIXED_STRING:
  case SD_ELEM_STRING: {
    htri_t vlen = cls == H5T_STRING ? H5Tis_variable_str(type) : -1;
    if (vlen < 0)
      return SD_ERROR("dataset '%s' is not of strings", d->name);
    if (H5Tget_cset(type) != H5T_CSET_UTF8)
      return SD_ERROR("dataset '%s' is not of UTF-8 strings", d->name);
    if (vlen > 0) {
      if (d->elem == SD_ELEM_FIXED_STRING || version != 1)
        return SD_ERROR("dataset '%s' holds variable-length strings; schema version %d stores "
                        "fixed-length ones",
                        d->name, version);
      *string_size = 0;
      return 0;
    }
    if (d->size ? size != d->size : (size < 1 || size > SD_OUTPUT_MAX_PROMPT))
      return SD_ERROR("dataset '%s' holds %zu-byte strings, expected %zu", d->name, size,
                      d->size ? d->size : (size_t)SD_OUTPUT_MAX_PROMPT);
    *string_size = size;
    return 0;
  }
  }
  return SD_ERROR("dataset '%s': unknown element kind", d->name);
}

/* Checks layout, chunking, filters and that the storage fits in the file. */
static int check_storage(const sd_h5_dataset *ds, const sd_output_dataset_desc *d, int version,
                         size_t elem_size, uint64_t file_size) {
  hid_t dcpl = H5Dget_create_plist(ds->id);
  if (dcpl < 0)
    return SD_H5_ERROR("dataset '%s': cannot read its creation properties", d->name);
  int rc = -1;
  H5D_layout_t layout = H5Pget_layout(dcpl);
  bool want_chunked = d->shape == SD_SHAPE_IMAGES || in_version(d->fletcher32, version);
  uint64_t rows = 1, row_bytes = elem_size;
  for (int i = 0; i < ds->rank; i++) {
    if (i == 0)
      rows = ds->dims[0];
    else
      row_bytes *= ds->dims[i];
  }
  if (want_chunked) {
    hsize_t chunk[H5S_MAX_RANK];
    if (layout != H5D_CHUNKED || H5Pget_chunk(dcpl, H5S_MAX_RANK, chunk) != ds->rank) {
      SD_ERROR("dataset '%s' is not chunked as the schema says", d->name);
      goto out;
    }
    /* images and latents: one item per chunk; prompts: whole rows */
    bool per_item = d->shape == SD_SHAPE_IMAGES || d->shape == SD_SHAPE_LATENTS;
    if (chunk[0] < 1 || chunk[0] > ds->dims[0] || (per_item && chunk[0] != 1)) {
      SD_ERROR("dataset '%s' has chunks of %llu rows", d->name, (unsigned long long)chunk[0]);
      goto out;
    }
    for (int i = 1; i < ds->rank; i++)
      if (chunk[i] != ds->dims[i]) {
        SD_ERROR("dataset '%s' has chunks that are not whole rows", d->name);
        goto out;
      }
    if (in_version(d->fletcher32, version)) {
      unsigned flags = 0;
      size_t n_values = 0;
      unsigned config = 0;
      if (H5Pget_filter_by_id2(dcpl, H5Z_FILTER_FLETCHER32, &flags, &n_values, NULL, 0, NULL,
                               &config) < 0) {
        H5Eclear2(H5E_DEFAULT);
        SD_ERROR("dataset '%s' has no Fletcher32 checksum filter (schema version %d has one)",
                 d->name, version);
        goto out;
      }
    }
    /* every chunk is allocated at creation: the file holds at least rows / chunk rows of them,
     * each at least 1/1032 of its size when deflated (zlib's largest ratio; schema 2's prompts,
     * padded to the longest one) */
    uint64_t chunk_bytes = row_bytes * chunk[0];
    unsigned deflate_flags = 0;
    size_t deflate_values = 0;
    unsigned deflate_config = 0;
    if (H5Pget_filter_by_id2(dcpl, H5Z_FILTER_DEFLATE, &deflate_flags, &deflate_values, NULL, 0,
                             NULL, &deflate_config) >= 0)
      chunk_bytes /= 1032;
    else
      H5Eclear2(H5E_DEFAULT);
    uint64_t n_chunks = (rows + chunk[0] - 1) / chunk[0];
    if (chunk_bytes && n_chunks > file_size / chunk_bytes) {
      SD_ERROR("dataset '%s' declares %llu rows of %llu bytes, more than the file's %llu bytes "
               "can hold",
               d->name, (unsigned long long)rows, (unsigned long long)row_bytes,
               (unsigned long long)file_size);
      goto out;
    }
  } else {
    if (layout != H5D_CONTIGUOUS) {
      SD_ERROR("dataset '%s' is not contiguous as the schema says", d->name);
      goto out;
    }
    haddr_t offset = H5Dget_offset(ds->id);
    H5Eclear2(H5E_DEFAULT);
    uint64_t bytes = rows * row_bytes;
    if (rows && bytes / rows != row_bytes) {
      SD_ERROR("dataset '%s': size overflows", d->name);
      goto out;
    }
    if (offset == HADDR_UNDEF || offset > file_size || bytes > file_size - offset) {
      SD_ERROR("dataset '%s' declares %llu bytes%s, beyond the file's end (%llu bytes)", d->name,
               (unsigned long long)bytes, offset == HADDR_UNDEF ? " with no storage" : "",
               (unsigned long long)file_size);
      goto out;
    }
  }
  rc = 0;
out:
  H5Pclose(dcpl);
  return rc;
}

int sd_output_dataset_open_checked(hid_t file, const sd_output_dataset_desc *d, int version,
                                   const sd_output_shape *shape, uint64_t file_size, hid_t dapl,
                                   sd_h5_dataset *ds, size_t *string_size) {
  *ds = (sd_h5_dataset){.id = -1, .space = -1, .name = d->name};
  size_t fixed = 0;
  htri_t exists = H5Lexists(file, d->name, H5P_DEFAULT);
  if (exists <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return SD_ERROR("dataset '%s' is missing", d->name);
  }
  ds->id = H5Dopen2(file, d->name, dapl);
  if (ds->id < 0)
    return SD_H5_ERROR("dataset '%s': cannot open it", d->name);
  int rc = -1;
  hid_t type = H5Dget_type(ds->id);
  ds->space = H5Dget_space(ds->id);
  if (type < 0 || ds->space < 0) {
    SD_H5_ERROR("dataset '%s': cannot read its type or shape", d->name);
    goto out;
  }
  if (check_type(type, d, version, &fixed) < 0)
    goto out;
  hsize_t want[4] = {0};
  int want_rank = expected_dims(d->shape, shape, want);
  H5S_class_t space_class = H5Sget_simple_extent_type(ds->space);
  int rank = H5Sget_simple_extent_ndims(ds->space);
  hsize_t dims[H5S_MAX_RANK];
  if (rank < 0 || rank > H5S_MAX_RANK || H5Sget_simple_extent_dims(ds->space, dims, NULL) < 0) {
    SD_H5_ERROR("dataset '%s': cannot read its shape", d->name);
    goto out;
  }
  bool same =
      rank == want_rank && (want_rank == 0 ? space_class == H5S_SCALAR : space_class == H5S_SIMPLE);
  for (int i = 0; same && i < rank; i++)
    same = dims[i] == want[i];
  if (!same) {
    char got_text[128], want_text[128];
    dims_text(rank, dims, got_text, sizeof got_text);
    dims_text(want_rank, want, want_text, sizeof want_text);
    SD_ERROR("dataset '%s' has shape %s, expected %s", d->name, got_text, want_text);
    goto out;
  }
  ds->rank = rank;
  for (int i = 0; i < rank; i++)
    ds->dims[i] = dims[i];
  size_t elem_size = fixed ? fixed : H5Tget_size(type);
  if (rank > 0 && check_storage(ds, d, version, elem_size, file_size) < 0)
    goto out;
  if (string_size)
    *string_size = fixed;
  rc = 0;
out:
  if (type >= 0)
    H5Tclose(type);
  if (rc < 0)
    sd_h5_dataset_close(ds);
  return rc;
}

static void hash_le64(sd_sha256 *sha, uint64_t v) {
  unsigned char bytes[8];
  for (int i = 0; i < 8; i++)
    bytes[i] = (unsigned char)(v >> (8 * i));
  sd_sha256_update(sha, bytes, sizeof bytes);
}

void sd_output_header_sha256(const sd_output_header *header, char hex[65]) {
  sd_sha256 sha;
  sd_sha256_init(&sha);
  int version = (int)header->ints[SD_ATTR_SCHEMA_VERSION];
  for (int a = 0; a < SD_ATTR_COUNT; a++) {
    const sd_output_attr_desc *d = &sd_output_attrs[a];
    if (a == SD_ATTR_HEADER_CHECKSUM || !in_version(d->versions, version))
      continue;
    sd_sha256_update(&sha, d->name, strlen(d->name) + 1);
    if (d->kind == SD_ATTR_INT) {
      hash_le64(&sha, (uint64_t)header->ints[a]);
    } else {
      const char *text = header->strings[a] ? header->strings[a] : "";
      hash_le64(&sha, strlen(text));
      sd_sha256_update(&sha, text, strlen(text));
    }
  }
  sd_sha256_final_hex(&sha, hex);
}
