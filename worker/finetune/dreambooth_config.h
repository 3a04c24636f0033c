/* The configuration of `sdbatch train` (docs/training.md, "sdbatch train"): a YAML mapping whose
 * keys are the arguments of diffusers' examples/dreambooth/train_dreambooth.py, with the script's
 * defaults. Keys of the script that sdbatch does not implement yet are recognised and refused
 * (unless given their neutral value: false, null, 0, "no"), unknown keys refused with the closest
 * known key. Every error names the file, the line and column, and the key. */
#ifndef SD_DREAMBOOTH_CONFIG_H
#define SD_DREAMBOOTH_CONFIG_H

#include "../train/lr_schedule.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sd_dreambooth_config {
  char *path; /* the config file */
  /* a diffusers folder, or a single-file checkpoint (resolved against the config's folder) */
  char *pretrained_model;
  char *pretrained_model_config; /* a single file's optional LDM YAML (resolved), or NULL */
  char *instance_data_dir;       /* resolved */
  char *instance_prompt;
  char *output_dir; /* resolved */
  int resolution;   /* 512 */
  bool center_crop; /* false: RandomCrop, as the script */
  bool random_flip; /* false (not in train_dreambooth.py; RandomHorizontalFlip as other scripts) */
  int train_batch_size;            /* 4 */
  int gradient_accumulation_steps; /* 1 */
  int num_train_epochs;            /* 1; used when max_train_steps is 0 */
  int64_t max_train_steps;         /* 0: num_train_epochs x steps per epoch */
  double learning_rate;            /* 5e-6 */
  bool scale_lr; /* false: true multiplies learning_rate by accumulation x batch size */
  sd_lr_schedule lr_scheduler;                                    /* constant */
  int64_t lr_warmup_steps;                                        /* 500 */
  double adam_beta1, adam_beta2, adam_weight_decay, adam_epsilon; /* 0.9, 0.999, 1e-2, 1e-8 */
  double max_grad_norm;                                           /* 1.0 */
  uint64_t seed;                   /* 0 when not given (the script's None: no fixed seed) */
  int64_t checkpointing_steps;     /* 500 */
  int64_t checkpoints_total_limit; /* 0: keep all */
  bool gradient_checkpointing;     /* false: the full tape; true: the checkpointed tape */
  /* LoRA mode (train_dreambooth_lora.py): peft LoRA A/B on the UNet's to_q, to_k, to_v,
   * to_out.0, lora_alpha = rank; learning_rate defaults to 5e-4 there */
  bool lora; /* false */
  /* false; true trains the text encoder with the UNet (full fine-tunes only) */
  bool train_text_encoder;
  int rank; /* 4; the key is refused without lora: true */
  /* Prior preservation (--with_prior_preservation): class images from class_data_dir (the missing
   * ones rendered from class_prompt before training) trained alongside with class_prompt, loss =
   * instance MSE + prior_loss_weight x class MSE. The class keys are refused without it. */
  bool with_prior_preservation; /* false */
  char *class_data_dir;         /* resolved; required with prior preservation */
  char *class_prompt;           /* required with prior preservation */
  int num_class_images;         /* 100 */
  double prior_loss_weight;     /* 1.0 */
  int sample_batch_size;        /* 4: images per render call when generating class images */
  /* Validation renders (train_dreambooth.py's log_validation): every validation_steps optimizer
   * steps, num_validation_images renders of validation_prompt with the weights of that step
   * (DPMSolverMultistepScheduler, 25 steps, guidance 7.5, the model's default size) into
   * output_dir/validation/. The count and steps keys are refused without a prompt. */
  char *validation_prompt;    /* NULL: none */
  int num_validation_images;  /* 4 */
  int64_t validation_steps;   /* 100 */
  char *validation_scheduler; /* NULL or "DPMSolverMultistepScheduler" (the script's default) */
  /* Full fine-tunes: a file name (ending in .safetensors) in output_dir where the trained model
   * is also written as an original single-file checkpoint (worker/io/ldm_export.h). */
  char *single_file; /* NULL: none */
} sd_dreambooth_config;

/* Reads and checks path into *out (paths resolved against the file's folder). -1 with one error
 * "<file>:<line>:<col>: <key>: <message>" (or "<file>: ..." for the file as a whole). */
int sd_dreambooth_config_load(const char *path, sd_dreambooth_config *out);
void sd_dreambooth_config_free(sd_dreambooth_config *config);

#endif
