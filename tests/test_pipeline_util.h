/* Helpers of the whole-pipeline parity tests (test_img2img, test_depth2img). */
#ifndef SD_TEST_PIPELINE_UTIL_H
#define SD_TEST_PIPELINE_UTIL_H

#include "io/safetensors.h"
#include "pipeline/engine.h"

#include <stddef.h>

/* Fixture tensor `name` of file as host float32 (malloc'ed; the caller frees), its element count
 * in *n; NULL, with a failed check, when the fixture lacks it. */
float *sd_test_fixture_f32(const sd_safetensors *file, const char *name, size_t *n);

/* The engine of tests/fixtures/<model> on the CPU; NULL, with a failed check, when it does not
 * open. */
sd_engine *sd_test_open_engine(const char *model);

#endif
