/* Shared pieces of the sdbatch subcommands: flag value parsing with clear errors, and the
 * error printer. */
#ifndef SDBATCH_CLI_H
#define SDBATCH_CLI_H

#include <stdbool.h>
#include <stdint.h>

/* Each parser returns 0, or -1 after printing "sdbatch <command>: <flag>: ..." to stderr. */
int cli_parse_int(const char *command, const char *flag, const char *text, int min, int max,
                  int *out);
int cli_parse_u64(const char *command, const char *flag, const char *text, uint64_t *out);
int cli_parse_float(const char *command, const char *flag, const char *text, float *out);

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
