/* The table-driven option parser (cli_options.h): getopt_long over a struct option array built
 * from the command's table, so every command accepts what GNU getopt accepts (--name=value,
 * unambiguous prefixes, operands anywhere, "--" ending the options). */
#include "cli_options.h"

#include "kernels/error.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* getopt_long's value for table entry i; below it, its own codes ('?', ':'). */
#define OPTION_VALUE_BASE 256
/* Synopses up to this length share their line with the help text. */
#define SYNOPSIS_INLINE_MAX 22

static int usage_error(const cli_command *command, bool speak, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int usage_error(const cli_command *command, bool speak, const char *fmt, ...) {
  if (!speak)
    return CLI_USAGE;
  fprintf(stderr, "sdbatch %s: ", command->name);
  va_list args;
  va_start(args, fmt);
  vfprintf(stderr, fmt, args);
  va_end(args);
  fprintf(stderr, "\n(see 'sdbatch %s --help')\n", command->name);
  return CLI_USAGE;
}

static int option_count(const cli_command *command) {
  int n = 0;
  while (command->options[n].name)
    n++;
  return n;
}

/* "cpu|cuda|auto" -> "cpu, cuda or auto" */
static void choices_text(const char *choices, char *buf, size_t size) {
  int words = 1;
  for (const char *c = choices; *c; c++)
    words += *c == '|';
  size_t used = 0;
  const char *word = choices;
  for (int k = 0; k < words && used < size; k++) {
    size_t len = strcspn(word, "|");
    const char *sep = k == 0 ? "" : k == words - 1 ? " or " : ", ";
    used += (size_t)snprintf(buf + used, size - used, "%s%.*s", sep, (int)len, word);
    word += len + 1;
  }
}

static bool is_choice(const char *choices, const char *text) {
  size_t text_len = strlen(text);
  for (const char *word = choices; *word;) {
    size_t len = strcspn(word, "|");
    if (len == text_len && strncmp(word, text, len) == 0)
      return true;
    word += word[len] ? len + 1 : len;
  }
  return false;
}

/* Parses one option's value into its target; a usage error names the flag. */
static int parse_value(const cli_command *command, const cli_option *opt, const char *text,
                       bool speak) {
  char *end = NULL;
  errno = 0;
  switch (opt->kind) {
  case CLI_FLAG:
    *(bool *)opt->target = true;
    return CLI_PARSED;
  case CLI_STRING:
    *(const char **)opt->target = text;
    return CLI_PARSED;
  case CLI_INT: {
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < opt->min || value > opt->max)
      return usage_error(command, speak, "--%s: expected an integer from %.0f to %.0f, got '%s'",
                         opt->name, opt->min, opt->max, text);
    *(int *)opt->target = (int)value;
    return CLI_PARSED;
  }
  case CLI_U64: {
    unsigned long long value = text[0] == '-' ? 0 : strtoull(text, &end, 10);
    if (text[0] == '-' || errno || end == text || *end)
      return usage_error(command, speak, "--%s: expected a non-negative integer, got '%s'",
                         opt->name, text);
    *(uint64_t *)opt->target = (uint64_t)value;
    return CLI_PARSED;
  }
  case CLI_FLOAT: {
    float value = strtof(text, &end);
    bool ranged = opt->min < opt->max;
    if (errno || end == text || *end || !isfinite(value) ||
        (ranged && (value < opt->min || value > opt->max))) {
      if (ranged)
        return usage_error(command, speak, "--%s: expected a number from %g to %g, got '%s'",
                           opt->name, opt->min, opt->max, text);
      return usage_error(command, speak, "--%s: expected a number, got '%s'", opt->name, text);
    }
    *(float *)opt->target = value;
    return CLI_PARSED;
  }
  case CLI_CHOICE:
    if (!is_choice(opt->choices, text)) {
      char expected[256];
      choices_text(opt->choices, expected, sizeof expected);
      return usage_error(command, speak, "--%s: expected %s, got '%s'", opt->name, expected, text);
    }
    *(const char **)opt->target = text;
    return CLI_PARSED;
  case CLI_CUSTOM:
    if (opt->parse(text, opt->target) < 0)
      return usage_error(command, speak, "--%s: %s", opt->name, sd_error_message());
    return CLI_PARSED;
  }
  return usage_error(command, speak, "--%s: unknown option kind", opt->name);
}

/* The text of an argument getopt refused: "--colour" of "--colour=red". */
static int refused_option(const cli_command *command, const char *arg, int code, bool speak) {
  int n = option_count(command);
  if (code == ':' || (code == '?' && optopt >= OPTION_VALUE_BASE)) {
    int i = optopt - OPTION_VALUE_BASE;
    if (i >= 0 && i < n) {
      const cli_option *opt = &command->options[i];
      if (opt->kind == CLI_FLAG)
        return usage_error(command, speak, "--%s takes no value, got '%s'", opt->name, arg);
      return usage_error(command, speak, "--%s: a value (%s) is required", opt->name,
                         opt->value ? opt->value : opt->choices);
    }
    if (i == n)
      return usage_error(command, speak, "--help takes no value, got '%s'", arg);
  }
  return usage_error(command, speak, "unknown or ambiguous option '%s'", arg);
}

int cli_parse(const cli_command *command, int argc, char **argv, bool speak) {
  int n = option_count(command);
  struct option *long_options = calloc((size_t)n + 2, sizeof *long_options);
  if (!long_options)
    return usage_error(command, speak, "out of memory");
  for (int i = 0; i < n; i++) {
    const cli_option *opt = &command->options[i];
    long_options[i] =
        (struct option){opt->name, opt->kind == CLI_FLAG ? no_argument : required_argument, NULL,
                        OPTION_VALUE_BASE + i};
  }
  long_options[n] = (struct option){"help", no_argument, NULL, OPTION_VALUE_BASE + n};
  bool *seen = calloc((size_t)n + 1, sizeof *seen);
  int rc = seen ? CLI_PARSED : usage_error(command, speak, "out of memory");
  optind = 1;
  opterr = 0;
  int code;
  while (rc == CLI_PARSED && (code = getopt_long(argc, argv, ":", long_options, NULL)) != -1) {
    int i = code - OPTION_VALUE_BASE;
    if (i == n) {
      if (speak)
        cli_print_help(command, stdout);
      rc = CLI_HELPED;
    } else if (i >= 0 && i < n) {
      const cli_option *opt = &command->options[i];
      rc = parse_value(command, opt, optarg, speak);
      seen[i] = true;
      if (rc == CLI_PARSED && opt->given)
        *opt->given = true;
    } else {
      rc = refused_option(command, argv[optind - 1], code, speak);
    }
  }
  int operands = argc - optind;
  if (rc == CLI_PARSED && operands > command->max_operands)
    rc = usage_error(command, speak, "unexpected argument '%s'",
                     argv[optind + command->max_operands]);
  for (int i = 0; rc == CLI_PARSED && i < n; i++)
    if (command->options[i].required && !seen[i])
      rc = usage_error(command, speak, "--%s is required", command->options[i].name);
  if (rc == CLI_PARSED && operands < command->min_operands)
    rc = usage_error(command, speak, "%s is required", command->operand_name);
  for (int k = 0; rc == CLI_PARSED && k < operands; k++)
    command->operands[k] = argv[optind + k];
  free(seen);
  free(long_options);
  return rc;
}

static void synopsis(const cli_option *opt, char *buf, size_t size) {
  if (opt->synopsis)
    snprintf(buf, size, "%s", opt->synopsis);
  else if (opt->kind == CLI_FLAG)
    snprintf(buf, size, "--%s", opt->name);
  else
    snprintf(buf, size, "--%s %s", opt->name, opt->value ? opt->value : opt->choices);
}

/* Prints help's lines, the first after `used` columns, all starting at `column`. */
static void print_help_lines(FILE *out, const char *help, int used, int column) {
  for (const char *line = help; line;) {
    const char *newline = strchr(line, '\n');
    int len = newline ? (int)(newline - line) : (int)strlen(line);
    fprintf(out, "%*s%.*s\n", column - used, "", len, line);
    used = 0;
    line = newline ? newline + 1 : NULL;
  }
}

void cli_print_help(const cli_command *command, FILE *out) {
  char text[256];
  int width = (int)strlen("--help");
  for (const cli_option *opt = command->options; opt->name; opt++) {
    synopsis(opt, text, sizeof text);
    int len = (int)strlen(text);
    if (opt->help && len <= SYNOPSIS_INLINE_MAX && len > width)
      width = len;
  }
  int column = 2 + width + 2;
  fputs(command->usage, out);
  fputs("\n", out);
  for (const cli_option *opt = command->options; opt->name; opt++) {
    if (!opt->help)
      continue;
    synopsis(opt, text, sizeof text);
    int used = fprintf(out, "  %s", text);
    if (used + 2 > column) {
      fputs("\n", out);
      used = 0;
    }
    print_help_lines(out, opt->help, used, column);
  }
  print_help_lines(out, "this text", fprintf(out, "  --help"), column);
  if (command->epilogue) {
    fputs("\n", out);
    fputs(command->epilogue, out);
  }
}
