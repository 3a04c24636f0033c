/* Shared pieces of the sdbatch subcommands: option value parsers and options several commands
 * declare, and the error printers. */
#ifndef SDBATCH_CLI_H
#define SDBATCH_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "cli_options.h"

/* Values read by the library's parsers, for CLI_CUSTOM options (cli_options.h): each returns
 * 0, or -1 with the reason in error.h's message. */
int cli_parse_rng(const char *text, void *target);        /* sd_rng_kind */
int cli_parse_precision(const char *text, void *target);  /* sd_dtype */
int cli_parse_vae_tiling(const char *text, void *target); /* sd_vae_tiling */
int cli_parse_scheduler(const char *text, void *target);  /* sd_scheduler_kind */

/* Options several commands share, declared once. */
#define CLI_OPTION_DEVICE(target)                                                                  \
  {                                                                                                \
    "device", NULL, CLI_CHOICE, (target), "where to compute (default auto: cuda when available)",  \
        .choices = "cpu|cuda|auto"                                                                 \
  }
#define CLI_OPTION_PRECISION(target, given_flag)                                                   \
  {                                                                                                \
    "precision", "fp16|bf16|fp32", CLI_CUSTOM, (target),                                           \
        "CUDA activation and weight dtype (default fp16); the CPU always\ncomputes in fp32",       \
        .parse = cli_parse_precision, .given = (given_flag)                                        \
  }
#define CLI_OPTION_THREADS(target)                                                                 \
  { "threads", "N", CLI_INT, (target), "CPU threads (default: all cores)", .min = 1, .max = 1024 }

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
int cmd_inspect(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_run(int argc, char **argv);

#endif
