/* The model identity hash (model_identity.h). */
#include "model_identity.h"

#include "../jobs/sha256.h"
#include "../kernels/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void add(sd_sha256 *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(sd_sha256 *h, const char *fmt, ...) {
  char line[1024];
  va_list args;
  va_start(args, fmt);
  int n = vsnprintf(line, sizeof line, fmt, args);
  va_end(args);
  if (n > 0)
    sd_sha256_update(h, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static int by_name(const void *a, const void *b) {
  const sd_st_tensor *const *x = a;
  const sd_st_tensor *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

static int add_tensors(sd_sha256 *h, const char *component, const sd_tensor_map *map) {
  size_t n = sd_tensor_map_count(map);
  const sd_st_tensor **sorted = malloc((n ? n : 1) * sizeof *sorted);
  if (!sorted)
    return SD_ERROR("out of memory for the %zu tensor names of %s", n, component);
  for (size_t i = 0; i < n; i++)
    sorted[i] = sd_tensor_map_at(map, i);
  qsort(sorted, n, sizeof *sorted, by_name);
  add(h, "%s %zu\n", component, n);
  for (size_t i = 0; i < n; i++) {
    const sd_st_tensor *t = sorted[i];
    sd_sha256_update(h, t->name, strlen(t->name));
    add(h, " %s", sd_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++)
      add(h, " %lld", (long long)t->shape[d]);
    add(h, "\n");
  }
  free(sorted);
  return 0;
}

int sd_model_identity(const sd_model_files *m, char hex[65]) {
  sd_sha256 h;
  sd_sha256_init(&h);
  add(&h, "sdbatch model identity v1\nfamily %d\n", (int)m->family);
  add(&h, "clip act %d heads %d eps %.9g\n", (int)m->clip.hidden_act, m->clip.num_attention_heads,
      (double)m->clip.layer_norm_eps);
  add(&h,
      "unet linear_projection %d upcast_attention %d flip_sin_to_cos %d freq_shift %.9g "
      "norm_eps %.9g sample_size %d heads",
      m->unet.use_linear_projection, m->unet.upcast_attention, m->unet.flip_sin_to_cos,
      (double)m->unet.freq_shift, (double)m->unet.norm_eps, m->unet.sample_size);
  for (int i = 0; i < m->unet.num_levels && i < SD_MAX_LEVELS; i++)
    add(&h, " %d", m->unet.num_attention_heads[i]);
  add(&h, "\nvae scaling_factor %.9g sample_size %d\n", (double)m->vae.scaling_factor,
      m->vae.sample_size);
  const sd_scheduler_config *s = &m->scheduler;
  add(&h,
      "scheduler %s fields %u train %d beta %.9g %.9g %d prediction %d spacing %d offset %d "
      "alpha_to_one %d clip %d %.9g prk %d karras %d\n",
      s->class_name, s->fields_set, s->num_train_timesteps, (double)s->beta_start,
      (double)s->beta_end, (int)s->beta_schedule, (int)s->prediction_type, (int)s->timestep_spacing,
      s->steps_offset, s->set_alpha_to_one, s->clip_sample, (double)s->clip_sample_range,
      s->skip_prk_steps, s->use_karras_sigmas);
  SD_TRY(add_tensors(&h, "text_encoder", m->clip_tensors));
  SD_TRY(add_tensors(&h, "unet", m->unet_tensors));
  SD_TRY(add_tensors(&h, "vae", m->vae_tensors));
  sd_sha256_final_hex(&h, hex);
  return 0;
}
