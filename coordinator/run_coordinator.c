/* Rank 0 of a multi-rank run: answers the workers' requests with batches, writes the results
 * they return, flushes about every second, reports progress, and stops the run (every worker
 * told STOP, each after returning its batch in flight) when the items run out, on a signal, or
 * when something fails. */
#include "run_internal.h"
#include "stop_signal.h"

#include "../kernels/error.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* While messages flow, rank 0 looks for the next one without pause (a worker's send waits on
 * it) for up to SPIN_S after the last; then it sleeps between looks: 20 us, doubling up to
 * 1 ms, leaving the cores to the ranks that render. */
#define SPIN_S            0.002
#define IDLE_SLEEP_MIN_NS 20000L
#define IDLE_SLEEP_MAX_NS 1000000L

/* A group of workers (one rank with ranks_per_image 1), as its leader talks for it. */
typedef struct worker_state {
  int64_t *batch; /* (batch_size) the indices handed out last */
  int n;          /* items in batch */
  int returned;   /* of them, returned so far (in order) */
  bool stopped;   /* told STOP, or lost: counted in n_stopped, gets no more work */
  bool lost;      /* its communicators failed (GROUP_LOST) */
  bool retrying;  /* batch is a lost group's, handed out again */
  bool holding;   /* told to ask again later (WORK without items) */
} worker_state;

/* The unreturned items of a lost group's batch, waiting to be handed to another group. */
typedef struct retry_batch {
  int64_t *indices; /* (batch_size) */
  int n;
} retry_batch;

typedef struct coordinator {
  sd_run_ctx *ctx;
  sd_run_report *report;
  const sd_run_groups *groups;
  worker_state *workers; /* (size), index = rank; only group leaders' are used */
  int n_workers;         /* groups, each with its leader as the client */
  int n_stopped;
  int n_lost;
  retry_batch *retry; /* (n_workers) lost batches to hand out again, each once */
  int n_retry;
  int64_t retried;    /* items handed out again */
  bool exhausted;     /* dispatch has handed out every item */
  bool stopping;      /* no more batches go out */
  bool writes_broken; /* a write failed: later results are not written */
  char error[2048];   /* the first failure, reported when the run ends */
  uint8_t *buf;       /* the message being received */
  size_t buf_cap;
} coordinator;

static void fail(coordinator *co, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records the first failure and stops handing out work; the run drains and ends with it. */
static void fail(coordinator *co, const char *fmt, ...) {
  if (!co->error[0]) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(co->error, sizeof co->error, fmt, args);
    va_end(args);
  }
  co->stopping = true;
}

static int send_stop(coordinator *co, int rank) {
  static const char nothing = 0;
  co->workers[rank].stopped = true;
  co->n_stopped++;
  return sd_msg_send(rank, SD_TAG_STOP, &nothing, 0);
}

/* Whether a group other than rank's leader's is rendering a batch. */
static bool another_busy(const coordinator *co, int rank) {
  for (int g = 0; g < co->n_workers; g++) {
    int leader = sd_run_groups_leader(co->groups, g);
    const worker_state *w = &co->workers[leader];
    if (leader != rank && !w->stopped && !w->lost && !w->holding)
      return true;
  }
  return false;
}

/* A worker asks for a batch (HELLO or REQUEST): the next one, nothing yet (WORK without items:
 * ask again), or STOP. */
static int answer(coordinator *co, int rank) {
  worker_state *w = &co->workers[rank];
  if (w->returned < w->n)
    fail(co, "rank %d asked for work with %d items of its batch not returned (protocol error)",
         rank, w->n - w->returned);
  if (co->stopping)
    return send_stop(co, rank);
  w->returned = w->n = 0;
  w->retrying = co->n_retry > 0;
  if (w->retrying) {
    /* a lost group's batch first: its items are failed in the file until this group returns
     * them */
    retry_batch *b = &co->retry[--co->n_retry];
    w->n = b->n;
    memcpy(w->batch, b->indices, (size_t)b->n * sizeof *w->batch);
    co->retried += b->n;
    return sd_msg_send(rank, SD_TAG_WORK, w->batch, (size_t)w->n * sizeof *w->batch);
  }
  if (sd_dispatch_next(&co->ctx->dispatch, w->batch, &w->n) < 0) {
    fail(co, "%s", sd_error_message());
    return send_stop(co, rank);
  }
  w->holding = false;
  if (w->n == 0) {
    co->exhausted = true;
    /* while another group renders, this one waits (it asks again shortly): a batch that group
     * loses can still be rendered here */
    if (co->groups->ranks_per_image > 1 && another_busy(co, rank)) {
      w->holding = true;
      return sd_msg_send(rank, SD_TAG_WORK, w->batch, 0);
    }
    return send_stop(co, rank);
  }
  return sd_msg_send(rank, SD_TAG_WORK, w->batch, (size_t)w->n * sizeof *w->batch);
}

static void handle_result(coordinator *co, int rank, size_t bytes) {
  sd_item_result result;
  if (sd_result_msg_decode(&co->ctx->plan.shape, co->buf, bytes, &result) < 0) {
    fail(co, "rank %d: %s", rank, sd_error_message());
    return;
  }
  worker_state *w = &co->workers[rank];
  if (w->lost) {
    /* its batch was failed when the group was lost; a result that still comes in is written
     * if it is an image of that batch (a failed item may become done) */
    bool in_batch = false;
    for (int i = 0; i < w->n; i++)
      in_batch = in_batch || w->batch[i] == result.index;
    if (in_batch && result.done && !co->writes_broken &&
        sd_output_status(co->ctx->output, result.index) != SD_ITEM_DONE &&
        sd_run_write_result(co->ctx, rank, &result) < 0) {
      co->writes_broken = true;
      fail(co, "%s", sd_error_message());
    }
    return;
  }
  if (w->returned >= w->n || w->batch[w->returned] != result.index) {
    fail(co, "rank %d returned item %" PRId64 ", which it was not rendering (protocol error)", rank,
         result.index);
    return;
  }
  w->returned++;
  if (w->retrying) /* counted failed when its group was lost */
    sd_progress_retried(&co->ctx->progress);
  if (co->writes_broken)
    return;
  if (sd_output_status(co->ctx->output, result.index) == SD_ITEM_DONE)
    return; /* a retried item the lost group still returned first */
  if (sd_run_write_result(co->ctx, rank, &result) < 0) {
    co->writes_broken = true;
    fail(co, "%s", sd_error_message());
  }
}

static const char *signal_name(int sig) {
  return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

static void begin_interrupt(coordinator *co, int sig, int rank) {
  if (co->report->signal)
    return;
  co->report->signal = sig;
  co->stopping = true;
  sd_progress_note(&co->ctx->progress,
                   "%s on rank %d: stopping; the batches in flight are written as they come back "
                   "(signal rank 0 again to stop at once)",
                   signal_name(sig), rank);
  if (sd_run_flush(co->ctx, true) < 0 && !co->writes_broken) {
    co->writes_broken = true;
    fail(co, "%s", sd_error_message());
  }
}

static int grow_buffer(coordinator *co, size_t bytes) {
  if (bytes <= co->buf_cap)
    return 0;
  uint8_t *grown = realloc(co->buf, bytes);
  if (!grown)
    return SD_ERROR("out of memory for a message of %zu bytes", bytes);
  co->buf = grown;
  co->buf_cap = bytes;
  return 0;
}

/* A rank of group g reported that the group's communicators failed: the items of its batch not
 * returned yet fail with the reason, and the group gets no more work. */
static void lose_group(coordinator *co, int g, int from, const char *reason) {
  int leader = sd_run_groups_leader(co->groups, g);
  worker_state *w = &co->workers[leader];
  if (w->lost)
    return;
  w->lost = true;
  co->n_lost++;
  char who[128], why[1024];
  sd_run_groups_describe(co->groups, g, who, sizeof who);
  snprintf(why, sizeof why, "the group of %s was lost (rank %d: %s)", who, from, reason);
  int unreturned = w->n - w->returned;
  for (; w->returned < w->n && !co->writes_broken; w->returned++) {
    sd_item_result failed = {w->batch[w->returned], false, NULL, NULL, why};
    if (sd_run_write_result(co->ctx, leader, &failed) < 0) {
      co->writes_broken = true;
      fail(co, "%s", sd_error_message());
    }
  }
  /* the batch's items not done (unreturned, or returned failed: the render that lost the group
   * fails them) are handed out again once, unless the batch was a lost one already (an item
   * that takes its groups down stays failed) or no group is left to render them */
  retry_batch *b = &co->retry[co->n_retry];
  b->n = 0;
  if (!w->retrying && co->n_lost < co->n_workers && !co->stopping)
    for (int i = 0; i < w->n; i++)
      if (sd_output_status(co->ctx->output, w->batch[i]) != SD_ITEM_DONE)
        b->indices[b->n++] = w->batch[i];
  if (b->n > 0)
    co->n_retry++;
  sd_progress_note(&co->ctx->progress,
                   "%s; %d item%s of its batch failed (%d not returned)%s; %d of %d groups left",
                   why, w->n, w->n == 1 ? "" : "s", unreturned,
                   b->n > 0 ? ", to be rendered again by another group" : "",
                   co->n_workers - co->n_lost, co->n_workers);
  if (!w->stopped) {
    w->stopped = true;
    co->n_stopped++;
  }
}

/* A message from the leader of a lost group (it may not know yet): results are kept, anything
 * asking for an answer gets STOP. */
static int handle_lost_leader(coordinator *co, const sd_msg *msg) {
  switch (msg->tag) {
  case SD_TAG_RESULT:
    handle_result(co, msg->source, msg->bytes);
    return 0;
  case SD_TAG_HELLO:
  case SD_TAG_REQUEST:
  case SD_TAG_INTERRUPTED:
  case SD_TAG_FATAL: {
    static const char nothing = 0;
    return sd_msg_send(msg->source, SD_TAG_STOP, &nothing, 0);
  }
  default:
    return 0;
  }
}

static void handle_group_lost(coordinator *co, int rank, size_t bytes) {
  int32_t g = -1;
  if (bytes >= sizeof g)
    memcpy(&g, co->buf, sizeof g);
  co->buf[bytes] = '\0';
  if (g < 0 || g >= co->n_workers || co->groups->group[rank] != g) {
    fail(co, "rank %d reported group %d lost, which it is not in (protocol error)", rank, g);
    return;
  }
  lose_group(co, g, rank, bytes > sizeof g ? (const char *)co->buf + sizeof g : "no reason");
}

/* Receives and handles one message. -1 only when communication itself fails. */
static int handle_message(coordinator *co, const sd_msg *msg) {
  SD_TRY(grow_buffer(co, msg->bytes + 1));
  SD_TRY(sd_msg_recv(msg, co->buf));
  int rank = msg->source;
  int g = rank >= 1 && rank < co->groups->world_size ? co->groups->group[rank] : -1;
  if (g < 0)
    return SD_ERROR("message (tag %d) from rank %d, which is in no group", msg->tag, rank);
  if (msg->tag == SD_TAG_GROUP_LOST) {
    handle_group_lost(co, rank, msg->bytes);
    return 0;
  }
  if (co->groups->position[rank] != 0)
    return SD_ERROR("message (tag %d) from rank %d, which does not lead its group", msg->tag, rank);
  if (co->workers[rank].lost)
    return handle_lost_leader(co, msg);
  if (co->workers[rank].stopped)
    return SD_ERROR("message (tag %d) from rank %d, which was told to stop", msg->tag, rank);
  switch (msg->tag) {
  case SD_TAG_HELLO:
    co->buf[msg->bytes] = '\0';
    sd_progress_note(&co->ctx->progress, "rank %d on %s", rank, (const char *)co->buf);
    return answer(co, rank);
  case SD_TAG_REQUEST:
    return answer(co, rank);
  case SD_TAG_RESULT:
    handle_result(co, rank, msg->bytes);
    return 0;
  case SD_TAG_FATAL:
    co->buf[msg->bytes] = '\0';
    fail(co, "rank %d: %s", rank, (const char *)co->buf);
    return send_stop(co, rank);
  case SD_TAG_INTERRUPTED: {
    int32_t sig = SIGTERM;
    if (msg->bytes == sizeof sig)
      memcpy(&sig, co->buf, sizeof sig);
    begin_interrupt(co, sig, rank);
    return send_stop(co, rank);
  }
  default:
    fail(co, "rank %d sent an unknown message (tag %d)", rank, msg->tag);
    return send_stop(co, rank);
  }
}

static int coordinate(coordinator *co) {
  long sleep_ns = IDLE_SLEEP_MIN_NS;
  double last_message = sd_progress_now();
  while (co->n_stopped < co->n_workers) {
    if (sd_stop_signal())
      begin_interrupt(co, sd_stop_signal(), 0);
    if (sd_stop_signal_count() >= 2) {
      /* workers busy with a batch cannot be stopped cleanly any more */
      sd_progress_note(&co->ctx->progress, "second signal: stopping at once");
      co->report->abort_world = true;
      return 0;
    }
    sd_msg msg;
    bool found = false;
    SD_TRY(sd_msg_probe(SD_MSG_ANY_SOURCE, false, &msg, &found));
    if (found) {
      SD_TRY(handle_message(co, &msg));
      sleep_ns = IDLE_SLEEP_MIN_NS;
      last_message = sd_progress_now();
      continue;
    }
    if (!co->writes_broken && sd_run_flush(co->ctx, false) < 0) {
      co->writes_broken = true;
      fail(co, "%s", sd_error_message());
    }
    sd_progress_tick(&co->ctx->progress);
    if (sd_progress_now() - last_message < SPIN_S)
      continue;
    struct timespec pause = {0, sleep_ns};
    nanosleep(&pause, NULL);
    sleep_ns = sleep_ns * 2 < IDLE_SLEEP_MAX_NS ? sleep_ns * 2 : IDLE_SLEEP_MAX_NS;
  }
  return 0;
}

int sd_run_coordinate(sd_run_ctx *ctx, sd_run_report *report) {
  coordinator co;
  memset(&co, 0, sizeof co);
  co.ctx = ctx;
  co.report = report;
  co.groups = &ctx->groups;
  co.n_workers = ctx->groups.n_groups;
  co.workers = calloc((size_t)ctx->cluster->size, sizeof *co.workers);
  co.retry = calloc((size_t)co.n_workers, sizeof *co.retry);
  int rc = co.workers && co.retry ? 0 : SD_ERROR("out of memory");
  for (int g = 0; rc == 0 && g < co.n_workers; g++)
    if (!(co.retry[g].indices = malloc((size_t)ctx->info->batch_size * sizeof(int64_t))))
      rc = SD_ERROR("out of memory");
  for (int g = 0; rc == 0 && g < co.n_workers; g++) {
    int leader = sd_run_groups_leader(&ctx->groups, g);
    co.workers[leader].batch = malloc((size_t)ctx->info->batch_size * sizeof(int64_t));
    if (!co.workers[leader].batch)
      rc = SD_ERROR("out of memory");
  }
  int per_image = ctx->groups.ranks_per_image;
  if (per_image == 1) {
    sd_progress_note(&ctx->progress, "%" PRId64 " items to render on %d worker ranks",
                     ctx->progress.to_render, co.n_workers);
  } else {
    char groups[1024] = "", who[128];
    size_t at = 0;
    for (int g = 0; g < co.n_workers && at < sizeof groups; g++)
      at += (size_t)snprintf(groups + at, sizeof groups - at, "%s%s", g ? ", " : "",
                             sd_run_groups_describe(&ctx->groups, g, who, sizeof who));
    int idle = ctx->cluster->size - 1 - co.n_workers * per_image;
    char idle_note[64] = "";
    if (idle)
      snprintf(idle_note, sizeof idle_note, "; %d rank%s in no group, idle", idle,
               idle == 1 ? "" : "s");
    sd_progress_note(&ctx->progress,
                     "%" PRId64 " items to render on %d group%s of %d ranks%s (%s)%s",
                     ctx->progress.to_render, co.n_workers, co.n_workers == 1 ? "" : "s", per_image,
                     ctx->info->cfg_parallel ? " in CFG halves" : "", groups, idle_note);
  }
  if (rc == 0)
    rc = coordinate(&co);
  if (rc == 0 && co.n_lost > 0 && !co.exhausted && !co.stopping)
    fail(&co,
         "every group that was rendering was lost (%d of %d); the items not handed out stay "
         "pending (run the job again to resume)",
         co.n_lost, co.n_workers);
  if (rc == 0 && (co.retried > 0 || co.n_retry > 0))
    sd_progress_note(&ctx->progress,
                     "%" PRId64 " item%s of lost groups handed out again; %d lost batch%s left "
                     "failed",
                     co.retried, co.retried == 1 ? "" : "s", co.n_retry,
                     co.n_retry == 1 ? "" : "es");
  if (rc == 0 && co.n_lost > 0) {
    /* a rank of a lost group may be dead (the world's final broadcast would wait for it
     * forever) or stuck and may still send: once rank 0 has closed the output file, the run
     * ends every rank with MPI_Abort and this run's exit status */
    sd_progress_note(&ctx->progress,
                     "%d group%s lost: every rank ends with MPI_Abort once the "
                     "output file is closed",
                     co.n_lost, co.n_lost == 1 ? " was" : "s were");
    report->abort_world = true;
  }
  if (rc < 0) {
    /* messages cannot be exchanged any more: the workers cannot be told to stop */
    sd_error_context("rank 0 coordinating");
    report->abort_world = true;
  } else if (co.error[0]) {
    rc = sd_error_set(__FILE__, __LINE__, "%s", co.error);
  }
  for (int r = 1; co.workers && r < ctx->cluster->size; r++)
    free(co.workers[r].batch);
  for (int g = 0; co.retry && g < co.n_workers; g++)
    free(co.retry[g].indices);
  free(co.retry);
  free(co.workers);
  free(co.buf);
  return rc;
}
