/* sd_rng against torch: the cpu generator's whole tensors as torch 2.x draws them
 * (tests/fixtures/rng/torch_randn.json, made by tests/reference/make_rng_fixtures.py), the cuda
 * generator's first values as torch printed them on a GPU, and further cuda values from an
 * independent emulation of RNG.md's description (other elements, later calls, 64-bit seeds). */
#include "test_util.h"

#include "kernels/error.h"
#include "rng/rng.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* torch's CPU Box-Muller uses vectorised log/sin/cos; libm's differ by an ulp or two. */
#define CPU_ATOL 1e-6f
#define CPU_RTOL 1e-6f
/* GPU log/sin against libm's (RNG.md measured up to 2.5e-6 over many tensors). */
#define CUDA_ATOL 2.5e-6f
#define CUDA_RTOL 1e-6f

static uint64_t seed_of(const cJSON *c) {
  const cJSON *seed = cJSON_GetObjectItem(c, "seed");
  return cJSON_IsString(seed) ? strtoull(seed->valuestring, NULL, 10) : 0;
}

static float *floats_of(const cJSON *array, size_t *n) {
  *n = (size_t)cJSON_GetArraySize(array);
  float *v = malloc((*n ? *n : 1) * sizeof *v);
  size_t i = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, array) v[i++] = (float)item->valuedouble;
  return v;
}

static void test_kind_parse(void) {
  sd_rng_kind kind = SD_RNG_CPU;
  CHECK(sd_rng_kind_parse("cuda", &kind) == 0 && kind == SD_RNG_CUDA, "parse cuda");
  CHECK(sd_rng_kind_parse("cpu", &kind) == 0 && kind == SD_RNG_CPU, "parse cpu");
  CHECK(sd_rng_kind_parse("mps", &kind) < 0 && strstr(sd_error_message(), "mps"),
        "parse rejects mps: %s", sd_error_message());
  CHECK(sd_rng_kind_parse(NULL, &kind) < 0, "parse rejects NULL");
}

/* The values torch printed for torch.randn((1, 4, 16, 16)) with seed 42 (RNG.md). */
static void test_torch_facts(void) {
  static const float cuda_want[4] = {0.19401880f, 2.16137362f, -0.17205022f, 0.84906012f};
  static const float cpu_want[4] = {1.92691529f, 1.48728406f, 0.90071720f, -2.10552096f};
  float out[1024];
  sd_rng rng;
  sd_rng_init(&rng, SD_RNG_CUDA, 42);
  CHECK(sd_rng_randn(&rng, out, 1024) == 0, "cuda randn");
  sd_test_compare_f32("cuda seed 42 first values (torch on a GPU)", out, cuda_want, 4, CUDA_ATOL,
                      CUDA_RTOL);
  sd_rng_init(&rng, SD_RNG_CPU, 42);
  CHECK(sd_rng_randn(&rng, out, 1024) == 0, "cpu randn");
  sd_test_compare_f32("cpu seed 42 first values (torch)", out, cpu_want, 4, CPU_ATOL, CPU_RTOL);
}

static void test_cpu_fixture(const cJSON *cases) {
  const cJSON *c;
  cJSON_ArrayForEach(c, cases) {
    uint64_t seed = seed_of(c);
    sd_rng rng;
    sd_rng_init(&rng, SD_RNG_CPU, seed);
    int call = 0;
    const cJSON *draw;
    cJSON_ArrayForEach(draw, cJSON_GetObjectItem(c, "draws")) {
      size_t n;
      float *want = floats_of(draw, &n);
      float *got = malloc(n * sizeof *got);
      char what[128];
      snprintf(what, sizeof what, "cpu seed %llu call %d (%zu values)", (unsigned long long)seed,
               call, n);
      CHECK(sd_rng_randn(&rng, got, n) == 0, "%s: %s", what, sd_error_message());
      sd_test_compare_f32(what, got, want, n, CPU_ATOL, CPU_RTOL);
      free(got);
      free(want);
      call++;
    }
  }
}

static void test_cuda_fixture(const cJSON *cases) {
  const cJSON *c;
  cJSON_ArrayForEach(c, cases) {
    uint64_t seed = seed_of(c);
    int call = cJSON_GetObjectItem(c, "call")->valueint;
    size_t n_idx, n_val;
    float *indices = floats_of(cJSON_GetObjectItem(c, "indices"), &n_idx);
    float *want = floats_of(cJSON_GetObjectItem(c, "values"), &n_val);
    size_t size = 0;
    for (size_t i = 0; i < n_idx; i++)
      if ((size_t)indices[i] + 1 > size)
        size = (size_t)indices[i] + 1;
    float *draw = malloc(size * sizeof *draw);
    float *got = malloc(n_idx * sizeof *got);
    sd_rng rng;
    sd_rng_init(&rng, SD_RNG_CUDA, seed);
    for (int k = 0; k <= call; k++)
      CHECK(sd_rng_randn(&rng, draw, size) == 0, "cuda randn");
    for (size_t i = 0; i < n_idx; i++)
      got[i] = draw[(size_t)indices[i]];
    char what[128];
    snprintf(what, sizeof what, "cuda seed %llu call %d (emulated)", (unsigned long long)seed,
             call);
    CHECK(n_idx == n_val, "fixture indices/values");
    sd_test_compare_f32(what, got, want, n_idx, 1e-6f, 1e-6f);
    free(draw);
    free(got);
    free(want);
    free(indices);
  }
}

/* Streams are per generator: a second generator with the same seed repeats the first draw, a
 * different seed does not, and the cpu kind refuses draws smaller than torch's 16-block;
 * sd_rng_philox_next names the next call's seed and offset and advances past it. */
static void test_stream_properties(void) {
  float a[256], b[256];
  sd_rng r1, r2;
  for (int kind = SD_RNG_CUDA; kind <= SD_RNG_CPU; kind++) {
    sd_rng_init(&r1, (sd_rng_kind)kind, 7);
    sd_rng_init(&r2, (sd_rng_kind)kind, 7);
    CHECK(sd_rng_randn(&r1, a, 256) == 0 && sd_rng_randn(&r2, b, 256) == 0, "draws");
    CHECK(memcmp(a, b, sizeof a) == 0, "kind %d: same seed, same numbers", kind);
    CHECK(sd_rng_randn(&r1, a, 256) == 0, "second draw");
    CHECK(memcmp(a, b, sizeof a) != 0, "kind %d: the second draw continues the stream", kind);
    sd_rng_init(&r2, (sd_rng_kind)kind, 8);
    CHECK(sd_rng_randn(&r2, a, 256) == 0 && memcmp(a, b, sizeof a) != 0,
          "kind %d: another seed, other numbers", kind);
  }
  sd_rng_init(&r1, SD_RNG_CPU, 1);
  CHECK(sd_rng_randn(&r1, a, 15) < 0 && strstr(sd_error_message(), "15"),
        "cpu kind refuses 15 values: %s", sd_error_message());
  /* the seed and offset handed to a device draw are those of the call it stands for */
  uint64_t seed = 0, offset = 1;
  sd_rng_init(&r1, SD_RNG_CUDA, 7);
  CHECK(sd_rng_philox_next(&r1, &seed, &offset) == 0 && seed == 7 && offset == 0,
        "philox_next of a fresh generator: seed %llu offset %llu", (unsigned long long)seed,
        (unsigned long long)offset);
  CHECK(sd_rng_randn(&r1, a, 256) == 0 && sd_rng_philox_next(&r1, &seed, &offset) == 0 &&
            offset == 8,
        "philox_next after two calls: offset %llu", (unsigned long long)offset);
  sd_rng_init(&r1, SD_RNG_CPU, 7);
  CHECK(sd_rng_philox_next(&r1, &seed, &offset) < 0, "philox_next accepted the cpu kind");
}

/* torch.randint and torch.randperm on torch.Generator('cpu'), as torch 2.15 printed them, also
 * interleaved with randn on one generator (the training loop's order). */
static void test_cpu_integers(void) {
  static const int64_t randint5[4] = {411, 814, 767, 885};
  static const int64_t perm5[7] = {1, 0, 4, 2, 6, 5, 3};
  static const int64_t perm11a[3] = {0, 2, 1}, int11[2] = {420, 665};
  static const int64_t perm11b[5] = {3, 1, 2, 4, 0};
  static const float randn11[3] = {-0.35315159f, 0.12299132f, -0.18155447f};
  int64_t got[8];
  float normal[256];
  sd_rng rng;
  sd_rng_init(&rng, SD_RNG_CPU, 5);
  CHECK(sd_rng_randint(&rng, 0, 1000, got, 4) == 0 && memcmp(got, randint5, sizeof randint5) == 0,
        "seed 5 randint(0, 1000, (4,)): %lld %lld %lld %lld", (long long)got[0], (long long)got[1],
        (long long)got[2], (long long)got[3]);
  sd_rng_init(&rng, SD_RNG_CPU, 5);
  CHECK(sd_rng_randperm(&rng, 7, got) == 0 && memcmp(got, perm5, sizeof perm5) == 0,
        "seed 5 randperm(7)");
  sd_rng_init(&rng, SD_RNG_CPU, 11);
  CHECK(sd_rng_randperm(&rng, 3, got) == 0 && memcmp(got, perm11a, sizeof perm11a) == 0,
        "seed 11 randperm(3)");
  CHECK(sd_rng_randn(&rng, normal, 256) == 0, "seed 11 randn after randperm");
  sd_test_compare_f32("seed 11 randn(256) after randperm(3) (torch)", normal, randn11, 3, CPU_ATOL,
                      CPU_RTOL);
  CHECK(sd_rng_randint(&rng, 0, 1000, got, 2) == 0 && memcmp(got, int11, sizeof int11) == 0,
        "seed 11 randint after randn");
  CHECK(sd_rng_randperm(&rng, 5, got) == 0 && memcmp(got, perm11b, sizeof perm11b) == 0,
        "seed 11 randperm(5) after randint");
  CHECK(sd_rng_randperm(&rng, 1, got) == 0 && got[0] == 0, "randperm(1)");
  CHECK(sd_rng_randint(&rng, 3, 3, got, 1) < 0, "randint refuses an empty range");
  sd_rng_init(&rng, SD_RNG_CUDA, 5);
  CHECK(sd_rng_randint(&rng, 0, 10, got, 1) < 0 && sd_rng_randperm(&rng, 3, got) < 0,
        "the cuda kind has no integer draws");
}

int main(void) {
  test_kind_parse();
  test_cpu_integers();
  test_torch_facts();
  test_stream_properties();

  const char *path = SD_TEST_FIXTURES "/rng/torch_randn.json";
  char *text = sd_test_read_file(path, NULL);
  cJSON *root = text ? cJSON_Parse(text) : NULL;
  CHECK(root != NULL, "read %s", path);
  if (root) {
    test_cpu_fixture(cJSON_GetObjectItem(root, "cpu"));
    test_cuda_fixture(cJSON_GetObjectItem(root, "cuda"));
  }
  cJSON_Delete(root);
  free(text);
  return sd_test_finish();
}
