/* Checkpoints and the final diffusers folder of a DreamBooth run (dreambooth_state.h). */
#include "dreambooth_state.h"

#include "../io/safetensors.h"
#include "../model/grads.h"

#include "../../kernels/error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_FILE   "training_state.safetensors"
#define STATE_FORMAT "sdbatch-dreambooth-1"
#define PATH_MAX_LEN 4200

int sd_dreambooth_fsync_path(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return SD_ERROR("%s: cannot open to sync: %s", path, strerror(errno));
  int rc = fsync(fd) == 0 ? 0 : SD_ERROR("%s: fsync failed: %s", path, strerror(errno));
  close(fd);
  return rc;
}

/* Deletes a folder of plain files (a checkpoint, or the leftover of an interrupted write). */
static int remove_folder(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return errno == ENOENT ? 0 : SD_ERROR("%s: cannot read: %s", dir, strerror(errno));
  struct dirent *e;
  char path[PATH_MAX_LEN];
  int rc = 0;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (unlink(path) < 0 && rc == 0)
      rc = SD_ERROR("%s: cannot delete: %s", path, strerror(errno));
  }
  closedir(d);
  if (rc == 0 && rmdir(dir) < 0)
    rc = SD_ERROR("%s: cannot delete the folder: %s", dir, strerror(errno));
  return rc;
}

/* "checkpoint-<digits>" -> its step; -1 for any other name. */
static int64_t checkpoint_step(const char *name) {
  if (strncmp(name, "checkpoint-", 11) != 0)
    return -1;
  const char *digits = name + 11;
  size_t n = strlen(digits);
  if (n == 0 || n > 15 || strspn(digits, "0123456789") != n)
    return -1;
  return strtoll(digits, NULL, 10);
}

static int compare_steps(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* The complete checkpoints' steps, sorted (malloc'ed), after deleting leftovers. */
static int list_checkpoints(const char *output_dir, int64_t **steps, int *count) {
  *steps = NULL;
  *count = 0;
  DIR *d = opendir(output_dir);
  if (!d)
    return errno == ENOENT
               ? 0
               : SD_ERROR("%s: cannot read output_dir: %s", output_dir, strerror(errno));
  struct dirent *e;
  char path[PATH_MAX_LEN];
  int rc = 0, cap = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    snprintf(path, sizeof path, "%s/%s", output_dir, e->d_name);
    if (!strncmp(e->d_name, ".checkpoint-", 12)) {
      rc = remove_folder(path);
      continue;
    }
    int64_t step = checkpoint_step(e->d_name);
    if (step < 0)
      continue;
    if (*count == cap) {
      cap = cap ? 2 * cap : 16;
      int64_t *grown = realloc(*steps, (size_t)cap * sizeof *grown);
      if (!grown) {
        rc = SD_ERROR("out of memory");
        break;
      }
      *steps = grown;
    }
    (*steps)[(*count)++] = step;
  }
  closedir(d);
  if (rc == 0)
    qsort(*steps, (size_t)*count, sizeof **steps, compare_steps);
  return rc;
}

int sd_dreambooth_checkpoint_latest(const char *output_dir, int64_t *step) {
  int64_t *steps;
  int count;
  *step = 0;
  SD_TRY(list_checkpoints(output_dir, &steps, &count));
  if (count > 0)
    *step = steps[count - 1];
  free(steps);
  return 0;
}

/* Renames checkpoint-<step> away (atomic), then deletes it. */
static int remove_checkpoint(const char *output_dir, int64_t step) {
  char from[PATH_MAX_LEN], to[PATH_MAX_LEN];
  snprintf(from, sizeof from, "%s/checkpoint-%" PRId64, output_dir, step);
  snprintf(to, sizeof to, "%s/.checkpoint-%" PRId64 ".old", output_dir, step);
  if (rename(from, to) < 0)
    return SD_ERROR("%s: cannot rename to %s: %s", from, to, strerror(errno));
  SD_TRY(sd_dreambooth_fsync_path(output_dir));
  return remove_folder(to);
}

/* An sd_rng of the cpu kind as 625 int32 values: MT19937's state, then the index. */
static void rng_pack(const sd_rng *rng, int32_t *out) {
  memcpy(out, rng->mt, sizeof rng->mt);
  out[624] = rng->mt_index;
}

static void rng_unpack(const int32_t *in, uint64_t seed, sd_rng *rng) {
  sd_rng_init(rng, SD_RNG_CPU, seed);
  memcpy(rng->mt, in, sizeof rng->mt);
  rng->mt_index = in[624];
}

#define N_META 10

int sd_dreambooth_checkpoint_write(const char *output_dir, sd_unet_trainer *trainer,
                                   const sd_dreambooth_position *pos,
                                   const sd_dreambooth_fingerprint *fp, int64_t limit) {
  sd_grads *grads = sd_unet_trainer_grads(trainer);
  size_t n = sd_grads_count(grads);
  size_t count = 3 * n + 3;
  sd_st_tensor *tensors = calloc(count, sizeof *tensors);
  char **names = calloc(2 * n, sizeof *names);
  int32_t *order = malloc((size_t)pos->images * sizeof *order);
  int32_t rngs[2][625];
  int rc = tensors && names && order ? 0 : SD_ERROR("out of memory for a checkpoint");
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const char *name = sd_grads_name_at(grads, i);
    const sd_tensor *w = sd_grads_weight_at(grads, i);
    float *master, *m, *v;
    rc = sd_unet_trainer_state_at(trainer, i, &master, &m, &v);
    size_t len = strlen(name) + 32;
    names[2 * i] = malloc(len);
    names[2 * i + 1] = malloc(len);
    if (rc == 0 && (!names[2 * i] || !names[2 * i + 1]))
      rc = SD_ERROR("out of memory for a checkpoint");
    if (rc < 0)
      break;
    snprintf(names[2 * i], len, "adamw.exp_avg.%s", name);
    snprintf(names[2 * i + 1], len, "adamw.exp_avg_sq.%s", name);
    size_t bytes = (size_t)sd_tensor_numel(w) * sizeof(float);
    for (int k = 0; k < 3; k++) {
      sd_st_tensor *t = &tensors[3 * i + (size_t)k];
      t->name = k == 0 ? name : names[2 * i + (size_t)k - 1];
      t->dtype = SD_DTYPE_F32;
      t->ndim = w->ndim;
      memcpy(t->shape, w->shape, sizeof t->shape);
      t->data = k == 0 ? master : k == 1 ? m : v;
      t->bytes = bytes;
    }
  }
  if (rc == 0) {
    for (int i = 0; i < pos->images; i++)
      order[i] = (int32_t)pos->order[i];
    rng_pack(&pos->order_rng, rngs[0]);
    rng_pack(&pos->draw_rng, rngs[1]);
    tensors[3 * n] = (sd_st_tensor){.name = "data.order",
                                    .dtype = SD_DTYPE_I32,
                                    .ndim = 1,
                                    .shape = {pos->images},
                                    .data = order,
                                    .bytes = (size_t)pos->images * sizeof(int32_t)};
    tensors[3 * n + 1] = (sd_st_tensor){.name = "rng.order",
                                        .dtype = SD_DTYPE_I32,
                                        .ndim = 1,
                                        .shape = {625},
                                        .data = rngs[0],
                                        .bytes = sizeof rngs[0]};
    tensors[3 * n + 2] = (sd_st_tensor){.name = "rng.draw",
                                        .dtype = SD_DTYPE_I32,
                                        .ndim = 1,
                                        .shape = {625},
                                        .data = rngs[1],
                                        .bytes = sizeof rngs[1]};
  }
  char values[N_META][32];
  const char *keys[N_META] = {"format", "step",       "epoch", "next_batch",   "log_bytes",
                              "images", "resolution", "batch", "accumulation", "seed"};
  snprintf(values[0], 32, "%s", STATE_FORMAT);
  snprintf(values[1], 32, "%" PRId64, pos->step);
  snprintf(values[2], 32, "%" PRId64, pos->epoch);
  snprintf(values[3], 32, "%" PRId64, pos->next_batch);
  snprintf(values[4], 32, "%" PRId64, pos->log_bytes);
  snprintf(values[5], 32, "%" PRId64, fp->images);
  snprintf(values[6], 32, "%" PRId64, fp->resolution);
  snprintf(values[7], 32, "%" PRId64, fp->batch);
  snprintf(values[8], 32, "%" PRId64, fp->accumulation);
  snprintf(values[9], 32, "%" PRIu64, fp->seed);
  const char *value_ptrs[N_META];
  for (int i = 0; i < N_META; i++)
    value_ptrs[i] = values[i];

  char tmp[PATH_MAX_LEN], final[PATH_MAX_LEN], file[PATH_MAX_LEN];
  snprintf(tmp, sizeof tmp, "%s/.checkpoint-%" PRId64 ".tmp", output_dir, pos->step);
  snprintf(final, sizeof final, "%s/checkpoint-%" PRId64, output_dir, pos->step);
  snprintf(file, sizeof file, "%s/%s", tmp, STATE_FILE);
  if (rc == 0)
    rc = remove_folder(tmp);
  if (rc == 0 && mkdir(tmp, 0777) < 0)
    rc = SD_ERROR("%s: cannot make the folder: %s", tmp, strerror(errno));
  if (rc == 0)
    rc = sd_safetensors_write(file, tensors, count, keys, value_ptrs, N_META);
  if (rc == 0)
    rc = sd_dreambooth_fsync_path(tmp);
  struct stat st;
  if (rc == 0 && stat(final, &st) == 0)
    rc = remove_checkpoint(output_dir, pos->step);
  if (rc == 0 && rename(tmp, final) < 0)
    rc = SD_ERROR("cannot rename %s to %s: %s", tmp, final, strerror(errno));
  if (rc == 0)
    rc = sd_dreambooth_fsync_path(output_dir);
  for (size_t i = 0; names && i < 2 * n; i++)
    free(names[i]);
  free(names);
  free(tensors);
  free(order);
  if (rc < 0)
    return sd_error_context("writing checkpoint %" PRId64, pos->step);
  if (limit <= 0)
    return 0;
  int64_t *steps;
  int have;
  SD_TRY(list_checkpoints(output_dir, &steps, &have));
  for (int i = 0; rc == 0 && i + limit < have; i++)
    rc = remove_checkpoint(output_dir, steps[i]);
  free(steps);
  return rc;
}

static int meta_int(const sd_safetensors *f, const char *key, int64_t *out) {
  const char *v = sd_safetensors_metadata(f, key);
  char *end;
  if (!v || !*v)
    return SD_ERROR("%s: no '%s' in its metadata", sd_safetensors_path(f), key);
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (*end || errno)
    return SD_ERROR("%s: metadata '%s' is '%s', not an integer", sd_safetensors_path(f), key, v);
  *out = x;
  return 0;
}

static const sd_st_tensor *find_tensor(const sd_safetensors *f, const char *name, sd_dtype dtype,
                                       const sd_tensor *like, int64_t numel) {
  const sd_st_tensor *t = sd_safetensors_find(f, name);
  if (!t || t->dtype != dtype) {
    SD_ERROR("%s: no %s tensor '%s'", sd_safetensors_path(f), sd_dtype_name(dtype), name);
    return NULL;
  }
  bool same = like ? t->ndim == like->ndim &&
                         !memcmp(t->shape, like->shape, (size_t)t->ndim * sizeof t->shape[0])
                   : t->ndim == 1 && t->shape[0] == numel;
  if (!same) {
    SD_ERROR("%s: tensor '%s' has another shape than the model's", sd_safetensors_path(f), name);
    return NULL;
  }
  return t;
}

int sd_dreambooth_checkpoint_read(const char *output_dir, int64_t step, sd_unet_trainer *trainer,
                                  sd_dreambooth_position *pos,
                                  const sd_dreambooth_fingerprint *fp) {
  char path[PATH_MAX_LEN];
  snprintf(path, sizeof path, "%s/checkpoint-%" PRId64 "/%s", output_dir, step, STATE_FILE);
  sd_safetensors *f;
  SD_TRY(sd_safetensors_open(path, &f));
  int rc = 0;
  const char *format = sd_safetensors_metadata(f, "format");
  if (!format || strcmp(format, STATE_FORMAT) != 0)
    rc = SD_ERROR("%s: not an sdbatch training state (format '%s', expected '%s')", path,
                  format ? format : "none", STATE_FORMAT);
  int64_t got[5];
  const int64_t want[5] = {fp->images, fp->resolution, fp->batch, fp->accumulation,
                           (int64_t)fp->seed};
  const char *what[5] = {"images", "resolution", "batch", "accumulation", "seed"};
  for (int k = 0; rc == 0 && k < 5; k++) {
    rc = meta_int(f, what[k], &got[k]);
    if (rc == 0 && got[k] != want[k])
      rc = SD_ERROR("%s: the checkpoint was made with %s %" PRId64 ", the config now gives %" PRId64
                    "; an exact resume needs the same (train_batch_size, "
                    "gradient_accumulation_steps, resolution, seed and instance images)",
                    path, what[k], got[k], want[k]);
  }
  int64_t saved_step = 0;
  if (rc == 0)
    rc = meta_int(f, "step", &saved_step);
  if (rc == 0 && saved_step != step)
    rc = SD_ERROR("%s: holds step %" PRId64 ", not %" PRId64, path, saved_step, step);
  if (rc == 0)
    rc = meta_int(f, "epoch", &pos->epoch);
  if (rc == 0)
    rc = meta_int(f, "next_batch", &pos->next_batch);
  if (rc == 0)
    rc = meta_int(f, "log_bytes", &pos->log_bytes);
  sd_grads *grads = sd_unet_trainer_grads(trainer);
  size_t n = sd_grads_count(grads);
  char name[1024];
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const sd_tensor *w = sd_grads_weight_at(grads, i);
    float *state[3];
    rc = sd_unet_trainer_state_at(trainer, i, &state[0], &state[1], &state[2]);
    for (int k = 0; rc == 0 && k < 3; k++) {
      snprintf(name, sizeof name, "%s%s",
               k == 0   ? ""
               : k == 1 ? "adamw.exp_avg."
                        : "adamw.exp_avg_sq.",
               sd_grads_name_at(grads, i));
      const sd_st_tensor *t = find_tensor(f, name, SD_DTYPE_F32, w, 0);
      if (!t)
        rc = -1;
      else
        memcpy(state[k], t->data, t->bytes);
    }
  }
  const sd_st_tensor *order = NULL, *rng_order = NULL, *rng_draw = NULL;
  if (rc == 0 && (!(order = find_tensor(f, "data.order", SD_DTYPE_I32, NULL, pos->images)) ||
                  !(rng_order = find_tensor(f, "rng.order", SD_DTYPE_I32, NULL, 625)) ||
                  !(rng_draw = find_tensor(f, "rng.draw", SD_DTYPE_I32, NULL, 625))))
    rc = -1;
  if (rc == 0) {
    for (int i = 0; i < pos->images; i++)
      pos->order[i] = ((const int32_t *)order->data)[i];
    rng_unpack(rng_order->data, pos->order_rng.seed, &pos->order_rng);
    rng_unpack(rng_draw->data, pos->draw_rng.seed, &pos->draw_rng);
    pos->step = step;
    rc = sd_unet_trainer_restore(trainer, step);
  }
  sd_safetensors_close(f);
  return rc < 0 ? sd_error_context("resuming from %s/checkpoint-%" PRId64, output_dir, step) : 0;
}

/* Copies src to dst through dst.tmp (fsync'ed, renamed). */
static int copy_file(const char *src, const char *dst) {
  char tmp[PATH_MAX_LEN];
  snprintf(tmp, sizeof tmp, "%s.tmp", dst);
  FILE *in = fopen(src, "rb");
  if (!in)
    return SD_ERROR("%s: cannot open: %s", src, strerror(errno));
  FILE *out = fopen(tmp, "wb");
  if (!out) {
    fclose(in);
    return SD_ERROR("%s: cannot create: %s", tmp, strerror(errno));
  }
  static char buf[1 << 16];
  size_t got;
  int rc = 0;
  while (rc == 0 && (got = fread(buf, 1, sizeof buf, in)) > 0)
    if (fwrite(buf, 1, got, out) != got)
      rc = SD_ERROR("%s: write failed: %s", tmp, strerror(errno));
  if (rc == 0 && ferror(in))
    rc = SD_ERROR("%s: read failed", src);
  fclose(in);
  if (rc == 0 && (fflush(out) != 0 || fsync(fileno(out)) != 0))
    rc = SD_ERROR("%s: write failed: %s", tmp, strerror(errno));
  if (fclose(out) != 0 && rc == 0)
    rc = SD_ERROR("%s: close failed: %s", tmp, strerror(errno));
  if (rc == 0 && rename(tmp, dst) < 0)
    rc = SD_ERROR("cannot rename %s to %s: %s", tmp, dst, strerror(errno));
  if (rc < 0)
    unlink(tmp);
  return rc;
}

static bool is_weight_file(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot && (!strcmp(dot, ".safetensors") || !strcmp(dot, ".bin") || !strcmp(dot, ".ckpt") ||
                 !strcmp(dot, ".pt") || !strcmp(dot, ".msgpack") || !strcmp(dot, ".onnx"));
}

/* Copies the regular files of src to dst (made if absent); in unet/ the weight files are left. */
static int copy_folder(const char *src, const char *dst, bool skip_weights) {
  if (mkdir(dst, 0777) < 0 && errno != EEXIST)
    return SD_ERROR("%s: cannot make the folder: %s", dst, strerror(errno));
  DIR *d = opendir(src);
  if (!d)
    return SD_ERROR("%s: cannot read: %s", src, strerror(errno));
  struct dirent *e;
  char from[PATH_MAX_LEN], to[PATH_MAX_LEN];
  struct stat st;
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || (skip_weights && is_weight_file(e->d_name)))
      continue;
    snprintf(from, sizeof from, "%s/%s", src, e->d_name);
    snprintf(to, sizeof to, "%s/%s", dst, e->d_name);
    if (stat(from, &st) == 0 && S_ISREG(st.st_mode))
      rc = copy_file(from, to);
  }
  closedir(d);
  return rc;
}

int sd_dreambooth_write_model(const char *pretrained, const char *output_dir,
                              sd_unet_trainer *trainer) {
  DIR *d = opendir(pretrained);
  if (!d)
    return SD_ERROR("%s: cannot read the pretrained model folder: %s", pretrained, strerror(errno));
  struct dirent *e;
  char from[PATH_MAX_LEN], to[PATH_MAX_LEN];
  struct stat st;
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    /* a fine-tuned folder as the pretrained model: its own run's files stay behind */
    if (e->d_name[0] == '.' || checkpoint_step(e->d_name) >= 0 || !strcmp(e->d_name, "loss.csv"))
      continue;
    snprintf(from, sizeof from, "%s/%s", pretrained, e->d_name);
    snprintf(to, sizeof to, "%s/%s", output_dir, e->d_name);
    if (stat(from, &st) < 0)
      continue;
    if (S_ISREG(st.st_mode))
      rc = copy_file(from, to);
    else if (S_ISDIR(st.st_mode))
      rc = copy_folder(from, to, !strcmp(e->d_name, "unet"));
  }
  closedir(d);
  snprintf(to, sizeof to, "%s/unet", output_dir);
  if (rc == 0 && mkdir(to, 0777) < 0 && errno != EEXIST)
    rc = SD_ERROR("%s: cannot make the folder: %s", to, strerror(errno));
  sd_grads *grads = sd_unet_trainer_grads(trainer);
  size_t n = sd_grads_count(grads);
  sd_st_tensor *tensors = rc == 0 ? calloc(n, sizeof *tensors) : NULL;
  if (rc == 0 && !tensors)
    rc = SD_ERROR("out of memory");
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const sd_tensor *w = sd_grads_weight_at(grads, i);
    float *master, *m, *v;
    rc = sd_unet_trainer_state_at(trainer, i, &master, &m, &v);
    tensors[i] = (sd_st_tensor){.name = sd_grads_name_at(grads, i),
                                .dtype = SD_DTYPE_F32,
                                .ndim = w->ndim,
                                .data = master,
                                .bytes = (size_t)sd_tensor_numel(w) * sizeof(float)};
    memcpy(tensors[i].shape, w->shape, sizeof tensors[i].shape);
  }
  snprintf(to, sizeof to, "%s/unet/diffusion_pytorch_model.safetensors", output_dir);
  const char *keys[1] = {"format"}, *values[1] = {"pt"};
  if (rc == 0)
    rc = sd_safetensors_write(to, tensors, n, keys, values, 1);
  free(tensors);
  if (rc == 0) {
    snprintf(to, sizeof to, "%s/unet", output_dir);
    rc = sd_dreambooth_fsync_path(to);
  }
  if (rc == 0)
    rc = sd_dreambooth_fsync_path(output_dir);
  return rc < 0 ? sd_error_context("writing the trained model to %s", output_dir) : 0;
}
