/* Helpers of the whole-pipeline parity tests (test_img2img, test_depth2img). */
#ifndef SD_TEST_PIPELINE_UTIL_H
#define SD_TEST_PIPELINE_UTIL_H

#include "io/safetensors.h"
#include "pipeline/engine.h"

#include <cjson/cJSON.h>
#include <stddef.h>

/* Fixture tensor `name` of file as host float32 (malloc'ed; the caller frees), its element count
 * in *n; NULL, with a failed check, when the fixture lacks it. */
float *sd_test_fixture_f32(const sd_safetensors *file, const char *name, size_t *n);

/* The engine of tests/fixtures/<model> on the CPU; NULL, with a failed check, when it does not
 * open. */
sd_engine *sd_test_open_engine(const char *model);

/* The item and batch of fixture case k from its metadata (prompt, seed, guidance_scale, width,
 * height, steps, scheduler, rng); the item's prompt stays the case's string. */
void sd_test_case_item(const cJSON *c, int k, sd_txt2img_item *item, sd_txt2img_batch *batch);

/* Checks the render of fixture case k (rc: sd_render's result) against case.<k>.latents within
 * 1e-3 absolute + 1e-3 relative and case.<k>.image within 1 level and >= 99.9 % exact, naming
 * the case by `what`; frees *result when the render succeeded. */
void sd_test_check_case(const sd_safetensors *fixture, int k, const char *what, int rc,
                        sd_txt2img_result *result);

#endif
