/* Learning-rate schedules of diffusers.optimization.get_scheduler (the ones its training scripts
 * offer by default): the multiplier of the base learning rate at a step, computed in double with
 * diffusers' formulas. As in diffusers' scripts, the scheduler steps after the optimizer: the
 * optimizer step counted from 0 uses the multiplier at that step (0 for the first step of a
 * warmup). docs/training.md. */
#ifndef SD_TRAIN_LR_SCHEDULE_H
#define SD_TRAIN_LR_SCHEDULE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sd_lr_schedule {
  SD_LR_CONSTANT = 0,         /* 1 */
  SD_LR_CONSTANT_WITH_WARMUP, /* step / max(1, warmup) during warmup, then 1 */
  SD_LR_LINEAR,               /* warmup, then (total - step) / max(1, total - warmup), >= 0 */
  SD_LR_COSINE,               /* warmup, then 0.5 (1 + cos(pi progress)) (num_cycles 0.5) */
} sd_lr_schedule;

/* The schedule named as get_scheduler names it ("constant", "constant_with_warmup", "linear",
 * "cosine"); 0, or -1 with an error listing the names. */
int sd_lr_schedule_parse(const char *name, sd_lr_schedule *out);
const char *sd_lr_schedule_name(sd_lr_schedule schedule);

/* The multiplier at `step` (from 0) with `warmup` warmup steps of `total` training steps. */
double sd_lr_multiplier(sd_lr_schedule schedule, int64_t step, int64_t warmup, int64_t total);

#ifdef __cplusplus
}
#endif

#endif
