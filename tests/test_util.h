/* Minimal test helpers: checks that count failures, array comparison with stated tolerances,
 * and an exit status ctest can see. Every test's main ends with `return sd_test_finish();`. */
#ifndef SD_TEST_UTIL_H
#define SD_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Counts a check; prints the message when it fails. Returns ok (1 or 0). */
int sd_test_check(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define CHECK(cond, ...) sd_test_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* Passes when every |got - want| <= atol + rtol * |want| (and both are finite); prints the
 * worst element and the max abs error either way. */
int sd_test_compare_f32(const char *what, const float *got, const float *want, size_t n, float atol,
                        float rtol);
int sd_test_compare_i32(const char *what, const int32_t *got, const int32_t *want, size_t n);

/* Pixels against reference uint8 values stored as floats: passes when no value differs by more
 * than max_diff levels and at least min_exact_share of them are exact; prints both figures. */
int sd_test_compare_pixels(const char *what, const uint8_t *got, const float *want, size_t n,
                           int max_diff, double min_exact_share);

/* Fills x with deterministic pseudo-random values in [-scale, scale]. */
void sd_test_fill_random(float *x, size_t n, uint32_t seed, float scale);

/* The whole file at path in a new NUL-terminated buffer (free() it), its size in *len when len is
 * not NULL; NULL when it cannot be read. */
char *sd_test_read_file(const char *path, size_t *len);

/* Factor for time limits in tests: the sanitizer build (scripts/test.sh --sanitize) runs the same
 * code several times slower. */
#if defined(__SANITIZE_ADDRESS__)
#define SD_TEST_TIME_SCALE 5.0
#else
#define SD_TEST_TIME_SCALE 1.0
#endif

/* Prints "N passed, M failed" and returns 0 when nothing failed, 1 otherwise. */
int sd_test_finish(void);

#endif
