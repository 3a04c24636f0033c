/* prompts_file contents (one UTF-8 prompt a line) behind a fixed valid job. */
#include "fuzz.h"

#include "job_internal.h"

static const char job_text[] = "model: /m\noutput: /o.h5\nprompts_file: p.txt\nseeds: [1, 2]\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sd_job *job;
  if (sd_job_load_text("/nonexistent/fuzz/job.yaml", job_text, sizeof job_text - 1,
                       (const char *)data, size, &job) != 0)
    return 0;
  const sd_job_info *info = sd_job_get_info(job);
  for (int64_t i = 0; i < info->n_prompts && i < 64; i++)
    (void)sd_job_prompt(job, info->n_prompts - 1 - i);
  sd_job_free(job);
  return 0;
}
