/* The table-driven option parser of the sdbatch subcommands: each command declares its options
 * once (name, kind, value name, help line, target) and one parser reads argv into the targets,
 * names the flag in every error and generates the command's --help text from the same table. */
#ifndef SDBATCH_CLI_OPTIONS_H
#define SDBATCH_CLI_OPTIONS_H

#include <stdbool.h>
#include <stdio.h>

typedef enum cli_kind {
  CLI_FLAG,   /* no value: *(bool *)target = true */
  CLI_STRING, /* *(const char **)target = the value */
  CLI_INT,    /* *(int *)target, an integer from min to max */
  CLI_U64,    /* *(uint64_t *)target, a non-negative integer */
  CLI_FLOAT,  /* *(float *)target, a finite number (from min to max when min < max) */
  CLI_CHOICE, /* *(const char **)target = one of the '|'-separated words of choices */
  CLI_CUSTOM, /* parse(text, target): 0, or -1 with the reason in error.h's message */
} cli_kind;

typedef struct cli_option {
  const char *name;  /* without the dashes: "steps" */
  const char *value; /* the value's name in --help ("N"); NULL for CLI_FLAG */
  cli_kind kind;
  void *target;
  /* The help text; '\n' starts a continuation line. NULL: the option is described on the line
   * of the option before it (whose synopsis names both). */
  const char *help;
  double min, max;                              /* CLI_INT (required), CLI_FLOAT (optional range) */
  const char *choices;                          /* CLI_CHOICE: "cpu|cuda|auto" */
  int (*parse)(const char *text, void *target); /* CLI_CUSTOM */
  bool required;                                /* "--NAME is required" when absent */
  bool *given;                                  /* optional: set to true when the option is given */
  const char *synopsis; /* optional: the --help column text instead of "--NAME VALUE" */
} cli_option;

/* One table entry: CLI_OPTION(name, value, kind, target, help, optional designated fields such
 * as .min = 1, .max = 1000, .required = true). A table ends with {0}. */
#define CLI_OPTION(name_, value_, kind_, target_, help_, ...)                                      \
  {                                                                                                \
    .name = (name_), .value = (value_), .kind = (kind_), .target = (target_), .help = (help_),     \
    __VA_ARGS__                                                                                    \
  }

typedef struct cli_command {
  const char *name;          /* "render", for messages: "sdbatch render: ..." */
  const char *usage;         /* --help text before the option list (usage lines, description) */
  const cli_option *options; /* ends with an entry whose name is NULL; --help is implicit */
  const char *epilogue;      /* --help text after the option list, or NULL */
  /* Operands (non-option arguments): at most max_operands of them go to operands[]; fewer than
   * min_operands is refused with "<operand_name> is required". */
  int min_operands, max_operands;
  const char *operand_name; /* "the output file (OUT.h5)" */
  const char **operands;    /* max_operands entries; NULL when max_operands is 0 */
} cli_command;

enum {
  CLI_PARSED = 0, /* the targets are set; go on */
  CLI_HELPED = 1, /* --help printed the help text: exit 0 */
  CLI_USAGE = 2,  /* a usage error (printed when speak): exit 2 */
};

/* Reads argv[1..argc-1] into the targets. Errors (printed to stderr only when speak) name the
 * flag: "sdbatch render: --steps: expected an integer from 1 to 1000, got 'ten'". Returns
 * CLI_PARSED, CLI_HELPED or CLI_USAGE. */
int cli_parse(const cli_command *command, int argc, char **argv, bool speak);

/* The exit status for a cli_parse result other than CLI_PARSED: 0 after --help, else 2. */
static inline int cli_parse_exit_status(int parsed) {
  return parsed == CLI_HELPED ? 0 : 2;
}

/* The whole --help text of a command, as cli_parse prints it. */
void cli_print_help(const cli_command *command, FILE *out);

#endif
