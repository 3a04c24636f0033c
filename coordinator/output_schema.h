/* The output file's schema as tables (docs/output.md): every root attribute and dataset with its
 * type, shape, range and the schema versions that have it. The reader checks a file against these
 * tables before it reads anything from it (a damaged or hand-made file gets one clear error, never
 * a read sized by what the file claims), and the writer creates what they describe. Internal. */
#ifndef SD_OUTPUT_SCHEMA_H
#define SD_OUTPUT_SCHEMA_H

#include "output_internal.h"

#include <stdbool.h>
#include <stdint.h>

/* Schema versions this sdbatch reads (and writes: new files get the newest). */
#define SD_OUTPUT_SCHEMA_OLDEST 1
#define SD_OUTPUT_SCHEMA_NEWEST 3
#define SD_SCHEMA_V1            (1u << 1)
#define SD_SCHEMA_V2            (1u << 2)
#define SD_SCHEMA_V3            (1u << 3)
#define SD_SCHEMA_V2_ON         (SD_SCHEMA_V2 | SD_SCHEMA_V3)
#define SD_SCHEMA_ALL           (SD_SCHEMA_V1 | SD_SCHEMA_V2_ON)
/* Most input rows a file may declare (jobs allow SD_JOB_MAX_INPUTS). */
#define SD_OUTPUT_MAX_INPUTS 1000000
/* Longest input path stored, in bytes. */
#define SD_OUTPUT_MAX_PATH 4096

/* Largest string attribute (job_yaml) and prompt the reader accepts, in bytes. */
#define SD_OUTPUT_MAX_TEXT   (16 << 20)
#define SD_OUTPUT_MAX_PROMPT 65536
/* Image and latent sides and channels accepted (a sanity bound, far above what models use). */
#define SD_OUTPUT_MAX_SIDE 65536

typedef enum sd_attr_kind { SD_ATTR_INT, SD_ATTR_STRING } sd_attr_kind;

/* Root attributes, in the order the writer writes them (also the order the v2 header checksum
 * covers them in). */
typedef enum sd_output_attr {
  SD_ATTR_FORMAT = 0,
  SD_ATTR_SCHEMA_VERSION,
  SD_ATTR_JOB_YAML,
  SD_ATTR_JOB_PATH,
  SD_ATTR_JOB_HASH,
  SD_ATTR_MODEL,
  SD_ATTR_MODEL_IDENTITY,
  SD_ATTR_ADAPTERS, /* absent from schema 1 files written before adapters existed */
  SD_ATTR_WIDTH,
  SD_ATTR_HEIGHT,
  SD_ATTR_LATENT_CHANNELS,
  SD_ATTR_LATENT_HEIGHT,
  SD_ATTR_LATENT_WIDTH,
  SD_ATTR_SAVE_LATENTS,
  SD_ATTR_METADATA_COMPLETE,
  SD_ATTR_CREATED,
  SD_ATTR_SDBATCH_VERSION,
  SD_ATTR_N_INPUTS,        /* v3: rows of inputs / input_sha256 */
  SD_ATTR_HEADER_CHECKSUM, /* v2: SHA-256 of every other attribute */
  SD_ATTR_COUNT,
} sd_output_attr;

typedef struct sd_output_attr_desc {
  const char *name;
  sd_attr_kind kind;
  int64_t min, max;  /* ints: the accepted range; strings: max = the longest accepted, in bytes */
  unsigned versions; /* SD_SCHEMA_V1 | ...: the versions that have it */
  unsigned optional; /* versions whose files may lack it (read as 0 or "") */
} sd_output_attr_desc;

extern const sd_output_attr_desc sd_output_attrs[SD_ATTR_COUNT];

/* How a dataset's shape follows from the attributes (N items, P prompts). */
typedef enum sd_shape_rule {
  SD_SHAPE_SCALAR,  /* () */
  SD_SHAPE_ITEMS,   /* (N) */
  SD_SHAPE_IMAGES,  /* (N, H, W, 3), chunks (1, H, W, 3) */
  SD_SHAPE_LATENTS, /* (N, C, h, w); v2: chunks (1, C, h, w) */
  SD_SHAPE_PROMPTS, /* (P) */
  SD_SHAPE_INPUTS,  /* (n_inputs, SD_OUTPUT_INPUT_FILES) */
} sd_shape_rule;

typedef enum sd_elem_kind {
  SD_ELEM_UINT,
  SD_ELEM_INT,
  SD_ELEM_FLOAT,
  SD_ELEM_FIXED_STRING, /* fixed length: size bytes, or any length up to the prompt limit */
  SD_ELEM_STRING,       /* fixed or (v1 prompts only) variable length */
} sd_elem_kind;

typedef struct sd_output_dataset_desc {
  const char *name;
  sd_elem_kind elem;
  size_t size; /* element bytes (strings: the fixed length; 0: any up to SD_OUTPUT_MAX_PROMPT) */
  sd_shape_rule shape;
  unsigned versions;
  unsigned fletcher32; /* versions whose chunks carry HDF5's Fletcher32 checksum */
} sd_output_dataset_desc;

/* Descriptions of the datasets of sd_output_dataset (SD_DS_*), then prompts and updated. */
extern const sd_output_dataset_desc sd_output_datasets[SD_DS_COUNT];
extern const sd_output_dataset_desc sd_output_prompts_desc;
extern const sd_output_dataset_desc sd_output_updated_desc;
/* Schema 3, present when n_inputs > 0. */
extern const sd_output_dataset_desc sd_output_inputs_desc;
extern const sd_output_dataset_desc sd_output_input_sha256_desc;

/* The shape expected of dataset d (rank and dims) given the file's attributes. */
typedef struct sd_output_shape {
  int64_t n_items, n_prompts;
  int width, height, latent_channels, latent_h, latent_w;
  int64_t n_inputs;
} sd_output_shape;

/* Checks that attribute d of obj exists, is a scalar of its kind (ints: in range; strings: at most
 * d->max bytes, fixed length unless the version allows variable length) without reading its
 * value. *is_vlen tells a variable-length string (may be NULL). */
int sd_output_attr_check(hid_t obj, const sd_output_attr_desc *d, int version, bool *is_vlen);
/* Reads int attribute d (checked first). */
int sd_output_attr_get_int(hid_t obj, const sd_output_attr_desc *d, int version, int64_t *out);
/* Reads string attribute d (checked first) into a malloc'ed, NUL-terminated string. */
int sd_output_attr_get_string(hid_t obj, const sd_output_attr_desc *d, int version, char **out);

/* Opens dataset d of the file and checks it against the schema of version: element type, rank,
 * dimensions (from shape), chunking and checksum filter, and that its storage fits in a file of
 * file_size bytes. dapl: H5P_DEFAULT or an access list. *string_size receives a string dataset's
 * fixed length (0 for variable length) when not NULL. */
int sd_output_dataset_open_checked(hid_t file, const sd_output_dataset_desc *d, int version,
                                   const sd_output_shape *shape, uint64_t file_size, hid_t dapl,
                                   sd_h5_dataset *ds, size_t *string_size);

/* Every attribute's value (ints and strings by sd_output_attr), for the header checksum. */
typedef struct sd_output_header {
  int64_t ints[SD_ATTR_COUNT];
  const char *strings[SD_ATTR_COUNT];
} sd_output_header;

/* The header checksum (schema >= 2): SHA-256 (hex) of every attribute of the header's schema
 * version (ints[SD_ATTR_SCHEMA_VERSION]) but header_sha256 itself, in table order, each as its
 * name, a NUL, then an int as 8 little-endian bytes or a string as its length (8 little-endian
 * bytes) and its bytes. */
void sd_output_header_sha256(const sd_output_header *header, char hex[65]);

/* Whether a NUL-terminated field of len bytes holds valid UTF-8 with nothing but NULs after its
 * end (fixed-length strings are NUL-padded). */
bool sd_output_fixed_string_ok(const char *field, size_t len);

#endif
