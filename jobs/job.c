/* Jobs after loading: accessors, items computed from their index, batch compatibility, the
 * content hash and the path checks. */
#include "job_internal.h"
#include "sha256.h"
#include "../worker/sched/scheduler_names.h"

#include "error.h"
#include "file.h"
#include "worker/sched/scheduler.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int sd_job_error_at(const char *file, sd_job_pos pos, const char *fmt, ...) {
  char message[1024];
  va_list args;
  va_start(args, fmt);
  vsnprintf(message, sizeof message, fmt, args);
  va_end(args);
  if (pos.line > 0)
    return SD_ERROR("%s:%d:%d: %s", file, pos.line, pos.col, message);
  return SD_ERROR("%s: %s", file, message);
}

int sd_job_add_prompt(sd_job *job, const char *text, size_t len) {
  if (sd_strlist_add(&job->prompts, text, len) < 0)
    return sd_error_context("prompts");
  job->info.n_prompts = job->prompts.n;
  return 0;
}

size_t sd_utf8_valid_prefix(const char *text, size_t len) {
  const unsigned char *s = (const unsigned char *)text;
  size_t i = 0;
  while (i < len) {
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
      n = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (len - i < n)
      return i;
    for (size_t k = 1; k < n; k++) {
      if ((s[i + k] & 0xC0) != 0x80)
        return i;
      cp = cp << 6 | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return i;
    i += n;
  }
  return len;
}

void sd_job_free(sd_job *job) {
  if (!job)
    return;
  free(job->path);
  free(job->model);
  free(job->model_config);
  free(job->model_written);
  free(job->model_config_written);
  free(job->depth_estimator);
  free(job->depth_estimator_written);
  free(job->output);
  free(job->prompts_file);
  free(job->negative_prompt);
  free(job->yaml_text);
  sd_strlist_free(&job->prompts);
  free(job->seed_list);
  free(job->steps);
  free(job->guidance_scales);
  free(job->schedulers);
  free(job->strengths);
  free(job->noise_levels);
  for (int k = 0; k < SD_JOB_INPUT_KINDS; k++) {
    sd_strlist_free(&job->input_files[k]);
    sd_strlist_free(&job->input_written[k]);
  }
  for (int i = 0; i < job->info.n_loras; i++) {
    free((char *)job->loras[i].file);
    free((char *)job->loras[i].file_written);
    free((double *)job->loras[i].scales);
  }
  for (int i = 0; i < job->info.n_embeddings; i++) {
    free((char *)job->embeddings[i].file);
    free((char *)job->embeddings[i].file_written);
    free((char *)job->embeddings[i].token);
  }
  free(job->loras);
  free(job->embeddings);
  free(job->lora_pos);
  free(job->embedding_pos);
  free(job);
}

const sd_job_info *sd_job_get_info(const sd_job *job) {
  return &job->info;
}

const char *sd_job_yaml_text(const sd_job *job, size_t *len) {
  if (len)
    *len = job->yaml_len;
  return job->yaml_text;
}

const char *sd_job_prompt(const sd_job *job, int64_t i) {
  if (i < 0 || i >= job->info.n_prompts) {
    SD_ERROR("%s: prompt %" PRId64 " out of range [0, %" PRId64 ")", job->path, i,
             job->info.n_prompts);
    return NULL;
  }
  return sd_strlist_get(&job->prompts, i);
}

int sd_job_seed(const sd_job *job, int64_t i, uint64_t *seed) {
  if (i < 0 || i >= job->info.n_seeds)
    return SD_ERROR("%s: seed %" PRId64 " out of range [0, %" PRId64 ")", job->path, i,
                    job->info.n_seeds);
  *seed = job->seed_list ? job->seed_list[i] : job->seed_start + (uint64_t)i;
  return 0;
}

int64_t sd_job_item_count(const sd_job *job) {
  return job->info.n_items;
}

int sd_job_item_get(const sd_job *job, int64_t index, sd_job_item *out) {
  const sd_job_info *info = &job->info;
  if (index < 0 || index >= info->n_items)
    return SD_ERROR("%s: item %" PRId64 " out of range [0, %" PRId64 ")", job->path, index,
                    info->n_items);
  int64_t rest = index;
  int guidance_i = (int)(rest % info->n_guidance);
  rest /= info->n_guidance;
  int64_t seed_i = rest % info->n_seeds;
  rest /= info->n_seeds;
  int64_t prompt_i = rest % info->n_prompts;
  rest /= info->n_prompts;
  int64_t n_images = info->n_images ? info->n_images : 1;
  int64_t image_i = rest % n_images;
  rest /= n_images;
  int noise_level_i = (int)(rest % info->n_noise_levels);
  rest /= info->n_noise_levels;
  int strength_i = (int)(rest % info->n_strengths);
  rest /= info->n_strengths;
  int steps_i = (int)(rest % info->n_steps);
  rest /= info->n_steps;
  int scheduler_i = (int)(rest % info->n_schedulers);
  int64_t lora_set_i = rest / info->n_schedulers;

  memset(out, 0, sizeof *out);
  out->index = index;
  out->lora_set_index = lora_set_i;
  out->scheduler_index = scheduler_i;
  out->steps_index = steps_i;
  out->prompt_index = prompt_i;
  out->seed_index = seed_i;
  out->guidance_index = guidance_i;
  out->strength_index = strength_i;
  out->noise_level_index = noise_level_i;
  out->image_index = info->n_images ? image_i : -1;
  out->strength = info->strengths[strength_i];
  out->noise_level = info->noise_levels[noise_level_i];
  out->prompt = sd_strlist_get(&job->prompts, prompt_i);
  out->negative_prompt = info->negative_prompt;
  SD_TRY(sd_job_seed(job, seed_i, &out->seed));
  out->width = info->width;
  out->height = info->height;
  out->steps = info->steps[steps_i];
  out->guidance_scale = info->guidance_scales[guidance_i];
  out->scheduler = info->schedulers[scheduler_i];
  out->karras = info->karras;
  out->rng = info->rng;
  return 0;
}

int sd_job_lora_set(const sd_job *job, int64_t set, double *scales) {
  const sd_job_info *info = &job->info;
  if (set < 0 || set >= info->n_lora_sets)
    return SD_ERROR("%s: LoRA set %" PRId64 " out of range [0, %" PRId64 ")", job->path, set,
                    info->n_lora_sets);
  for (int k = info->n_loras - 1; k >= 0; k--) {
    scales[k] = info->loras[k].scales[set % info->loras[k].n_scales];
    set /= info->loras[k].n_scales;
  }
  return 0;
}

bool sd_job_items_batchable(const sd_job_item *a, const sd_job_item *b) {
  return a->lora_set_index == b->lora_set_index && a->width == b->width && a->height == b->height &&
         a->steps == b->steps && a->scheduler == b->scheduler && a->karras == b->karras &&
         a->image_index == b->image_index && a->strength_index == b->strength_index &&
         a->noise_level_index == b->noise_level_index;
}

/* Canonical text, streamed into the hash: see docs/jobs.md, "Job hash". */
static void hash_text(sd_sha256 *sha, const char *text) {
  sd_sha256_update(sha, text, strlen(text));
}

static void hash_printf(sd_sha256 *sha, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void hash_printf(sd_sha256 *sha, const char *fmt, ...) {
  char buf[128];
  va_list args;
  va_start(args, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  sd_sha256_update(sha, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void hash_string(sd_sha256 *sha, const char *key, const char *value) {
  size_t len = value ? strlen(value) : 0;
  if (key)
    hash_printf(sha, "%s %zu:", key, len);
  else
    hash_printf(sha, "%zu:", len);
  sd_sha256_update(sha, value ? value : "", len);
  hash_text(sha, "\n");
}

static const char *scheduler_name(int kind) {
#define SD_SCHEDULER_NAME_ENTRY(kind, name, class_name, karras, setup) [SD_SCHED_##kind] = name,
  static const char *const names[] = {SD_SCHEDULER_LIST(SD_SCHEDULER_NAME_ENTRY)};
#undef SD_SCHEDULER_NAME_ENTRY
  if (kind < 0 || kind >= (int)(sizeof names / sizeof names[0]))
    return "default";
  return names[kind];
}

/* End of the run of consecutive seeds that starts at index first. */
static int64_t seed_run_end(const sd_job *job, int64_t first) {
  if (!job->seed_list)
    return job->info.n_seeds;
  int64_t end = first + 1;
  while (end < job->info.n_seeds && job->seed_list[end - 1] != UINT64_MAX &&
         job->seed_list[end] == job->seed_list[end - 1] + 1)
    end++;
  return end;
}

int sd_job_compute_hash(sd_job *job) {
  const sd_job_info *info = &job->info;
  sd_sha256 sha;
  sd_sha256_init(&sha);
  hash_text(&sha, "sdbatch job v1\n");
  hash_string(&sha, "model", job->model_written);
  hash_string(&sha, "model_config", job->model_config_written);
  if (job->depth_estimator_written) /* absent: the hash of jobs without it is unchanged */
    hash_string(&sha, "depth_estimator", job->depth_estimator_written);
  /* only when not the default: `dpt_preprocess: pil` renders what its absence renders */
  if (info->dpt_preprocess == SD_JOB_DPT_PREPROCESS_TORCHVISION)
    hash_string(&sha, "dpt_preprocess", "torchvision");
  hash_string(&sha, "negative_prompt", job->negative_prompt);
  hash_printf(&sha, "prompts %" PRId64 "\n", info->n_prompts);
  for (int64_t i = 0; i < info->n_prompts; i++)
    hash_string(&sha, NULL, sd_strlist_get(&job->prompts, i));

  /* seeds as runs of consecutive values, so a list and the equal range hash alike */
  int64_t runs = 0;
  for (int64_t first = 0; first < info->n_seeds; first = seed_run_end(job, first))
    runs++;
  hash_printf(&sha, "seeds %" PRId64 "\n", runs);
  for (int64_t first = 0; first < info->n_seeds; first = seed_run_end(job, first)) {
    uint64_t seed;
    SD_TRY(sd_job_seed(job, first, &seed));
    hash_printf(&sha, "%" PRIu64 " %" PRId64 "\n", seed, seed_run_end(job, first) - first);
  }

  hash_printf(&sha, "width %d\nheight %d\n", info->width, info->height);
  hash_printf(&sha, "steps %d", info->n_steps);
  for (int i = 0; i < info->n_steps; i++)
    hash_printf(&sha, " %d", info->steps[i]);
  hash_printf(&sha, "\nguidance_scale %d", info->n_guidance);
  for (int i = 0; i < info->n_guidance; i++)
    hash_printf(&sha, " %.17g", info->guidance_scales[i]);
  hash_printf(&sha, "\nscheduler %d", info->n_schedulers);
  for (int i = 0; i < info->n_schedulers; i++)
    hash_printf(&sha, " %s", scheduler_name(info->schedulers[i]));
  hash_printf(&sha, "\nkarras %s\nrng %s\nsave_latents %s\n", info->karras ? "true" : "false",
              info->rng == SD_RNG_CPU ? "cpu" : "cuda", info->save_latents ? "true" : "false");
  /* adapters (only when given, so that the hash of a job without them is unchanged); the files'
   * contents are checked apart, by their SHA-256 in the output file */
  for (int i = 0; i < info->n_loras; i++) {
    hash_string(&sha, "lora", info->loras[i].file_written);
    hash_printf(&sha, "scales %d", info->loras[i].n_scales);
    for (int k = 0; k < info->loras[i].n_scales; k++)
      hash_printf(&sha, " %.17g", info->loras[i].scales[k]);
    hash_text(&sha, "\n");
  }
  for (int i = 0; i < info->n_embeddings; i++) {
    hash_string(&sha, "embedding", info->embeddings[i].file_written);
    hash_string(&sha, "token", info->embeddings[i].token ? info->embeddings[i].token : "");
  }
  /* inputs (only when given, as adapters): the files as written, strengths and noise levels;
   * the files' contents are checked apart, by their SHA-256 in the output file */
  if (info->n_images > 0) {
    static const char *const keys[SD_JOB_INPUT_KINDS] = {"images", "masks", "depth_maps"};
    for (int k = 0; k < SD_JOB_INPUT_KINDS; k++) {
      hash_printf(&sha, "%s %" PRId64 "\n", keys[k], job->input_written[k].n);
      for (int64_t i = 0; i < job->input_written[k].n; i++)
        hash_string(&sha, NULL, sd_strlist_get(&job->input_written[k], i));
    }
    hash_printf(&sha, "strength %d", info->n_strengths);
    for (int i = 0; i < info->n_strengths; i++)
      hash_printf(&sha, " %.17g", info->strengths[i]);
    hash_printf(&sha, "\nnoise_level %d", info->n_noise_levels);
    for (int i = 0; i < info->n_noise_levels; i++)
      hash_printf(&sha, " %d", info->noise_levels[i]);
    hash_text(&sha, "\n");
  }
  sd_sha256_final_hex(&sha, job->info.hash);
  return 0;
}

int sd_job_check_paths(const sd_job *job) {
  struct stat st;
  if (stat(job->model, &st) != 0)
    return sd_job_error_at(job->path, job->model_pos, "model: cannot access '%s': %s", job->model,
                           strerror(errno));
  if (job->model_config && stat(job->model_config, &st) != 0)
    return sd_job_error_at(job->path, job->model_config_pos, "model_config: cannot access '%s': %s",
                           job->model_config, strerror(errno));
  if (job->depth_estimator && stat(job->depth_estimator, &st) != 0)
    return sd_job_error_at(job->path, job->depth_estimator_pos,
                           "depth_estimator: cannot access '%s': %s", job->depth_estimator,
                           strerror(errno));
  if (job->depth_estimator && !S_ISDIR(st.st_mode))
    return sd_job_error_at(job->path, job->depth_estimator_pos,
                           "depth_estimator: '%s' is not a folder", job->depth_estimator);
  for (int i = 0; i < job->info.n_loras; i++)
    if (stat(job->loras[i].file, &st) != 0)
      return sd_job_error_at(job->path, job->lora_pos[i], "loras[%d]: cannot access '%s': %s", i,
                             job->loras[i].file, strerror(errno));
  for (int i = 0; i < job->info.n_embeddings; i++)
    if (stat(job->embeddings[i].file, &st) != 0)
      return sd_job_error_at(job->path, job->embedding_pos[i],
                             "embeddings[%d]: cannot access '%s': %s", i, job->embeddings[i].file,
                             strerror(errno));
  static const char *const input_keys[SD_JOB_INPUT_KINDS] = {"images", "masks", "depth_maps"};
  for (int k = 0; k < SD_JOB_INPUT_KINDS; k++)
    for (int64_t i = 0; i < job->input_files[k].n; i++) {
      const char *file = sd_strlist_get(&job->input_files[k], i);
      if (stat(file, &st) != 0)
        return sd_job_error_at(job->path, job->input_pos[k],
                               "%s[%" PRId64 "]: cannot access '%s': %s", input_keys[k], i, file,
                               strerror(errno));
    }
  if (stat(job->output, &st) == 0 && S_ISDIR(st.st_mode))
    return sd_job_error_at(job->path, job->output_pos, "output: '%s' is a folder, not a file",
                           job->output);
  char folder[4096];
  sd_file_parent_folder(job->output, folder, sizeof folder);
  if (stat(folder, &st) != 0)
    return sd_job_error_at(job->path, job->output_pos, "output: cannot access the folder '%s': %s",
                           folder, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return sd_job_error_at(job->path, job->output_pos, "output: '%s' is not a folder", folder);
  return 0;
}
