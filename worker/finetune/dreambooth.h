/* `sdbatch train`: DreamBooth fine-tuning of the UNet, full (with or without the text encoder,
 * train_text_encoder) or LoRA, with or without prior preservation (diffusers'
 * examples/dreambooth/train_dreambooth.py and train_dreambooth_lora.py; the text encoder's LoRA
 * is not built)
 * on the CPU backend, with crash-safe checkpoints and an exact resume (docs/training.md,
 * "sdbatch train"). */
#ifndef SD_DREAMBOOTH_H
#define SD_DREAMBOOTH_H

#include "dreambooth_config.h"

#include "../train/optim.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sd_dreambooth_options {
  bool resume;   /* continue from output_dir's latest complete checkpoint */
  int threads;   /* CPU threads (0: all cores) */
  bool progress; /* progress lines on stderr */
  /* Data parallel ranks (docs/training.md, "Data parallel"), or NULL: this process alone. Every
   * rank runs sd_dreambooth_train with the same config; each computes its share of every step's
   * items, and only rank 0 writes output_dir. */
  const sd_grad_reduce *ranks;
} sd_dreambooth_options;

/* What a run did. */
typedef struct sd_dreambooth_result {
  int64_t first_step; /* 0, or the checkpoint's step a resumed run started from */
  int64_t steps;      /* optimizer steps at the end (max_train_steps) */
  int images;         /* instance images */
  int class_images;   /* prior preservation's class images (0 without) */
  double seconds;     /* wall time of the steps this run took */
  float last_loss;
} sd_dreambooth_result;

/* Trains and writes output_dir: loss.csv, checkpoint-<step>/ folders, and for a full fine-tune a
 * diffusers folder (the pretrained model's files with unet/diffusion_pytorch_model.safetensors
 * replaced by the trained float32 weights, with train_text_encoder also
 * text_encoder/model.safetensors), in LoRA mode (config->lora) only
 * pytorch_lora_weights.safetensors. Everything that can be checked before training (the config's
 * values against the model, the images, an output_dir that already holds files without
 * --resume) is checked before output_dir is created. -1 with an error naming the file and
 * place. */
int sd_dreambooth_train(const sd_dreambooth_config *config, const sd_dreambooth_options *options,
                        sd_dreambooth_result *result);

#endif
