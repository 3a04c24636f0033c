/* The job's output file (HDF5, schema in docs/output.md): one file per job, written only by the
 * coordinator (rank 0), flushed so that a job killed at any moment leaves a valid file that
 * resumes with nothing lost and nothing duplicated.
 *
 * Root datasets for a single-resolution job (N items, P prompts):
 *   images          uint8   (N, H, W, 3)      one image per chunk (schema 2: with Fletcher32)
 *   latents         float32 (N, 4, H/8, W/8)  when save_latents (schema 1: contiguous; schema 2:
 *                                             one item per chunk with Fletcher32)
 *   prompts         strings (P)  (schema 1: variable length; schema 2: fixed length, chunked,
 *                                 with Fletcher32)
 *   prompt_index    int32   (N)
 *   seed            int64   (N)
 *   guidance_scale  float32 (N)
 *   steps           int32   (N)
 *   scheduler       strings (N)  (the scheduler actually used; fixed length 32)
 *   status          uint8   (N)  0 pending, 1 done, 2 failed
 *   failure         strings (N)  reason of a failed item ("" otherwise; fixed length 256)
 *   updated         string  ()   time of the last flush that changed a status
 *   item_checksum   uint32  (N)  schema 2: CRC-32 of the item's row (sd_output_row_checksum)
 * Root attributes: format ("sdbatch output"), schema_version, job_yaml (the job file's text),
 * job_path, job_hash, model (path), model_identity, adapters, width, height, latent_channels,
 * latent_height, latent_width, save_latents, metadata_complete, created, sdbatch_version;
 * schema 2: header_sha256 (of all the others). Schema 1 strings are variable length, schema 2's
 * fixed length.
 *
 * Crash safety: the whole file (every dataset's storage, every attribute) is laid out when it is
 * created, in a temporary file renamed into place. After that only raw data is ever written, at
 * addresses fixed at creation, and HDF5's metadata is never touched again, so a kill at any
 * moment leaves a valid file. A status byte reaches the file only in sd_output_flush, after the
 * item's data has been flushed and fsync'ed: a done status on disk implies the data is there. */
#ifndef SD_OUTPUT_H
#define SD_OUTPUT_H

#include <stdbool.h>
#include <stdint.h>

/* The schema version new files get (docs/output.md); files of version 1 are still read and
 * resumed. */
#define SD_OUTPUT_SCHEMA_VERSION 3
/* Bytes of the fixed-length string datasets, NUL included: longer scheduler names are refused,
 * longer failure reasons cut (at a UTF-8 character boundary). */
#define SD_OUTPUT_SCHEDULER_LEN 32
#define SD_OUTPUT_FAILURE_LEN   256

enum { SD_ITEM_PENDING = 0, SD_ITEM_DONE = 1, SD_ITEM_FAILED = 2 };

typedef struct sd_output sd_output;

/* Per-item metadata known before rendering. */
typedef struct sd_output_item_meta {
  int32_t prompt_index;
  int64_t seed;
  float guidance_scale;
  int32_t steps;
  const char *scheduler;
  /* Image-conditioned items (schema 3): the input (row of the file's `inputs`), the strength and
   * the noise level (-1: none, for pipelines other than the x4 upscaler). has_input false (an
   * item without an input image) stores input_index -1, strength 1 and noise level -1. */
  bool has_input;
  int32_t input_index;
  float strength;
  int32_t noise_level;
} sd_output_item_meta;

/* Files of one input: the image, its mask and its depth map (NULL or "" for none). */
enum {
  SD_OUTPUT_INPUT_IMAGE = 0,
  SD_OUTPUT_INPUT_MASK,
  SD_OUTPUT_INPUT_DEPTH,
  SD_OUTPUT_INPUT_FILES
};

/* What a job's output file is made of. */
typedef struct sd_output_spec {
  const char *path;
  int64_t n_items;
  int width, height; /* pixels */
  int latent_channels, latent_h, latent_w;
  bool save_latents;
  const char *job_yaml; /* the job file's text */
  const char *job_hash; /* identity of the job (resume refuses another) */
  const char *model_path;
  const char *model_identity; /* e.g. a hash of the model's configs and tensor names */
  /* The adapters (LoRA / embedding files with their SHA-256 and scales) as JSON, "" or NULL for
   * none; resume refuses a file started with other adapters. */
  const char *adapters;
  int64_t n_prompts;
  const char *const *prompts; /* (n_prompts) */
  const char *job_path;       /* the job file as given (shown by inspect); may be NULL */
  /* Optional: the metadata of every item, asked for once per item when the file is created so
   * that pending items carry theirs too (inspect and export then see the whole sweep). NULL:
   * each item's metadata is written with its result. Returns 0, or -1 with an error. */
  int (*item_meta)(void *ctx, int64_t index, sd_output_item_meta *meta);
  void *item_meta_ctx;
  /* The schema a new file is written in: 0 (the newest, SD_OUTPUT_SCHEMA_VERSION) or 1 or 2 (older
   * layouts, for tests and benchmarks). An existing file keeps its own. */
  int schema_version;
  /* Schema 3: the job's inputs, n_inputs rows of SD_OUTPUT_INPUT_FILES paths (as the job gives
   * them) and their SHA-256 (hex), NULL or "" where a row has no such file. A resume refuses a
   * file whose inputs' SHA-256 differ from these. Items name their row in meta.input_index. */
  int64_t n_inputs;
  const char *const *input_files;  /* (n_inputs * SD_OUTPUT_INPUT_FILES) */
  const char *const *input_sha256; /* (n_inputs * SD_OUTPUT_INPUT_FILES) */
} sd_output_spec;

/* Creates the file, or opens an existing one for resume: an existing file must have been
 * started by the same job (job_hash) with the same shapes and model identity, else -1 with a
 * clear error naming the file (and both hashes). A file left by a killed run is accepted; a file
 * that is not HDF5, is damaged or is not an sdbatch output is refused and left untouched. An
 * interrupted creation leaves only "<path>.creating", which the next open replaces. */
int sd_output_open(const sd_output_spec *spec, sd_output **out);
/* Closes (flushing); returns -1 when the final flush fails. */
int sd_output_close(sd_output *output);

/* Done items found damaged when an existing file was opened for resume (sd_output_verify_item:
 * a row that fails its checks, or in schema 2 its row checksum; schema 2: an image or latents
 * chunk that fails its Fletcher32 checksum). They count as pending and are rendered again. */
int64_t sd_output_damaged_items(const sd_output *output);

/* Status of item index as of open or the last write (kept in memory: one byte per item). */
int sd_output_status(const sd_output *output, int64_t index);
int64_t sd_output_count(const sd_output *output, int status);

/* Writes item index: metadata, image (H, W, 3), latents (C, h, w) or NULL, then status done.
 * Durable after the next sd_output_flush: a crash before it loses the item's "done" (it is
 * rendered again on resume), never the file's consistency. meta may be NULL when the file was
 * created with item_meta. latents are required when save_latents, ignored otherwise. An item
 * that is already done is refused (its pixels on disk are never rewritten). */
int sd_output_write_done(sd_output *output, int64_t index, const sd_output_item_meta *meta,
                         const uint8_t *rgb, const float *latents);
/* Marks item index failed with a reason (durable after the next flush); refused for an item
 * that is done. A failed item may later be written done (a retry). */
int sd_output_write_failed(sd_output *output, int64_t index, const sd_output_item_meta *meta,
                           const char *reason);
/* Makes everything written so far durable (HDF5 flush + fsync). The runner calls it every
 * second or so and at the end. */
int sd_output_flush(sd_output *output);

/* Reading (inspect, export, tests). The reader opens the file read-only without locking: as the
 * writer never changes metadata after creation, a file being written can be read at any time
 * (statuses are as of the writer's last flush). */
typedef struct sd_output_reader sd_output_reader;

/* What the root attributes say. Strings belong to the reader. */
typedef struct sd_output_info {
  int schema_version;
  int64_t n_items, n_prompts;
  int width, height;
  int latent_channels, latent_h, latent_w;
  bool save_latents;
  bool metadata_complete; /* every item's metadata was written at creation */
  int64_t n_inputs;       /* rows of `inputs` (schema 3; 0 before, or without input images) */
  const char *job_yaml, *job_path, *job_hash;
  const char *model_path, *model_identity;
  const char *adapters;          /* JSON, "" when none (or written before adapters existed) */
  const char *created, *updated; /* ISO 8601 UTC; updated is "" before the first flush */
  const char *sdbatch_version;
} sd_output_info;

/* Length of sd_output_record.problem. */
#define SD_OUTPUT_PROBLEM_LEN 96

/* One item's row of the per-item datasets. The metadata is meaningful when status is not
 * pending, or for every item when metadata_complete. A row that fails the reader's checks (a
 * value out of range, a string that is not NUL-padded UTF-8, a v2 row checksum that does not
 * match) has problem set to why; its other fields are then not to be trusted. */
typedef struct sd_output_record {
  int32_t prompt_index;
  int64_t seed;
  float guidance_scale;
  int32_t steps;
  char scheduler[SD_OUTPUT_SCHEDULER_LEN];
  int32_t input_index; /* -1: no input (and in files before schema 3) */
  float strength;      /* 1 without an input */
  int32_t noise_level; /* -1: none */
  uint8_t status;
  char problem[SD_OUTPUT_PROBLEM_LEN]; /* "" when the row is sound */
} sd_output_record;

/* Opens path read-only; refuses (-1, error naming the file) a file that is not HDF5, is damaged,
 * is not an sdbatch output or has another schema version. */
int sd_output_reader_open(const char *path, sd_output_reader **out);
void sd_output_reader_close(sd_output_reader *reader);
const sd_output_info *sd_output_reader_info(const sd_output_reader *reader);
/* Records of items [start, start + count) into out (count). A damaged row does not fail the
 * call: its record's problem says what is wrong (-1 only when the datasets cannot be read). */
int sd_output_read_records(sd_output_reader *reader, int64_t start, int64_t count,
                           sd_output_record *out);
/* Item index's image into rgb (H, W, 3), latents into latents (C, h, w), failure reason into
 * reason (SD_OUTPUT_FAILURE_LEN bytes, NUL-terminated). */
int sd_output_read_image(sd_output_reader *reader, int64_t index, uint8_t *rgb);
int sd_output_read_latents(sd_output_reader *reader, int64_t index, float *latents);
int sd_output_read_failure(sd_output_reader *reader, int64_t index, char *reason);
/* Prompt i as a malloc'ed UTF-8 string (*out, the caller frees). */
int sd_output_read_prompt(sd_output_reader *reader, int64_t i, char **out);

/* One row of a schema 3 file's inputs: files as malloc'ed strings ("" for none) and SHA-256 hex
 * ("" for none). */
typedef struct sd_output_input {
  char *files[SD_OUTPUT_INPUT_FILES];
  char sha256[SD_OUTPUT_INPUT_FILES][65];
} sd_output_input;

/* Input row i in [0, n_inputs) into *out (release with sd_output_input_free). */
int sd_output_read_input(sd_output_reader *reader, int64_t i, sd_output_input *out);
void sd_output_input_free(sd_output_input *input);

/* Checks the chunk index of the per-item chunked datasets (images; latents in schema 2): every
 * item's chunk present, of the size the schema gives (not where it is: see output_verify.c). -1
 * with an error when not: the file's structure is damaged, and writing into it is unsafe. */
int sd_output_verify_chunk_index(sd_output_reader *reader);
/* Reads back item index (rec: its record from sd_output_read_records): 0 when sound, 1 when
 * damaged with why in problem (a row that fails its checks, or an image or latents chunk that
 * cannot be read: in schema 2 one that fails its Fletcher32 checksum), -1 when out of memory. */
int sd_output_verify_item(sd_output_reader *reader, int64_t index, const sd_output_record *rec,
                          char problem[SD_OUTPUT_PROBLEM_LEN]);

#endif
