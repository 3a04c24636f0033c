/* sdbatch train-demo: trains the project's own demo model from scratch (worker/finetune/demo_train,
 * docs/demo-model.md). */
#include "cli.h"

#include "jobs/sha256.h"
#include "kernels/error.h"
#include "worker/data/shapes.h"
#include "worker/finetune/demo_train.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#ifndef SDBATCH_CLIP_BPE
#define SDBATCH_CLIP_BPE ""
#endif

static const char *const train_demo_usage =
    "Usage: sdbatch train-demo DIR [--quick] [--resume] [--seed N] [--threads N] [--quiet]\n"
    "\n"
    "Trains the shapes demo model from scratch on the CPU: the VAE on pictures of the shapes\n"
    "dataset ('sdbatch make-shapes'), then the UNet and the CLIP text encoder, together, on\n"
    "their captions (10% of the captions empty, for classifier-free guidance). Writes DIR/model,\n"
    "a diffusers folder with fp16 weights that 'sdbatch render --model DIR/model' and diffusers\n"
    "load, and DIR/train: the untrained model, the recipe, the loss of every step\n"
    "(loss-vae.csv, loss-unet.csv) and the state files a killed run resumes from (--resume ends\n"
    "at the same weights as an uninterrupted run). The default recipe takes about 2.5 hours on\n"
    "two cores (docs/demo-model.md). The first shipped model's recipe:\n"
    "--text-encoder-learning-rate 0 --caption-templates 5.\n";

/* SHA-256 of the model's files, printed and written to DIR/train/sha256.txt. */
static int write_checksums(const char *dir, bool quiet) {
  static const char *const files[] = {"model/unet/diffusion_pytorch_model.safetensors",
                                      "model/vae/diffusion_pytorch_model.safetensors",
                                      "model/text_encoder/model.safetensors",
                                      "model/vae/config.json", "model/unet/config.json"};
  char path[4200], hex[65];
  snprintf(path, sizeof path, "%s/train/sha256.txt", dir);
  FILE *out = fopen(path, "w");
  if (!out)
    return SD_ERROR("%s: cannot create", path);
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < sizeof files / sizeof files[0]; i++) {
    char file[4200];
    snprintf(file, sizeof file, "%s/%s", dir, files[i]);
    rc = sd_sha256_file(file, hex);
    if (rc == 0 && fprintf(out, "%s  %s\n", hex, files[i]) < 0)
      rc = SD_ERROR("%s: write failed", path);
    if (rc == 0 && !quiet)
      fprintf(stderr, "  sha256 %s  %s\n", hex, files[i]);
  }
  if (fclose(out) != 0 && rc == 0)
    rc = SD_ERROR("%s: write failed", path);
  return rc;
}

int cmd_train_demo(int argc, char **argv) {
  const char *cmd = "train-demo";
  const char *dir = NULL;
  bool quick = false, resume = false, quiet = false;
  int threads = 0, vae_steps = 0, unet_steps = 0;
  uint64_t seed = 1;
  float vae_lr = 0, unet_lr = 0, saturation_weight = -1, text_encoder_lr = -1;
  int caption_templates = 0;
  const cli_option options[] = {
      CLI_OPTION("quick", NULL, CLI_FLAG, &quick,
                 "a minutes-long version of the recipe (40 small steps a phase): the\n"
                 "losses fall, the pictures are not yet shapes (CI runs it)"),
      CLI_OPTION("resume", NULL, CLI_FLAG, &resume,
                 "continue the run in DIR from its state files (same options)"),
      CLI_OPTION("seed", "N", CLI_U64, &seed,
                 "seed of the initial weights, the dataset and every draw (default 1,\n"
                 "the shipped model's)"),
      CLI_OPTION("vae-steps", "N", CLI_INT, &vae_steps,
                 "the VAE phase's optimizer steps (default: the recipe's)", .min = 1,
                 .max = 10000000),
      CLI_OPTION("unet-steps", "N", CLI_INT, &unet_steps,
                 "the UNet phase's optimizer steps (default: the recipe's)", .min = 1,
                 .max = 10000000),
      CLI_OPTION("vae-learning-rate", "F", CLI_FLOAT, &vae_lr,
                 "the VAE's peak learning rate (default: the recipe's)", .min = 1e-8, .max = 1),
      CLI_OPTION("vae-saturation-weight", "F", CLI_FLOAT, &saturation_weight,
                 "the VAE loss's weight of a pixel is 1 + F x its saturation (default:\n"
                 "the recipe's; 0: plain L1)",
                 .min = 0, .max = 1000),
      CLI_OPTION("unet-learning-rate", "F", CLI_FLOAT, &unet_lr,
                 "the UNet's peak learning rate (default: the recipe's)", .min = 1e-8, .max = 1),
      CLI_OPTION("text-encoder-learning-rate", "F", CLI_FLOAT, &text_encoder_lr,
                 "the text encoder's peak learning rate (default: the recipe's; 0: the\n"
                 "random encoder stays frozen)",
                 .min = 0, .max = 1),
      CLI_OPTION("caption-templates", "N", CLI_INT, &caption_templates,
                 "captions from the dataset's first N templates (default: all 15; 5: the\n"
                 "first recipe's, colour before shape)",
                 .min = 1, .max = SD_SHAPE_TEMPLATES),
      CLI_OPTION_THREADS(&threads),
      CLI_OPTION("quiet", NULL, CLI_FLAG, &quiet, "no progress lines"),
      {0},
  };
  const cli_command command = {.name = cmd,
                               .usage = train_demo_usage,
                               .options = options,
                               .min_operands = 1,
                               .max_operands = 1,
                               .operand_name = "the output folder (DIR)",
                               .operands = &dir};
  int parsed = cli_parse(&command, argc, argv, true);
  if (parsed != CLI_PARSED)
    return cli_parse_exit_status(parsed);
  sd_demo_recipe recipe = quick ? sd_demo_recipe_quick() : sd_demo_recipe_default();
  recipe.seed = seed;
  if (vae_steps > 0)
    recipe.vae_steps = vae_steps;
  if (unet_steps > 0)
    recipe.unet_steps = unet_steps;
  if (vae_lr > 0)
    recipe.vae_learning_rate = vae_lr;
  if (unet_lr > 0)
    recipe.unet_learning_rate = unet_lr;
  if (saturation_weight >= 0)
    recipe.vae_saturation_weight = saturation_weight;
  if (text_encoder_lr >= 0)
    recipe.text_encoder_learning_rate = text_encoder_lr;
  if (caption_templates > 0)
    recipe.caption_templates = caption_templates;
  sd_demo_train_options opt = {
      .resume = resume, .threads = threads, .progress = !quiet, .bpe_gz = SDBATCH_CLIP_BPE};
  if (!quiet) {
    char json[1024];
    sd_demo_recipe_json(&recipe, json, sizeof json);
    fprintf(stderr, "sdbatch train-demo: recipe %s\n", json);
  }
  sd_demo_train_result result;
  if (sd_demo_train(dir, &recipe, &opt, &result) < 0)
    return cli_report_error(cmd);
  if (!quiet)
    fprintf(stderr,
            "sdbatch train-demo: wrote %s/model in %.1f s; VAE loss %.4f -> %.4f, UNet loss "
            "%.4f -> %.4f (first and last 10%% of steps), scaling factor %.6f\n",
            dir, result.seconds, (double)result.vae_first_loss, (double)result.vae_last_loss,
            (double)result.unet_first_loss, (double)result.unet_last_loss,
            (double)result.scaling_factor);
  if (write_checksums(dir, quiet) < 0)
    return cli_report_error(cmd);
  return 0;
}
