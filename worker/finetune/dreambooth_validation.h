/* Validation renders of `sdbatch train` (train_dreambooth.py's log_validation): the config's
 * validation_prompt rendered with the weights being trained, so that a run shows how the subject
 * is being learnt (docs/training.md, "Validation renders"). */
#ifndef SD_DREAMBOOTH_VALIDATION_H
#define SD_DREAMBOOTH_VALIDATION_H

#include "dreambooth_config.h"

#include "../pipeline/engine.h"

#include <stdbool.h>

/* Renders num_validation_images images of validation_prompt with the engine's current weights
 * (the trainer updates them in place; LoRA mode keeps its product merged): DPM-Solver++ 2M
 * (DPMSolverMultistepScheduler from the model's scheduler config), 25 steps, guidance 7.5, no
 * negative prompt, the model's default size, image k with seed + k on the CPU generator (the
 * script continues one generator from seed across its images: its first image is the same). Each
 * is written atomically as output_dir/validation/step-<step, 6 digits>-<k>.png; what an earlier,
 * killed write left there is removed first. */
int sd_dreambooth_validate(sd_engine *engine, const sd_dreambooth_config *cfg, int64_t step,
                           bool progress);

#endif
