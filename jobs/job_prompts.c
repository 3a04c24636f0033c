/* prompts_file: one UTF-8 prompt a line. Line ends are \n or \r\n; a leading UTF-8 byte-order
 * mark is dropped; lines of only spaces and tabs are skipped; other lines are kept as they are. */
#include "job_internal.h"

#include "error.h"
#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_blank(const char *line, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (line[i] != ' ' && line[i] != '\t')
      return 0;
  return 1;
}

/* 1-based column (in characters) of byte offset `at` of a valid UTF-8 line. */
static int char_column(const char *line, size_t at) {
  int col = 1;
  for (size_t i = 0; i < at; i++)
    col += ((unsigned char)line[i] & 0xC0) != 0x80;
  return col;
}

int sd_job_read_prompts_file(sd_job *job) {
  char *text;
  size_t len;
  if (sd_file_read(job->prompts_file, SD_FILE_MAX_PROMPTS, &text, &len) != 0) {
    int code = errno;
    const char *cause = code == ENOMEM || code == EFBIG || code == EINVAL
                            ? sd_file_error_cause(job->prompts_file)
                            : strerror(code);
    char reason[256];
    snprintf(reason, sizeof reason, "%s", cause);
    return sd_job_error_at(job->path, job->prompts_file_pos, "prompts_file: cannot read '%s': %s",
                           job->prompts_file, reason);
  }
  int rc = sd_job_parse_prompts(job, text, len);
  free(text);
  return rc;
}

bool sd_text_next_line(const char *text, size_t len, size_t *pos, const char **line,
                       size_t *line_len) {
  if (*pos == 0 && len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
    *pos = 3;
  if (*pos >= len)
    return false;
  *line = text + *pos;
  const char *newline = memchr(*line, '\n', len - *pos);
  *line_len = newline ? (size_t)(newline - *line) : len - *pos;
  *pos += *line_len + (newline != NULL);
  if (*line_len > 0 && (*line)[*line_len - 1] == '\r')
    (*line_len)--;
  return true;
}

int sd_job_parse_prompts(sd_job *job, const char *text, size_t len) {
  size_t pos = 0, line_len;
  const char *line;
  int rc = 0;
  int line_no = 0;
  while (rc == 0 && sd_text_next_line(text, len, &pos, &line, &line_len)) {
    line_no++;
    size_t valid = sd_utf8_valid_prefix(line, line_len);
    const char *nul = memchr(line, '\0', valid);
    sd_job_pos pos = {line_no, 0};
    if (nul) {
      pos.col = char_column(line, (size_t)(nul - line));
      rc = sd_job_error_at(job->prompts_file, pos, "a NUL character in the prompt");
    } else if (valid < line_len) {
      pos.col = char_column(line, valid);
      rc = sd_job_error_at(job->prompts_file, pos, "invalid UTF-8 (byte 0x%02x)",
                           (unsigned char)line[valid]);
    } else if (!is_blank(line, line_len)) {
      rc = sd_job_add_prompt(job, line, line_len);
    }
  }
  if (rc != 0)
    return rc;
  if (job->info.n_prompts == 0)
    return sd_job_error_at(job->path, job->prompts_file_pos,
                           "prompts_file: '%s' has no prompts (blank lines are skipped)",
                           job->prompts_file);
  return 0;
}
