/* The schedulers that job files (and later the command line) accept: name, diffusers class and
 * whether the class offers Karras sigmas (use_karras_sigmas). This is the one list of them: each
 * entry names its sd_scheduler_kind (worker/sched/scheduler.h) without the SD_SCHED_ prefix, so a
 * user builds tables indexed by kind, e.g.
 *   #define X(kind, name, class_name, karras) [SD_SCHED_##kind] = name,
 *   static const char *const names[] = {SD_SCHEDULER_LIST(X)};
 * worker/sched can build its kind table (names, classes, karras) from it.
 * Karras support as in diffusers 0.42: LMSDiscrete, EulerDiscrete, HeunDiscrete and
 * DPMSolverMultistep have use_karras_sigmas; DDIM, PNDM and EulerAncestralDiscrete do not. */
#ifndef SD_SCHEDULER_NAMES_H
#define SD_SCHEDULER_NAMES_H

/* X(kind, name, class_name, karras): kind without SD_SCHED_, the job-file name, the diffusers
 * class (a model's scheduler/config.json "_class_name"), Karras sigmas available (0/1) */
#define SD_SCHEDULER_LIST(X)                                                                       \
  X(DDIM, "ddim", "DDIMScheduler", 0)                                                              \
  X(PNDM, "pndm", "PNDMScheduler", 0)                                                              \
  X(LMS, "lms", "LMSDiscreteScheduler", 1)                                                         \
  X(EULER, "euler", "EulerDiscreteScheduler", 1)                                                   \
  X(EULER_A, "euler_a", "EulerAncestralDiscreteScheduler", 0)                                      \
  X(HEUN, "heun", "HeunDiscreteScheduler", 1)                                                      \
  X(DPMPP_2M, "dpmpp_2m", "DPMSolverMultistepScheduler", 1)

#endif
