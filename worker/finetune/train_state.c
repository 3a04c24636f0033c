/* A trainer's state file (train_state.h). */
#include "train_state.h"

#include "../../kernels/error.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const moment_prefix[3] = {"", "adamw.exp_avg.", "adamw.exp_avg_sq."};

int sd_train_state_fsync(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return SD_ERROR("%s: cannot open to sync: %s", path, strerror(errno));
  int rc = fsync(fd) == 0 ? 0 : SD_ERROR("%s: fsync failed: %s", path, strerror(errno));
  close(fd);
  return rc;
}

static int fsync_parent(const char *path) {
  char copy[4200];
  snprintf(copy, sizeof copy, "%s", path);
  return sd_train_state_fsync(dirname(copy));
}

/* The file's name of state k (0 the weight, 1 and 2 AdamW's moments) of a view's parameter. */
static char *state_name(const sd_train_state_view *view, int k, const char *name) {
  const char *prefix = view->prefix ? view->prefix : "";
  size_t len = strlen(moment_prefix[k]) + strlen(prefix) + strlen(name) + 1;
  char *full = malloc(len);
  if (full)
    snprintf(full, len, "%s%s%s", moment_prefix[k], prefix, name);
  return full;
}

int sd_train_state_write_views(const char *path, const sd_train_state_view *views, size_t n_views,
                               const char *const *keys, const char *const *values, size_t n) {
  size_t params = 0;
  for (size_t v = 0; v < n_views; v++)
    params += sd_grads_count(views[v].grads);
  sd_st_tensor *tensors = calloc(3 * params + 1, sizeof *tensors);
  char **names = calloc(3 * params + 1, sizeof *names);
  int rc = tensors && names ? 0 : SD_ERROR("out of memory for a training state");
  size_t at = 0;
  for (size_t v = 0; rc == 0 && v < n_views; v++) {
    const sd_train_state_view *view = &views[v];
    for (size_t i = 0; rc == 0 && i < sd_grads_count(view->grads); i++) {
      const char *name = sd_grads_name_at(view->grads, i);
      const sd_tensor *w = sd_grads_weight_at(view->grads, i);
      float *state[3];
      rc = view->state_at(view->trainer, i, &state[0], &state[1], &state[2]);
      for (int k = 0; rc == 0 && k < 3; k++, at++) {
        names[at] = state_name(view, k, name);
        if (!names[at]) {
          rc = SD_ERROR("out of memory for a training state");
          break;
        }
        sd_st_tensor *t = &tensors[at];
        *t = (sd_st_tensor){.name = names[at],
                            .dtype = SD_DTYPE_F32,
                            .ndim = w->ndim,
                            .data = state[k],
                            .bytes = (size_t)sd_tensor_numel(w) * sizeof(float)};
        memcpy(t->shape, w->shape, sizeof t->shape);
      }
    }
  }
  if (rc == 0)
    rc = sd_safetensors_write(path, tensors, 3 * params, keys, values, n);
  if (rc == 0)
    rc = sd_train_state_fsync(path);
  if (rc == 0)
    rc = fsync_parent(path);
  for (size_t i = 0; names && i < 3 * params; i++)
    free(names[i]);
  free(names);
  free(tensors);
  return rc < 0 ? sd_error_context("writing the training state %s", path) : 0;
}

int sd_train_state_write(const char *path, const sd_train_state_view *view, const char *const *keys,
                         const char *const *values, size_t n) {
  return sd_train_state_write_views(path, view, 1, keys, values, n);
}

int sd_train_state_meta_int(const sd_safetensors *file, const char *key, int64_t *out) {
  const char *v = sd_safetensors_metadata(file, key);
  char *end;
  if (!v || !*v)
    return SD_ERROR("%s: no '%s' in its metadata", sd_safetensors_path(file), key);
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (*end || errno)
    return SD_ERROR("%s: metadata '%s' is '%s', not an integer", sd_safetensors_path(file), key, v);
  *out = x;
  return 0;
}

int sd_train_state_read_views(const char *path, const char *format,
                              const sd_train_state_view *views, size_t n_views,
                              sd_safetensors **file) {
  *file = NULL;
  sd_safetensors *f;
  SD_TRY(sd_safetensors_open(path, &f));
  int rc = 0;
  const char *got = sd_safetensors_metadata(f, "format");
  if (!got || strcmp(got, format) != 0)
    rc = SD_ERROR("%s: not an sdbatch training state of this kind (format '%s', expected '%s')",
                  path, got ? got : "none", format);
  for (size_t v = 0; rc == 0 && v < n_views; v++) {
    const sd_train_state_view *view = &views[v];
    for (size_t i = 0; rc == 0 && i < sd_grads_count(view->grads); i++) {
      const sd_tensor *w = sd_grads_weight_at(view->grads, i);
      float *state[3];
      rc = view->state_at(view->trainer, i, &state[0], &state[1], &state[2]);
      for (int k = 0; rc == 0 && k < 3; k++) {
        char *name = state_name(view, k, sd_grads_name_at(view->grads, i));
        const sd_st_tensor *t = name ? sd_safetensors_find(f, name) : NULL;
        if (!name)
          rc = SD_ERROR("out of memory");
        else if (!t || t->dtype != SD_DTYPE_F32 || t->ndim != w->ndim ||
                 memcmp(t->shape, w->shape, (size_t)w->ndim * sizeof w->shape[0]) != 0)
          rc = SD_ERROR("%s: no float32 tensor '%s' of the model's shape", path, name);
        else
          memcpy(state[k], t->data, t->bytes);
        free(name);
      }
    }
  }
  if (rc < 0) {
    sd_safetensors_close(f);
    return rc;
  }
  *file = f;
  return 0;
}

int sd_train_state_read(const char *path, const char *format, const sd_train_state_view *view,
                        sd_safetensors **file) {
  return sd_train_state_read_views(path, format, view, 1, file);
}
