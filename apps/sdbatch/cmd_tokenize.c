/* sdbatch tokenize: a prompt's CLIP token ids, as the model's tokenizer gives them. */
#include "cli.h"

#include "kernels/error.h"
#include "worker/io/model_files.h"
#include "worker/pipeline/engine.h"
#include "worker/text/clip_tokenizer.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef SDBATCH_CLIP_BPE
#define SDBATCH_CLIP_BPE ""
#endif

static const char *const tokenize_help =
    "Usage: sdbatch tokenize --model PATH --prompt TEXT [--model-config FILE]\n"
    "\n"
    "Prints the prompt's token ids (77 for SD models) on one line, separated by spaces: the ids\n"
    "transformers (>= 5) CLIPTokenizer gives with the model's vocabulary and pad token\n"
    "(docs/tokenizer.md).\n"
    "\n"
    "  --model PATH         diffusers folder or single-file .safetensors checkpoint\n"
    "  --model-config FILE  LDM-style YAML for a single-file checkpoint (optional)\n"
    "  --prompt TEXT        the text (UTF-8)\n"
    "  --help               this text\n";

int cmd_tokenize(int argc, char **argv) {
  const char *cmd = "tokenize";
  const char *model_path = NULL, *model_yaml = NULL, *prompt = NULL;
  static const struct option options[] = {
      {"model", required_argument, NULL, 'm'},
      {"model-config", required_argument, NULL, 'c'},
      {"prompt", required_argument, NULL, 'p'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  optind = 1;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    switch (opt) {
    case 'm':
      model_path = optarg;
      break;
    case 'c':
      model_yaml = optarg;
      break;
    case 'p':
      prompt = optarg;
      break;
    case 'h':
      fputs(tokenize_help, stdout);
      return 0;
    default:
      return cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
  if (!model_path)
    return cli_usage_error(cmd, "--model is required");
  if (!prompt)
    return cli_usage_error(cmd, "--prompt is required");

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
