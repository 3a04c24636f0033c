/* Opening and reading untrusted input files. Every file sdbatch reads (checkpoints, configs,
 * vocabularies, job and prompt files, images, output files) may come from someone else, so each
 * is opened through one of these: only a regular file is accepted (a FIFO, device, socket or
 * folder is refused before anything could block on it, e.g. /dev/zero or a named pipe given as a
 * config), and a per-kind size limit is checked before the bytes are read. Errors name the path.
 * docs/security.md lists the limits. */
#ifndef SD_FILE_H
#define SD_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Size limits by kind of file, far above what real models and jobs hold (noted after each). */
#define SD_FILE_MAX_CONFIG  ((size_t)16 << 20)  /* config.json & co.: a few KB */
#define SD_FILE_MAX_VOCAB   ((size_t)64 << 20)  /* vocab.json, merges.txt, tokenizer.json: 2-4 MB */
#define SD_FILE_MAX_BPE_GZ  ((size_t)16 << 20)  /* CLIP's bpe_simple_vocab_16e6.txt.gz: 1.3 MB */
#define SD_FILE_MAX_BPE_TXT ((size_t)64 << 20)  /* the same decompressed: 1.4 MB */
#define SD_FILE_MAX_YAML    ((size_t)1 << 20)   /* LDM YAML (v1-inference.yaml): 2 KB */
#define SD_FILE_MAX_JOB     ((size_t)16 << 20)  /* job files: a few KB, or MB of inline prompts */
#define SD_FILE_MAX_PROMPTS ((size_t)1 << 30)   /* prompts_file: millions of prompts */
#define SD_FILE_MAX_IMAGE   ((size_t)512 << 20) /* input images (PNG, JPEG, .npy) */
#define SD_FILE_MAX_MODEL   SIZE_MAX            /* safetensors: mapped, not read; no limit */

/* Opens path read-only (close-on-exec) after checking, on the opened descriptor itself, that it
 * is a regular file of at most max_bytes bytes (SIZE_MAX: no limit); never blocks on a FIFO.
 * Returns the descriptor and its size in *size (may be NULL), or -1 with an error naming the path
 * ("cannot open: ...", "not a regular file (a FIFO)", "N bytes, larger than the limit of M") and
 * errno set to the cause (open's errno, EINVAL for a file that is not regular, EFBIG when too
 * large). */
int sd_file_open_regular(const char *path, size_t max_bytes, size_t *size);

/* The same as a stdio stream ("rb"), for libraries that read from a FILE * (libpng, libjpeg). */
FILE *sd_file_fopen_regular(const char *path, size_t max_bytes, size_t *size);

/* The same checks on a path that a library opens by itself (HDF5): 0 when path names a regular
 * file within the limit, else -1 with the error of sd_file_open_regular. The file could change
 * between this check and the library's open; use it only where no descriptor can be passed. */
int sd_file_check_regular(const char *path, size_t max_bytes, size_t *size);

/* Reads the regular file at path into a new buffer *data (free() it) of *len bytes plus a
 * terminating NUL; the file may itself hold NUL bytes. A file larger than max_bytes fails, even
 * one that grows while it is read or whose stated size is 0 (/proc). On failure returns -1 with
 * *data NULL, an error naming the path (as sd_file_open_regular, "read error: ...", "out of
 * memory ...") and errno set to the cause (ENOMEM when out of memory), so that a caller with its
 * own wording can replace the message. */
int sd_file_read(const char *path, size_t max_bytes, char **data, size_t *len);

/* Checks, before any work, that an output file can be written at path and that writing it
 * replaces nothing but a regular file: path is not empty and does not end in '/', its folder
 * exists and is writable, and path is absent or a regular file (not a folder, a device such as
 * /dev/full, a FIFO, a socket or a symbolic link). 0, or -1 with an error naming the path.
 * Writers call it again just before renaming their finished temporary file into place. */
int sd_file_check_output(const char *path);

/* The folder part of path into buf: "." when path has no '/', "/" for a file at the root. 0, or
 * -1 (no error set; buf holds a truncated folder) when the folder does not fit in size bytes. */
int sd_file_parent_folder(const char *path, char *buf, size_t size);

/* After a failure of the functions above: the error's cause without the leading "<path>: ", for
 * callers that word the error themselves ("not a regular file (a FIFO)"). */
const char *sd_file_error_cause(const char *path);

#ifdef __cplusplus
}
#endif

#endif
