/* sdbatch train: DreamBooth fine-tuning (full or LoRA) of a model's UNet (and with
 * train_text_encoder its text encoder) from a YAML config
 * (worker/finetune, docs/training.md "sdbatch train"). */
#include "cli.h"

#include "cluster/cluster.h"
#include "cluster/comm.h"
#include "kernels/error.h"
#include "worker/finetune/dreambooth.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const train_usage =
    "Usage: sdbatch train CONFIG.yaml [--resume] [--threads N] [--quiet]\n"
    "       mpirun -n N sdbatch train CONFIG.yaml [options]   (data parallel)\n"
    "\n"
    "Fine-tunes the UNet of a diffusers model folder on a folder of instance images, as\n"
    "diffusers' examples/dreambooth/train_dreambooth.py does (full fine-tuning, float32, CPU),\n"
    "and writes output_dir as a diffusers folder that `sdbatch render --model` and diffusers\n"
    "load. CONFIG.yaml holds the script's arguments as keys:\n"
    "\n"
    "  pretrained_model: models/sd15     # a diffusers folder or a .safetensors (required)\n"
    "  instance_data_dir: photos/dog     # .png/.jpg/.jpeg files (required)\n"
    "  instance_prompt: a photo of sks dog   # (required)\n"
    "  output_dir: out/dog-model         # (required; must be new or empty)\n"
    "  resolution: 512                   # center_crop, random_flip, train_batch_size,\n"
    "  max_train_steps: 400              # gradient_accumulation_steps, learning_rate,\n"
    "  learning_rate: 5.0e-6             # lr_scheduler, lr_warmup_steps, adam_*, seed, ...\n"
    "\n"
    "The text encoder: `train_text_encoder: true` trains it with the UNet as one model (one\n"
    "AdamW over both, gradients clipped over both), and writes it to\n"
    "output_dir/text_encoder/model.safetensors (float32). `single_file: NAME.safetensors`\n"
    "also writes a full fine-tune as an original single-file checkpoint in output_dir (the\n"
    "only output when pretrained_model is a single file; its LDM YAML:\n"
    "pretrained_model_config).\n"
    "\n"
    "LoRA mode (train_dreambooth_lora.py): `lora: true` trains a LoRA of the UNet's attention\n"
    "(to_q, to_k, to_v, to_out.0; `rank: 4` by default, lora_alpha = rank, learning_rate\n"
    "5e-4 by default; with `train_text_encoder: true` the text encoder's q/k/v/out_proj too)\n"
    "and writes only output_dir/pytorch_lora_weights.safetensors, which\n"
    "`sdbatch render --model PRETRAINED --lora FILE` and diffusers' load_lora_weights read.\n"
    "\n"
    "Prior preservation (both modes): `with_prior_preservation: true`, class_data_dir,\n"
    "class_prompt (required), num_class_images (100), prior_loss_weight (1.0); missing class\n"
    "images are rendered into class_data_dir from class_prompt before training.\n"
    "\n"
    "Validation renders (both modes): validation_prompt, num_validation_images (4),\n"
    "validation_steps (100): every validation_steps steps the prompt is rendered with the\n"
    "weights of that step (DPM-Solver++ 2M, 25 steps, guidance 7.5) into\n"
    "output_dir/validation/step-<step>-<k>.png.\n"
    "\n"
    "Every checkpointing_steps steps output_dir/checkpoint-<step>/ is written atomically;\n"
    "after a crash or kill, --resume continues from the latest one and ends at the same\n"
    "weights as an uninterrupted run. The loss of every step goes to output_dir/loss.csv.\n"
    "\n"
    "Under mpirun -n N (a build with SDBATCH_MPI) the N ranks share every step's items\n"
    "(train_batch_size x gradient_accumulation_steps), their gradients summed over MPI: the\n"
    "same run as one process, within float summation order; rank 0 writes output_dir.\n";

/* Data parallel ranks over an MPI communicator of the whole world. */
static int comm_sum_f64(void *ctx, double *data, size_t n) {
  return sd_comm_allreduce_sum_f64(ctx, data, n);
}

static int comm_barrier(void *ctx) {
  return sd_comm_barrier(ctx);
}

/* Started by mpirun / srun (Open MPI, PMI, PMIx): only then is MPI initialised. */
static bool launched(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

/* The launcher's rank count (1 when it names none). */
static int launched_ranks(void) {
  const char *names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *v = getenv(names[i]);
    if (v && atoi(v) > 0)
      return atoi(v);
  }
  return 1;
}

/* A step's ranks wait for each other at most this long (rank 0 renders class images and writes
 * checkpoints while the others wait). */
#define TRAIN_COMM_TIMEOUT_S (24.0 * 3600.0)

static const char *const train_epilogue =
    "Relative paths in CONFIG are taken from CONFIG's folder. The keys, their defaults and what\n"
    "is not supported yet (text-encoder training, mixed precision):\n"
    "docs/training.md, \"sdbatch train\", \"LoRA mode\" and \"Prior preservation\".\n";

int cmd_train(int argc, char **argv) {
  const char *cmd = "train";
  const char *config_path = NULL;
  bool resume = false, quiet = false;
  int threads = 0;
  const cli_option options[] = {
      CLI_OPTION("resume", NULL, CLI_FLAG, &resume,
                 "continue from output_dir's latest complete checkpoint\n(none: start at step 0)"),
      CLI_OPTION_THREADS(&threads),
      CLI_OPTION("quiet", NULL, CLI_FLAG, &quiet, "no progress lines"),
      {0},
  };
  const cli_command command = {.name = cmd,
                               .usage = train_usage,
                               .options = options,
                               .epilogue = train_epilogue,
                               .min_operands = 1,
                               .max_operands = 1,
                               .operand_name = "the training config (CONFIG.yaml)",
                               .operands = &config_path};
  int parsed = cli_parse(&command, argc, argv, true);
  if (parsed != CLI_PARSED)
    return cli_parse_exit_status(parsed);
  sd_cluster cluster;
  sd_cluster_init_single(&cluster);
  bool mpi = false;
  sd_comm *world = NULL;
  sd_grad_reduce ranks = {.rank = 0, .size = 1};
  if (launched()) {
    if (sd_cluster_init(&cluster) < 0)
      return cli_report_error(cmd);
    mpi = true;
    if (cluster.size == 1 && launched_ranks() > 1) { /* a build without SDBATCH_MPI */
      SD_ERROR("started as one of %d ranks, but this sdbatch was built without SDBATCH_MPI: every "
               "rank would train alone into the same output_dir; run one process, or build with "
               "SDBATCH_MPI=ON",
               launched_ranks());
      return cli_report_error(cmd);
    }
    if (cluster.size > 1) {
      if (sd_comm_split_world(0, cluster.rank, TRAIN_COMM_TIMEOUT_S, &world) < 0) {
        sd_error_context("data parallel ranks");
        cli_report_error(cmd);
        sd_cluster_abort(1);
        return 1;
      }
      ranks = (sd_grad_reduce){.rank = cluster.rank,
                               .size = cluster.size,
                               .sum_f64 = comm_sum_f64,
                               .barrier = comm_barrier,
                               .ctx = world};
      if (!threads) {
        sd_cluster every_rank_trains = cluster;
        every_rank_trains.worker_local_size = cluster.size; /* one node assumed */
        threads = sd_cluster_default_threads(&every_rank_trains);
      }
    }
  }
  bool rank0 = ranks.rank == 0;
  sd_dreambooth_config config;
  if (sd_dreambooth_config_load(config_path, &config) < 0) {
    int status = cli_report_error(cmd);
    if (ranks.size > 1)
      sd_cluster_abort(status);
    return status;
  }
  quiet = quiet || !rank0;
  sd_dreambooth_options opt = {.resume = resume,
                               .threads = threads,
                               .progress = !quiet,
                               .ranks = ranks.size > 1 ? &ranks : NULL};
  sd_dreambooth_result result;
  int rc = sd_dreambooth_train(&config, &opt, &result);
  if (rc < 0 && ranks.size > 1) { /* the other ranks may be waiting for this one */
    fprintf(stderr, "sdbatch train: rank %d: error: %s\n", ranks.rank, sd_error_message());
    sd_dreambooth_config_free(&config);
    sd_cluster_abort(1);
    return 1;
  }
  if (rc == 0 && !quiet)
    fprintf(stderr,
            "sdbatch train: %" PRId64 " steps (%" PRId64 " in this run, %.1f s, %.3f s/step), "
            "last loss %.4f; wrote %s\n",
            result.steps, result.steps - result.first_step, result.seconds,
            result.steps > result.first_step
                ? result.seconds / (double)(result.steps - result.first_step)
                : 0.0,
            (double)result.last_loss, config.output_dir);
  sd_dreambooth_config_free(&config);
  sd_comm_free(world);
  if (mpi && sd_cluster_finalize() < 0 && rc == 0)
    rc = -1;
  return rc == 0 ? 0 : cli_report_error(cmd);
}
