/* The job's representation, shared by the files of jobs/ (not part of the API). */
#ifndef SD_JOB_INTERNAL_H
#define SD_JOB_INTERNAL_H

#include "job.h"

#include <stdarg.h>

/* A position in the job file, 1-based; line 0 when unknown. */
typedef struct sd_job_pos {
  int line;
  int col;
} sd_job_pos;

/* A growing list of NUL-terminated strings in one buffer (strlist.c): a million prompts or input
 * paths must not cost a million allocations. */
typedef struct sd_strlist {
  char *text;
  size_t len, cap;
  int64_t *offsets; /* (n) */
  int64_t n, offsets_cap;
} sd_strlist;

int sd_strlist_add(sd_strlist *list, const char *s, size_t len);
const char *sd_strlist_get(const sd_strlist *list, int64_t i);
void sd_strlist_free(sd_strlist *list);

/* Which input list (`images`, `masks`, `depth_maps`). */
typedef enum sd_job_input_kind {
  SD_JOB_INPUT_IMAGES = 0,
  SD_JOB_INPUT_MASKS,
  SD_JOB_INPUT_DEPTH_MAPS,
  SD_JOB_INPUT_KINDS,
} sd_job_input_kind;

struct sd_job {
  sd_job_info info; /* the public view; its pointers point at the fields below */

  char *path;
  char *model;         /* resolved */
  char *model_config;  /* resolved, or NULL */
  char *model_written; /* as in the file (for the hash) */
  char *model_config_written;
  char *depth_estimator; /* resolved, or NULL */
  char *depth_estimator_written;
  char *output;
  char *prompts_file;
  char *negative_prompt;

  char *yaml_text; /* the file's bytes, NUL-terminated */
  size_t yaml_len;

  sd_strlist prompts; /* (n_prompts) */

  uint64_t *seed_list; /* (n_seeds), or NULL for a range */
  uint64_t seed_start; /* first seed of a range */

  int *steps;              /* (n_steps) */
  double *guidance_scales; /* (n_guidance) */
  int *schedulers;         /* (n_schedulers) */

  sd_job_lora *loras;           /* (info.n_loras); strings and scales owned */
  sd_job_embedding *embeddings; /* (info.n_embeddings); strings owned */
  sd_job_pos *lora_pos;         /* (info.n_loras) where each file was given */
  sd_job_pos *embedding_pos;    /* (info.n_embeddings) */

  /* inputs, per sd_job_input_kind: paths resolved and as written (relative to the job file) */
  sd_strlist input_files[SD_JOB_INPUT_KINDS];
  sd_strlist input_written[SD_JOB_INPUT_KINDS];
  sd_job_pos input_pos[SD_JOB_INPUT_KINDS];
  double *strengths; /* (n_strengths) */
  int *noise_levels; /* (n_noise_levels) */
  sd_job_pos strength_pos;
  sd_job_pos noise_level_pos;

  sd_job_pos model_pos; /* where values were given, for later errors */
  sd_job_pos model_config_pos;
  sd_job_pos depth_estimator_pos;
  sd_job_pos output_pos;
  sd_job_pos prompts_file_pos;
};

/* Records "<file>:<line>:<col>: <message>" (just "<file>: <message>" when pos.line is 0) and
 * returns -1. */
int sd_job_error_at(const char *file, sd_job_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends a prompt (len bytes, no NUL inside) to the job. */
int sd_job_add_prompt(sd_job *job, const char *text, size_t len);

/* Length of the valid UTF-8 prefix of text[0, len) (strict: no overlong forms, surrogates or
 * code points above U+10FFFF); len when all of it is valid. */
size_t sd_utf8_valid_prefix(const char *text, size_t len);

/* Text files of lines (prompts files, list files of inputs): the next line of text[*pos, len)
 * into *line (*line_len bytes, without its "\n" or "\r\n"), *pos moved past it; a UTF-8
 * byte-order mark at the start of the text is skipped. false at the end of the text. */
bool sd_text_next_line(const char *text, size_t len, size_t *pos, const char **line,
                       size_t *line_len);

/* Reads job->prompts_file (one prompt a line, blank lines skipped) into the job's prompts. */
int sd_job_read_prompts_file(sd_job *job);
/* The same for the prompts_file's contents text[0, len), already read. */
int sd_job_parse_prompts(sd_job *job, const char *text, size_t len);

/* sd_job_load for a job file's bytes in memory (named path in messages; relative paths resolved
 * against path's folder). When prompts_text is not NULL it stands for the contents of the job's
 * prompts_file, which is then not read. For the fuzz harnesses and tests. */
int sd_job_load_text(const char *path, const char *text, size_t len, const char *prompts_text,
                     size_t prompts_len, sd_job **out);

/* Adds the inputs one value of `images`, `masks` or `depth_maps` names (written as in the job
 * file, resolved against its folder): a folder gives its .png, .jpg and .jpeg files (sorted by
 * name, hidden files skipped), a path ending in .txt is a list file of paths (one a line, relative
 * to the list file's folder), anything else is one file. expand false: always one file (the
 * elements of a YAML list). Errors at pos, naming the key. */
int sd_job_inputs_add(sd_job *job, sd_job_input_kind kind, const char *key, const char *written,
                      const char *resolved, sd_job_pos pos, bool expand);
/* After the whole mapping: masks and depth maps paired with the images or one for all, and no
 * key without images. */
int sd_job_inputs_check(sd_job *job);

/* Fills job->info.hash from the job's content (docs/jobs.md, "Job hash"). */
int sd_job_compute_hash(sd_job *job);

#endif
