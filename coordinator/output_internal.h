/* Pieces shared by the writer (output.c, output_create.c) and the reader (output_read.c) of
 * output files: dataset and attribute names, HDF5 error capture, string types and row-wise
 * dataset access. Not part of the public API. */
#ifndef SD_OUTPUT_INTERNAL_H
#define SD_OUTPUT_INTERNAL_H

#include "output.h"

#include <stdbool.h>

#include <hdf5.h>
#include <stddef.h>

#define SD_OUTPUT_FORMAT_NAME "sdbatch output"
#define SD_OUTPUT_TIME_LEN    32 /* "2024-05-01T12:34:56Z" + NUL, padded */

/* The root datasets, in the order they are created. */
typedef enum sd_output_dataset {
  SD_DS_IMAGES = 0,
  SD_DS_LATENTS,
  SD_DS_PROMPT_INDEX,
  SD_DS_SEED,
  SD_DS_GUIDANCE,
  SD_DS_STEPS,
  SD_DS_SCHEDULER,
  SD_DS_STATUS,
  SD_DS_FAILURE,
  SD_DS_CHECKSUM,    /* schema v2: item_checksum */
  SD_DS_INPUT_INDEX, /* schema v3: input_index, strength, noise_level */
  SD_DS_STRENGTH,
  SD_DS_NOISE_LEVEL,
  SD_DS_COUNT,
} sd_output_dataset;

extern const char *const sd_output_dataset_names[SD_DS_COUNT];

/* Stops HDF5 from printing its error stack (library code never prints); the messages are taken
 * into error.h's by sd_h5_error instead. Idempotent. */
void sd_h5_silence(void);

/* SD_ERROR with HDF5's innermost message appended: "<fmt>: <hdf5 message>". Returns -1. */
int sd_h5_error_set(const char *src_file, int src_line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define SD_H5_ERROR(...) sd_h5_error_set(__FILE__, __LINE__, __VA_ARGS__)

/* A fixed-length, NUL-padded UTF-8 string type of len bytes (H5Tclose it), or -1. */
hid_t sd_h5_fixed_string_type(size_t len);
/* A variable-length UTF-8 string type (H5Tclose it), or -1. */
hid_t sd_h5_vlen_string_type(void);

int sd_h5_attr_write_string(hid_t obj, const char *name, const char *value);
/* A fixed-length, NUL-padded UTF-8 string attribute of strlen(value) bytes (at least 1; schema
 * 2). */
int sd_h5_attr_write_fixed_string(hid_t obj, const char *name, const char *value);
int sd_h5_attr_write_int(hid_t obj, const char *name, int64_t value);
/* Reads a string attribute (fixed or variable length) as a malloc'ed string. */
int sd_h5_attr_read_string(hid_t obj, const char *name, char **out);
int sd_h5_attr_read_int(hid_t obj, const char *name, int64_t *out);

/* An open dataset with its file dataspace and dims. */
typedef struct sd_h5_dataset {
  hid_t id;
  hid_t space;
  int rank;
  hsize_t dims[4];
  const char *name;
} sd_h5_dataset;

/* Opens name under file (dapl: H5P_DEFAULT or an access list). Rank at most 4. */
int sd_h5_dataset_open(hid_t file, const char *name, hid_t dapl, sd_h5_dataset *ds);
void sd_h5_dataset_close(sd_h5_dataset *ds);
/* Reads / writes rows [start, start + count) of the first dimension (whole rows), in
 * mem_type, from / to buf. */
int sd_h5_dataset_read_rows(const sd_h5_dataset *ds, hid_t mem_type, int64_t start, int64_t count,
                            void *buf);
int sd_h5_dataset_write_rows(const sd_h5_dataset *ds, hid_t mem_type, int64_t start, int64_t count,
                             const void *buf);

/* Copies src into a fixed-length field of len bytes (NUL-padded), cut at a UTF-8 character
 * boundary so that at least one NUL remains. */
void sd_output_copy_fixed(char *dst, size_t len, const char *src);
/* The current UTC time as ISO 8601 ("2024-05-01T12:34:56Z") into buf (SD_OUTPUT_TIME_LEN). */
void sd_output_time_now(char *buf);

/* The row checksum of item index in a file of schema version >= 2 (CRC-32 of its metadata row,
 * the status it is written with and its failure field, and from version 3 its input index,
 * strength and noise level; see docs/output.md). */
uint32_t sd_output_row_checksum(int64_t index, const sd_output_record *rec,
                                const char failure[SD_OUTPUT_FAILURE_LEN], int version);
/* The metadata fields of a record (prompt index, seed, guidance, steps, scheduler) from an
 * item's metadata; the other fields are left as they are. */
void sd_output_record_set_meta(sd_output_record *rec, const sd_output_item_meta *meta);

/* The reader's open dataset d (id -1 when the file has none). */
const sd_h5_dataset *sd_output_reader_dataset(const sd_output_reader *reader, sd_output_dataset d);

/* Writes the file of spec at path (a new file, replaced if present), fully laid out, and makes
 * it durable (fsync). Used on a temporary name that is then renamed into place. */
int sd_output_create_file(const sd_output_spec *spec, const char *path);

#endif
