/* The VAE's optimizer step (vae_trainer.h). */
#include "vae_trainer.h"

#include "loss.h"
#include "param_optim.h"

#include "../model/vae_train.h"

#include "../../kernels/error.h"

#include <inttypes.h>
#include <stdbool.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sd_vae_trainer {
  sd_backend *be;
  sd_vae *vae;
  sd_vae_train_config cfg;
  sd_grads *grads;
  sd_param_optim *optim;
  int64_t steps;
};

sd_vae_train_config sd_vae_train_config_init(void) {
  return (sd_vae_train_config){
      .adamw = {.beta1 = 0.5, .beta2 = 0.9, .eps = 1e-8, .weight_decay = 0.0},
      .learning_rate = 4.5e-6,
      .schedule = SD_LR_CONSTANT,
      .warmup_steps = 0,
      .total_steps = 1,
      .max_grad_norm = 1.0,
      .rec_loss = SD_VAE_REC_L1,
      .kl_weight = 1e-6,
  };
}

void sd_vae_trainer_free(sd_vae_trainer *t) {
  if (!t)
    return;
  sd_param_optim_free(t->optim);
  sd_grads_free(t->grads);
  free(t);
}

int sd_vae_trainer_create(sd_backend *be, sd_vae *vae, const sd_weights *weights,
                          const sd_vae_train_config *cfg, sd_grads_filter wants, void *user,
                          sd_vae_trainer **out) {
  *out = NULL;
  if (cfg->rec_loss != SD_VAE_REC_L1 && cfg->rec_loss != SD_VAE_REC_MSE)
    return SD_ERROR("vae training: reconstruction loss %d is neither L1 nor MSE",
                    (int)cfg->rec_loss);
  if (!(cfg->saturation_weight >= 0.0 && cfg->saturation_weight <= 1e6))
    return SD_ERROR("vae training: saturation weight %g is not in [0, 1e6]",
                    cfg->saturation_weight);
  sd_vae_trainer *t = calloc(1, sizeof *t);
  if (!t)
    return SD_ERROR("out of memory");
  t->be = be;
  t->vae = vae;
  t->cfg = *cfg;
  if (sd_grads_create(be, weights, wants, user, &t->grads) < 0 ||
      sd_param_optim_create(be, t->grads, &t->optim) < 0) {
    sd_vae_trainer_free(t);
    return sd_error_context("vae training");
  }
  *out = t;
  return 0;
}

/* The host side of one step: the posterior's sample, the loss and the gradients that pass between
 * the halves. All arrays float32, (B, C, hw) with C = latent_channels. */
typedef struct posterior {
  int64_t batch, channels, hw;
  const float *moments; /* (B, 2C, hw) mean, then logvar (unclamped) */
  const float *eps;     /* (B, C, hw) */
} posterior;

static float clamped_logvar(float logvar) {
  return logvar < -30.0f ? -30.0f : logvar > 20.0f ? 20.0f : logvar;
}

/* z (B, C, hw) = mean + std eps; returns the KL term: the batch mean of each item's
 * sum of 0.5 (mean^2 + var - 1 - logvar), diffusers' DiagonalGaussianDistribution.kl(). */
static float sample_and_kl(const posterior *p, float *z) {
  const int64_t n = p->channels * p->hw;
  double total = 0.0;
  for (int64_t b = 0; b < p->batch; b++) {
    const float *mean = p->moments + 2 * b * n, *logvar = mean + n;
    const float *eps = p->eps + b * n;
    double item = 0.0;
    for (int64_t i = 0; i < n; i++) {
      float lv = clamped_logvar(logvar[i]);
      float std = expf(0.5f * lv), var = expf(lv);
      z[b * n + i] = mean[i] + std * eps[i];
      item += (double)mean[i] * mean[i] + var - 1.0 - lv;
    }
    total += 0.5 * item;
  }
  return (float)(total / (double)p->batch);
}

/* dmoments (B, 2C, hw) from dz (B, C, hw) and the KL term's weight:
 * d mean = dz + w mean / B; d logvar = (dz eps std / 2 + w (var - 1) / (2 B)) where logvar is
 * inside the clamp's range, else 0. */
static void posterior_backward(const posterior *p, const float *dz, double kl_weight,
                               float *dmoments) {
  const int64_t n = p->channels * p->hw;
  const float kl_scale = (float)(kl_weight / (double)p->batch);
  for (int64_t b = 0; b < p->batch; b++) {
    const float *mean = p->moments + 2 * b * n, *logvar = mean + n;
    const float *eps = p->eps + b * n, *g = dz + b * n;
    float *dmean = dmoments + 2 * b * n, *dlogvar = dmean + n;
    for (int64_t i = 0; i < n; i++) {
      dmean[i] = g[i] + kl_scale * mean[i];
      if (logvar[i] < -30.0f || logvar[i] > 20.0f) {
        dlogvar[i] = 0.0f;
        continue;
      }
      float std = expf(0.5f * logvar[i]), var = expf(logvar[i]);
      dlogvar[i] = g[i] * eps[i] * std * 0.5f + kl_scale * 0.5f * (var - 1.0f);
    }
  }
}

typedef struct step_buffers {
  float *images, *moments, *eps, *z, *rec, *drec, *dz, *dmoments, *weight; /* host */
} step_buffers;

static void free_buffers(step_buffers *h) {
  free(h->images);
  free(h->moments);
  free(h->eps);
  free(h->z);
  free(h->rec);
  free(h->drec);
  free(h->weight);
  free(h->dz);
  free(h->dmoments);
}

/* Forward and backward of the loss into the gradient store; the arena is released by the
 * caller. */
/* weight (B, C, H, W) = 1 + k (max_c x - min_c x) / 2 for images x (B, C, H, W) in [-1, 1]. */
static void saturation_weights(const float *x, int64_t b, int64_t c, int64_t hw, float k,
                               float *weight) {
  for (int64_t i = 0; i < b; i++) {
    const float *img = x + i * c * hw;
    float *wi = weight + i * c * hw;
    for (int64_t p = 0; p < hw; p++) {
      float lo = img[p], hi = img[p];
      for (int64_t ch = 1; ch < c; ch++) {
        lo = fminf(lo, img[ch * hw + p]);
        hi = fmaxf(hi, img[ch * hw + p]);
      }
      const float wp = 1.0f + k * ((hi - lo) / 2.0f);
      for (int64_t ch = 0; ch < c; ch++)
        wi[ch * hw + p] = wp;
    }
  }
}

/* The reconstruction term into report->rec_loss and its gradient into h->drec. */
static int reconstruction_loss(const sd_vae_train_config *cfg, const sd_tensor *images,
                               step_buffers *h, sd_vae_step_report *report) {
  const int64_t n = sd_tensor_numel(images);
  const bool l1 = cfg->rec_loss == SD_VAE_REC_L1;
  if (cfg->saturation_weight == 0.0) {
    report->rec_loss = l1 ? sd_l1_loss(h->rec, h->images, n) : sd_mse_loss(h->rec, h->images, n);
    (l1 ? sd_l1_loss_backward : sd_mse_loss_backward)(h->rec, h->images, n, 1.0f, h->drec);
    return 0;
  }
  if (!(h->weight = malloc((size_t)n * sizeof(float))))
    return SD_ERROR("out of host memory for the loss weights of %" PRId64 " values", n);
  saturation_weights(h->images, images->shape[0], images->shape[1],
                     images->shape[2] * images->shape[3], (float)cfg->saturation_weight, h->weight);
  report->rec_loss = l1 ? sd_weighted_l1_loss(h->rec, h->images, h->weight, n)
                        : sd_weighted_mse_loss(h->rec, h->images, h->weight, n);
  (l1 ? sd_weighted_l1_loss_backward : sd_weighted_mse_loss_backward)(h->rec, h->images, h->weight,
                                                                      n, 1.0f, h->drec);
  return 0;
}

static int loss_backward(sd_vae_trainer *t, const sd_tensor *images, const float *eps_given,
                         sd_rng *rng, sd_vae_step_report *report) {
  sd_backend *be = t->be;
  const sd_vae_config *cfg = sd_vae_get_config(t->vae);
  const int64_t factor = (int64_t)1 << (cfg->num_levels - 1);
  const int64_t b = images->shape[0], lc = cfg->latent_channels;
  const int64_t h = images->shape[2] / factor, w = images->shape[3] / factor;
  const int64_t n_img = sd_tensor_numel(images), n_lat = b * lc * h * w;
  const sd_dtype dt = be->ops->act_dtype;
  sd_tensor moments = sd_tensor_4d(dt, b, 2 * lc, h, w), dmoments = moments;
  sd_tensor z = sd_tensor_4d(dt, b, lc, h, w), dz = z;
  sd_tensor rec = *images, drec = *images;
  sd_vae_tape *enc = NULL, *dec = NULL;
  step_buffers host = {
      .images = malloc((size_t)n_img * sizeof(float)),
      .moments = malloc(2 * (size_t)n_lat * sizeof(float)),
      .eps = malloc((size_t)n_lat * sizeof(float)),
      .z = malloc((size_t)n_lat * sizeof(float)),
      .rec = malloc((size_t)n_img * sizeof(float)),
      .drec = malloc((size_t)n_img * sizeof(float)),
      .dz = malloc((size_t)n_lat * sizeof(float)),
      .dmoments = malloc(2 * (size_t)n_lat * sizeof(float)),
  };
  int rc = host.images && host.moments && host.eps && host.z && host.rec && host.drec && host.dz &&
                   host.dmoments
               ? 0
               : SD_ERROR("out of host memory for a batch of %" PRId64, b);
  if (rc == 0)
    rc = sd_tensor_alloc(be, &moments);
  if (rc == 0 && (rc = sd_vae_encode_forward_train(t->vae, images, &moments, &enc)) == 0)
    rc = sd_tensor_download_f32(be, &moments, host.moments);
  if (rc == 0) {
    if (eps_given)
      memcpy(host.eps, eps_given, (size_t)n_lat * sizeof(float));
    else
      rc = sd_rng_randn(rng, host.eps, (size_t)n_lat);
  }
  const posterior p = {
      .batch = b, .channels = lc, .hw = h * w, .moments = host.moments, .eps = host.eps};
  if (rc == 0) {
    report->kl_loss = sample_and_kl(&p, host.z);
    rc = sd_tensor_alloc(be, &z);
  }
  if (rc == 0 && (rc = sd_tensor_upload_f32(be, &z, host.z)) == 0) {
    rec.data = drec.data = dz.data = dmoments.data = NULL;
    if (sd_tensor_alloc(be, &rec) < 0 || sd_tensor_alloc(be, &drec) < 0 ||
        sd_tensor_alloc(be, &dz) < 0 || sd_tensor_alloc(be, &dmoments) < 0)
      rc = -1;
  }
  if (rc == 0 && (rc = sd_vae_decode_forward_train(t->vae, &z, &rec, &dec)) == 0)
    rc = sd_tensor_download_f32(be, &rec, host.rec);
  if (rc == 0)
    rc = sd_tensor_download_f32(be, images, host.images);
  if (rc == 0)
    rc = reconstruction_loss(&t->cfg, images, &host, report);
  if (rc == 0) {
    report->loss = report->rec_loss + (float)t->cfg.kl_weight * report->kl_loss;
    rc = sd_tensor_upload_f32(be, &drec, host.drec);
  }
  if (rc == 0)
    rc = sd_vae_decode_backward(dec, &drec, t->grads, &dz);
  sd_vae_tape_free(dec); /* above the encoder's tape on the arena */
  if (rc == 0 && (rc = sd_tensor_download_f32(be, &dz, host.dz)) == 0) {
    posterior_backward(&p, host.dz, t->cfg.kl_weight, host.dmoments);
    rc = sd_tensor_upload_f32(be, &dmoments, host.dmoments);
  }
  if (rc == 0)
    rc = sd_vae_encode_backward(enc, &dmoments, t->grads, NULL);
  sd_vae_tape_free(enc);
  free_buffers(&host);
  return rc;
}

int sd_vae_trainer_step(sd_vae_trainer *t, const sd_tensor *images, const float *eps, sd_rng *rng,
                        sd_vae_step_report *report) {
  memset(report, 0, sizeof *report);
  const sd_vae_config *cfg = sd_vae_get_config(t->vae);
  if (!eps && !rng)
    return SD_ERROR("vae training: neither eps nor a generator given");
  if (images->ndim != 4 || images->shape[1] != cfg->in_channels)
    return SD_ERROR("vae training: images must be (B, %d, H, W)", cfg->in_channels);
  SD_TRY(sd_grads_zero(t->grads));
  const sd_arena_mark mark = sd_arena_get_mark(t->be);
  int rc = loss_backward(t, images, eps, rng, report);
  sd_arena_release(t->be, mark);
  if (rc < 0)
    return sd_error_context("vae training: step %" PRId64, t->steps);
  double lr = t->cfg.learning_rate *
              sd_lr_multiplier(t->cfg.schedule, t->steps, t->cfg.warmup_steps, t->cfg.total_steps);
  report->learning_rate = lr;
  if (sd_param_optim_step(t->optim, &t->cfg.adamw, lr, t->steps + 1, t->cfg.max_grad_norm,
                          &report->grad_norm) < 0)
    return sd_error_context("vae training: step %" PRId64, t->steps);
  t->steps++;
  return 0;
}

int64_t sd_vae_trainer_steps(const sd_vae_trainer *t) {
  return t->steps;
}

sd_grads *sd_vae_trainer_grads(sd_vae_trainer *t) {
  return t->grads;
}

int sd_vae_trainer_state_at(sd_vae_trainer *t, size_t i, float **master, float **exp_avg,
                            float **exp_avg_sq) {
  if (sd_param_optim_state_at(t->optim, i, master, exp_avg, exp_avg_sq) < 0)
    return sd_error_context("vae training");
  return 0;
}

int sd_vae_trainer_restore(sd_vae_trainer *t, int64_t steps) {
  if (sd_param_optim_restore(t->optim) < 0)
    return sd_error_context("vae training: restoring");
  t->steps = steps;
  return 0;
}
