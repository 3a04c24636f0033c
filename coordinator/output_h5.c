/* HDF5 helpers of the output file: error capture, string types, attributes and row-wise dataset
 * access (see output_internal.h). */
#include "output_internal.h"

#include "kernels/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

const char *const sd_output_dataset_names[SD_DS_COUNT] = {
    [SD_DS_IMAGES] = "images",
    [SD_DS_LATENTS] = "latents",
    [SD_DS_PROMPT_INDEX] = "prompt_index",
    [SD_DS_SEED] = "seed",
    [SD_DS_GUIDANCE] = "guidance_scale",
    [SD_DS_STEPS] = "steps",
    [SD_DS_SCHEDULER] = "scheduler",
    [SD_DS_STATUS] = "status",
    [SD_DS_FAILURE] = "failure",
    [SD_DS_CHECKSUM] = "item_checksum",
    [SD_DS_INPUT_INDEX] = "input_index",
    [SD_DS_STRENGTH] = "strength",
    [SD_DS_NOISE_LEVEL] = "noise_level",
};

void sd_h5_silence(void) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

typedef struct innermost_error {
  char text[256];
} innermost_error;

static herr_t take_innermost(unsigned n, const H5E_error2_t *err, void *data) {
  innermost_error *out = data;
  if (n == 0 && err->desc)
    snprintf(out->text, sizeof out->text, "%s", err->desc);
  return 0;
}

int sd_h5_error_set(const char *src_file, int src_line, const char *fmt, ...) {
  char message[768];
  va_list args;
  va_start(args, fmt);
  vsnprintf(message, sizeof message, fmt, args);
  va_end(args);
  innermost_error inner = {{0}};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_innermost, &inner);
  H5Eclear2(H5E_DEFAULT);
  if (inner.text[0])
    return sd_error_set(src_file, src_line, "%s (HDF5: %s)", message, inner.text);
  return sd_error_set(src_file, src_line, "%s", message);
}

hid_t sd_h5_fixed_string_type(size_t len) {
  hid_t type = H5Tcopy(H5T_C_S1);
  if (type < 0)
    return SD_H5_ERROR("cannot make a string type");
  if (H5Tset_size(type, len) < 0 || H5Tset_strpad(type, H5T_STR_NULLPAD) < 0 ||
      H5Tset_cset(type, H5T_CSET_UTF8) < 0) {
    H5Tclose(type);
    return SD_H5_ERROR("cannot make a %zu-byte string type", len);
  }
  return type;
}

hid_t sd_h5_vlen_string_type(void) {
  hid_t type = H5Tcopy(H5T_C_S1);
  if (type < 0)
    return SD_H5_ERROR("cannot make a string type");
  if (H5Tset_size(type, H5T_VARIABLE) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0) {
    H5Tclose(type);
    return SD_H5_ERROR("cannot make a variable-length string type");
  }
  return type;
}

static int attr_write(hid_t obj, const char *name, hid_t type, const void *value) {
  int rc = -1;
  hid_t space = H5Screate(H5S_SCALAR);
  if (space < 0)
    return SD_H5_ERROR("attribute '%s': cannot make a dataspace", name);
  hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (attr < 0) {
    SD_H5_ERROR("attribute '%s': cannot create", name);
    goto out_space;
  }
  if (H5Awrite(attr, type, value) < 0) {
    SD_H5_ERROR("attribute '%s': cannot write", name);
    goto out_attr;
  }
  rc = 0;
out_attr:
  H5Aclose(attr);
out_space:
  H5Sclose(space);
  return rc;
}

int sd_h5_attr_write_string(hid_t obj, const char *name, const char *value) {
  hid_t type = sd_h5_vlen_string_type();
  if (type < 0)
    return -1;
  const char *text = value ? value : "";
  int rc = attr_write(obj, name, type, &text);
  H5Tclose(type);
  return rc;
}

int sd_h5_attr_write_fixed_string(hid_t obj, const char *name, const char *value) {
  const char *text = value ? value : "";
  /* NUL-padded: a string that fills its field needs no NUL (HDF5 wants at least one byte) */
  size_t len = strlen(text);
  hid_t type = sd_h5_fixed_string_type(len ? len : 1);
  if (type < 0)
    return -1;
  int rc = attr_write(obj, name, type, text);
  H5Tclose(type);
  return rc;
}

int sd_h5_attr_write_int(hid_t obj, const char *name, int64_t value) {
  return attr_write(obj, name, H5T_STD_I64LE, &value);
}

int sd_h5_attr_read_string(hid_t obj, const char *name, char **out) {
  *out = NULL;
  int rc = -1;
  hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
  if (attr < 0)
    return SD_H5_ERROR("attribute '%s' is missing", name);
  hid_t file_type = H5Aget_type(attr);
  if (file_type < 0) {
    SD_H5_ERROR("attribute '%s': cannot read its type", name);
    goto out_attr;
  }
  if (H5Tget_class(file_type) != H5T_STRING) {
    SD_ERROR("attribute '%s' is not a string", name);
    goto out_type;
  }
  htri_t variable = H5Tis_variable_str(file_type);
  if (variable > 0) {
    hid_t mem_type = sd_h5_vlen_string_type();
    if (mem_type < 0)
      goto out_type;
    char *value = NULL;
    if (H5Aread(attr, mem_type, &value) < 0) {
      SD_H5_ERROR("attribute '%s': cannot read", name);
      H5Tclose(mem_type);
      goto out_type;
    }
    H5Tclose(mem_type);
    *out = strdup(value ? value : "");
    H5free_memory(value);
  } else {
    size_t len = H5Tget_size(file_type);
    hid_t mem_type = sd_h5_fixed_string_type(len + 1);
    char *value = calloc(len + 1, 1);
    if (mem_type < 0 || !value) {
      free(value);
      if (mem_type >= 0)
        H5Tclose(mem_type);
      goto out_type;
    }
    if (H5Aread(attr, mem_type, value) < 0) {
      SD_H5_ERROR("attribute '%s': cannot read", name);
      free(value);
      H5Tclose(mem_type);
      goto out_type;
    }
    H5Tclose(mem_type);
    *out = value;
  }
  if (!*out) {
    SD_ERROR("attribute '%s': out of memory", name);
    goto out_type;
  }
  rc = 0;
out_type:
  H5Tclose(file_type);
out_attr:
  H5Aclose(attr);
  return rc;
}

int sd_h5_attr_read_int(hid_t obj, const char *name, int64_t *out) {
  hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
  if (attr < 0)
    return SD_H5_ERROR("attribute '%s' is missing", name);
  hid_t file_type = H5Aget_type(attr);
  int rc = 0;
  if (file_type < 0 || H5Tget_class(file_type) != H5T_INTEGER)
    rc = SD_ERROR("attribute '%s' is not an integer", name);
  else if (H5Aread(attr, H5T_NATIVE_INT64, out) < 0)
    rc = SD_H5_ERROR("attribute '%s': cannot read", name);
  if (file_type >= 0)
    H5Tclose(file_type);
  H5Aclose(attr);
  return rc;
}

int sd_h5_dataset_open(hid_t file, const char *name, hid_t dapl, sd_h5_dataset *ds) {
  *ds = (sd_h5_dataset){.id = -1, .space = -1, .name = name};
  ds->id = H5Dopen2(file, name, dapl);
  if (ds->id < 0)
    return SD_H5_ERROR("dataset '%s' is missing", name);
  ds->space = H5Dget_space(ds->id);
  int rank = ds->space < 0 ? -1 : H5Sget_simple_extent_ndims(ds->space);
  if (rank < 1 || rank > 4) {
    sd_h5_dataset_close(ds);
    return SD_ERROR("dataset '%s': expected 1 to 4 dimensions, found %d", name, rank);
  }
  ds->rank = rank;
  if (H5Sget_simple_extent_dims(ds->space, ds->dims, NULL) < 0) {
    SD_H5_ERROR("dataset '%s': cannot read its dimensions", name);
    sd_h5_dataset_close(ds);
    return -1;
  }
  return 0;
}

void sd_h5_dataset_close(sd_h5_dataset *ds) {
  if (ds->space >= 0)
    H5Sclose(ds->space);
  if (ds->id >= 0)
    H5Dclose(ds->id);
  ds->space = ds->id = -1;
}

/* Selects rows [start, start + count) in ds->space and makes the matching memory space. */
static hid_t select_rows(const sd_h5_dataset *ds, int64_t start, int64_t count) {
  if (start < 0 || count < 1 || (hsize_t)(start + count) > ds->dims[0])
    return SD_ERROR("dataset '%s': rows [%lld, %lld) outside its %llu rows", ds->name,
                    (long long)start, (long long)(start + count), (unsigned long long)ds->dims[0]);
  hsize_t offset[4] = {(hsize_t)start, 0, 0, 0};
  hsize_t counts[4];
  for (int i = 0; i < ds->rank; i++)
    counts[i] = ds->dims[i];
  counts[0] = (hsize_t)count;
  if (H5Sselect_hyperslab(ds->space, H5S_SELECT_SET, offset, NULL, counts, NULL) < 0)
    return SD_H5_ERROR("dataset '%s': cannot select rows", ds->name);
  hid_t mem = H5Screate_simple(ds->rank, counts, NULL);
  if (mem < 0)
    return SD_H5_ERROR("dataset '%s': cannot make a memory dataspace", ds->name);
  return mem;
}

int sd_h5_dataset_read_rows(const sd_h5_dataset *ds, hid_t mem_type, int64_t start, int64_t count,
                            void *buf) {
  hid_t mem = select_rows(ds, start, count);
  if (mem < 0)
    return -1;
  int rc = 0;
  if (H5Dread(ds->id, mem_type, mem, ds->space, H5P_DEFAULT, buf) < 0)
    rc = SD_H5_ERROR("dataset '%s': cannot read rows [%lld, %lld)", ds->name, (long long)start,
                     (long long)(start + count));
  H5Sclose(mem);
  return rc;
}

int sd_h5_dataset_write_rows(const sd_h5_dataset *ds, hid_t mem_type, int64_t start, int64_t count,
                             const void *buf) {
  hid_t mem = select_rows(ds, start, count);
  if (mem < 0)
    return -1;
  int rc = 0;
  if (H5Dwrite(ds->id, mem_type, mem, ds->space, H5P_DEFAULT, buf) < 0)
    rc = SD_H5_ERROR("dataset '%s': cannot write rows [%lld, %lld)", ds->name, (long long)start,
                     (long long)(start + count));
  H5Sclose(mem);
  return rc;
}

void sd_output_copy_fixed(char *dst, size_t len, const char *src) {
  memset(dst, 0, len);
  size_t n = src ? strlen(src) : 0;
  if (n > len - 1) {
    n = len - 1;
    /* back off to the start of a UTF-8 character */
    while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
      n--;
  }
  if (n)
    memcpy(dst, src, n);
}

void sd_output_time_now(char *buf) {
  time_t now = time(NULL);
  struct tm utc;
  memset(buf, 0, SD_OUTPUT_TIME_LEN);
  if (gmtime_r(&now, &utc))
    strftime(buf, SD_OUTPUT_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &utc);
}

/* Little-endian bytes of v, n bytes, at p; returns the next position. */
static unsigned char *put_le(unsigned char *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    *p++ = (unsigned char)(v >> (8 * i));
  return p;
}

void sd_output_record_set_meta(sd_output_record *rec, const sd_output_item_meta *meta) {
  rec->prompt_index = meta->prompt_index;
  rec->seed = meta->seed;
  rec->guidance_scale = meta->guidance_scale;
  rec->steps = meta->steps;
  sd_output_copy_fixed(rec->scheduler, SD_OUTPUT_SCHEDULER_LEN, meta->scheduler);
  rec->input_index = meta->has_input ? meta->input_index : -1;
  rec->strength = meta->has_input ? meta->strength : 1.0f;
  rec->noise_level = meta->has_input ? meta->noise_level : -1;
}

uint32_t sd_output_row_checksum(int64_t index, const sd_output_record *rec,
                                const char failure[SD_OUTPUT_FAILURE_LEN], int version) {
  unsigned char row[8 + 4 + 8 + 4 + 4 + SD_OUTPUT_SCHEDULER_LEN + 1 + SD_OUTPUT_FAILURE_LEN + 12];
  uint32_t guidance_bits;
  memcpy(&guidance_bits, &rec->guidance_scale, sizeof guidance_bits);
  unsigned char *p = row;
  p = put_le(p, (uint64_t)index, 8);
  p = put_le(p, (uint32_t)rec->prompt_index, 4);
  p = put_le(p, (uint64_t)rec->seed, 8);
  p = put_le(p, guidance_bits, 4);
  p = put_le(p, (uint32_t)rec->steps, 4);
  memcpy(p, rec->scheduler, SD_OUTPUT_SCHEDULER_LEN);
  p += SD_OUTPUT_SCHEDULER_LEN;
  *p++ = rec->status;
  memcpy(p, failure, SD_OUTPUT_FAILURE_LEN);
  p += SD_OUTPUT_FAILURE_LEN;
  if (version >= 3) {
    uint32_t strength_bits;
    memcpy(&strength_bits, &rec->strength, sizeof strength_bits);
    p = put_le(p, (uint32_t)rec->input_index, 4);
    p = put_le(p, strength_bits, 4);
    p = put_le(p, (uint32_t)rec->noise_level, 4);
  }
  return (uint32_t)crc32(0L, row, (uInt)(p - row));
}
