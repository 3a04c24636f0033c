/* Checkpoints and the final diffusers folder of a DreamBooth run (dreambooth_state.h). */
#include "dreambooth_state.h"

#include "train_state.h"

#include "../io/config_json.h"
#include "../io/file_util.h"
#include "../io/ldm_export.h"
#include "../io/safetensors.h"
#include "../model/grads.h"

#include "../../kernels/error.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_FILE   "training_state.safetensors"
#define PATH_MAX_LEN 4200

int sd_dreambooth_fsync_path(const char *path) {
  return sd_train_state_fsync(path);
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
      rc = sd_remove_tree(path);
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
  return sd_remove_tree(to);
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

#define FORMAT_FULL              "sdbatch-dreambooth-1"
#define FORMAT_LORA              "sdbatch-dreambooth-lora-1"
#define FORMAT_FULL_TEXT_ENCODER "sdbatch-dreambooth-te-1" /* < 32 bytes: the metadata buffer */
#define FORMAT_LORA_TEXT_ENCODER "sdbatch-dreambooth-lora-te-1"
#define TEXT_ENCODER_PREFIX      "text_encoder."

void sd_dreambooth_params_free(sd_dreambooth_params *p) {
  for (size_t i = 0; p->items && i < p->count; i++)
    free(p->items[i].name);
  free(p->items);
  memset(p, 0, sizeof *p);
}

static int params_alloc(size_t count, const char *format, sd_dreambooth_params *out) {
  out->count = count;
  out->format = format;
  out->items = calloc(count ? count : 1, sizeof *out->items);
  return out->items ? 0 : SD_ERROR("out of memory");
}

/* Parameter i of a full trainer's store into p, under prefix + its name. */
static int full_param(const sd_grads *grads, size_t i, const char *prefix, float *value,
                      float *exp_avg, float *exp_avg_sq, sd_dreambooth_param *p) {
  const sd_tensor *w = sd_grads_weight_at(grads, i);
  const char *name = sd_grads_name_at(grads, i);
  size_t size = strlen(prefix) + strlen(name) + 1;
  p->name = malloc(size);
  if (!p->name)
    return SD_ERROR("out of memory");
  snprintf(p->name, size, "%s%s", prefix, name);
  p->value = value;
  p->exp_avg = exp_avg;
  p->exp_avg_sq = exp_avg_sq;
  p->ndim = w->ndim;
  memcpy(p->shape, w->shape, sizeof p->shape);
  return 0;
}

int sd_dreambooth_params_unet(sd_unet_trainer *trainer, sd_clip_trainer *text_encoder,
                              sd_dreambooth_params *out) {
  sd_grads *grads = sd_unet_trainer_grads(trainer);
  sd_grads *te_grads = text_encoder ? sd_clip_trainer_grads(text_encoder) : NULL;
  size_t n = sd_grads_count(grads), n_te = te_grads ? sd_grads_count(te_grads) : 0;
  SD_TRY(params_alloc(n + n_te, text_encoder ? FORMAT_FULL_TEXT_ENCODER : FORMAT_FULL, out));
  for (size_t i = 0; i < out->count; i++) {
    float *value, *m, *v;
    int rc = i < n ? sd_unet_trainer_state_at(trainer, i, &value, &m, &v)
                   : sd_clip_trainer_state_at(text_encoder, i - n, &value, &m, &v);
    if (rc == 0)
      rc = i < n ? full_param(grads, i, "", value, m, v, &out->items[i])
                 : full_param(te_grads, i - n, TEXT_ENCODER_PREFIX, value, m, v, &out->items[i]);
    if (rc < 0) {
      sd_dreambooth_params_free(out);
      return rc;
    }
  }
  return 0;
}

int sd_dreambooth_params_lora(sd_lora_trainer *trainer, sd_dreambooth_params *out) {
  size_t n = sd_lora_trainer_param_count(trainer);
  sd_lora_layer_info last = {.prefix = "unet"};
  if (n > 0)
    SD_TRY(sd_lora_trainer_layer(trainer, n / 2 - 1, &last));
  SD_TRY(
      params_alloc(n, strcmp(last.prefix, "unet") ? FORMAT_LORA_TEXT_ENCODER : FORMAT_LORA, out));
  for (size_t i = 0; i < out->count; i++) {
    sd_dreambooth_param *p = &out->items[i];
    sd_lora_param_info info;
    int rc = sd_lora_trainer_param(trainer, i, &info);
    size_t len = rc == 0 ? strlen(info.module) + 48 : 0;
    p->name = rc == 0 ? malloc(len) : NULL;
    if (rc == 0 && !p->name)
      rc = SD_ERROR("out of memory");
    if (rc < 0) {
      sd_dreambooth_params_free(out);
      return rc;
    }
    snprintf(p->name, len, "%s.%s.lora.%s.weight", info.prefix, info.module,
             info.is_up ? "up" : "down");
    p->ndim = 2;
    p->shape[0] = info.shape[0];
    p->shape[1] = info.shape[1];
    p->value = info.value;
    p->exp_avg = info.exp_avg;
    p->exp_avg_sq = info.exp_avg_sq;
  }
  return 0;
}

static int64_t param_numel(const sd_dreambooth_param *p) {
  int64_t n = 1;
  for (int d = 0; d < p->ndim; d++)
    n *= p->shape[d];
  return n;
}

/* The 3 tensors of parameter i (value, exp_avg, exp_avg_sq) at tensors[3 i], their moment names
 * in names[2 i], names[2 i + 1]. */
static int param_tensors(const sd_dreambooth_param *p, sd_st_tensor *tensors, char **names) {
  size_t len = strlen(p->name) + 32;
  names[0] = malloc(len);
  names[1] = malloc(len);
  if (!names[0] || !names[1])
    return SD_ERROR("out of memory for a checkpoint");
  snprintf(names[0], len, "adamw.exp_avg.%s", p->name);
  snprintf(names[1], len, "adamw.exp_avg_sq.%s", p->name);
  size_t bytes = (size_t)param_numel(p) * sizeof(float);
  for (int k = 0; k < 3; k++) {
    sd_st_tensor *t = &tensors[k];
    t->name = k == 0 ? p->name : names[k - 1];
    t->dtype = SD_DTYPE_F32;
    t->ndim = p->ndim;
    memcpy(t->shape, p->shape, sizeof t->shape);
    t->data = k == 0 ? p->value : k == 1 ? p->exp_avg : p->exp_avg_sq;
    t->bytes = bytes;
  }
  return 0;
}

/* Writes the state file into a fresh tmp folder, then renames it to final. */
static int write_state_folder(const char *output_dir, const char *tmp, const char *final,
                              const sd_st_tensor *tensors, size_t count, const char *const *keys,
                              const char *const *values, size_t n_meta, int64_t step) {
  char file[PATH_MAX_LEN];
  snprintf(file, sizeof file, "%s/%s", tmp, STATE_FILE);
  SD_TRY(sd_remove_tree(tmp));
  if (mkdir(tmp, 0777) < 0)
    return SD_ERROR("%s: cannot make the folder: %s", tmp, strerror(errno));
  SD_TRY(sd_safetensors_write(file, tensors, count, keys, values, n_meta));
  SD_TRY(sd_dreambooth_fsync_path(tmp));
  struct stat st;
  if (stat(final, &st) == 0)
    SD_TRY(remove_checkpoint(output_dir, step));
  if (rename(tmp, final) < 0)
    return SD_ERROR("cannot rename %s to %s: %s", tmp, final, strerror(errno));
  return sd_dreambooth_fsync_path(output_dir);
}

#define N_META 11

int sd_dreambooth_checkpoint_write(const char *output_dir, const sd_dreambooth_params *params,
                                   const sd_dreambooth_position *pos,
                                   const sd_dreambooth_fingerprint *fp, int64_t limit) {
  size_t n = params->count;
  size_t count = 3 * n + 3;
  sd_st_tensor *tensors = calloc(count, sizeof *tensors);
  char **names = calloc(2 * n + 1, sizeof *names);
  int32_t *order = malloc((size_t)(pos->images > 0 ? pos->images : 1) * sizeof *order);
  int32_t rngs[2][625];
  int rc = tensors && names && order ? 0 : SD_ERROR("out of memory for a checkpoint");
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = param_tensors(&params->items[i], &tensors[3 * i], &names[2 * i]);
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
  const char *keys[N_META] = {"format",       "step",   "epoch",       "next_batch",
                              "log_bytes",    "images", "resolution",  "batch",
                              "accumulation", "seed",   "class_images"};
  snprintf(values[0], 32, "%s", params->format);
  snprintf(values[1], 32, "%" PRId64, pos->step);
  snprintf(values[2], 32, "%" PRId64, pos->epoch);
  snprintf(values[3], 32, "%" PRId64, pos->next_batch);
  snprintf(values[4], 32, "%" PRId64, pos->log_bytes);
  snprintf(values[5], 32, "%" PRId64, fp->images);
  snprintf(values[6], 32, "%" PRId64, fp->resolution);
  snprintf(values[7], 32, "%" PRId64, fp->batch);
  snprintf(values[8], 32, "%" PRId64, fp->accumulation);
  snprintf(values[9], 32, "%" PRIu64, fp->seed);
  snprintf(values[10], 32, "%" PRId64, fp->class_images);
  const char *value_ptrs[N_META];
  for (int i = 0; i < N_META; i++)
    value_ptrs[i] = values[i];

  char tmp[PATH_MAX_LEN], final[PATH_MAX_LEN];
  snprintf(tmp, sizeof tmp, "%s/.checkpoint-%" PRId64 ".tmp", output_dir, pos->step);
  snprintf(final, sizeof final, "%s/checkpoint-%" PRId64, output_dir, pos->step);
  if (rc == 0)
    rc = write_state_folder(output_dir, tmp, final, tensors, count, keys, value_ptrs, N_META,
                            pos->step);
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
                                       int ndim, const int64_t *shape) {
  const sd_st_tensor *t = sd_safetensors_find(f, name);
  if (!t || t->dtype != dtype) {
    SD_ERROR("%s: no %s tensor '%s'", sd_safetensors_path(f), sd_dtype_name(dtype), name);
    return NULL;
  }
  if (t->ndim != ndim || memcmp(t->shape, shape, (size_t)ndim * sizeof t->shape[0]) != 0) {
    SD_ERROR("%s: tensor '%s' has another shape than the model's", sd_safetensors_path(f), name);
    return NULL;
  }
  return t;
}

static const char *format_mode(const char *format) {
  return !strcmp(format, FORMAT_LORA) ? "a LoRA run of the UNet (lora: true)"
         : !strcmp(format, FORMAT_LORA_TEXT_ENCODER)
             ? "a LoRA run with the text encoder (lora: true, train_text_encoder: true)"
         : !strcmp(format, FORMAT_FULL)
             ? "a full fine-tune of the UNet (no lora: true, no train_text_encoder: true)"
         : !strcmp(format, FORMAT_FULL_TEXT_ENCODER)
             ? "a full fine-tune with the text encoder (train_text_encoder: true)"
             : "an unknown kind of run";
}

/* The checkpoint's format and fingerprint against the run's. */
static int check_header(const sd_safetensors *f, const char *path, const char *want_format,
                        const sd_dreambooth_fingerprint *fp) {
  const char *format = sd_safetensors_metadata(f, "format");
  if (!format || (strcmp(format, FORMAT_FULL) != 0 && strcmp(format, FORMAT_LORA) != 0 &&
                  strcmp(format, FORMAT_FULL_TEXT_ENCODER) != 0 &&
                  strcmp(format, FORMAT_LORA_TEXT_ENCODER) != 0))
    return SD_ERROR("%s: not an sdbatch training state (format '%s', expected '%s')", path,
                    format ? format : "none", want_format);
  if (strcmp(format, want_format) != 0)
    return SD_ERROR("%s: the checkpoint is of %s, the config now asks for %s; resume with the "
                    "config that made it",
                    path, format_mode(format), format_mode(want_format));
  int64_t got[6];
  const int64_t want[6] = {fp->images,       fp->resolution,    fp->batch,
                           fp->accumulation, (int64_t)fp->seed, fp->class_images};
  const char *what[6] = {"images", "resolution", "batch", "accumulation", "seed", "class_images"};
  for (int k = 0; k < 6; k++) {
    got[k] = 0; /* class_images: absent in checkpoints made before prior preservation */
    if (k < 5 || sd_safetensors_metadata(f, what[k]))
      SD_TRY(meta_int(f, what[k], &got[k]));
    if (got[k] != want[k])
      return SD_ERROR("%s: the checkpoint was made with %s %" PRId64 ", the config now gives "
                      "%" PRId64 "; an exact resume needs the same (train_batch_size, "
                      "gradient_accumulation_steps, resolution, seed, instance and class images)",
                      path, what[k], got[k], want[k]);
  }
  return 0;
}

/* Parameter p's value and moments from the checkpoint. */
static int read_param(const sd_safetensors *f, const sd_dreambooth_param *p) {
  char name[1024];
  float *dst[3] = {p->value, p->exp_avg, p->exp_avg_sq};
  for (int k = 0; k < 3; k++) {
    snprintf(name, sizeof name, "%s%s",
             k == 0   ? ""
             : k == 1 ? "adamw.exp_avg."
                      : "adamw.exp_avg_sq.",
             p->name);
    const sd_st_tensor *t = find_tensor(f, name, SD_DTYPE_F32, p->ndim, p->shape);
    if (!t)
      return -1;
    memcpy(dst[k], t->data, t->bytes);
  }
  return 0;
}

int sd_dreambooth_checkpoint_read(const char *output_dir, int64_t step,
                                  const sd_dreambooth_params *params, sd_dreambooth_position *pos,
                                  const sd_dreambooth_fingerprint *fp) {
  char path[PATH_MAX_LEN];
  snprintf(path, sizeof path, "%s/checkpoint-%" PRId64 "/%s", output_dir, step, STATE_FILE);
  sd_safetensors *f;
  SD_TRY(sd_safetensors_open(path, &f));
  int rc = check_header(f, path, params->format, fp);
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
  for (size_t i = 0; rc == 0 && i < params->count; i++)
    rc = read_param(f, &params->items[i]);
  const int64_t images = pos->images, rng_len = 625;
  const sd_st_tensor *order = NULL, *rng_order = NULL, *rng_draw = NULL;
  if (rc == 0 && (!(order = find_tensor(f, "data.order", SD_DTYPE_I32, 1, &images)) ||
                  !(rng_order = find_tensor(f, "rng.order", SD_DTYPE_I32, 1, &rng_len)) ||
                  !(rng_draw = find_tensor(f, "rng.draw", SD_DTYPE_I32, 1, &rng_len))))
    rc = -1;
  if (rc == 0) {
    for (int i = 0; i < pos->images; i++)
      pos->order[i] = ((const int32_t *)order->data)[i];
    rng_unpack(rng_order->data, pos->order_rng.seed, &pos->order_rng);
    rng_unpack(rng_draw->data, pos->draw_rng.seed, &pos->draw_rng);
    pos->step = step;
  }
  sd_safetensors_close(f);
  return rc < 0 ? sd_error_context("resuming from %s/checkpoint-%" PRId64, output_dir, step) : 0;
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
      rc = sd_copy_file(from, to);
  }
  closedir(d);
  return rc;
}

typedef int (*state_at_fn)(void *trainer, size_t i, float **master, float **exp_avg,
                           float **exp_avg_sq);

static int unet_state_at(void *t, size_t i, float **master, float **m, float **v) {
  return sd_unet_trainer_state_at(t, i, master, m, v);
}

static int clip_state_at(void *t, size_t i, float **master, float **m, float **v) {
  return sd_clip_trainer_state_at(t, i, master, m, v);
}

/* output_dir/<folder>/<file>: a trainer's float32 master weights under their names (the folder
 * made if absent, then fsync'ed). */
static int write_trained(const char *output_dir, const char *folder, const char *file,
                         sd_grads *grads, state_at_fn state_at, void *trainer) {
  char to[PATH_MAX_LEN];
  snprintf(to, sizeof to, "%s/%s", output_dir, folder);
  if (mkdir(to, 0777) < 0 && errno != EEXIST)
    return SD_ERROR("%s: cannot make the folder: %s", to, strerror(errno));
  size_t n = sd_grads_count(grads);
  sd_st_tensor *tensors = calloc(n ? n : 1, sizeof *tensors);
  int rc = tensors ? 0 : SD_ERROR("out of memory");
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const sd_tensor *w = sd_grads_weight_at(grads, i);
    float *master, *m, *v;
    rc = state_at(trainer, i, &master, &m, &v);
    tensors[i] = (sd_st_tensor){.name = sd_grads_name_at(grads, i),
                                .dtype = SD_DTYPE_F32,
                                .ndim = w->ndim,
                                .data = master,
                                .bytes = (size_t)sd_tensor_numel(w) * sizeof(float)};
    memcpy(tensors[i].shape, w->shape, sizeof tensors[i].shape);
  }
  snprintf(to, sizeof to, "%s/%s/%s", output_dir, folder, file);
  const char *keys[1] = {"format"}, *values[1] = {"pt"};
  if (rc == 0)
    rc = sd_safetensors_write(to, tensors, n, keys, values, 1);
  free(tensors);
  if (rc == 0) {
    snprintf(to, sizeof to, "%s/%s", output_dir, folder);
    rc = sd_dreambooth_fsync_path(to);
  }
  return rc;
}

/* In text (a JSON object), the string value of every "<key>": "..." replaced by value: into out
 * (size bytes). cJSON_Print would rewrite the numbers (1.0 as 1, which transformers' strict
 * config classes refuse), so the file's other bytes are kept as they are. */
static int replace_json_string(const char *text, const char *key, const char *value, char *out,
                               size_t size) {
  char quoted[64];
  snprintf(quoted, sizeof quoted, "\"%s\"", key);
  size_t used = 0;
  const char *at = text, *hit;
  while ((hit = strstr(at, quoted)) != NULL) {
    const char *p = hit + strlen(quoted);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
      p++;
    if (*p != ':') {
      at = hit + 1;
      continue;
    }
    p++;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
      p++;
    const char *end = *p == '"' ? strchr(p + 1, '"') : NULL;
    if (!end) { /* not a string value: left */
      at = hit + 1;
      continue;
    }
    int n = snprintf(out + used, size - used, "%.*s\"%s\"", (int)(p - at), at, value);
    if (n < 0 || (size_t)n >= size - used)
      return SD_ERROR("config too large");
    used += (size_t)n;
    at = end + 1;
  }
  int n = snprintf(out + used, size - used, "%s", at);
  return n < 0 || (size_t)n >= size - used ? SD_ERROR("config too large") : 0;
}

/* output_dir/text_encoder/config.json: the pretrained one with its dtype float32 (the trained
 * weights' dtype, as the script's float32 model saves it; transformers >= 5 loads a model in its
 * config's dtype). */
static int write_text_encoder_config(const char *pretrained, const char *output_dir) {
  char from[PATH_MAX_LEN], to[PATH_MAX_LEN];
  snprintf(from, sizeof from, "%s/text_encoder/config.json", pretrained);
  snprintf(to, sizeof to, "%s/text_encoder/config.json", output_dir);
  cJSON *json; /* checked to be a JSON object first */
  SD_TRY(sd_json_read_file(from, &json));
  cJSON_Delete(json);
  FILE *f = fopen(from, "rb");
  if (!f)
    return SD_ERROR("%s: cannot open: %s", from, strerror(errno));
  enum { LIMIT = 1 << 20 };
  char *text = malloc(LIMIT), *a = malloc(LIMIT), *b = malloc(LIMIT);
  size_t got = text ? fread(text, 1, LIMIT - 1, f) : 0;
  int rc = text && a && b ? 0 : SD_ERROR("out of memory");
  if (rc == 0 && (ferror(f) || got == LIMIT - 1))
    rc = SD_ERROR("%s: cannot read, or larger than 1 MiB", from);
  fclose(f);
  if (rc == 0) {
    text[got] = 0;
    rc = replace_json_string(text, "dtype", "float32", a, LIMIT);
  }
  if (rc == 0)
    rc = replace_json_string(a, "torch_dtype", "float32", b, LIMIT);
  if (rc == 0)
    rc = sd_write_file(to, b, strlen(b));
  free(text);
  free(a);
  free(b);
  return rc < 0 ? sd_error_context("%s", from) : 0;
}

static int remove_leftovers(const char *output_dir, const char *prefix);

/* A copy of map with the trainer's float32 master weights put over it (under their names). */
static int trained_map(const sd_tensor_map *map, sd_grads *grads, state_at_fn state_at,
                       void *trainer, sd_tensor_map **out) {
  sd_tensor_map *m = sd_tensor_map_create();
  int rc = m ? 0 : SD_ERROR("out of memory");
  for (size_t i = 0; rc == 0 && i < sd_tensor_map_count(map); i++) {
    const sd_st_tensor *t = sd_tensor_map_at(map, i);
    rc = sd_tensor_map_put(m, t->name, t->dtype, t->ndim, t->shape, t->data);
  }
  for (size_t i = 0; rc == 0 && i < sd_grads_count(grads); i++) {
    const sd_tensor *w = sd_grads_weight_at(grads, i);
    float *master, *v1, *v2;
    rc = state_at(trainer, i, &master, &v1, &v2);
    if (rc == 0)
      rc =
          sd_tensor_map_put(m, sd_grads_name_at(grads, i), SD_DTYPE_F32, w->ndim, w->shape, master);
  }
  if (rc < 0) {
    sd_tensor_map_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

int sd_dreambooth_write_single_file(const char *pretrained, const char *pretrained_config,
                                    const char *output_dir, const char *name,
                                    sd_unet_trainer *trainer, sd_clip_trainer *text_encoder) {
  char path[PATH_MAX_LEN], leftovers[PATH_MAX_LEN];
  snprintf(path, sizeof path, "%s/%s", output_dir, name);
  snprintf(leftovers, sizeof leftovers, "%s.tmp.", name); /* sd_safetensors_write's */
  sd_model_files *model = NULL;
  sd_tensor_map *unet = NULL, *clip = NULL;
  int rc = remove_leftovers(output_dir, leftovers);
  if (rc == 0)
    rc = sd_model_files_open(pretrained, pretrained_config, NULL, &model);
  if (rc == 0)
    rc = trained_map(model->unet_tensors, sd_unet_trainer_grads(trainer), unet_state_at, trainer,
                     &unet);
  if (rc == 0 && text_encoder)
    rc = trained_map(model->clip_tensors, sd_clip_trainer_grads(text_encoder), clip_state_at,
                     text_encoder, &clip);
  if (rc == 0)
    rc =
        sd_ldm_export_components(model->family, &model->unet, unet, &model->vae, model->vae_tensors,
                                 &model->clip, clip ? clip : model->clip_tensors, path);
  if (rc == 0)
    rc = sd_dreambooth_fsync_path(output_dir);
  sd_tensor_map_free(clip);
  sd_tensor_map_free(unet);
  sd_model_files_close(model);
  return rc < 0 ? sd_error_context("writing the trained model to %s", path) : 0;
}

int sd_dreambooth_write_model(const char *pretrained, const char *output_dir,
                              sd_unet_trainer *trainer, sd_clip_trainer *text_encoder,
                              const char *single_file) {
  DIR *d = opendir(pretrained);
  if (!d)
    return SD_ERROR("%s: cannot read the pretrained model folder: %s", pretrained, strerror(errno));
  struct dirent *e;
  char from[PATH_MAX_LEN], to[PATH_MAX_LEN];
  struct stat st;
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    /* a fine-tuned folder as the pretrained model: its own run's files (checkpoints, loss log,
     * single file) stay behind */
    size_t len = strlen(e->d_name);
    if (e->d_name[0] == '.' || checkpoint_step(e->d_name) >= 0 || !strcmp(e->d_name, "loss.csv") ||
        (len > 12 && !strcmp(e->d_name + len - 12, ".safetensors")))
      continue;
    snprintf(from, sizeof from, "%s/%s", pretrained, e->d_name);
    snprintf(to, sizeof to, "%s/%s", output_dir, e->d_name);
    if (stat(from, &st) < 0)
      continue;
    if (S_ISREG(st.st_mode))
      rc = sd_copy_file(from, to);
    else if (S_ISDIR(st.st_mode))
      rc = copy_folder(from, to,
                       !strcmp(e->d_name, "unet") ||
                           (text_encoder && !strcmp(e->d_name, "text_encoder")));
  }
  closedir(d);
  if (rc == 0)
    rc = write_trained(output_dir, "unet", "diffusion_pytorch_model.safetensors",
                       sd_unet_trainer_grads(trainer), unet_state_at, trainer);
  /* transformers' CLIPTextModel.save_pretrained: model.safetensors, text_model.* names */
  if (rc == 0 && text_encoder)
    rc = write_text_encoder_config(pretrained, output_dir);
  if (rc == 0 && text_encoder)
    rc = write_trained(output_dir, "text_encoder", "model.safetensors",
                       sd_clip_trainer_grads(text_encoder), clip_state_at, text_encoder);
  if (rc == 0 && single_file)
    rc = sd_dreambooth_write_single_file(pretrained, NULL, output_dir, single_file, trainer,
                                         text_encoder);
  if (rc == 0)
    rc = sd_dreambooth_fsync_path(output_dir);
  return rc < 0 ? sd_error_context("writing the trained model to %s", output_dir) : 0;
}

/* Deletes the files of output_dir whose names start with prefix (the temporary files of a final
 * write that a kill interrupted). */
static int remove_leftovers(const char *output_dir, const char *prefix) {
  DIR *d = opendir(output_dir);
  if (!d)
    return SD_ERROR("%s: cannot read output_dir: %s", output_dir, strerror(errno));
  struct dirent *e;
  char path[PATH_MAX_LEN];
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
      continue;
    snprintf(path, sizeof path, "%s/%s", output_dir, e->d_name);
    if (unlink(path) < 0 && errno != ENOENT)
      rc = SD_ERROR("%s: cannot delete: %s", path, strerror(errno));
  }
  closedir(d);
  return rc;
}

int sd_dreambooth_write_lora(const char *output_dir, const sd_lora_trainer *trainer) {
  char tmp[PATH_MAX_LEN], final[PATH_MAX_LEN];
  snprintf(final, sizeof final, "%s/pytorch_lora_weights.safetensors", output_dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", final);
  int rc = remove_leftovers(output_dir, "pytorch_lora_weights.safetensors.tmp");
  if (rc == 0)
    rc = sd_lora_trainer_save(trainer, tmp, SD_LORA_KEYS_DIFFUSERS);
  if (rc == 0)
    rc = sd_dreambooth_fsync_path(tmp);
  if (rc == 0 && rename(tmp, final) < 0)
    rc = SD_ERROR("cannot rename %s to %s: %s", tmp, final, strerror(errno));
  if (rc == 0)
    rc = sd_dreambooth_fsync_path(output_dir);
  if (rc < 0)
    unlink(tmp);
  return rc < 0 ? sd_error_context("writing the trained LoRA to %s", output_dir) : 0;
}
