/* Job files (jobs/): every field of a full job and the defaults of a minimal one, expansion order
 * and counts against naive nested loops, O(1) items of a 1,000,000-item job, prompts files, the
 * job hash (equal for equal content, and the documented canonical text), batch compatibility,
 * path checks, each error message's exact file:line:col (fixtures by
 * tests/reference/make_job_fixtures.py), and mutated job files that must fail cleanly. */
#include "test_util.h"

#include "error.h"
#include "jobs/job.h"
#include "jobs/job_internal.h"
#include "jobs/sha256.h"
#include "sched/scheduler.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define JOBS SD_TEST_FIXTURES "/jobs/"

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static sd_job *load_ok(const char *path) {
  sd_job *job = NULL;
  int rc = sd_job_load(path, &job);
  CHECK(rc == 0 && job, "load %s: %s", path, sd_error_message());
  return rc == 0 ? job : NULL;
}

static void test_sha256(void) {
  static const struct {
    const char *text;
    const char *digest;
  } vectors[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
  };
  for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
    sd_sha256 sha;
    char hex[65];
    sd_sha256_init(&sha);
    sd_sha256_update(&sha, vectors[i].text, strlen(vectors[i].text));
    sd_sha256_final_hex(&sha, hex);
    CHECK(!strcmp(hex, vectors[i].digest), "sha256('%s') = %s", vectors[i].text, hex);
  }
  /* a million 'a' fed in uneven pieces crosses every block boundary case */
  sd_sha256 sha;
  char hex[65], chunk[1000];
  memset(chunk, 'a', sizeof chunk);
  sd_sha256_init(&sha);
  for (size_t done = 0, piece = 1; done < 1000000; done += piece, piece = piece % 997 + 1) {
    if (piece > 1000000 - done)
      piece = 1000000 - done;
    sd_sha256_update(&sha, chunk, piece);
  }
  sd_sha256_final_hex(&sha, hex);
  CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
        "sha256(a x 1e6) = %s", hex);
}

static void test_full_job(void) {
  sd_job *job = load_ok(JOBS "good_full.yaml");
  if (!job)
    return;
  const sd_job_info *info = sd_job_get_info(job);
  CHECK(!strcmp(info->path, JOBS "good_full.yaml"), "path %s", info->path);
  CHECK(!strcmp(info->model, JOBS "models/sd15"), "model %s", info->model);
  CHECK(info->model_config && !strcmp(info->model_config, "/abs/v1-inference.yaml"),
        "model_config %s", info->model_config ? info->model_config : "(null)");
  CHECK(!strcmp(info->output, JOBS "results/out.h5"), "output %s", info->output);
  CHECK(info->prompts_file == NULL, "prompts_file is NULL for inline prompts");
  CHECK(!strcmp(info->negative_prompt, "blurry, low quality"), "negative %s",
        info->negative_prompt);
  static const char *const prompts[] = {"a photo of an astronaut riding a horse",
                                        "ein Pferd im Schnee, \xc3\x96lgem\xc3\xa4lde",
                                        "plain text prompt"};
  CHECK(info->n_prompts == 3, "n_prompts %" PRId64, info->n_prompts);
  for (int i = 0; i < 3 && i < info->n_prompts; i++) {
    const char *p = sd_job_prompt(job, i);
    CHECK(p && !strcmp(p, prompts[i]), "prompt %d: '%s'", i, p ? p : "(null)");
  }
  CHECK(sd_job_prompt(job, 3) == NULL, "prompt 3 is out of range");
  CHECK(strstr(sd_error_message(), "good_full.yaml: prompt 3 out of range [0, 3)") != NULL,
        "prompt range error: %s", sd_error_message());
  static const uint64_t seeds[] = {42, 7, UINT64_MAX};
  CHECK(info->n_seeds == 3, "n_seeds %" PRId64, info->n_seeds);
  for (int i = 0; i < 3; i++) {
    uint64_t seed = 0;
    CHECK(sd_job_seed(job, i, &seed) == 0 && seed == seeds[i], "seed %d: %" PRIu64, i, seed);
  }
  CHECK(sd_job_seed(job, -1, &(uint64_t){0}) != 0, "seed -1 is out of range");
  CHECK(info->width == 768 && info->height == 64, "size %dx%d", info->width, info->height);
  CHECK(info->n_steps == 2 && info->steps[0] == 20 && info->steps[1] == 50, "steps");
  CHECK(info->n_guidance == 3 && info->guidance_scales[0] == 1.0 &&
            info->guidance_scales[1] == 7.5 && info->guidance_scales[2] == 12.25,
        "guidance scales");
  CHECK(info->n_schedulers == 3 && info->schedulers[0] == SD_SCHED_EULER &&
            info->schedulers[1] == SD_SCHED_DPMPP_2M &&
            info->schedulers[2] == SD_JOB_SCHEDULER_DEFAULT,
        "schedulers");
  CHECK(info->karras, "karras");
  CHECK(info->rng == SD_RNG_CPU, "rng");
  CHECK(info->batch_size == 8, "batch_size %d", info->batch_size);
  CHECK(info->save_latents, "save_latents");
  CHECK(info->device == SD_JOB_DEVICE_CUDA, "device");
  CHECK(info->ranks_per_image == 2 && info->cfg_parallel, "ranks_per_image %d, cfg_parallel %d",
        info->ranks_per_image, info->cfg_parallel);
  CHECK(info->n_items == 3 * 3 * 2 * 3 * 3 && sd_job_item_count(job) == info->n_items,
        "n_items %" PRId64, info->n_items);
  CHECK(strlen(info->hash) == 64, "hash is 64 hex digits: %s", info->hash);

  size_t file_len = 0, text_len = 0;
  char *file = sd_test_read_file(JOBS "good_full.yaml", &file_len);
  const char *text = sd_job_yaml_text(job, &text_len);
  CHECK(file && text_len == file_len && !memcmp(text, file, file_len) && text[text_len] == '\0',
        "the raw YAML text is the file's bytes (%zu vs %zu)", text_len, file_len);
  free(file);
  sd_job_free(job);
}

static void test_minimal_job_defaults(void) {
  sd_job *job = load_ok(JOBS "good_minimal.yaml");
  if (!job)
    return;
  const sd_job_info *info = sd_job_get_info(job);
  CHECK(!strcmp(info->model, "/models/sd15") && !strcmp(info->output, "/tmp/out.h5"),
        "absolute paths stay: %s %s", info->model, info->output);
  CHECK(info->model_config == NULL && info->prompts_file == NULL, "no model_config");
  CHECK(!strcmp(info->negative_prompt, ""), "negative prompt defaults to ''");
  CHECK(info->n_prompts == 1 && !strcmp(sd_job_prompt(job, 0), "a lone prompt"), "one prompt");
  CHECK(info->width == 0 && info->height == 0, "size defaults to the model's (0)");
  CHECK(info->n_steps == 1 && info->steps[0] == 50, "steps default 50");
  CHECK(info->n_guidance == 1 && info->guidance_scales[0] == 7.5, "guidance default 7.5");
  CHECK(info->n_schedulers == 1 && info->schedulers[0] == SD_JOB_SCHEDULER_DEFAULT,
        "scheduler default: the model's");
  CHECK(!info->karras && info->rng == SD_RNG_CUDA && info->batch_size == 1 && !info->save_latents &&
            info->device == SD_JOB_DEVICE_AUTO,
        "karras false, rng cuda, batch 1, save_latents false, device auto");
  CHECK(info->ranks_per_image == 1 && !info->cfg_parallel,
        "ranks_per_image defaults to 1, cfg_parallel to false");
  sd_job_item item;
  CHECK(sd_job_item_get(job, 0, &item) == 0 && item.seed == 5 && item.steps == 50 &&
            item.guidance_scale == 7.5 && item.scheduler == SD_JOB_SCHEDULER_DEFAULT &&
            !strcmp(item.negative_prompt, ""),
        "the one item");
  CHECK(sd_job_item_get(job, 1, &item) != 0, "item 1 is out of range");
  sd_job_free(job);
}

/* The documented order, by naive nested loops (scheduler outermost, guidance innermost). */
static void test_sweep_order(void) {
  sd_job *job = load_ok(JOBS "good_sweep.yaml");
  if (!job)
    return;
  static const int schedulers[] = {SD_SCHED_DDIM, SD_SCHED_EULER};
  static const int steps[] = {10, 20};
  static const char *const prompts[] = {"p0", "p1"};
  static const uint64_t seeds[] = {10, 11, 12};
  static const double guidance[] = {1.0, 7.5};
  CHECK(sd_job_item_count(job) == 48, "48 items, got %" PRId64, sd_job_item_count(job));
  int64_t index = 0, wrong = 0;
  for (int sc = 0; sc < 2; sc++)
    for (int st = 0; st < 2; st++)
      for (int p = 0; p < 2; p++)
        for (int se = 0; se < 3; se++)
          for (int g = 0; g < 2; g++, index++) {
            sd_job_item it;
            if (sd_job_item_get(job, index, &it) != 0 || it.index != index ||
                it.scheduler != schedulers[sc] || it.steps != steps[st] ||
                strcmp(it.prompt, prompts[p]) != 0 || it.seed != seeds[se] ||
                it.guidance_scale != guidance[g] || it.scheduler_index != sc ||
                it.steps_index != st || it.prompt_index != p || it.seed_index != se ||
                it.guidance_index != g || it.width != 0 || it.karras || it.rng != SD_RNG_CUDA)
              wrong++;
          }
  CHECK(wrong == 0, "%" PRId64 " of 48 items differ from the nested-loop order", wrong);
  sd_job_item it;
  CHECK(sd_job_item_get(job, 48, &it) != 0 && sd_job_item_get(job, -1, &it) != 0,
        "items 48 and -1 are out of range");

  /* blocks of 12 share scheduler and steps: items 0..11 batch together, 11 and 12 do not */
  sd_job_item a, b;
  sd_job_item_get(job, 0, &a);
  sd_job_item_get(job, 11, &b);
  CHECK(sd_job_items_batchable(&a, &b), "items 0 and 11 differ only in prompt/seed/guidance");
  sd_job_item_get(job, 12, &b);
  CHECK(!sd_job_items_batchable(&a, &b), "items 0 and 12 differ in steps");
  sd_job_item_get(job, 24, &b);
  CHECK(!sd_job_items_batchable(&a, &b), "items 0 and 24 differ in scheduler");
  sd_job_item_get(job, 1, &b);
  b.karras = true;
  CHECK(!sd_job_items_batchable(&a, &b), "karras differs");
  b.karras = false;
  b.width = 512;
  CHECK(!sd_job_items_batchable(&a, &b), "width differs");
  b.width = a.width;
  b.height = 768;
  CHECK(!sd_job_items_batchable(&a, &b), "height differs");
  sd_job_free(job);
}

/* loras / embeddings: files resolved, scale sweeps, LoRA sets outermost in the item order. */
static void test_adapters_job(void) {
  sd_job *job = load_ok(JOBS "good_adapters.yaml");
  if (!job)
    return;
  const sd_job_info *info = sd_job_get_info(job);
  CHECK(info->n_loras == 3 && info->n_embeddings == 2 && info->n_lora_sets == 6 &&
            info->n_items == 12,
        "3 LoRAs, 2 embeddings, 6 LoRA sets, 12 items; got %d, %d, %" PRId64 ", %" PRId64,
        info->n_loras, info->n_embeddings, info->n_lora_sets, info->n_items);
  if (info->n_loras != 3 || info->n_embeddings != 2) {
    sd_job_free(job);
    return;
  }
  CHECK(!strcmp(info->loras[0].file, JOBS "a.safetensors") &&
            !strcmp(info->loras[0].file_written, "a.safetensors") &&
            !strcmp(info->loras[1].file, "/abs/b.safetensors"),
        "LoRA paths: %s, %s", info->loras[0].file, info->loras[1].file);
  CHECK(info->loras[0].n_scales == 2 && info->loras[0].scales[1] == -1.0 &&
            info->loras[1].n_scales == 3 && info->loras[1].scales[2] == 0.1 &&
            info->loras[2].n_scales == 1 && info->loras[2].scales[0] == 1.0,
        "LoRA scales");
  CHECK(info->embeddings[0].token == NULL && !strcmp(info->embeddings[1].token, "<cat>") &&
            !strcmp(info->embeddings[1].file, JOBS "cat.safetensors"),
        "embeddings");
  /* sets: the last LoRA fastest; items: set outermost, then the two seeds */
  static const double want_sets[6][3] = {{0.5, 0, 1}, {0.5, 0.25, 1}, {0.5, 0.1, 1},
                                         {-1, 0, 1},  {-1, 0.25, 1},  {-1, 0.1, 1}};
  int wrong = 0;
  for (int set = 0; set < 6; set++) {
    double scales[3];
    if (sd_job_lora_set(job, set, scales) != 0 || scales[0] != want_sets[set][0] ||
        scales[1] != want_sets[set][1] || scales[2] != want_sets[set][2])
      wrong++;
    for (int seed = 0; seed < 2; seed++) {
      sd_job_item it;
      if (sd_job_item_get(job, set * 2 + seed, &it) != 0 || it.lora_set_index != set ||
          it.seed != (uint64_t)(seed + 1))
        wrong++;
    }
  }
  CHECK(wrong == 0, "%d LoRA sets or items differ from the documented order", wrong);
  double scales[3];
  CHECK(sd_job_lora_set(job, 6, scales) != 0, "LoRA set 6 is out of range");
  sd_job_item a, b;
  sd_job_item_get(job, 0, &a);
  sd_job_item_get(job, 1, &b);
  CHECK(sd_job_items_batchable(&a, &b), "items 0 and 1 share a LoRA set");
  sd_job_item_get(job, 2, &b);
  CHECK(!sd_job_items_batchable(&a, &b), "items 0 and 2 differ in LoRA set");
  sd_job_free(job);
}

static long max_rss_kib(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

static void test_million_items(void) {
  long rss_before = max_rss_kib();
  double t0 = now_seconds();
  sd_job *job = load_ok(JOBS "good_million.yaml");
  if (!job)
    return;
  sd_job_item item;
  int rc = sd_job_item_get(job, 999999, &item);
  double load_s = now_seconds() - t0;
  CHECK(sd_job_item_count(job) == 1000000, "count %" PRId64, sd_job_item_count(job));
  CHECK(rc == 0 && item.index == 999999 && item.seed == 1000 + 999999 &&
            item.seed_index == 999999 && item.prompt_index == 0 && !strcmp(item.prompt, "only") &&
            item.steps == 50 && item.guidance_scale == 7.5,
        "item 999999: seed %" PRIu64, item.seed);
  CHECK(load_s < 0.05, "load + item(999999) took %.4f s (limit 0.05 s)", load_s);
  /* every item, to show each costs O(1) and nothing is kept per item */
  t0 = now_seconds();
  uint64_t seed_sum = 0;
  for (int64_t i = 0; i < 1000000; i++) {
    sd_job_item_get(job, i, &item);
    seed_sum += item.seed;
  }
  double all_s = now_seconds() - t0;
  CHECK(seed_sum == 1000000ull * 1000 + 999999ull * 1000000 / 2, "sum of seeds %" PRIu64, seed_sum);
  CHECK(all_s < 1.0, "1e6 items took %.3f s (limit 1 s)", all_s);
  long grown_kib = max_rss_kib() - rss_before;
  CHECK(grown_kib < 4096, "peak memory grew by %ld KiB (limit 4096)", grown_kib);
  printf("1e6-item job: load + item(999999) %.2f ms, all items %.1f ms, peak RSS +%ld KiB\n",
         1e3 * load_s, 1e3 * all_s, grown_kib);
  sd_job_free(job);

  job = load_ok(JOBS "good_max_items.yaml");
  if (!job)
    return;
  CHECK(sd_job_item_count(job) == INT64_MAX, "2^63-1 items");
  CHECK(sd_job_item_get(job, INT64_MAX - 1, &item) == 0 && item.seed == (uint64_t)INT64_MAX - 1,
        "the last of 2^63-1 items");
  sd_job_free(job);
}

static void test_prompts_file(void) {
  sd_job *job = load_ok(JOBS "good_prompts_file.yaml");
  if (!job)
    return;
  const sd_job_info *info = sd_job_get_info(job);
  static const char *const want[] = {"first prompt", "second  prompt, with \xc3\xbcmlauts ",
                                     "third"};
  CHECK(info->prompts_file && !strcmp(info->prompts_file, JOBS "prompts.txt"), "prompts_file %s",
        info->prompts_file ? info->prompts_file : "(null)");
  CHECK(info->n_prompts == 3, "BOM, CRLF, blank lines: 3 prompts, got %" PRId64, info->n_prompts);
  for (int i = 0; i < 3 && i < info->n_prompts; i++)
    CHECK(!strcmp(sd_job_prompt(job, i), want[i]), "prompt %d: '%s'", i, sd_job_prompt(job, i));
  sd_job_free(job);
}

static void test_hash(void) {
  const char *names[] = {"hash_a.yaml", "hash_b.yaml", "hash_c.yaml", "hash_range.yaml",
                         "hash_list.yaml"};
  char hashes[5][65] = {{0}};
  for (int i = 0; i < 5; i++) {
    char path[1024];
    snprintf(path, sizeof path, JOBS "%s", names[i]);
    sd_job *job = load_ok(path);
    if (!job)
      return;
    memcpy(hashes[i], sd_job_get_info(job)->hash, 65);
    sd_job_free(job);
  }
  CHECK(!strcmp(hashes[0], hashes[1]), "same content, other form and settings: %s vs %s", hashes[0],
        hashes[1]);
  CHECK(strcmp(hashes[0], hashes[2]) != 0, "one seed differs: hashes differ");
  CHECK(!strcmp(hashes[3], hashes[4]), "a seed range and the equal list hash alike");

  /* hash_list.yaml's canonical text as docs/jobs.md defines it */
  static const char canonical[] = "sdbatch job v1\n"
                                  "model 1:m\n"
                                  "model_config 0:\n"
                                  "negative_prompt 0:\n"
                                  "prompts 1\n"
                                  "1:x\n"
                                  "seeds 1\n"
                                  "3 4\n"
                                  "width 0\n"
                                  "height 0\n"
                                  "steps 1 50\n"
                                  "guidance_scale 1 7.5\n"
                                  "scheduler 1 default\n"
                                  "karras false\n"
                                  "rng cuda\n"
                                  "save_latents false\n";
  sd_sha256 sha;
  char want[65];
  sd_sha256_init(&sha);
  sd_sha256_update(&sha, canonical, strlen(canonical));
  sd_sha256_final_hex(&sha, want);
  CHECK(!strcmp(hashes[4], want), "hash of the canonical text: %s, job hash %s", want, hashes[4]);
}

static void test_check_paths(void) {
  sd_job *job = load_ok(JOBS "paths_ok.yaml");
  if (job) {
    CHECK(sd_job_check_paths(job) == 0, "paths exist: %s", sd_error_message());
    sd_job_free(job);
  }
  job = load_ok(JOBS "good_minimal.yaml");
  if (job) {
    CHECK(sd_job_check_paths(job) != 0 &&
              !strcmp(sd_error_message(),
                      JOBS "good_minimal.yaml:1:8: model: cannot access '/models/sd15': No such "
                           "file or directory"),
          "missing model: %s", sd_error_message());
    sd_job_free(job);
  }
  job = load_ok(JOBS "paths_no_output_folder.yaml");
  if (job) {
    CHECK(sd_job_check_paths(job) != 0 &&
              !strcmp(sd_error_message(),
                      JOBS "paths_no_output_folder.yaml:2:9: output: cannot "
                           "access the folder '" JOBS "no-such-folder': No such file or directory"),
          "missing output folder: %s", sd_error_message());
    sd_job_free(job);
  }
}

/* The examples of jobs/examples/ load and expand as their comments say. */
static void test_examples(void) {
  static const struct {
    const char *name;
    int64_t items;
  } examples[] = {{"demo.yaml", 2 * 2 * 2},
                  {"guidance_sweep.yaml", 4 * 16 * 7},
                  {"synthetic_data.yaml", 6 * 1000}};
  for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++) {
    char path[1024];
    snprintf(path, sizeof path, SD_SOURCE_DIR "/jobs/examples/%s", examples[i].name);
    sd_job *job = load_ok(path);
    if (!job)
      continue;
    CHECK(sd_job_item_count(job) == examples[i].items, "%s: %" PRId64 " items, want %" PRId64,
          examples[i].name, sd_job_item_count(job), examples[i].items);
    sd_job_free(job);
  }
  sd_job *job = load_ok(SD_SOURCE_DIR "/jobs/examples/demo.yaml");
  if (!job)
    return;
  const sd_job_info *info = sd_job_get_info(job);
  CHECK(!strcmp(info->model, SD_SOURCE_DIR "/jobs/examples/../../models/shapes-demo"),
        "demo model path %s", info->model);
  CHECK(info->n_guidance == 2 && info->guidance_scales[0] == 1.0 &&
            info->guidance_scales[1] == 7.5 && info->n_prompts == 2 && info->n_seeds == 2,
        "demo: 2 prompts x 2 seeds x guidance [1.0, 7.5]");
  sd_job_free(job);
}

/* Each bad job and its one message: "<file>:<line>:<col>: ..." (the file is the job unless
 * named). */
static const struct {
  const char *job;
  const char *message_file;
  const char *message;
} bad_jobs[] = {
    {"bad_steps_string.yaml", NULL,
     "7:8: steps: expected a positive integer (at most 1000) or a list of them, got 'ten'"},
    {"bad_steps_zero_in_list.yaml", NULL,
     "7:13: steps[1]: expected a positive integer (at most 1000), got '0'"},
    {"bad_steps_repeat.yaml", NULL, "7:17: steps[2]: '20' is already in the list at steps[0]"},
    {"bad_steps_empty.yaml", NULL, "7:8: steps: the list is empty; give at least one value"},
    {"bad_steps_mapping.yaml", NULL,
     "7:8: steps: expected a positive integer (at most 1000) or a list of them, got a mapping"},
    {"bad_seed_negative.yaml", NULL,
     "5:8: seeds: expected a non-negative integer, a list of them or {start: N, count: N}, got "
     "'-1'"},
    {"bad_seed_in_list.yaml", NULL,
     "5:12: seeds[1]: expected a non-negative integer (at most 18446744073709551615), got '2.5'"},
    {"bad_seed_repeat.yaml", NULL, "5:18: seeds[3]: '9' is already in the list at seeds[1]"},
    {"bad_seed_too_big.yaml", NULL,
     "5:9: seeds[0]: expected a non-negative integer (at most 18446744073709551615), got "
     "'18446744073709551616'"},
    {"bad_seeds_empty.yaml", NULL, "5:8: seeds: the list is empty; give at least one seed"},
    {"bad_seeds_count_zero.yaml", NULL,
     "5:26: seeds.count: expected a positive integer (at most 9223372036854775807), got '0'"},
    {"bad_seeds_range_key.yaml", NULL,
     "5:19: seeds: unknown key 'step' (expected start and count)"},
    {"bad_seeds_range_missing.yaml", NULL,
     "5:8: seeds: missing 'count' (expected {start: N, count: N})"},
    {"bad_seeds_range_overflow.yaml", NULL,
     "5:45: seeds.count: start + count - 1 is beyond the largest seed, 18446744073709551615"},
    {"bad_items_overflow.yaml", NULL, "2:1: the job has more than 9223372036854775807 items"},
    {"bad_width_not_multiple.yaml", NULL,
     "6:8: width: expected a multiple of 8 in [64, 4096], got '500'"},
    {"bad_width_too_small.yaml", NULL,
     "6:8: width: expected a multiple of 8 in [64, 4096], got '32'"},
    {"bad_height_too_big.yaml", NULL,
     "9:9: height: expected a multiple of 8 in [64, 4096], got '8192'"},
    {"bad_width_quoted.yaml", NULL,
     "6:8: width: expected a multiple of 8 in [64, 4096], got '512'"},
    {"bad_guidance_word.yaml", NULL,
     "8:17: guidance_scale: expected a non-negative number or a list of them, got 'high'"},
    {"bad_guidance_negative.yaml", NULL,
     "8:23: guidance_scale[1]: expected a non-negative number, got '-2'"},
    {"bad_guidance_nan.yaml", NULL,
     "8:17: guidance_scale: expected a non-negative number or a list of them, got '.nan'"},
    {"bad_scheduler.yaml", NULL,
     "9:19: scheduler[1]: expected a scheduler (ddim, pndm, lms, euler, euler_a, heun, dpmpp_2m, "
     "or default), got 'dpm++'"},
    {"bad_karras.yaml", NULL,
     "10:9: karras: scheduler 'ddim' has no Karras sigmas (lms, euler, heun, dpmpp_2m have them)"},
    {"bad_batch_size.yaml", NULL, "9:13: batch_size: expected an integer in [1, 1024], got '0'"},
    {"bad_ranks_per_image.yaml", NULL,
     "9:18: ranks_per_image: expected an integer in [1, 1024], got '0'"},
    {"bad_cfg_parallel_odd.yaml", NULL,
     "6:15: cfg_parallel: needs an even ranks_per_image (2, 4, ...: the two CFG halves each take "
     "half of a group), not 3"},
    {"bad_cfg_parallel_word.yaml", NULL, "7:15: cfg_parallel: expected true or false, got 'on'"},
    {"bad_rng.yaml", NULL, "9:6: rng: expected cuda or cpu, got 'gpu'"},
    {"bad_device.yaml", NULL, "9:9: device: expected auto, cuda or cpu, got 'tpu'"},
    {"bad_bool.yaml", NULL, "9:15: save_latents: expected true or false, got 'yes'"},
    {"bad_prompts_empty.yaml", NULL, "4:10: prompts: the list is empty; give at least one prompt"},
    {"bad_prompt_null.yaml", NULL,
     "4:18: prompts[1]: expected a string (quote it if it reads as null), got '~'"},
    {"bad_prompt_list_in_list.yaml", NULL,
     "4:18: prompts[1]: expected a string (quote it if it reads as null), got a list"},
    {"bad_prompt_nul.yaml", NULL, "4:11: prompts[0]: contains a NUL character"},
    {"bad_both_prompts.yaml", NULL,
     "9:1: prompts_file: give either prompts or prompts_file, not both"},
    {"bad_prompts_file_missing.yaml", NULL,
     "4:15: prompts_file: cannot read '" JOBS "no-such-prompts.txt': No such file or directory"},
    {"bad_prompts_file_blank.yaml", NULL,
     "4:15: prompts_file: '" JOBS "blank_prompts.txt' has no prompts (blank lines are skipped)"},
    {"bad_prompts_file_utf8.yaml", "bad_utf8_prompts.txt", "4:8: invalid UTF-8 (byte 0xff)"},
    {"bad_model_empty.yaml", NULL, "2:7: model: expected a path, got an empty value"},
    {"bad_model_list.yaml", NULL, "2:8: model: expected a path, got a list"},
    {"bad_missing_model.yaml", NULL, "3:1: missing required key 'model'"},
    {"bad_lora_scale.yaml", NULL,
     "10:34: loras[0].scale: expected a number or a list of them, got 'strong'"},
    {"bad_lora_key.yaml", NULL, "10:27: loras[0]: unknown key 'weight' (expected file or scale)"},
    {"bad_lora_no_file.yaml", NULL, "10:5: loras[0]: missing key 'file'"},
    {"bad_loras_empty.yaml", NULL, "9:8: loras: the list is empty; leave the key out for none"},
    {"bad_embedding_token.yaml", NULL,
     "10:34: embeddings[0].token: expected a non-empty string, got ''"},
    {"bad_missing_seeds.yaml", NULL, "2:1: missing required key 'seeds'"},
    {"bad_missing_prompts.yaml", NULL, "2:1: missing required key 'prompts' (or 'prompts_file')"},
    {"bad_unknown_key.yaml", NULL, "7:1: unknown key 'stpes' (did you mean 'steps'?)"},
    {"bad_unknown_key_far.yaml", NULL, "9:1: unknown key 'colour'"},
    {"bad_duplicate_key.yaml", NULL, "9:1: duplicate key 'steps' (first given at line 7)"},
    {"bad_nonscalar_key.yaml", NULL, "9:1: expected a key name, got a list"},
    {"bad_empty.yaml", NULL,
     "1:1: the job file is empty (expected a mapping with model, output, prompts and seeds)"},
    {"bad_comments_only.yaml", NULL,
     "1:1: the job file is empty (expected a mapping with model, output, prompts and seeds)"},
    {"bad_top_list.yaml", NULL,
     "1:1: expected a mapping of job settings at the top level, got a list"},
    {"bad_top_scalar.yaml", NULL,
     "1:1: expected a mapping of job settings at the top level, got 'just some text'"},
    {"bad_tabs.yaml", NULL,
     "8:1: YAML syntax error: found character that cannot start any token (while scanning for "
     "the next token); indent with spaces, YAML does not allow tabs"},
    {"bad_syntax.yaml", NULL,
     "5:1: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence)"},
    {"bad_two_documents.yaml", NULL, "9:1: a second YAML document; a job file holds one job"},
    {"bad_undefined_alias.yaml", NULL, "7:8: YAML syntax error: found undefined alias"},
    {"bad_yaml_latin1.yaml", NULL, "4:15: invalid UTF-8 (byte 0xE9); job files are UTF-8"},
    {"bad_garbage.yaml", NULL,
     "1:1: not valid YAML text: control characters are not allowed (0x0B)"},
    {"bad_utf16.yaml", NULL,
     "1:1: the job file must be UTF-8 (it starts with a UTF-16 byte-order mark)"},
};

static void test_bad_jobs(void) {
  for (size_t i = 0; i < sizeof bad_jobs / sizeof bad_jobs[0]; i++) {
    char path[1024], want[2048];
    snprintf(path, sizeof path, JOBS "%s", bad_jobs[i].job);
    snprintf(want, sizeof want, JOBS "%s:%s",
             bad_jobs[i].message_file ? bad_jobs[i].message_file : bad_jobs[i].job,
             bad_jobs[i].message);
    sd_error_clear();
    static char sentinel;
    sd_job *job = (sd_job *)&sentinel; /* sd_job_load must set it to NULL on failure */
    int rc = sd_job_load(path, &job);
    CHECK(rc == -1 && job == NULL, "%s: load should fail with -1 and NULL (rc %d)", bad_jobs[i].job,
          rc);
    CHECK(!strcmp(sd_error_message(), want), "%s:\n  got  %s\n  want %s", bad_jobs[i].job,
          sd_error_message(), want);
    if (rc == 0)
      sd_job_free(job);
  }
  sd_job *job = NULL;
  CHECK(sd_job_load(JOBS "no-such-job.yaml", &job) == -1 &&
            !strcmp(sd_error_message(),
                    JOBS "no-such-job.yaml: cannot read the job file: No such file or directory"),
        "missing job file: %s", sd_error_message());
}

/* Random mutations of a good job (bytes changed, YAML punctuation inserted, spans deleted,
 * truncation): each load must either succeed with a usable job or fail with a message that
 * names the file; the sanitizer-free build still catches crashes. */
static void test_mutations(void) {
  size_t len = 0;
  char *base = sd_test_read_file(JOBS "good_full.yaml", &len);
  CHECK(base != NULL, "read good_full.yaml");
  if (!base)
    return;
  char path[] = "/tmp/sdbatch-test-jobs-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  if (fd < 0) {
    free(base);
    return;
  }
  close(fd);
  static const char punctuation[] = ":-[]{}\t\n#&*!|>'\"%@`,? \\\x80\xff";
  char *text = malloc(2 * len + 64);
  uint32_t state = 12345;
  int loaded = 0, failed = 0, bad = 0;
  for (int round = 0; round < 3000; round++) {
    memcpy(text, base, len);
    size_t n = len;
    int edits = 1 + round % 4;
    for (int e = 0; e < edits && n > 0; e++) {
      state = state * 1664525u + 1013904223u;
      size_t at = (state >> 8) % n;
      switch ((state >> 4) % 4) {
      case 0:
        text[at] = (char)(state >> 16);
        break;
      case 1:
        memmove(text + at + 1, text + at, n - at);
        text[at] = punctuation[(state >> 16) % (sizeof punctuation - 1)];
        n++;
        break;
      case 2: {
        size_t span = (state >> 20) % 16;
        if (span > n - at)
          span = n - at;
        memmove(text + at, text + at + span, n - at - span);
        n -= span;
        break;
      }
      default:
        n = at;
        break;
      }
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(text, 1, n, f) != n || fclose(f) != 0) {
      CHECK(0, "write %s", path);
      break;
    }
    sd_job *job = NULL;
    if (sd_job_load(path, &job) == 0) {
      loaded++;
      sd_job_item item;
      int64_t count = sd_job_item_count(job);
      if (count < 1 || sd_job_item_get(job, count - 1, &item) != 0 || !item.prompt)
        bad++;
      sd_job_free(job);
    } else {
      failed++;
      if (strncmp(sd_error_message(), path, strlen(path)) != 0 || job != NULL) {
        if (bad++ < 5)
          fprintf(stderr, "message without the file: %s\n", sd_error_message());
      }
    }
  }
  CHECK(bad == 0, "%d mutated jobs misbehaved", bad);
  CHECK(failed > 1000 && loaded > 50, "mutations both fail and pass: %d failed, %d loaded", failed,
        loaded);
  printf("mutated jobs: %d rejected, %d loaded\n", failed, loaded);
  remove(path);
  free(text);
  free(base);
}

/* ---- inputs (images, masks, depth_maps, strength, noise_level) ---- */

static char inputs_dir[] = "/tmp/sd_test_jobs_inputs_XXXXXX";

static void write_file(const char *name, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", inputs_dir, name);
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL, "create %s", path);
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

/* The job text (a job file in inputs_dir) loaded; NULL with the error when it fails. */
static sd_job *load_inputs_job(const char *extra) {
  char text[2048], path[512];
  snprintf(text, sizeof text, "model: m\noutput: o.h5\nprompts: [p0, p1]\nseeds: [1, 2]\n%s",
           extra);
  snprintf(path, sizeof path, "%s/job.yaml", inputs_dir);
  sd_job *job = NULL;
  if (sd_job_load_text(path, text, strlen(text), NULL, 0, &job) < 0)
    return NULL;
  return job;
}

static void expect_inputs_error(const char *extra, const char *message) {
  sd_error_clear();
  sd_job *job = load_inputs_job(extra);
  CHECK(!job && strstr(sd_error_message(), message), "'%s' refused with '%s' (got: %s)", extra,
        message, job ? "loaded" : sd_error_message());
  sd_job_free(job);
}

static void test_inputs_job(void) {
  if (!mkdtemp(inputs_dir)) {
    CHECK(0, "mkdtemp");
    return;
  }
  char path[512];
  snprintf(path, sizeof path, "%s/imgs", inputs_dir);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/empty", inputs_dir);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/lists", inputs_dir);
  mkdir(path, 0755);
  write_file("m", "");
  write_file("imgs/b.png", "");
  write_file("imgs/a.jpg", "");
  write_file("imgs/c.JPEG", "");
  write_file("imgs/notes.txt", "");
  write_file("imgs/.hidden.png", "");
  write_file("lists/list.txt", "\xEF\xBB\xBF../imgs/a.jpg\n\n  \t\n../imgs/b.png\r\n/abs/x.png");
  write_file("lists/blank.txt", "\n  \n");
  write_file("lists/bad.txt", "ok.png\nbad\xFF.png\n");

  /* a folder: its image files sorted by name; one mask for all; a strength sweep */
  sd_job *job = load_inputs_job("images: imgs\nmasks: m.png\nstrength: [0.3, 0.75]\n");
  CHECK(job != NULL, "folder job loads: %s", sd_error_message());
  if (job) {
    const sd_job_info *info = sd_job_get_info(job);
    CHECK(info->n_images == 3 && info->n_masks == 1 && info->n_depth_maps == 0 &&
              info->n_strengths == 2 && info->n_noise_levels == 1 &&
              info->noise_levels[0] == SD_JOB_NOISE_LEVEL_DEFAULT,
          "folder job: %" PRId64 " images, %" PRId64 " masks, %d strengths", info->n_images,
          info->n_masks, info->n_strengths);
    static const char *const names[] = {"a.jpg", "b.png", "c.JPEG"};
    for (int i = 0; i < 3; i++) {
      sd_job_input in;
      char want_written[64], want_resolved[512], want_mask[512];
      snprintf(want_written, sizeof want_written, "imgs/%s", names[i]);
      snprintf(want_resolved, sizeof want_resolved, "%s/imgs/%s", inputs_dir, names[i]);
      snprintf(want_mask, sizeof want_mask, "%s/m.png", inputs_dir);
      CHECK(sd_job_input_get(job, i, &in) == 0 && !strcmp(in.image_written, want_written) &&
                !strcmp(in.image, want_resolved) && in.mask && !strcmp(in.mask, want_mask) &&
                !strcmp(in.mask_written, "m.png") && !in.depth_map,
            "input %d: %s (%s), mask %s", i, in.image_written, in.image, in.mask);
    }
    sd_job_input in;
    CHECK(sd_job_input_get(job, 3, &in) < 0, "input 3 is out of range");
    /* order: strength, image, prompt, seed, guidance (the last fastest) */
    static const double strengths[] = {0.3, 0.75};
    CHECK(sd_job_item_count(job) == 24, "24 items, got %" PRId64, sd_job_item_count(job));
    int64_t index = 0, wrong = 0;
    for (int st = 0; st < 2; st++)
      for (int im = 0; im < 3; im++)
        for (int p = 0; p < 2; p++)
          for (int se = 0; se < 2; se++, index++) {
            sd_job_item it;
            if (sd_job_item_get(job, index, &it) != 0 || it.strength != strengths[st] ||
                it.strength_index != st || it.image_index != im || it.prompt_index != p ||
                it.seed != (uint64_t)(1 + se) || it.noise_level != SD_JOB_NOISE_LEVEL_DEFAULT)
              wrong++;
          }
    CHECK(wrong == 0, "%" PRId64 " of 24 items differ from the nested-loop order", wrong);
    sd_job_item a, b;
    sd_job_item_get(job, 0, &a);
    sd_job_item_get(job, 3, &b);
    CHECK(sd_job_items_batchable(&a, &b), "items 0 and 3 share their input");
    sd_job_item_get(job, 4, &b);
    CHECK(!sd_job_items_batchable(&a, &b), "items 0 and 4 have other inputs");
    sd_job_item_get(job, 12, &b);
    CHECK(!sd_job_items_batchable(&a, &b), "items 0 and 12 have other strengths");
    char hash[65];
    memcpy(hash, info->hash, 65);
    sd_job_free(job);
    job = load_inputs_job("images: imgs\nmasks: m.png\nstrength: [0.3, 0.75]\n");
    CHECK(job && !strcmp(sd_job_get_info(job)->hash, hash), "the same inputs hash alike");
    sd_job_free(job);
    job = load_inputs_job("images: imgs\nmasks: m.png\nstrength: [0.3, 0.7]\n");
    CHECK(job && strcmp(sd_job_get_info(job)->hash, hash), "another strength, another hash");
    sd_job_free(job);
    job = load_inputs_job("");
    CHECK(job && strcmp(sd_job_get_info(job)->hash, hash) && sd_job_get_info(job)->n_images == 0 &&
              sd_job_item_count(job) == 4,
          "without inputs: 4 items, another hash");
    if (job) {
      sd_job_item it;
      CHECK(sd_job_item_get(job, 3, &it) == 0 && it.image_index == -1 &&
                it.strength == SD_JOB_STRENGTH_DEFAULT,
            "an item without an input");
    }
    sd_job_free(job);
  }

  /* dpt_preprocess: pil (the default) hashes as its absence, torchvision apart */
  {
    const char *base = "images: imgs\n";
    char text[256];
    char hashes[3][65] = {{0}};
    static const char *const values[] = {"", "dpt_preprocess: pil\n",
                                         "dpt_preprocess: torchvision\n"};
    static const sd_job_dpt_preprocess want[] = {
        SD_JOB_DPT_PREPROCESS_PIL, SD_JOB_DPT_PREPROCESS_PIL, SD_JOB_DPT_PREPROCESS_TORCHVISION};
    for (int i = 0; i < 3; i++) {
      snprintf(text, sizeof text, "%s%s", base, values[i]);
      sd_job *j = load_inputs_job(text);
      const sd_job_info *in = j ? sd_job_get_info(j) : NULL;
      if (CHECK(in && in->dpt_preprocess == want[i] && in->dpt_preprocess_given == (i > 0),
                "'%s' loads with its value: %s", values[i], sd_error_message()))
        memcpy(hashes[i], in->hash, 65);
      sd_job_free(j);
    }
    CHECK(!strcmp(hashes[0], hashes[1]), "dpt_preprocess: pil hashes as no dpt_preprocess");
    CHECK(strcmp(hashes[0], hashes[2]) != 0, "dpt_preprocess: torchvision, another hash");
    expect_inputs_error("images: imgs\ndpt_preprocess: PIL\n",
                        "dpt_preprocess: expected pil or torchvision, got 'PIL'");
    expect_inputs_error("images: imgs\ndpt_preprocess: [pil]\n",
                        "dpt_preprocess: expected pil or torchvision");
  }

  /* a list file: paths relative to it, blank lines and a byte-order mark skipped; depth maps
   * paired with the images; a noise-level sweep */
  job = load_inputs_job("images: lists/list.txt\ndepth_maps: [d0.npy, d1.png, d2.npy]\n"
                        "noise_level: [0, 20]\n");
  CHECK(job != NULL, "list file job loads: %s", sd_error_message());
  if (job) {
    static const char *const written[] = {"lists/../imgs/a.jpg", "lists/../imgs/b.png",
                                          "/abs/x.png"};
    static const char *const depth[] = {"d0.npy", "d1.png", "d2.npy"};
    for (int i = 0; i < 3; i++) {
      sd_job_input in;
      CHECK(sd_job_input_get(job, i, &in) == 0 && !strcmp(in.image_written, written[i]) &&
                in.depth_map_written && !strcmp(in.depth_map_written, depth[i]) && !in.mask,
            "list input %d: %s, depth map %s", i, in.image_written, in.depth_map_written);
    }
    sd_job_item it;
    CHECK(sd_job_item_get(job, 12, &it) == 0 && it.noise_level == 20 && it.image_index == 0,
          "item 12: noise level 20, input 0");
    sd_job_free(job);
  }
  snprintf(path, sizeof path, "%s/job.yaml", inputs_dir);
  job = load_inputs_job("images: [imgs/a.jpg, imgs/missing.png]\n");
  CHECK(job && sd_job_check_paths(job) < 0 &&
            strstr(sd_error_message(), "images[1]: cannot access '") &&
            strstr(sd_error_message(), "imgs/missing.png'"),
        "a missing input is named by sd_job_check_paths: %s", sd_error_message());
  sd_job_free(job);

  expect_inputs_error("masks: m.png\n", "masks: needs images (the init images)");
  expect_inputs_error("images: [a.png, b.png, c.png]\nmasks: [m1.png, m2.png]\n",
                      "masks: 2 files for 3 images");
  expect_inputs_error("images: a.png\nmasks: m.png\ndepth_maps: d.npy\n", "not both");
  expect_inputs_error("images: a.png\nstrength: 1.5\n",
                      "strength: expected a number in [0, 1] or a list of them, got '1.5'");
  expect_inputs_error("images: a.png\nstrength: [0.5, 0.5]\n", "is already in the list");
  expect_inputs_error("strength: 0.5\n", "strength: needs images");
  expect_inputs_error("noise_level: 20\n", "noise_level: needs images");
  expect_inputs_error("images: a.png\nnoise_level: 1001\n",
                      "noise_level: expected an integer in [0, 1000]");
  expect_inputs_error("images: []\n", "images: the list is empty");
  expect_inputs_error("images: {a: 1}\n", "images: expected a path or a list of paths");
  expect_inputs_error("images: empty\n", "has no .png, .jpg or .jpeg files");
  expect_inputs_error("images: lists/blank.txt\n", "names no files");
  expect_inputs_error("images: lists/bad.txt\n",
                      "lists/bad.txt:2:4: a NUL character or invalid UTF-8 in the path");
  expect_inputs_error("images: lists/none.txt\n", "cannot read the list file");
  char cleanup[600];
  snprintf(cleanup, sizeof cleanup, "rm -rf '%s'", inputs_dir);
  CHECK(system(cleanup) == 0, "remove %s", inputs_dir);
}

int main(void) {
  test_sha256();
  test_full_job();
  test_minimal_job_defaults();
  test_sweep_order();
  test_adapters_job();
  test_million_items();
  test_prompts_file();
  test_hash();
  test_check_paths();
  test_examples();
  test_bad_jobs();
  test_mutations();
  test_inputs_job();
  return sd_test_finish();
}
