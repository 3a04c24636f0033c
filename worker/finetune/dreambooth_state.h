/* The files of a DreamBooth run's output_dir (not a public header): checkpoints (crash-safe
 * folders checkpoint-<step>/ holding training_state.safetensors) and the final diffusers folder. */
#ifndef SD_DREAMBOOTH_STATE_H
#define SD_DREAMBOOTH_STATE_H

#include "../rng/rng.h"
#include "../train/clip_trainer.h"
#include "../train/lora_trainer.h"
#include "../train/unet_trainer.h"

#include <stdint.h>

/* Where the data stream stands after an optimizer step. */
typedef struct sd_dreambooth_position {
  int64_t step;       /* optimizer steps taken */
  int64_t epoch;      /* the epoch of the next micro-batch */
  int64_t next_batch; /* its micro-batch index in the epoch */
  int64_t *order;     /* (images) the epoch's randperm */
  int images;         /* the dataset's length (with class images max(instance, class)) */
  sd_rng order_rng;   /* draws each epoch's order */
  sd_rng draw_rng;    /* crops, flips, latent samples, noise, timesteps */
  int64_t log_bytes;  /* loss.csv's length after this step's line */
} sd_dreambooth_position;

/* What must agree between a checkpoint and the run resuming it. */
typedef struct sd_dreambooth_fingerprint {
  int64_t images, resolution, batch, accumulation;
  uint64_t seed;
  int64_t class_images; /* prior preservation's class images; 0 without (absent in older
                           checkpoints, read as 0) */
} sd_dreambooth_fingerprint;

/* A trained parameter as a checkpoint holds it: its name, shape and host float32 values with
 * AdamW's two moments (borrowed from the trainer; writable, for a resume). */
typedef struct sd_dreambooth_param {
  char *name; /* owned */
  int ndim;
  int64_t shape[SD_MAX_DIMS];
  float *value, *exp_avg, *exp_avg_sq;
} sd_dreambooth_param;

/* The trained parameters of a run: a full fine-tune's UNet weights, or a LoRA's A and B. format
 * is the checkpoint's "format" metadata (a checkpoint of the other mode is refused by it). */
typedef struct sd_dreambooth_params {
  size_t count;
  sd_dreambooth_param *items;
  const char *format;
} sd_dreambooth_params;

/* The full fine-tune's parameters (sd_grads order and names), then with text_encoder (NULL:
 * the frozen encoder) the encoder's under "text_encoder." + their names (another format: a
 * checkpoint of the other choice is refused). */
int sd_dreambooth_params_unet(sd_unet_trainer *trainer, sd_clip_trainer *text_encoder,
                              sd_dreambooth_params *out);
/* The LoRA's: unet.<module>.lora.down.weight (A) and .lora.up.weight (B). */
int sd_dreambooth_params_lora(sd_lora_trainer *trainer, sd_dreambooth_params *out);
void sd_dreambooth_params_free(sd_dreambooth_params *params);

/* Writes output_dir/checkpoint-<step>/ atomically (built as .checkpoint-<step>.tmp, fsync'ed,
 * renamed, output_dir fsync'ed), then removes the oldest checkpoints beyond limit (0: none; each
 * renamed away before it is deleted, so a kill never leaves a partial checkpoint-<n>). */
int sd_dreambooth_checkpoint_write(const char *output_dir, const sd_dreambooth_params *params,
                                   const sd_dreambooth_position *pos,
                                   const sd_dreambooth_fingerprint *fp, int64_t limit);

/* The step of output_dir's latest complete checkpoint, 0 when none (and leftovers of
 * interrupted writes and removals deleted). */
int sd_dreambooth_checkpoint_latest(const char *output_dir, int64_t *step);

/* Reads checkpoint-<step> into params' values and moments and pos (pos->order must hold
 * pos->images entries); refuses a checkpoint of another format, fingerprint or model. The caller
 * then restores its trainer (sd_unet_trainer_restore, sd_lora_trainer_restore) at pos->step. */
int sd_dreambooth_checkpoint_read(const char *output_dir, int64_t step,
                                  const sd_dreambooth_params *params, sd_dreambooth_position *pos,
                                  const sd_dreambooth_fingerprint *fp);

/* Writes output_dir/pytorch_lora_weights.safetensors (through a temporary name, fsync'ed,
 * renamed; temporary files of an earlier interrupted write deleted first): the LoRA in the names
 * train_dreambooth_lora.py saves (diffusers' load_lora_weights and `sdbatch render --lora` read
 * it). */
int sd_dreambooth_write_lora(const char *output_dir, const sd_lora_trainer *trainer);

/* Makes output_dir the diffusers folder of the trained model: the pretrained folder's files
 * (model_index.json, every component folder but unet's weights; one level deep; not the
 * top-level .safetensors files a fine-tuned folder may hold) copied, then
 * unet/diffusion_pytorch_model.safetensors written with the trainer's float32 weights under
 * their diffusers names; with text_encoder (NULL: frozen) also text_encoder/model.safetensors
 * (float32, transformers' names; the pretrained encoder's weight files not copied). single_file
 * (NULL: none): a file name in output_dir where the folder just written is also written as an
 * original single-file checkpoint. Each file is written under a temporary name and renamed. */
int sd_dreambooth_write_model(const char *pretrained, const char *output_dir,
                              sd_unet_trainer *trainer, sd_clip_trainer *text_encoder,
                              const char *single_file);

/* output_dir/name: the trained model as an original single-file checkpoint: the UNet's (and
 * with text_encoder, the encoder's) float32 master weights, the rest as the pretrained model
 * (a folder, or a single file with its optional LDM YAML pretrained_config) holds it. Written
 * under a temporary name and renamed (an interrupted write's leftovers removed first). */
int sd_dreambooth_write_single_file(const char *pretrained, const char *pretrained_config,
                                    const char *output_dir, const char *name,
                                    sd_unet_trainer *trainer, sd_clip_trainer *text_encoder);

/* fsync of a file or folder by path. */
int sd_dreambooth_fsync_path(const char *path);

#endif
