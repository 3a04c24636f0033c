/* The schedulers sdbatch offers (command line and job files): name, diffusers class, whether the
 * class offers Karras sigmas (use_karras_sigmas), and its setup function in worker/sched. This is
 * the one list of them: each
 * entry names its sd_scheduler_kind (worker/sched/scheduler.h) without the SD_SCHED_ prefix, so a
 * user builds tables indexed by kind, e.g.
 *   #define X(kind, name, class_name, karras, setup) [SD_SCHED_##kind] = name,
 *   static const char *const names[] = {SD_SCHEDULER_LIST(X)};
 * worker/sched can build its kind table (names, classes, karras) from it.
 * Karras support as in diffusers 0.42: LMSDiscrete, EulerDiscrete, HeunDiscrete and
 * DPMSolverMultistep have use_karras_sigmas; DDIM, PNDM and EulerAncestralDiscrete do not. */
#ifndef SD_SCHEDULER_NAMES_H
#define SD_SCHEDULER_NAMES_H

/* X(kind, name, class_name, karras, setup): kind without SD_SCHED_, the name users write, the
 * diffusers class (a model's scheduler/config.json "_class_name"), Karras sigmas available (0/1),
 * and the class file's setup function sd_sched_<setup>_setup */
#define SD_SCHEDULER_LIST(X)                                                                       \
  X(DDIM, "ddim", "DDIMScheduler", 0, ddim)                                                        \
  X(PNDM, "pndm", "PNDMScheduler", 0, pndm)                                                        \
  X(LMS, "lms", "LMSDiscreteScheduler", 1, lms)                                                    \
  X(EULER, "euler", "EulerDiscreteScheduler", 1, euler)                                            \
  X(EULER_A, "euler_a", "EulerAncestralDiscreteScheduler", 0, euler_ancestral)                     \
  X(HEUN, "heun", "HeunDiscreteScheduler", 1, heun)                                                \
  X(DPMPP_2M, "dpmpp_2m", "DPMSolverMultistepScheduler", 1, dpmpp_2m)

#endif
