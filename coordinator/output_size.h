/* The size of a new output file, checked against the free space of its file system before the
 * file is created (docs/output.md): a job of absurd size is refused, never left to fill a disk. */
#ifndef SD_OUTPUT_SIZE_H
#define SD_OUTPUT_SIZE_H

#include "output.h"

#include <stddef.h>

/* Bytes a file of schema version will hold once every item is done: images, latents when saved
 * (with their chunks' checksums in version 2), the per-item metadata and the prompts, plus a
 * margin for HDF5's own structures. A double: absurd jobs exceed 2^64. */
double sd_output_estimated_bytes(const sd_output_spec *spec, int version);

/* bytes as "12.3 GiB" into buf. */
void sd_output_format_bytes(double bytes, char *buf, size_t size);

/* 0 when the file system of path (the file to create) has room for the finished output of schema
 * version; -1 with an error giving both sizes otherwise. */
int sd_output_check_space(const sd_output_spec *spec, int version, const char *path);

#endif
