/* One file of a trainer's state (not a public header): every trained parameter's float32 master
 * weights and AdamW moments, plus string metadata, in a safetensors file written atomically
 * (temporary file, fsync, rename, folder fsync), and read back into the trainer. Used by
 * `sdbatch train-demo` for its VAE and UNet phases. */
#ifndef SD_TRAIN_STATE_H
#define SD_TRAIN_STATE_H

#include "../io/safetensors.h"
#include "../model/grads.h"

#include <stddef.h>

/* A trainer seen through its gradient store and its state accessor (sd_unet_trainer_state_at,
 * sd_vae_trainer_state_at). */
typedef int (*sd_train_state_at_fn)(void *trainer, size_t i, float **master, float **exp_avg,
                                    float **exp_avg_sq);
typedef struct sd_train_state_view {
  sd_grads *grads;
  sd_train_state_at_fn state_at;
  void *trainer;
  const char *prefix; /* before every parameter's name in the file (NULL: none), so that several
                         trainers' states share one file (sd_train_state_write_views) */
} sd_train_state_view;

/* Writes path: tensors "<name>", "adamw.exp_avg.<name>", "adamw.exp_avg_sq.<name>" for every
 * trained parameter, and the n metadata pairs. */
int sd_train_state_write(const char *path, const sd_train_state_view *view, const char *const *keys,
                         const char *const *values, size_t n);

/* sd_train_state_write of several trainers into one file (written at once: they stay at the same
 * step), each parameter's name after its view's prefix. */
int sd_train_state_write_views(const char *path, const sd_train_state_view *views, size_t n_views,
                               const char *const *keys, const char *const *values, size_t n);

/* Opens path, checks its "format" metadata is `format`, and copies every trained parameter's
 * state into the trainer (the caller then restores the trainer); *file stays open for the
 * caller's metadata reads (sd_train_state_meta_int), closed with sd_safetensors_close. */
int sd_train_state_read(const char *path, const char *format, const sd_train_state_view *view,
                        sd_safetensors **file);
/* sd_train_state_read of a file of several trainers (sd_train_state_write_views). */
int sd_train_state_read_views(const char *path, const char *format,
                              const sd_train_state_view *views, size_t n_views,
                              sd_safetensors **file);

/* Metadata key as an integer; -1 with an error naming the file when absent or not a number. */
int sd_train_state_meta_int(const sd_safetensors *file, const char *key, int64_t *out);

/* fsync of a file or folder by path. */
int sd_train_state_fsync(const char *path);

#endif
