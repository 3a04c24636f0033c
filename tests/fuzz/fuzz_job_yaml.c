/* Job files (YAML, schema v1): the input is the job file, and after a line "#prompts_file#" the
 * contents of its prompts_file if it names one. A job that loads is expanded: its first, last
 * and a middle item, its prompts and seeds. */
#include "fuzz.h"

#include "job_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t yaml_len, prompts_at;
  sd_fuzz_split(data, size, "\n#prompts_file#\n", &yaml_len, &prompts_at);
  sd_job *job;
  if (sd_job_load_text("/nonexistent/fuzz/job.yaml", (const char *)data, yaml_len,
                       (const char *)data + prompts_at, size - prompts_at, &job) != 0)
    return 0;
  const sd_job_info *info = sd_job_get_info(job);
  int64_t n = sd_job_item_count(job);
  int64_t picks[] = {0, n / 2, n - 1, n};
  sd_job_item item;
  for (size_t i = 0; i < sizeof picks / sizeof picks[0]; i++)
    (void)sd_job_item_get(job, picks[i], &item);
  uint64_t seed;
  (void)sd_job_seed(job, info->n_seeds - 1, &seed);
  (void)sd_job_prompt(job, info->n_prompts - 1);
  sd_job_input input;
  for (int64_t i = 0; i<info->n_images; i += info->n_images - 1> 0 ? info->n_images - 1 : 1)
    (void)sd_job_input_get(job, i, &input);
  size_t len;
  (void)sd_job_yaml_text(job, &len);
  sd_job_free(job);
  return 0;
}
