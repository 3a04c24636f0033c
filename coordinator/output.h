/* The job's output file (HDF5, schema in docs/output.md): one file per job, written only by the
 * coordinator (rank 0), flushed so that a job killed at any moment leaves a valid file that
 * resumes with nothing lost and nothing duplicated.
 *
 * Root datasets for a single-resolution job (N items, P prompts):
 *   images          uint8   (N, H, W, 3)      one image per chunk
 *   latents         float32 (N, 4, H/8, W/8)  when save_latents
 *   prompts         strings (P)
 *   prompt_index    int32   (N)
 *   seed            int64   (N)
 *   guidance_scale  float32 (N)
 *   steps           int32   (N)
 *   scheduler       strings (N)  (the scheduler actually used)
 *   status          uint8   (N)  0 pending, 1 done, 2 failed
 *   failure         strings (N)  reason of a failed item ("" otherwise)
 * Root attributes: schema_version, job_yaml (the job file's text), job_hash, model (path),
 * model_identity, width, height, created/updated times, sdbatch version. */
#ifndef SD_OUTPUT_H
#define SD_OUTPUT_H

#include <stdbool.h>
#include <stdint.h>

#define SD_OUTPUT_SCHEMA_VERSION 1

enum { SD_ITEM_PENDING = 0, SD_ITEM_DONE = 1, SD_ITEM_FAILED = 2 };

typedef struct sd_output sd_output;

/* What a job's output file is made of. */
typedef struct sd_output_spec {
  const char *path;
  int64_t n_items;
  int width, height;                    /* pixels */
  int latent_channels, latent_h, latent_w;
  bool save_latents;
  const char *job_yaml;                 /* the job file's text */
  const char *job_hash;                 /* identity of the job (resume refuses another) */
  const char *model_path;
  const char *model_identity;           /* e.g. a hash of the model's configs and tensor names */
  int64_t n_prompts;
  const char *const *prompts;           /* (n_prompts) */
} sd_output_spec;

/* Per-item metadata known before rendering. */
typedef struct sd_output_item_meta {
  int32_t prompt_index;
  int64_t seed;
  float guidance_scale;
  int32_t steps;
  const char *scheduler;
} sd_output_item_meta;

/* Creates the file, or opens an existing one for resume: an existing file must have been
 * started by the same job (job_hash) with the same shapes, else -1 with a clear error naming the
 * file. A file left by a killed run is accepted. */
int sd_output_open(const sd_output_spec *spec, sd_output **out);
/* Closes (flushing); returns -1 when the final flush fails. */
int sd_output_close(sd_output *output);

/* Status of item index as of open or the last write (kept in memory: one byte per item). */
int sd_output_status(const sd_output *output, int64_t index);
int64_t sd_output_count(const sd_output *output, int status);

/* Writes item index: metadata, image (H, W, 3), latents (C, h, w) or NULL, then status done.
 * Durable after the next sd_output_flush: a crash before it loses the item's "done" (it is
 * rendered again on resume), never the file's consistency. */
int sd_output_write_done(sd_output *output, int64_t index, const sd_output_item_meta *meta,
                         const uint8_t *rgb, const float *latents);
/* Marks item index failed with a reason (durable after the next flush). */
int sd_output_write_failed(sd_output *output, int64_t index, const sd_output_item_meta *meta,
                           const char *reason);
/* Makes everything written so far durable (HDF5 flush + fsync). The runner calls it every
 * second or so and at the end. */
int sd_output_flush(sd_output *output);

#endif
