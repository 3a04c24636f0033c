/* What rank 0 and the workers say to each other (over cluster.h's byte messages).
 *
 *   all ranks  <- rank 0   the plan (broadcast): stop, run or nothing to do, the job's hash,
 *                          the items' sizes, ranks per image and CFG parallelism
 *
 * The workers render in groups (run_groups.h; a group of one with ranks_per_image 1). Only a
 * group's leader talks to rank 0 as below; it hands each batch to the rest of its group over
 * the group's communicator:
 *   worker -> rank 0       HELLO "<description>" (engine open; asks for a batch)
 *                          FATAL "<error>" (cannot go on; rank 0 reports it and stops the run)
 *                          RESULT per item of a batch, then REQUEST (the next batch), or
 *                          INTERRUPTED (the worker got SIGTERM/SIGINT: the run stops)
 *   rank 0 -> worker       WORK int64 indices[n], or STOP (the last message a worker gets);
 *                          with rank groups, WORK with no indices: nothing now, REQUEST again
 *                          shortly (another group still renders and may lose its batch)
 * and any rank of a group whose communicators failed (a member died or stopped answering):
 *   member -> rank 0       GROUP_LOST int32 group, then "<error>" (sent once, unanswered; the
 *                          rank then leaves the run's loop). Rank 0 fails the group's
 *                          unreturned items with the error and gives the group no more work.
 *
 * A worker has at most one unanswered request, and rank 0 answers each, so no rank waits on
 * another that waits on it. Messages are raw host-order bytes: ranks run the same build on the
 * same architecture. */
#ifndef SD_RUN_MESSAGES_H
#define SD_RUN_MESSAGES_H

#include "render.h"

#include <stddef.h>
#include <stdint.h>

enum {
  SD_TAG_HELLO = 1,
  SD_TAG_FATAL,
  SD_TAG_REQUEST,
  SD_TAG_RESULT,
  SD_TAG_INTERRUPTED,
  SD_TAG_WORK,
  SD_TAG_STOP,
  SD_TAG_GROUP_LOST,
};

enum {
  SD_PLAN_STOP = 0,    /* rank 0 refused the job (it reports why); everyone exits 1 */
  SD_PLAN_RUN = 1,     /* render */
  SD_PLAN_NOTHING = 2, /* every item is done already */
};

/* Broadcast by rank 0 once it has checked the job, the model and the output file. */
typedef struct sd_run_plan {
  int32_t action; /* SD_PLAN_* */
  sd_render_shape shape;
  char job_hash[65]; /* the hash the output file holds (workers check they read the same job) */
  int32_t ranks_per_image; /* the job's (rank 0's reading is the one every rank uses) */
  int32_t cfg_parallel;
  int32_t batch_size; /* the most items of a WORK message */
} sd_run_plan;

/* A RESULT message: a header (index, done, reason length), then the latents (C, h, w) float32
 * and the image (H, W, 3) when done, or the reason (NUL-terminated) when failed. */
size_t sd_result_msg_bytes(const sd_render_shape *shape, const sd_item_result *result);
void sd_result_msg_encode(const sd_render_shape *shape, const sd_item_result *result, uint8_t *buf);
/* Points out's fields into buf (aligned as malloc aligns); -1 when the sizes do not add up. */
int sd_result_msg_decode(const sd_render_shape *shape, const uint8_t *buf, size_t bytes,
                         sd_item_result *out);

#endif
