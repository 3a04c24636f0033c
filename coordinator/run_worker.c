/* A worker rank: reads the job, opens the engine once, then asks rank 0 for batches, renders
 * them and sends each item's result back, until rank 0 says STOP. A failure it cannot render
 * past (job, model, device) goes to rank 0, which reports it once for the run. */
#include "run_internal.h"
#include "stop_signal.h"

#include "../kernels/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct worker {
  const sd_cluster *cluster;
  sd_render_shape shape;
  uint8_t *buf; /* the result message being sent */
  size_t buf_cap;
} worker;

static int send_result(void *ctx, const sd_item_result *result) {
  worker *w = ctx;
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

static int send_interrupted(void) {
  int32_t sig = sd_stop_signal();
  return sd_msg_send(0, SD_TAG_INTERRUPTED, &sig, sizeof sig);
}

/* Waits for rank 0's next message into indices; *n is -1 for STOP. */
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
      msg.bytes / sizeof *indices > (size_t)capacity || msg.bytes == 0)
    return SD_ERROR("unexpected message from rank 0 (tag %d, %zu bytes)", msg.tag, msg.bytes);
  SD_TRY(sd_msg_recv(&msg, indices));
  *n = (int)(msg.bytes / sizeof *indices);
  return 0;
}

static int wait_for_stop(void) {
  int64_t ignored[1];
  int n = 0;
  SD_TRY(receive_work(ignored, 0, &n));
  if (n != -1)
    return SD_ERROR("rank 0 sent work after being told this rank cannot render");
  return 0;
}

static int setup(const sd_run_options *opts, const sd_cluster *cluster, const sd_run_plan *plan,
                 sd_job **job, sd_renderer **renderer) {
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
  sd_engine_params params;
  sd_run_engine_params(opts, cluster, info, &params);
  return sd_renderer_open(*job, &plan->shape, opts->null_model ? NULL : &params, info->batch_size,
                          renderer);
}

/* Renders batches until STOP. -1 when messages fail (the world must be aborted). */
static int serve(worker *w, sd_renderer *renderer, int batch_size) {
  int64_t *indices = malloc((size_t)batch_size * sizeof *indices);
  if (!indices)
    return SD_ERROR("out of memory");
  int rc = 0;
  for (;;) {
    int n = 0;
    rc = receive_work(indices, batch_size, &n);
    if (rc < 0 || n < 0)
      break;
    rc = sd_renderer_render(renderer, indices, n, send_result, w);
    if (rc < 0)
      break;
    rc = sd_stop_signal() ? send_interrupted() : sd_msg_send(0, SD_TAG_REQUEST, indices, 0);
    if (rc < 0)
      break;
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

  worker w = {cluster, plan.shape, NULL, 0};
  sd_job *job = NULL;
  sd_renderer *renderer = NULL;
  int rc = setup(opts, cluster, &plan, &job, &renderer);
  if (rc < 0) {
    /* rank 0 reports it for the run */
    if (send_text(SD_TAG_FATAL, sd_error_message()) < 0 || wait_for_stop() < 0)
      report->abort_world = true;
    else
      report->reported_by_rank0 = true;
  } else if (sd_stop_signal()) {
    if (send_interrupted() < 0 || wait_for_stop() < 0) {
      report->abort_world = true;
      rc = -1;
    }
  } else {
    char hello[512];
    snprintf(hello, sizeof hello, "%s: %s", cluster->host, sd_renderer_describe(renderer));
    rc = send_text(SD_TAG_HELLO, hello);
    if (rc == 0)
      rc = serve(&w, renderer, sd_job_get_info(job)->batch_size);
    if (rc < 0)
      report->abort_world = true;
  }
  sd_renderer_close(renderer);
  sd_job_free(job);
  free(w.buf);
  return rc;
}
