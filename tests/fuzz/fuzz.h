/* Shared by the libFuzzer harnesses of tests/fuzz (docs/security.md, "Fuzzing"). A harness is
 * one file fuzz_<name>.c that defines
 *     int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
 * and returns 0 for every input: a library error is the expected answer to bad bytes; what the
 * harness looks for is a crash, a sanitizer report, a leak, a hang or a runaway allocation. The
 * same file is built twice: with clang's -fsanitize=fuzzer (SDBATCH_FUZZ=ON, scripts/fuzz.sh)
 * and, in every build, with replay_main.c, which runs the committed corpus through it as a ctest.
 * Harnesses never print on their own: a passing input is silent. */
#ifndef SD_FUZZ_H
#define SD_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A path naming a regular in-memory file (memfd) that holds data[0, size) until the next call,
 * for code that only reads paths. NULL when the file cannot be written. */
const char *sd_fuzz_file(const uint8_t *data, size_t size);

/* Splits data at the first occurrence of separator: [0, *first) and [*second_at, size). Without
 * the separator the whole input is the first part and the second is empty. */
void sd_fuzz_split(const uint8_t *data, size_t size, const char *separator, size_t *first,
                   size_t *second_at);

/* data as a new NUL-terminated string (free() it); NULL when out of memory. */
char *sd_fuzz_string(const uint8_t *data, size_t size);

/* The source tree's fixtures folder (tests/fixtures), for harnesses that pair the input with a
 * real model file. */
#define SD_FUZZ_FIXTURES SD_SOURCE_DIR "/tests/fixtures"

#endif
