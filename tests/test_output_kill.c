/* Crash safety of the output file, by force: a child process writes a job's items (flushing
 * every few items) and is SIGKILLed at random moments, dozens of times: right after it starts
 * (creation, open), at random points, and inside sd_output_flush (the child reports entering and
 * leaving each flush through a pipe, and the kills that land between the two are counted). After
 * every kill the file must open, every item marked done must have exactly its pixels, latents
 * and metadata, every other item's storage must read (schema 1; in schema 2 its chunk may fail
 * its checksum, cut by the kill), and no item once done may be pending again; the next child
 * resumes. Each time a
 * file is finished it must equal an uninterrupted run's file dataset for dataset, then the cycle
 * starts over from no file. All of it for files of each schema version. SD_KILL_SEED=N
 * reproduces a run (the seed is printed). */
#include "coordinator/output.h"
#include "kernels/error.h"
#include "test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
  N_ITEMS = 600,
  W = 32,
  H = 24,
  LATENT_C = 4,
  LATENT_H = 3,
  LATENT_W = 4,
  FLUSH_EVERY = 8,
  MIN_KILLS = 100,
  MIN_KILLS_IN_FLUSH = 10,
};
#define LATENT_N (LATENT_C * LATENT_H * LATENT_W)

static char tmp_dir[] = "/tmp/sd_test_output_kill_XXXXXX";
static const char *const prompts[] = {"a red cube", "a lighthouse at dawn", "a tabby cat"};

static uint8_t pixel(int64_t index, int y, int x, int c) {
  return (uint8_t)(index * 131 + y * 17 + x * 5 + c * 71 + (index >> 8));
}
static void make_image(int64_t index, uint8_t *rgb) {
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      for (int c = 0; c < 3; c++)
        rgb[((size_t)y * W + x) * 3 + c] = pixel(index, y, x, c);
}
static void make_latents(int64_t index, float *latents) {
  for (int k = 0; k < LATENT_N; k++)
    latents[k] = (float)index * 0.25f - (float)k;
}
static bool fails(int64_t index) {
  return index % 41 == 17;
}
static void failure_reason(int64_t index, char *buf, size_t size) {
  snprintf(buf, size, "synthetic failure of item %lld", (long long)index);
}
static sd_output_item_meta meta_of(int64_t i) {
  return (sd_output_item_meta){.prompt_index = (int32_t)(i % 3),
                               .seed = 7000 + i,
                               .guidance_scale = 1.0f + 0.5f * (float)(i % 5),
                               .steps = 10 + (int32_t)(i % 7),
                               .scheduler = i % 2 ? "euler" : "dpmpp_2m"};
}
static int meta_callback(void *ctx, int64_t index, sd_output_item_meta *meta) {
  (void)ctx;
  *meta = meta_of(index);
  return 0;
}

/* The schema version of the files written (main runs the cycles for each). */
static int schema_version = SD_OUTPUT_SCHEMA_VERSION;
/* Schema 2: chunks of items not done found failing their checksum after a kill. */
static int64_t torn_chunks = 0;

static sd_output_spec spec_for(const char *path) {
  return (sd_output_spec){.path = path,
                          .schema_version = schema_version,
                          .n_items = N_ITEMS,
                          .width = W,
                          .height = H,
                          .latent_channels = LATENT_C,
                          .latent_h = LATENT_H,
                          .latent_w = LATENT_W,
                          .save_latents = true,
                          .job_yaml = "model: m\nseeds: {start: 7000, count: 600}\n",
                          .job_hash = "feedc0de",
                          .model_path = "/models/tiny",
                          .model_identity = "ident",
                          .n_prompts = 3,
                          .prompts = prompts,
                          .job_path = "kill.yaml",
                          .item_meta = meta_callback};
}

static void report(int fd, char c) {
  if (fd >= 0 && write(fd, &c, 1) < 0 && errno != EAGAIN)
    _exit(3);
}

/* The child: renders (writes) every item not done, flushing every FLUSH_EVERY items, as the
 * runner does; 'B' and 'E' on fd around each flush. Exit status 0 when the job is complete. */
static int writer(const char *path, int fd) {
  sd_output_spec spec = spec_for(path);
  sd_output *o = NULL;
  if (sd_output_open(&spec, &o) < 0) {
    fprintf(stderr, "child: open: %s\n", sd_error_message());
    return 1;
  }
  uint8_t rgb[W * H * 3];
  float latents[LATENT_N];
  int since_flush = 0;
  for (int64_t i = 0; i < N_ITEMS; i++) {
    if (sd_output_status(o, i) == SD_ITEM_DONE)
      continue;
    sd_output_item_meta meta = meta_of(i);
    int rc;
    if (fails(i)) {
      char reason[64];
      failure_reason(i, reason, sizeof reason);
      rc = sd_output_write_failed(o, i, &meta, reason);
    } else {
      make_image(i, rgb);
      make_latents(i, latents);
      rc = sd_output_write_done(o, i, &meta, rgb, latents);
    }
    if (rc < 0) {
      fprintf(stderr, "child: item %lld: %s\n", (long long)i, sd_error_message());
      return 1;
    }
    if (++since_flush == FLUSH_EVERY) {
      since_flush = 0;
      report(fd, 'B');
      rc = sd_output_flush(o);
      report(fd, 'E');
      if (rc < 0) {
        fprintf(stderr, "child: flush: %s\n", sd_error_message());
        return 1;
      }
    }
  }
  report(fd, 'B');
  int rc = sd_output_close(o);
  report(fd, 'E');
  if (rc < 0) {
    fprintf(stderr, "child: close: %s\n", sd_error_message());
    return 1;
  }
  return 0;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* xorshift64*: the test's own random numbers, reproducible from the seed */
static uint64_t rng_state;
static uint64_t rng_next(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}
static double rng_uniform(void) {
  return (double)(rng_next() >> 11) / 9007199254740992.0;
}

typedef enum kill_mode { KILL_EARLY, KILL_RANDOM, KILL_IN_FLUSH, KILL_NONE } kill_mode;

typedef struct child_result {
  bool killed;       /* died of SIGKILL */
  bool exited_ok;    /* exit status 0 */
  bool inside_flush; /* the kill landed between a flush's 'B' and 'E' */
} child_result;

/* Runs one child and kills it as mode says (delay_s for early/random). */
static child_result run_child(const char *path, kill_mode mode, double delay_s, int flush_n) {
  child_result result = {0};
  int fds[2];
  if (pipe(fds) < 0) {
    perror("pipe");
    exit(1);
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    exit(1);
  }
  if (pid == 0) {
    close(fds[0]);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    _exit(writer(path, fds[1]));
  }
  close(fds[1]);
  char log[4096];
  size_t n_log = 0;
  if (mode == KILL_EARLY || mode == KILL_RANDOM) {
    struct timespec t = {(time_t)delay_s, (long)((delay_s - (double)(time_t)delay_s) * 1e9)};
    nanosleep(&t, NULL);
    kill(pid, SIGKILL);
  } else if (mode == KILL_IN_FLUSH) {
    int begins = 0;
    char c;
    while (begins < flush_n && read(fds[0], &c, 1) == 1) {
      if (n_log < sizeof log)
        log[n_log++] = c;
      begins += c == 'B';
    }
    /* a few microseconds into the flush (none: at its very start) */
    useconds_t delay = (useconds_t)(rng_next() % 400);
    if (delay > 100)
      usleep(delay - 100);
    kill(pid, SIGKILL);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  char c;
  while (read(fds[0], &c, 1) == 1)
    if (n_log < sizeof log)
      log[n_log++] = c;
  close(fds[0]);
  result.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  result.exited_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  result.inside_flush = result.killed && n_log > 0 && log[n_log - 1] == 'B';
  CHECK(result.killed || result.exited_ok, "child ended with status %d (not killed, not ok)",
        status);
  return result;
}

/* The file after a kill: valid, every done item exactly right, nothing done undone. */
static void check_after_kill(const char *path, uint8_t *was_done, int64_t *n_done) {
  sd_output_reader *r = NULL;
  if (sd_output_reader_open(path, &r) < 0) {
    CHECK(false, "file after a kill does not open: %s", sd_error_message());
    return;
  }
  static sd_output_record rec[N_ITEMS];
  CHECK(sd_output_read_records(r, 0, N_ITEMS, rec) == 0, "records: %s", sd_error_message());
  uint8_t rgb[W * H * 3], want_rgb[W * H * 3];
  float latents[LATENT_N], want_latents[LATENT_N];
  int64_t done = 0, bad = 0, undone = 0, unreadable = 0;
  for (int64_t i = 0; i < N_ITEMS; i++) {
    /* every item's storage reads (pending ones hold anything); in schema 2, the chunk of an
     * item that is not done may fail its checksum: a kill can cut a write of several pages
     * (Linux stops a write to a file between pages on SIGKILL), and that item is rendered again */
    if (sd_output_read_image(r, i, rgb) < 0 || sd_output_read_latents(r, i, latents) < 0) {
      if (schema_version == 1 || rec[i].status == SD_ITEM_DONE)
        unreadable++;
      else
        torn_chunks++;
    }
    sd_output_item_meta m = meta_of(i);
    bool meta_ok = rec[i].prompt_index == m.prompt_index && rec[i].seed == m.seed &&
                   rec[i].guidance_scale == m.guidance_scale && rec[i].steps == m.steps &&
                   strcmp(rec[i].scheduler, m.scheduler) == 0;
    if (rec[i].status == SD_ITEM_DONE) {
      done++;
      make_image(i, want_rgb);
      make_latents(i, want_latents);
      if (fails(i) || !meta_ok || sd_output_read_image(r, i, rgb) < 0 ||
          memcmp(rgb, want_rgb, sizeof rgb) != 0 || sd_output_read_latents(r, i, latents) < 0 ||
          memcmp(latents, want_latents, sizeof latents) != 0) {
        if (bad++ < 3)
          CHECK(false, "done item %lld is not intact", (long long)i);
      }
    } else if (rec[i].status == SD_ITEM_FAILED) {
      char reason[SD_OUTPUT_FAILURE_LEN], want[64];
      failure_reason(i, want, sizeof want);
      if (!fails(i) || !meta_ok || sd_output_read_failure(r, i, reason) < 0 ||
          strcmp(reason, want) != 0) {
        if (bad++ < 3)
          CHECK(false, "failed item %lld is not intact", (long long)i);
      }
    } else if (rec[i].status != SD_ITEM_PENDING) {
      bad++;
    }
    if (was_done[i] && rec[i].status != SD_ITEM_DONE && undone++ < 3)
      CHECK(false, "item %lld was done and is now status %d", (long long)i, rec[i].status);
    was_done[i] = rec[i].status == SD_ITEM_DONE;
  }
  CHECK(bad == 0 && undone == 0 && unreadable == 0,
        "%lld bad items, %lld undone, %lld unreadable after a kill", (long long)bad,
        (long long)undone, (long long)unreadable);
  CHECK(done >= *n_done, "done went from %lld to %lld", (long long)*n_done, (long long)done);
  *n_done = done;
  sd_output_reader_close(r);
}

/* The finished file against the uninterrupted one, dataset by dataset. */
static void check_same_as_reference(const char *path, const char *reference) {
  sd_output_reader *a = NULL, *b = NULL;
  CHECK(sd_output_reader_open(path, &a) == 0 && sd_output_reader_open(reference, &b) == 0,
        "open finished files: %s", sd_error_message());
  if (a && b) {
    const sd_output_info *ia = sd_output_reader_info(a), *ib = sd_output_reader_info(b);
    CHECK(strcmp(ia->job_yaml, ib->job_yaml) == 0 && strcmp(ia->job_hash, ib->job_hash) == 0 &&
              strcmp(ia->model_identity, ib->model_identity) == 0 && ia->n_items == ib->n_items,
          "attributes equal");
    static sd_output_record ra[N_ITEMS], rb[N_ITEMS];
    CHECK(sd_output_read_records(a, 0, N_ITEMS, ra) == 0 &&
              sd_output_read_records(b, 0, N_ITEMS, rb) == 0 && memcmp(ra, rb, sizeof ra) == 0,
          "records (status and metadata) equal");
    int64_t differ = 0;
    for (int64_t i = 0; i < N_ITEMS; i++) {
      uint8_t xa[W * H * 3], xb[W * H * 3];
      float la[LATENT_N], lb[LATENT_N];
      char fa[SD_OUTPUT_FAILURE_LEN], fb[SD_OUTPUT_FAILURE_LEN];
      bool same = sd_output_read_failure(a, i, fa) == 0 && sd_output_read_failure(b, i, fb) == 0 &&
                  strcmp(fa, fb) == 0;
      if (rb[i].status == SD_ITEM_DONE)
        same = same && sd_output_read_image(a, i, xa) == 0 && sd_output_read_image(b, i, xb) == 0 &&
               memcmp(xa, xb, sizeof xa) == 0 && sd_output_read_latents(a, i, la) == 0 &&
               sd_output_read_latents(b, i, lb) == 0 && memcmp(la, lb, sizeof la) == 0;
      differ += !same;
    }
    CHECK(differ == 0, "%lld items differ from the uninterrupted run", (long long)differ);
    CHECK(rb[0].status == SD_ITEM_DONE && rb[17].status == SD_ITEM_FAILED, "reference complete");
  }
  sd_output_reader_close(a);
  sd_output_reader_close(b);
}

/* Cycles of kills and resumes on files of schema_version, against an uninterrupted run's file. */
static void kill_cycles(void) {
  char reference[512], path[512], creating[600];
  snprintf(reference, sizeof reference, "%s/reference-v%d.h5", tmp_dir, schema_version);
  snprintf(path, sizeof path, "%s/killed-v%d.h5", tmp_dir, schema_version);
  snprintf(creating, sizeof creating, "%s.creating", path);
  torn_chunks = 0;
  double t0 = now_s();
  child_result ref = run_child(reference, KILL_NONE, 0, 0);
  double full_run_s = now_s() - t0;
  CHECK(ref.exited_ok, "uninterrupted run");
  printf("schema %d: uninterrupted run: %.3f s\n", schema_version, full_run_s);

  static uint8_t was_done[N_ITEMS];
  int kills = 0, kills_in_flush = 0, kills_before_file = 0, cycles = 0;
  while (kills < MIN_KILLS && cycles < 40) {
    /* a cycle: from no file to a finished file, killing all along */
    cycles++;
    unlink(path);
    unlink(creating);
    memset(was_done, 0, sizeof was_done);
    int64_t n_done = 0;
    bool existed = false;
    for (int attempt = 0; attempt < 200; attempt++) {
      kill_mode mode = attempt == 0 ? KILL_EARLY : rng_next() % 2 ? KILL_RANDOM : KILL_IN_FLUSH;
      double delay = mode == KILL_EARLY ? rng_uniform() * 0.01 : rng_uniform() * full_run_s / 4;
      int flush_n = 1 + (int)(rng_next() % 6);
      child_result res = run_child(path, mode, delay, flush_n);
      bool exists = access(path, F_OK) == 0;
      if (res.killed) {
        kills++;
        kills_in_flush += res.inside_flush;
        kills_before_file += !exists;
      }
      CHECK(exists || !existed, "the file vanished after a kill");
      existed = existed || exists;
      if (exists)
        check_after_kill(path, was_done, &n_done);
      if (!res.killed)
        break; /* finished, or failed (reported by run_child) */
    }
    CHECK(n_done == N_ITEMS - (N_ITEMS + 23) / 41, "cycle %d finished: %lld done", cycles,
          (long long)n_done);
    check_same_as_reference(path, reference);
    CHECK(access(creating, F_OK) != 0, "no temporary file left");
  }
  printf("schema %d: %d kills (%d before the file existed, %d inside a flush) over %d cycles; "
         "%lld times a chunk of an item not done failed its checksum\n",
         schema_version, kills, kills_before_file, kills_in_flush, cycles, (long long)torn_chunks);
  CHECK(kills >= MIN_KILLS, "%d kills, wanted %d", kills, MIN_KILLS);
  CHECK(kills_in_flush >= MIN_KILLS_IN_FLUSH, "%d kills inside a flush, wanted %d", kills_in_flush,
        MIN_KILLS_IN_FLUSH);
}

int main(void) {
  const char *seed_text = getenv("SD_KILL_SEED");
  uint64_t seed = seed_text ? strtoull(seed_text, NULL, 10) : (uint64_t)time(NULL);
  rng_state = seed ? seed : 1;
  printf("SD_KILL_SEED=%llu\n", (unsigned long long)seed);
  if (!mkdtemp(tmp_dir)) {
    perror("mkdtemp");
    return 1;
  }
  for (schema_version = 1; schema_version <= SD_OUTPUT_SCHEMA_VERSION; schema_version++)
    kill_cycles();
  char command[600];
  snprintf(command, sizeof command, "rm -rf '%s'", tmp_dir);
  if (system(command) != 0)
    fprintf(stderr, "could not remove %s\n", tmp_dir);
  return sd_test_finish();
}
