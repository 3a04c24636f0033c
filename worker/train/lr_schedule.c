/* diffusers/optimization.py's lr_lambda functions, operation for operation in double. */
#include "lr_schedule.h"

#include "../../kernels/error.h"

#include <math.h>
#include <string.h>

static const char *const names[] = {"constant", "constant_with_warmup", "linear", "cosine"};

int sd_lr_schedule_parse(const char *name, sd_lr_schedule *out) {
  for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
    if (strcmp(name, names[i]) == 0) {
      *out = (sd_lr_schedule)i;
      return 0;
    }
  return SD_ERROR("unknown learning-rate schedule '%s' (constant, constant_with_warmup, linear, "
                  "cosine)",
                  name);
}

const char *sd_lr_schedule_name(sd_lr_schedule schedule) {
  return (unsigned)schedule < sizeof names / sizeof names[0] ? names[schedule] : "unknown";
}

static double at_least_1(int64_t n) {
  return n > 1 ? (double)n : 1.0;
}

double sd_lr_multiplier(sd_lr_schedule schedule, int64_t step, int64_t warmup, int64_t total) {
  if (schedule == SD_LR_CONSTANT)
    return 1.0;
  if (step < warmup)
    return (double)step / at_least_1(warmup);
  if (schedule == SD_LR_CONSTANT_WITH_WARMUP)
    return 1.0;
  if (schedule == SD_LR_LINEAR) {
    double progress = (double)(total - step) / at_least_1(total - warmup);
    return 0.0 + (1.0 - 0.0) * (progress > 0.0 ? progress : 0.0);
  }
  double progress = (double)(step - warmup) / at_least_1(total - warmup);
  double cosine = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
  return cosine > 0.0 ? cosine : 0.0;
}
