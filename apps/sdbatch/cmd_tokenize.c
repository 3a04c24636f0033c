/* sdbatch tokenize: a prompt's CLIP token ids, as the model's tokenizer gives them. */
#include "cli.h"

#include "kernels/error.h"
#include "worker/io/model_files.h"
#include "worker/pipeline/engine.h"
#include "worker/text/clip_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>

#ifndef SDBATCH_CLIP_BPE
#define SDBATCH_CLIP_BPE ""
#endif

static const char *const tokenize_usage =
    "Usage: sdbatch tokenize --model PATH --prompt TEXT [--model-config FILE]\n"
    "\n"
    "Prints the prompt's token ids (77 for SD models) on one line, separated by spaces: the ids\n"
    "transformers (>= 5) CLIPTokenizer gives with the model's vocabulary and pad token\n"
    "(docs/tokenizer.md).\n";

int cmd_tokenize(int argc, char **argv) {
  const char *cmd = "tokenize";
  const char *model_path = NULL, *model_yaml = NULL, *prompt = NULL;
  const cli_option options[] = {
      CLI_OPTION("model", "PATH", CLI_STRING, &model_path,
                 "diffusers folder or single-file .safetensors checkpoint", .required = true),
      CLI_OPTION("model-config", "FILE", CLI_STRING, &model_yaml,
                 "LDM-style YAML for a single-file checkpoint (optional)"),
      CLI_OPTION("prompt", "TEXT", CLI_STRING, &prompt, "the text (UTF-8)", .required = true),
      {0},
  };
  const cli_command command = {.name = cmd, .usage = tokenize_usage, .options = options};
  int parsed = cli_parse(&command, argc, argv, true);
  if (parsed != CLI_PARSED)
    return cli_parse_exit_status(parsed);

  sd_model_files *model = NULL;
  sd_tokenizer *tokenizer = NULL;
  int32_t *ids = NULL;
  int status = 0;
  if (sd_model_files_open(model_path, model_yaml, SDBATCH_CLIP_BPE, &model) < 0 ||
      sd_tokenizer_open_for_model(&model->tokenizer, &tokenizer) < 0) {
    status = cli_report_error(cmd);
    goto out;
  }
  int length = sd_tokenizer_max_length(tokenizer);
  ids = malloc((size_t)length * sizeof *ids);
  if (!ids || sd_tokenizer_encode(tokenizer, prompt, ids) < 0) {
    status = cli_report_error(cmd);
    goto out;
  }
  for (int i = 0; i < length; i++)
    printf(i ? " %d" : "%d", ids[i]);
  printf("\n");
out:
  free(ids);
  sd_tokenizer_free(tokenizer);
  sd_model_files_close(model);
  return status;
}
