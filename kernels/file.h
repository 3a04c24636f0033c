/* Whole-file reads for library code: configs, vocabularies, job and prompt files are read into
 * memory in one call that names the file in its error. */
#ifndef SD_FILE_H
#define SD_FILE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Reads the file at path into a new buffer *data (free() it) of *len bytes plus a terminating
 * NUL; the file may itself hold NUL bytes. A file larger than max_bytes fails (SIZE_MAX: no
 * limit). On failure returns -1 with *data NULL, an error naming the path ("cannot open: ...",
 * "read error: ...", "larger than N bytes", "out of memory ...") and errno set to the cause
 * (open's or read's errno, EFBIG when too large, ENOMEM), so that a caller with its own wording
 * can replace the message. */
int sd_file_read(const char *path, size_t max_bytes, char **data, size_t *len);

#ifdef __cplusplus
}
#endif

#endif
