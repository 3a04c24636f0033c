/* Shared pieces of the sdbatch subcommands: option value parsers and options several commands
 * declare, and the error printers. */
#ifndef SDBATCH_CLI_H
#define SDBATCH_CLI_H

#include "worker/pipeline/engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli_options.h"

/* Values read by the library's parsers, for CLI_CUSTOM options (cli_options.h): each returns
 * 0, or -1 with the reason in error.h's message. */
int cli_parse_rng(const char *text, void *target);         /* sd_rng_kind */
int cli_parse_precision(const char *text, void *target);   /* sd_dtype */
int cli_parse_vae_tiling(const char *text, void *target);  /* sd_vae_tiling */
int cli_parse_dpt_backend(const char *text, void *target); /* sd_dpt_backend */
int cli_parse_scheduler(const char *text, void *target);   /* sd_scheduler_kind */

/* Options several commands share, declared once. */
#define CLI_OPTION_DEVICE(target)                                                                  \
  CLI_OPTION("device", NULL, CLI_CHOICE, (target),                                                 \
             "where to compute (default auto: cuda when available)", .choices = "cpu|cuda|auto")
#define CLI_OPTION_PRECISION(target, given_flag)                                                   \
  CLI_OPTION(                                                                                      \
      "precision", "fp16|bf16|fp32", CLI_CUSTOM, (target),                                         \
      "CUDA activation and weight dtype (default fp16); the CPU computes\nin fp32, or with "       \
      "bf16 GEMM and convolution inputs for bf16 (needs\nAVX512_BF16 or AMX)",                     \
      .parse = cli_parse_precision, .given = (given_flag))
#define CLI_OPTION_THREADS(target)                                                                 \
  CLI_OPTION("threads", "N", CLI_INT, (target), "CPU threads (default: all cores)", .min = 1,      \
             .max = 1024)

/* Adapters given with --lora FILE[:SCALE] and --embedding FILE[:TOKEN] (repeatable): the text
 * is split at its last ':' unless it names an existing file as a whole; the scale must be a
 * finite number (default 1), the token non-empty (default: the file's). Paths are owned
 * (cli_adapters_free). */
#define CLI_MAX_ADAPTERS 32
typedef struct cli_adapters {
  sd_lora_spec loras[CLI_MAX_ADAPTERS];
  int lora_count;
  sd_embedding_spec embeddings[CLI_MAX_ADAPTERS];
  int embedding_count;
} cli_adapters;
int cli_parse_lora(const char *text, void *target);      /* appends to a cli_adapters */
int cli_parse_embedding(const char *text, void *target); /* appends to a cli_adapters */
void cli_adapters_free(cli_adapters *adapters);
/* Appends ", LoRA 1: FILE, LoRA 1 scale: S, LoRA 1 SHA-256: HEX, ..., Embedding 1: FILE,
 * Embedding 1 token: T, Embedding 1 SHA-256: HEX" to buf (size bytes, NUL-terminated); -1 with
 * an error naming an unreadable file. */
int cli_format_adapters(const cli_adapters *adapters, char *buf, size_t size);

#define CLI_OPTION_LORA(target)                                                                    \
  {                                                                                                \
    "lora", "FILE[:SCALE]", CLI_CUSTOM, (target),                                                  \
        "merge a LoRA (.safetensors: diffusers/peft or kohya-ss, UNet and\n"                       \
        "text encoder, LoCon conv layers) into the weights at strength\n"                          \
        "SCALE (default 1, as diffusers' set_adapters weight); repeatable",                        \
        .parse = cli_parse_lora                                                                    \
  }
#define CLI_OPTION_EMBEDDING(target)                                                               \
  {                                                                                                \
    "embedding", "FILE[:TOKEN]", CLI_CUSTOM, (target),                                             \
        "add a textual-inversion embedding (.safetensors: diffusers'\n"                            \
        "learned_embeds or A1111 emb_params) used by TOKEN in prompts\n"                           \
        "(default: the file's token; A1111: the file name); a token of N\n"                        \
        "vectors stands for N tokens, as in diffusers; repeatable\n"                               \
        "(docs/adapters.md)",                                                                      \
        .parse = cli_parse_embedding                                                               \
  }

/* Prints "sdbatch <command>: error: <message of error.h>" (and where it was raised when
 * SDBATCH_DEBUG is set). Returns the exit status 1. */
int cli_report_error(const char *command);
/* Prints "sdbatch <command>: <message>" plus a hint to --help; returns the exit status 2. */
int cli_usage_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The subcommands. */
int cmd_render(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_make_demo_model(int argc, char **argv);
int cmd_make_shapes(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_train_demo(int argc, char **argv);

#endif
