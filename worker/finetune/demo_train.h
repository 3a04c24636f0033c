/* `sdbatch train-demo`: the recipe that trains the project's own demo model from scratch on the
 * CPU (docs/demo-model.md). From the untrained shapes architecture (demo_model.h), on the shapes
 * dataset (data/shapes.h) at 64x64:
 *   1. the VAE: the LDM autoencoder loss (L1 + kl_weight KL), each pixel's error weighted by
 *      1 + saturation_weight x its saturation, AdamW betas (0.5, 0.9);
 *   2. the scaling factor: 1 / std of the trained VAE's latents of scale_images pictures;
 *   3. the UNet: v-prediction (the model's scheduler says so) on its scaled_linear schedule,
 *      with the frozen random CLIP text encoder's embeddings of the captions, caption_dropout of
 *      them empty (so classifier-free guidance has an unconditional model to push away from).
 * Every draw is a function of (seed, phase, step): a step's pictures are dataset items
 * step x batch + j, its random numbers come from a generator seeded for that step. A phase's
 * state file (weights and AdamW moments) is written every checkpoint_every steps, so a killed run
 * resumed with `resume` ends at the same weights, bit for bit, as an uninterrupted one. */
#ifndef SD_DEMO_TRAIN_H
#define SD_DEMO_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sd_demo_recipe {
  uint64_t seed;                /* initial weights, dataset and every draw */
  int64_t vae_steps;            /* optimizer steps of the VAE phase */
  int vae_batch;                /* pictures a VAE step */
  double vae_learning_rate;     /* peak; cosine decay after vae_warmup steps */
  int64_t vae_warmup;           /* linear warmup steps */
  double vae_kl_weight;         /* weight of the KL term */
  double vae_saturation_weight; /* pixel weight 1 + this x saturation (vae_trainer.h) */
  int scale_images;             /* pictures whose latents set the scaling factor */
  int64_t unet_steps;           /* optimizer steps of the UNet phase */
  int unet_batch;               /* pictures a UNet step */
  double unet_learning_rate;    /* peak; cosine decay after unet_warmup steps */
  int64_t unet_warmup;          /* linear warmup steps */
  double caption_dropout;       /* share of empty captions in the UNet phase */
  int64_t checkpoint_every; /* steps between state files (each phase also writes one at its end) */
  double text_encoder_learning_rate; /* peak, on the UNet's schedule; 0: the encoder stays frozen */
  int caption_templates; /* captions drawn from the first this many of the dataset's templates */
} sd_demo_recipe;

/* The recipe of the shipped model (docs/demo-model.md). */
sd_demo_recipe sd_demo_recipe_default(void);
/* A minutes-long version (CI: the losses fall): few, small steps. */
sd_demo_recipe sd_demo_recipe_quick(void);
/* The recipe as one JSON line (what a resumed run must match). A recipe with a frozen text encoder
 * and the first five caption templates (the first shipped model's) is written without those two
 * keys, as that run wrote it. */
void sd_demo_recipe_json(const sd_demo_recipe *recipe, char *out, size_t size);

typedef struct sd_demo_train_options {
  bool resume;        /* continue a run in dir from its state files */
  int threads;        /* CPU threads (0: all cores) */
  bool progress;      /* progress lines on stderr */
  const char *bpe_gz; /* the CLIP BPE file the tokenizer is made from */
} sd_demo_train_options;

typedef struct sd_demo_train_result {
  float vae_first_loss, vae_last_loss;   /* means over the phase's first and last 10% of steps */
  float unet_first_loss, unet_last_loss; /* (at least one step each) */
  float scaling_factor;
  double seconds; /* wall time of this run */
} sd_demo_train_result;

/* Trains into dir: dir/train/ (init/ the untrained model, recipe.json, loss-vae.csv and
 * loss-unet.csv (a line a step), vae-state.safetensors, unet-state.safetensors) and, at the end,
 * dir/model/, the trained model as a diffusers folder with fp16 weights. dir must be new or
 * empty unless options->resume. -1 with an error naming the file and place. */
int sd_demo_train(const char *dir, const sd_demo_recipe *recipe,
                  const sd_demo_train_options *options, sd_demo_train_result *result);

#endif
