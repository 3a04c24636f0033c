/* Rank 0's preparation of a job with input images (docs/jobs.md, "Inputs"): the pipeline and the
 * output size (sd_render_shape), and the inputs' SHA-256 values that the output file records so
 * that a resume refuses changed inputs. */
#ifndef SD_RUN_INPUTS_H
#define SD_RUN_INPUTS_H

#include "output.h"
#include "render.h"

#include <stdio.h>

/* For a job with images: shape->pipeline from the model and the inputs given (sd_pipeline_choose),
 * and the output size of the first image (every other image must give the same: an item whose
 * image does not fails with the reason); settings that do not apply to the pipeline (width and
 * height outside inpainting, strength for the upscaler, noise_level elsewhere or above the
 * upscaler's max_noise_level) refused. A job without images: shape->pipeline TXT2IMG, shape
 * untouched. */
int sd_run_inputs_shape(const sd_job *job, const sd_model_files *model, sd_render_shape *shape);

/* Every input's files as the job gives them and their SHA-256, in the output spec's layout
 * (n rows of SD_OUTPUT_INPUT_FILES; NULL / "" where a row has no such file). */
typedef struct sd_run_inputs {
  int64_t n;
  const char **files;       /* (n * FILES) borrowed from the job */
  char (*sha256)[65];       /* (n * FILES) hex, "" for none */
  const char **sha256_ptrs; /* (n * FILES) pointers into sha256 */
} sd_run_inputs;

/* Reads every input file once for its SHA-256 (a shared mask or depth map once); a line on log
 * for jobs of 1000 inputs or more. A job without images gives n = 0. */
int sd_run_inputs_hash(const sd_job *job, FILE *log, sd_run_inputs *out);
void sd_run_inputs_free(sd_run_inputs *inputs);

#endif
