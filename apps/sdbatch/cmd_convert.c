/* sdbatch convert: a model (diffusers folder or single file) written as an original single-file
 * checkpoint (worker/io/ldm_export.h). */
#include "cli.h"

#include "kernels/error.h"
#include "worker/io/ldm_export.h"
#include "worker/io/model_files.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *const convert_usage =
    "Usage: sdbatch convert --model PATH --output FILE.safetensors [--model-config FILE]\n"
    "\n"
    "Writes the model's UNet, VAE and text encoder as one original (CompVis / Stability layout)\n"
    "single-file checkpoint, the file A1111, ComfyUI and diffusers' from_single_file read:\n"
    "model.diffusion_model.*, first_stage_model.*, and cond_stage_model.transformer.* (SD 1.x) or\n"
    "the OpenCLIP cond_stage_model.model.* (SD 2.x, without the last layer SD does not use).\n"
    "Every tensor keeps its dtype and values. The file holds no scheduler, tokenizer or\n"
    "prediction type: render it with an LDM YAML (--model-config) where the defaults do not fit\n"
    "(docs/architecture.md, \"Loading\"). FILE must not exist; it is written whole or not at "
    "all.\n";

int cmd_convert(int argc, char **argv) {
  const char *cmd = "convert";
  const char *model_path = NULL, *model_yaml = NULL, *output = NULL;
  const cli_option options[] = {
      CLI_OPTION("model", "PATH", CLI_STRING, &model_path,
                 "diffusers folder or single-file .safetensors checkpoint", .required = true),
      CLI_OPTION("model-config", "FILE", CLI_STRING, &model_yaml,
                 "LDM-style YAML for a single-file checkpoint (optional)"),
      CLI_OPTION("output", "FILE", CLI_STRING, &output, "the .safetensors file to write",
                 .required = true),
      {0},
  };
  const cli_command command = {.name = cmd, .usage = convert_usage, .options = options};
  int parsed = cli_parse(&command, argc, argv, true);
  if (parsed != CLI_PARSED)
    return cli_parse_exit_status(parsed);
  size_t len = strlen(output);
  if (len < 12 || strcmp(output + len - 12, ".safetensors") != 0)
    return cli_usage_error(cmd, "--output %s: the file name must end in .safetensors\n", output);
  struct stat st;
  if (stat(output, &st) == 0) {
    SD_ERROR("--output %s exists; delete it or choose another name", output);
    return cli_report_error(cmd);
  }
  sd_model_files *model = NULL;
  int status = 0;
  if (sd_model_files_open(model_path, model_yaml, NULL, &model) < 0 ||
      sd_ldm_export_checkpoint(model, output) < 0)
    status = cli_report_error(cmd);
  else
    printf("wrote %s (%s)\n", output, model->family == SD_FAMILY_SD2 ? "SD 2.x" : "SD 1.x");
  sd_model_files_close(model);
  return status;
}
