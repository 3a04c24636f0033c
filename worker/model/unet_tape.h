/* Internal to the UNet's training: the tape sd_unet_forward_train records (unet_forward_train.c)
 * and sd_unet_backward walks back (unet_backward.c).
 *
 * The tape is one step per block of the forward, in its order (conv_in, resnet, transformer,
 * downsample, concat, upsample, norm_out + conv_out). Each step reads one or two values and
 * writes one; every value is an arena tensor kept until the tape is freed (value 0 is the
 * caller's sample, the last one the caller's out). With SD_UNET_TAPE_FULL a step also keeps its
 * block's record (unet_blocks_train.h); with SD_UNET_TAPE_CHECKPOINT the record is dropped and
 * made again by the backward. */
#ifndef SD_UNET_TAPE_H
#define SD_UNET_TAPE_H

#include "unet_blocks_train.h"
#include "unet_internal.h"
#include "unet_train.h"

typedef enum step_kind {
  STEP_CONV_IN,
  STEP_RESNET,
  STEP_TRANSFORMER,
  STEP_DOWNSAMPLE,
  STEP_CONCAT,
  STEP_UPSAMPLE,
  STEP_OUT,
} step_kind;

typedef struct tape_step {
  step_kind kind;
  const void *block; /* sd_unet_resnet, sd_unet_transformer or sd_unet_sampler; else NULL */
  int in[2];         /* values read; in[1] only for concat (the skip), else -1 */
  int out;           /* value written */
  bool recorded;     /* rec holds the block's activations */
  union {
    sd_unet_resnet_rec resnet;
    sd_unet_transformer_rec transformer;
    sd_tensor up;     /* upsample: (B, C, 2H, 2W) nearest(x) */
    sd_tensor normed; /* out: (B, C0, H, W) silu(norm_out(x)) */
  } rec;
} tape_step;

typedef struct tape_value {
  sd_tensor t;      /* (B, C, H, W) */
  int producer;     /* step index; -1 for the sample */
  int readers;      /* steps reading it */
  int first_reader; /* step index of the first */
} tape_value;

struct sd_unet_tape {
  sd_unet *m;
  sd_backend *be;
  sd_arena_mark base;
  sd_unet_tape_mode mode;
  int64_t batch;
  const sd_tensor *context; /* (B, L, Ckv), borrowed */
  sd_tensor proj;           /* (B, T0) time projection */
  sd_tensor t1, t1a, t2;    /* (B, T) linear_1, silu, linear_2 */
  sd_tensor temb_act;       /* (B, T) silu(t2), what every resnet takes */
  tape_step *steps;
  int num_steps, steps_capacity;
  tape_value *values;
  int num_values, values_capacity;
};

/* Runs step s into y (its output value, or a scratch tensor of that shape when recomputing),
 * filling s->rec; the record's tensors are allocated on the arena here. */
int sd_unet_tape_step_forward(sd_unet_tape *tp, tape_step *s, sd_tensor *y);
/* Whether a step of this kind has a record (its backward needs more than its input). */
bool sd_unet_tape_step_has_record(const tape_step *s);
/* Frees what a record holds outside the arena and marks it absent. */
void sd_unet_tape_step_drop_record(tape_step *s);

#endif
