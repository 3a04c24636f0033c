/* SHA-256 (FIPS 180-4), streaming; used for the job content hash and the adapter files' hashes. */
#ifndef SD_SHA256_H
#define SD_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sd_sha256 {
  uint32_t state[8];
  uint64_t total_bytes;
  uint8_t block[64];
  size_t block_used;
} sd_sha256;

void sd_sha256_init(sd_sha256 *ctx);
void sd_sha256_update(sd_sha256 *ctx, const void *data, size_t len);
/* Writes the digest as 64 lowercase hex characters and a NUL into hex. */
void sd_sha256_final_hex(sd_sha256 *ctx, char hex[65]);
/* The digest of a whole file (hex as above); -1 with an error naming the file. */
int sd_sha256_file(const char *path, char hex[65]);

#endif
