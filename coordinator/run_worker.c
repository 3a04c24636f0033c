/* A worker rank: reads the job, joins its group (run_groups.h), opens the engine once, then
 * renders batches until rank 0 says STOP. A group's leader asks rank 0 for each batch, hands it
 * to the rest of its group over the group's communicator and sends each item's result back;
 * with ranks_per_image 1 every worker is its own leader. A failure it cannot render past (job,
 * model, device) goes to rank 0, which reports it once for the run. A group whose
 * communicators fail (a member died or stopped answering) is lost: each of its ranks that is
 * still there tells rank 0 once and leaves the loop. */
#include "run_internal.h"
#include "stop_signal.h"

#include "../kernels/error.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long a group told "nothing now" waits before asking again. */
#define HOLD_NS 50000000L

/* Bytes of a rank's setup error as its group shares it. */
#define SETUP_ERROR_BYTES 1024

typedef struct worker {
  const sd_cluster *cluster;
  sd_render_shape shape;
  int group;          /* this rank's group */
  const int *members; /* its world ranks, in position order */
  const sd_run_groups *groups;
  bool leader; /* talks to rank 0 and sends the results */
  sd_run_group_comms comms;
  int batch_size;
  int64_t *share;      /* (1 + batch_size) a batch as the leader hands it to the group */
  size_t *share_bytes; /* (group size) the parts of that all-gather: the leader's only */
  uint8_t *buf;        /* the result message being sent */
  size_t buf_cap;
} worker;

static int send_result(void *ctx, const sd_item_result *result) {
  worker *w = ctx;
  if (!w->leader)
    return 0; /* the group's leader sends the group's results */
  size_t bytes = sd_result_msg_bytes(&w->shape, result);
  if (bytes > w->buf_cap) {
    uint8_t *grown = realloc(w->buf, bytes);
    if (!grown)
      return SD_ERROR("out of memory for a result of %zu bytes", bytes);
    w->buf = grown;
    w->buf_cap = bytes;
  }
  sd_result_msg_encode(&w->shape, result, w->buf);
  return sd_msg_send(0, SD_TAG_RESULT, w->buf, bytes);
}

static int send_text(int tag, const char *text) {
  return sd_msg_send(0, tag, text, strlen(text));
}

static int send_interrupted(int sig) {
  int32_t value = sig;
  return sd_msg_send(0, SD_TAG_INTERRUPTED, &value, sizeof value);
}

/* Tells rank 0 that this rank's group is lost (fire and forget: nothing answers). */
static int send_group_lost(const worker *w, const char *reason) {
  char msg[2048];
  int32_t g = w->group;
  memcpy(msg, &g, sizeof g);
  int len = snprintf(msg + sizeof g, sizeof msg - sizeof g, "%s", reason);
  size_t text = len < 0                               ? 0
                : (size_t)len < sizeof msg - sizeof g ? (size_t)len
                                                      : sizeof msg - sizeof g - 1;
  return sd_msg_send(0, SD_TAG_GROUP_LOST, msg, sizeof g + text);
}

/* Waits for rank 0's next message into indices; *n is -1 for STOP, 0 for "ask again". */
static int receive_work(int64_t *indices, int capacity, int *n) {
  sd_msg msg = {0, 0, 0};
  bool found = false;
  SD_TRY(sd_msg_probe(0, true, &msg, &found));
  if (msg.tag == SD_TAG_STOP) {
    char ignored[8];
    msg.bytes = 0;
    SD_TRY(sd_msg_recv(&msg, ignored));
    *n = -1;
    return 0;
  }
  if (msg.tag != SD_TAG_WORK || msg.bytes % sizeof *indices ||
      msg.bytes / sizeof *indices > (size_t)capacity)
    return SD_ERROR("unexpected message from rank 0 (tag %d, %zu bytes)", msg.tag, msg.bytes);
  int64_t none[1];
  SD_TRY(sd_msg_recv(&msg, msg.bytes ? (void *)indices : (void *)none));
  *n = (int)(msg.bytes / sizeof *indices);
  return 0;
}

/* The leader's batch (n items, -1 for STOP) to every rank of the group. */
static int share_work(worker *w, int64_t *indices, int *n) {
  if (!w->comms.group)
    return 0;
  int64_t *msg = w->share;
  size_t bytes = (size_t)(1 + w->batch_size) * sizeof *msg;
  int64_t *mine = NULL;
  if (w->leader) {
    mine = malloc(bytes);
    if (!mine)
      return SD_ERROR("out of memory");
    mine[0] = *n;
    if (*n > 0)
      memcpy(mine + 1, indices, (size_t)*n * sizeof *indices);
  }
  w->share_bytes[0] = bytes;
  int rc = sd_comm_allgatherv(w->comms.group, mine, msg, w->share_bytes);
  if (rc < 0) /* mine and msg stay allocated: the operation may still be pending on them */
    return sd_error_context("receiving a batch from the group's leader");
  free(mine);
  if (msg[0] > w->batch_size || msg[0] < -1)
    return SD_ERROR("the group's leader sent a batch of %lld items", (long long)msg[0]);
  *n = (int)msg[0];
  if (*n > 0)
    memcpy(indices, msg + 1, (size_t)*n * sizeof *indices);
  return 0;
}

/* Every rank's setup error (text, "" when fine) to the whole group: the first one in *failure
 * ("rank R: ..."), or "" when every rank is ready. */
static int agree_on_setup(worker *w, char *failure, size_t size) {
  int n = sd_comm_size(w->comms.group);
  size_t *bytes = malloc((size_t)n * sizeof *bytes);
  char *all = malloc((size_t)n * SETUP_ERROR_BYTES), mine[SETUP_ERROR_BYTES];
  if (!bytes || !all) {
    free(bytes);
    free(all);
    return SD_ERROR("out of memory");
  }
  snprintf(mine, sizeof mine, "%s", failure);
  for (int r = 0; r < n; r++)
    bytes[r] = SETUP_ERROR_BYTES;
  int rc = sd_comm_allgatherv(w->comms.group, mine, all, bytes);
  if (rc < 0) { /* all stays allocated: the operation may still be pending on it */
    free(bytes);
    return rc;
  }
  failure[0] = '\0';
  for (int r = 0; r < n && !failure[0]; r++) {
    const char *text = all + (size_t)r * SETUP_ERROR_BYTES;
    if (!text[0])
      continue;
    if (r == 0) /* the leader's own (rank 0 names the leader) */
      snprintf(failure, size, "%.*s", SETUP_ERROR_BYTES, text);
    else
      snprintf(failure, size, "rank %d of its group: %.*s", w->members[r], SETUP_ERROR_BYTES, text);
  }
  free(bytes);
  free(all);
  return 0;
}

/* Whether any rank of the group got SIGTERM / SIGINT: the signal (this rank's, or SIGTERM for
 * another's), 0 when none. */
static int agree_on_signal(worker *w, int *sig) {
  *sig = sd_stop_signal();
  if (!w->comms.group)
    return 0;
  double any = *sig ? 1.0 : 0.0;
  SD_TRY(sd_comm_allreduce_sum_f64(w->comms.group, &any, 1));
  if (any > 0.0 && !*sig)
    *sig = SIGTERM;
  return 0;
}

static int setup(const sd_run_options *opts, worker *w, const sd_run_plan *plan, sd_job **job,
                 sd_renderer **renderer) {
  /* a worker learns of a signal only between batches: a second one ends it at once */
  SD_TRY(sd_stop_signals_install(true, NULL));
  SD_TRY(sd_job_load(opts->job_path, job));
  const sd_job_info *info = sd_job_get_info(*job);
  char hash[65];
  sd_run_job_hash(info, opts->null_model, hash);
  if (strcmp(hash, plan->job_hash) != 0)
    return SD_ERROR("%s: the job file changed after rank 0 read it (hash %.16s..., rank 0 read "
                    "%.16s...)",
                    info->path, hash, plan->job_hash);
  if (info->batch_size != w->batch_size)
    return SD_ERROR("%s: the job file changed after rank 0 read it (batch_size %d, rank 0 read "
                    "%d)",
                    info->path, info->batch_size, w->batch_size);
  sd_engine_params params;
  sd_run_engine_params(opts, w->cluster, info, &params);
  sd_image_group *group = sd_run_group_image(&w->comms);
  SD_TRY(sd_renderer_open(*job, &plan->shape, opts->null_model ? NULL : &params, group,
                          info->batch_size, renderer));
  const char *backend = sd_renderer_backend(*renderer);
  if (group && strcmp(backend, "null") != 0 && strcmp(backend, "cpu") != 0)
    return SD_ERROR("ranks_per_image %d: rank groups of sdbatch run render on the CPU backend "
                    "only (the renderer here is %s; NCCL groups are not wired into sdbatch run "
                    "yet): use device: cpu",
                    plan->ranks_per_image, sd_renderer_describe(*renderer));
  return 0;
}

/* The leader's first message: why the group cannot render, that it was interrupted, or HELLO. */
static int first_message(const worker *w, const sd_renderer *renderer, const char *failure,
                         int sig) {
  if (failure[0])
    return send_text(SD_TAG_FATAL, failure);
  if (sig)
    return send_interrupted(sig);
  char hello[512], who[192] = "", ranks[128];
  if (w->comms.group) {
    int n = sd_comm_size(w->comms.group);
    sd_run_groups_describe(w->groups, w->group, ranks, sizeof ranks);
    if (w->comms.cfg)
      snprintf(who, sizeof who, "; group of %s: CFG halves of %d band%s", ranks, n / 2,
               n / 2 == 1 ? "" : "s");
    else
      snprintf(who, sizeof who, "; group of %s: %d bands", ranks, n);
  }
  snprintf(hello, sizeof hello, "%s: %s%s", w->cluster->host, sd_renderer_describe(renderer), who);
  return send_text(SD_TAG_HELLO, hello);
}

/* The group's communicators failed: tell rank 0 and leave. */
static int group_lost(worker *w, const char *reason) {
  char why[2048];
  snprintf(why, sizeof why, "%s", reason);
  fprintf(stderr, "sdbatch run: rank %d: its group is lost: %s\n", w->cluster->rank, why);
  return send_group_lost(w, why);
}

/* Renders batches until STOP. -1 when messages to rank 0 fail (the world must be aborted). */
static int serve(worker *w, sd_renderer *renderer, const char *failure, bool *lost) {
  int64_t *indices = malloc((size_t)w->batch_size * sizeof *indices);
  if (!indices)
    return SD_ERROR("out of memory");
  int sig = 0;
  int rc = agree_on_signal(w, &sig);
  if (rc < 0) {
    *lost = true;
    rc = group_lost(w, sd_error_message());
    free(indices);
    return rc;
  }
  if (w->leader)
    rc = first_message(w, renderer, failure, sig);
  while (rc == 0) {
    int n = 0;
    if (w->leader && (rc = receive_work(indices, w->batch_size, &n)) < 0)
      break;
    if (share_work(w, indices, &n) < 0) {
      *lost = true;
      rc = group_lost(w, sd_error_message());
      break;
    }
    if (n < 0)
      break;
    if (n > 0 && !renderer) {
      rc = SD_ERROR("rank 0 sent work to a group that cannot render (protocol error)");
      break;
    }
    if (n > 0 && (rc = sd_renderer_render(renderer, indices, n, send_result, w)) < 0)
      break;
    if (sd_run_group_failed(&w->comms)) {
      *lost = true;
      rc = group_lost(w, sd_error_message());
      break;
    }
    if (agree_on_signal(w, &sig) < 0) {
      *lost = true;
      rc = group_lost(w, sd_error_message());
      break;
    }
    if (n == 0) { /* nothing for now: ask again shortly */
      struct timespec pause = {0, HOLD_NS};
      nanosleep(&pause, NULL);
    }
    if (w->leader)
      rc = sig ? send_interrupted(sig) : sd_msg_send(0, SD_TAG_REQUEST, indices, 0);
  }
  free(indices);
  return rc;
}

int sd_run_worker(const sd_run_options *opts, const sd_cluster *cluster, sd_run_report *report,
                  bool *in_run) {
  sd_run_plan plan;
  memset(&plan, 0, sizeof plan);
  if (sd_cluster_bcast(&plan, sizeof plan) < 0) {
    report->abort_world = true;
    return -1;
  }
  if (plan.action == SD_PLAN_STOP) {
    report->reported_by_rank0 = true;
    return SD_ERROR("rank 0 refused the job");
  }
  if (plan.action == SD_PLAN_NOTHING)
    return 0;
  *in_run = true;

  sd_run_groups groups;
  worker w;
  memset(&w, 0, sizeof w);
  w.cluster = cluster;
  w.shape = plan.shape;
  if (sd_run_groups_form(cluster->rank, cluster->size, plan.ranks_per_image, plan.cfg_parallel,
                         opts->group_timeout_s, &groups, &w.comms) < 0) {
    report->abort_world = true;
    return -1;
  }
  w.group = groups.group[cluster->rank];
  w.leader = groups.position[cluster->rank] == 0;
  if (w.group < 0 || plan.batch_size < 1) {
    /* in no group: idle until the run's final broadcast */
    sd_run_groups_free(&groups);
    return 0;
  }

  sd_job *job = NULL;
  sd_renderer *renderer = NULL;
  char failure[SETUP_ERROR_BYTES] = "";
  bool lost = false;
  int rc = 0;
  w.groups = &groups;
  w.members = &groups.members[w.group * groups.ranks_per_image];
  w.batch_size = plan.batch_size;
  w.share = malloc((size_t)(1 + w.batch_size) * sizeof *w.share);
  w.share_bytes =
      calloc(w.comms.group ? (size_t)sd_comm_size(w.comms.group) : 1, sizeof *w.share_bytes);
  if (!w.share || !w.share_bytes)
    rc = SD_ERROR("out of memory");
  if (rc == 0 && setup(opts, &w, &plan, &job, &renderer) < 0) {
    snprintf(failure, sizeof failure, "%s", sd_error_message());
    sd_renderer_close(renderer);
    renderer = NULL;
  }
  if (rc == 0 && w.comms.group && agree_on_setup(&w, failure, sizeof failure) < 0) {
    lost = true;
    rc = group_lost(&w, sd_error_message());
  }
  if (rc == 0 && !lost)
    rc = serve(&w, renderer, failure, &lost);
  if (rc < 0) {
    report->abort_world = true; /* messages to rank 0 failed */
  } else if (failure[0] && !lost) {
    /* rank 0 reports it for the run */
    report->reported_by_rank0 = true;
    rc = SD_ERROR("%s", failure);
  }
  /* a lost group's communicators may still have operations pending on the renderer's buffers
   * (a peer that comes back can complete them): those stay allocated until the process ends */
  if (!lost)
    sd_renderer_close(renderer);
  sd_job_free(job);
  sd_run_group_comms_free(&w.comms);
  sd_run_groups_free(&groups);
  if (!lost)
    free(w.share);
  free(w.share_bytes);
  free(w.buf);
  return rc;
}
