/* LoRA fine-tuning of the UNet and the text encoder (lora_trainer.h). */
#include "lora_trainer.h"

#include "../io/lora.h"
#include "../io/safetensors.h"
#include "../rng/rng.h"

#include "../../kernels/error.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct lora_layer {
  const char *prefix;    /* "unet" or "text_encoder": the model, as saved names begin */
  char *module;          /* the weight's name without ".weight" */
  sd_tensor *weight;     /* W' on the backend (a tensor of the borrowed weights) */
  const sd_tensor *grad; /* dW' in its model's gradient store */
  int64_t out, in;
  float *base; /* (out, in) W0 */
} lora_layer;

struct sd_lora_trainer {
  sd_backend *be;
  sd_unet *unet;
  const sd_scheduler_config *noise;
  sd_lora_train_config cfg;
  float scale; /* alpha / rank, in float as sd_lora_merge computes it */
  sd_grads *grads;
  size_t n_layers; /* the UNet's layers, then the text encoder's */
  lora_layer *layers;
  sd_param_set opt;             /* A of layer i at 2 i, B at 2 i + 1 */
  float *merged;                /* (max out * in) host scratch: W' and dW' */
  const sd_grad_reduce *reduce; /* or NULL */
  int64_t steps;
  /* the text encoder's LoRA (sd_lora_trainer_add_text_encoder), or clip NULL */
  sd_clip_text *clip;
  sd_lora_train_config te_cfg; /* cfg with the text encoder's targets */
  sd_grads *te_grads;
  sd_clip_text_tape *tape; /* of the last sd_lora_trainer_encode, until its step */
  bool empty_forward;      /* that encode had no rows (a data-parallel rank's share) */
};

sd_lora_train_config sd_lora_train_config_init(void) {
  sd_lora_train_config cfg = {
      .train = sd_unet_train_config_init(),
      .rank = 4,
      .alpha = 4.0,
      .targets = {"to_k", "to_q", "to_v", "to_out.0"},
      .n_targets = 4,
      .init = SD_LORA_INIT_GAUSSIAN,
  };
  cfg.train.learning_rate = 5e-4;
  return cfg;
}

/* peft's match of a target module: the module's name equals it or ends in "." + it. */
static bool module_matches(const char *module, size_t len, const char *target) {
  size_t tlen = strlen(target);
  return tlen <= len && memcmp(module + len - tlen, target, tlen) == 0 &&
         (tlen == len || module[len - tlen - 1] == '.');
}

static int matching_target(const char *name, const sd_lora_train_config *cfg) {
  size_t len = strlen(name);
  static const char suffix[] = ".weight";
  if (len <= sizeof suffix - 1 || strcmp(name + len - (sizeof suffix - 1), suffix) != 0)
    return -1;
  for (int t = 0; t < cfg->n_targets; t++)
    if (module_matches(name, len - (sizeof suffix - 1), cfg->targets[t]))
      return t;
  return -1;
}

static bool wants_adapted(const char *name, void *user) {
  return matching_target(name, user) >= 0;
}

static int check_config(const sd_lora_train_config *cfg) {
  if (cfg->rank < 1)
    return SD_ERROR("lora training: rank %d (it must be at least 1)", cfg->rank);
  if (!isfinite(cfg->alpha) || cfg->alpha <= 0)
    return SD_ERROR("lora training: lora_alpha %g (it must be a finite number > 0)", cfg->alpha);
  if (cfg->n_targets < 1 || cfg->n_targets > SD_LORA_MAX_TARGETS)
    return SD_ERROR("lora training: %d target modules (1 to %d)", cfg->n_targets,
                    SD_LORA_MAX_TARGETS);
  for (int t = 0; t < cfg->n_targets; t++)
    if (!cfg->targets[t] || !cfg->targets[t][0])
      return SD_ERROR("lora training: target module %d is empty", t);
  return 0;
}

static void drop_tape(sd_lora_trainer *t) {
  if (t->tape) {
    sd_clip_text_tape_free(t->tape);
    t->tape = NULL;
  }
}

void sd_lora_trainer_free(sd_lora_trainer *t) {
  if (!t)
    return;
  drop_tape(t);
  sd_grads_free(t->te_grads);
  for (size_t i = 0; t->layers && i < t->n_layers; i++) {
    free(t->layers[i].module);
    free(t->layers[i].base);
  }
  free(t->layers);
  sd_param_set_free(&t->opt);
  free(t->merged);
  sd_grads_free(t->grads);
  free(t);
}

/* W' = W0 + s B A of layer i, uploaded. */
static int merge_layer(sd_lora_trainer *t, size_t i) {
  const lora_layer *l = &t->layers[i];
  memcpy(t->merged, l->base, (size_t)(l->out * l->in) * sizeof(float));
  if (sd_lora_add_product(t->merged, l->out, l->in, t->cfg.rank, t->scale, t->opt.values[2 * i + 1],
                          t->opt.values[2 * i]) < 0 ||
      sd_tensor_upload_f32(t->be, l->weight, t->merged) < 0)
    return sd_error_context("lora training: merging %s", l->module);
  return 0;
}

/* splitmix64: the uniform numbers of the kaiming init, in [0, 1) with 24 bits. */
static float uniform01(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (float)(z >> 40) * 0x1p-24f;
}

/* A of layers [first, n_layers) from the seed as cfg->init says, B = 0. */
static int init_params(sd_lora_trainer *t, size_t first, uint64_t seed) {
  int64_t total = 0;
  for (size_t i = first; i < t->n_layers; i++) {
    total += t->opt.sizes[2 * i];
    memset(t->opt.values[2 * i + 1], 0, (size_t)t->opt.sizes[2 * i + 1] * sizeof(float));
  }
  if (t->cfg.init == SD_LORA_INIT_KAIMING) {
    uint64_t state = seed;
    for (size_t i = first; i < t->n_layers; i++) {
      float bound = (float)(1.0 / sqrt((double)t->layers[i].in));
      for (int64_t k = 0; k < t->opt.sizes[2 * i]; k++)
        t->opt.values[2 * i][k] = (2.0f * uniform01(&state) - 1.0f) * bound;
    }
    return 0;
  }
  /* one torch.randn((total,), generator=torch.Generator('cpu').manual_seed(seed)) / r */
  float *z = malloc((size_t)(total < 16 ? 16 : total) * sizeof *z);
  if (!z)
    return SD_ERROR("out of memory");
  sd_rng rng;
  sd_rng_init(&rng, SD_RNG_CPU, seed);
  int rc = sd_rng_randn(&rng, z, (size_t)(total < 16 ? 16 : total));
  const float std = 1.0f / (float)t->cfg.rank;
  for (size_t i = first, at = 0; rc == 0 && i < t->n_layers; i++)
    for (int64_t k = 0; k < t->opt.sizes[2 * i]; k++)
      t->opt.values[2 * i][k] = z[at++] * std;
  free(z);
  return rc;
}

/* The adapted layers of one model's gradient store, appended to t->layers; each of cfg's targets
 * must match one of them (example: a module name of the model, for the error). */
static int collect_layers(sd_lora_trainer *t, sd_grads *grads, const char *prefix,
                          const sd_lora_train_config *cfg, const char *model, const char *example) {
  size_t n = sd_grads_count(grads), first = t->n_layers;
  int matched[SD_LORA_MAX_TARGETS] = {0};
  lora_layer *layers = realloc(t->layers, (first + n + 1) * sizeof *layers);
  if (!layers)
    return SD_ERROR("out of memory");
  memset(layers + first, 0, (n + 1) * sizeof *layers);
  t->layers = layers;
  for (size_t i = 0; i < n; i++) {
    const char *name = sd_grads_name_at(grads, i);
    lora_layer *l = &t->layers[first + i];
    t->n_layers = first + i + 1; /* freed with the trainer from here */
    l->prefix = prefix;
    l->weight = (sd_tensor *)sd_grads_weight_at(grads, i);
    l->grad = sd_grads_at(grads, i);
    if (l->weight->ndim != 2) {
      char shape[96];
      sd_tensor_shape_str(l->weight, shape, sizeof shape);
      return SD_ERROR("lora training: target module '%s' matches '%s' %s, which is not a linear "
                      "layer (LoRA of convolutions is not supported)",
                      cfg->targets[matching_target(name, cfg)], name, shape);
    }
    for (int k = 0; k < cfg->n_targets; k++) /* every target that names it */
      matched[k] += module_matches(name, strlen(name) - strlen(".weight"), cfg->targets[k]);
    l->out = l->weight->shape[0];
    l->in = l->weight->shape[1];
    l->module = strndup(name, strlen(name) - strlen(".weight"));
    l->base = malloc((size_t)(l->out * l->in) * sizeof(float));
    if (!l->module || !l->base)
      return SD_ERROR("out of memory");
    if (sd_tensor_download_f32(t->be, l->weight, l->base) < 0)
      return sd_error_context("lora training: reading %s", name);
  }
  for (int k = 0; k < cfg->n_targets; k++)
    if (!matched[k])
      return SD_ERROR("lora training: target module '%s' matches no linear layer of the %s (a "
                      "module matches when its name is the target or ends in '.%s', e.g. %s)",
                      cfg->targets[k], model, cfg->targets[k], example);
  return 0;
}

/* t->opt for every layer (A: rank x in, B: out x rank), keeping the values of the parameters old
 * holds (the first old->count ones; freed), and the scratch for the largest layer. */
static int build_params(sd_lora_trainer *t, sd_param_set *old) {
  size_t n = 2 * t->n_layers;
  int64_t *sizes = calloc(n + 1, sizeof *sizes), largest = 1;
  if (!sizes)
    return SD_ERROR("out of memory");
  for (size_t i = 0; i < t->n_layers; i++) {
    const lora_layer *l = &t->layers[i];
    sizes[2 * i] = t->cfg.rank * l->in;
    sizes[2 * i + 1] = l->out * t->cfg.rank;
    largest = l->out * l->in > largest ? l->out * l->in : largest;
  }
  int rc = sd_param_set_init(&t->opt, n, sizes);
  free(sizes);
  for (size_t i = 0; rc == 0 && old && i < old->count; i++)
    memcpy(t->opt.values[i], old->values[i], (size_t)old->sizes[i] * sizeof(float));
  if (old)
    sd_param_set_free(old);
  float *merged = rc == 0 ? realloc(t->merged, (size_t)largest * sizeof(float)) : NULL;
  if (rc == 0 && !merged)
    rc = SD_ERROR("out of memory");
  if (merged)
    t->merged = merged;
  return rc;
}

int sd_lora_trainer_create(sd_backend *be, sd_unet *unet, const sd_weights *weights,
                           const sd_scheduler_config *noise, const sd_lora_train_config *cfg,
                           uint64_t init_seed, sd_lora_trainer **out) {
  *out = NULL;
  SD_TRY(check_config(cfg));
  SD_TRY(sd_unet_train_check(noise));
  sd_lora_trainer *t = calloc(1, sizeof *t);
  if (!t)
    return SD_ERROR("out of memory");
  t->be = be;
  t->unet = unet;
  t->noise = noise;
  t->cfg = *cfg;
  t->scale = 1.0f * (float)cfg->alpha / (float)cfg->rank; /* as sd_lora_merge's factor */
  int rc = sd_grads_create(be, weights, wants_adapted, &t->cfg, &t->grads);
  if (rc < 0)
    sd_error_context("lora training");
  if (rc == 0)
    rc = collect_layers(t, t->grads, "unet", &t->cfg, "UNet",
                        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q");
  if (rc == 0)
    rc = build_params(t, NULL);
  if (rc == 0)
    rc = init_params(t, 0, init_seed);
  for (size_t i = 0; rc == 0 && i < t->n_layers; i++)
    rc = merge_layer(t, i);
  if (rc < 0) {
    sd_lora_trainer_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

int sd_lora_trainer_add_text_encoder(sd_lora_trainer *t, sd_clip_text *clip,
                                     const sd_weights *weights, uint64_t init_seed) {
  if (t->clip || t->steps > 0)
    return SD_ERROR("lora training: the text encoder's LoRA is added once, before the first step");
  t->te_cfg = t->cfg;
  static const char *const targets[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
  memset(t->te_cfg.targets, 0, sizeof t->te_cfg.targets);
  for (int k = 0; k < 4; k++)
    t->te_cfg.targets[k] = targets[k];
  t->te_cfg.n_targets = 4;
  size_t first = t->n_layers;
  sd_param_set old = t->opt;
  memset(&t->opt, 0, sizeof t->opt);
  int rc = sd_grads_create(t->be, weights, wants_adapted, &t->te_cfg, &t->te_grads);
  if (rc == 0)
    rc = collect_layers(t, t->te_grads, "text_encoder", &t->te_cfg, "text encoder",
                        "text_model.encoder.layers.0.self_attn.q_proj");
  if (rc == 0)
    rc = build_params(t, &old);
  else
    sd_param_set_free(&old);
  if (rc == 0)
    rc = init_params(t, first, init_seed);
  for (size_t i = first; rc == 0 && i < t->n_layers; i++)
    rc = merge_layer(t, i);
  if (rc < 0)
    return sd_error_context("lora training: the text encoder's LoRA");
  t->clip = clip;
  return 0;
}

size_t sd_lora_trainer_layer_count(const sd_lora_trainer *t) {
  return t->n_layers;
}

int sd_lora_trainer_layer(const sd_lora_trainer *t, size_t index, sd_lora_layer_info *out) {
  if (index >= t->n_layers)
    return SD_ERROR("lora training: layer %zu of %zu", index, t->n_layers);
  const lora_layer *l = &t->layers[index];
  *out = (sd_lora_layer_info){.prefix = l->prefix,
                              .module = l->module,
                              .out = l->out,
                              .in = l->in,
                              .a = t->opt.values[2 * index],
                              .b = t->opt.values[2 * index + 1],
                              .base = l->base,
                              .grad_a = t->opt.grads[2 * index],
                              .grad_b = t->opt.grads[2 * index + 1]};
  return 0;
}

int64_t sd_lora_trainer_find(const sd_lora_trainer *t, const char *module) {
  for (size_t i = 0; i < t->n_layers; i++)
    if (strcmp(t->layers[i].module, module) == 0)
      return (int64_t)i;
  return -1;
}

int sd_lora_trainer_set_layer(sd_lora_trainer *t, size_t index, const float *a, const float *b) {
  if (index >= t->n_layers)
    return SD_ERROR("lora training: layer %zu of %zu", index, t->n_layers);
  memcpy(t->opt.values[2 * index], a, (size_t)t->opt.sizes[2 * index] * sizeof(float));
  memcpy(t->opt.values[2 * index + 1], b, (size_t)t->opt.sizes[2 * index + 1] * sizeof(float));
  return merge_layer(t, index);
}

/* dA (r, in) = s B^T dW' and dB (out, r) = s dW' A^T of layer i, dW' (out, in) in t->merged. */
static int lora_grads(sd_lora_trainer *t, size_t i) {
  const lora_layer *l = &t->layers[i];
  const int64_t r = t->cfg.rank;
  const float *a = t->opt.values[2 * i], *b = t->opt.values[2 * i + 1], *dw = t->merged;
  dnnl_status_t status = dnnl_sgemm('T', 'N', r, l->in, l->out, t->scale, b, r, dw, l->in, 0.0f,
                                    t->opt.grads[2 * i], l->in);
  if (status == dnnl_success)
    status = dnnl_sgemm('N', 'T', l->out, r, l->in, t->scale, dw, l->in, a, l->in, 0.0f,
                        t->opt.grads[2 * i + 1], r);
  if (status != dnnl_success)
    return SD_ERROR("lora training: %s: oneDNN: dnnl_sgemm: %s", l->module,
                    dnnl_status2str(status));
  return 0;
}

int sd_lora_trainer_step(sd_lora_trainer *t, const sd_tensor *latents, const sd_tensor *noise,
                         const int32_t *timesteps, const sd_tensor *context,
                         sd_unet_step_report *report) {
  return sd_lora_trainer_step_weighted(t, latents, noise, timesteps, context, NULL, report);
}

/* The step after the backward: dA, dB of every layer from its dW', summed over the ranks, one
 * clip_grad_norm_ and AdamW over all of them, every W' re-merged. */
static int finish_step(sd_lora_trainer *t, sd_unet_step_report *report) {
  for (size_t i = 0; i < t->n_layers; i++) {
    SD_TRY(sd_tensor_download_f32(t->be, t->layers[i].grad, t->merged));
    SD_TRY(lora_grads(t, i));
  }
  SD_TRY(sd_grad_reduce_f32(t->reduce, &report->loss, 1));
  for (size_t i = 0; i < t->opt.count; i++)
    SD_TRY(sd_grad_reduce_f32(t->reduce, t->opt.grads[i], (size_t)t->opt.sizes[i]));
  report->learning_rate = sd_unet_train_lr(&t->cfg.train, t->steps);
  report->grad_norm = sd_param_set_step(&t->opt, &t->cfg.train.adamw, report->learning_rate,
                                        t->steps + 1, t->cfg.train.max_grad_norm);
  for (size_t i = 0; i < t->n_layers; i++)
    SD_TRY(merge_layer(t, i));
  t->steps++;
  return 0;
}

int sd_lora_trainer_step_weighted(sd_lora_trainer *t, const sd_tensor *latents,
                                  const sd_tensor *noise, const int32_t *timesteps,
                                  const sd_tensor *context, const double *item_weights,
                                  sd_unet_step_report *report) {
  memset(report, 0, sizeof *report);
  SD_TRY(sd_unet_loss_backward_weighted(t->be, t->unet, t->noise, t->cfg.train.tape, t->grads,
                                        latents, noise, timesteps, context, item_weights, t->steps,
                                        &report->loss));
  if (t->te_grads) /* the encoder's LoRA untouched by this step's loss */
    SD_TRY(sd_grads_zero(t->te_grads));
  return finish_step(t, report);
}

int sd_lora_trainer_encode(sd_lora_trainer *t, const int32_t *ids, int batch, sd_tensor *hidden) {
  if (!t->clip)
    return SD_ERROR("lora training: no text encoder LoRA to encode with");
  drop_tape(t);
  t->empty_forward = batch == 0;
  if (batch > 0 && sd_clip_text_forward_train(t->clip, ids, batch, hidden, &t->tape) < 0)
    return sd_error_context("lora training: step %" PRId64 "'s text encoder forward", t->steps);
  return 0;
}

int sd_lora_trainer_step_joint(sd_lora_trainer *t, const sd_tensor *latents, const sd_tensor *noise,
                               const int32_t *timesteps, const sd_tensor *context,
                               const double *item_weights, sd_tensor *dcontext,
                               sd_unet_step_report *report) {
  memset(report, 0, sizeof *report);
  if (!t->tape && !t->empty_forward)
    return SD_ERROR("lora training: a step with the text encoder without its encode");
  int rc = sd_unet_loss_backward_dcontext(t->be, t->unet, t->noise, t->cfg.train.tape, t->grads,
                                          latents, noise, timesteps, context, item_weights,
                                          t->steps, &report->loss, dcontext);
  if (rc == 0)
    rc = sd_grads_zero(t->te_grads);
  if (rc == 0 && !t->empty_forward && sd_clip_text_backward(t->tape, dcontext, t->te_grads) < 0)
    rc = sd_error_context("lora training: step %" PRId64 "'s text encoder backward", t->steps);
  drop_tape(t);
  t->empty_forward = false;
  return rc < 0 ? rc : finish_step(t, report);
}

void sd_lora_trainer_set_reduce(sd_lora_trainer *t, const sd_grad_reduce *reduce) {
  t->reduce = reduce;
}

int64_t sd_lora_trainer_steps(const sd_lora_trainer *t) {
  return t->steps;
}

size_t sd_lora_trainer_param_count(const sd_lora_trainer *t) {
  return 2 * t->n_layers;
}

int sd_lora_trainer_param(sd_lora_trainer *t, size_t index, sd_lora_param_info *out) {
  if (index >= 2 * t->n_layers)
    return SD_ERROR("lora training: parameter %zu of %zu", index, 2 * t->n_layers);
  const lora_layer *l = &t->layers[index / 2];
  int up = (int)(index % 2);
  *out = (sd_lora_param_info){.prefix = l->prefix,
                              .module = l->module,
                              .is_up = up,
                              .shape = {up ? l->out : t->cfg.rank, up ? t->cfg.rank : l->in},
                              .value = t->opt.values[index],
                              .exp_avg = t->opt.exp_avg[index],
                              .exp_avg_sq = t->opt.exp_avg_sq[index]};
  return 0;
}

int sd_lora_trainer_restore(sd_lora_trainer *t, int64_t steps) {
  for (size_t i = 0; i < t->n_layers; i++)
    SD_TRY(merge_layer(t, i));
  t->steps = steps;
  return 0;
}

/* One model's "<prefix>.lora_alpha", "<prefix>.r", "<prefix>.target_modules" into meta. */
static bool add_adapter_metadata(cJSON *meta, const char *prefix, const sd_lora_train_config *cfg) {
  char key[64];
  cJSON *targets = cJSON_CreateArray();
  snprintf(key, sizeof key, "%s.lora_alpha", prefix);
  bool ok = targets && cJSON_AddNumberToObject(meta, key, cfg->alpha);
  snprintf(key, sizeof key, "%s.r", prefix);
  ok = ok && cJSON_AddNumberToObject(meta, key, cfg->rank);
  for (int k = 0; ok && k < cfg->n_targets; k++)
    ok = cJSON_AddItemToArray(targets, cJSON_CreateString(cfg->targets[k]));
  snprintf(key, sizeof key, "%s.target_modules", prefix);
  if (ok && cJSON_AddItemToObject(meta, key, targets))
    return true;
  cJSON_Delete(targets);
  return false;
}

/* diffusers' unet_lora_adapter_metadata ({"unet.lora_alpha", "unet.r", "unet.target_modules"})
 * and text_encoder_lora_adapter_metadata ("text_encoder." the same). */
static char *adapter_metadata(const sd_lora_trainer *t) {
  cJSON *meta = cJSON_CreateObject();
  bool ok = meta && add_adapter_metadata(meta, "unet", &t->cfg) &&
            (!t->clip || add_adapter_metadata(meta, "text_encoder", &t->te_cfg));
  char *text = ok ? cJSON_Print(meta) : NULL;
  cJSON_Delete(meta);
  return text;
}

int sd_lora_trainer_save(const sd_lora_trainer *t, const char *path, sd_lora_key_style style) {
  size_t n = 2 * t->n_layers;
  sd_st_tensor *tensors = calloc(n ? n : 1, sizeof *tensors);
  char **names = calloc(n ? n : 1, sizeof *names);
  int rc = tensors && names ? 0 : SD_ERROR("%s: out of memory", path);
  /* diffusers' convert_state_dict_to_diffusers names the text encoder's "lora_linear_layer" */
  const char *parts[3][2] = {{"lora.down", "lora.up"},
                             {"lora_A", "lora_B"},
                             {"lora_linear_layer.down", "lora_linear_layer.up"}};
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const lora_layer *l = &t->layers[i / 2];
    size_t size = strlen(l->module) + 64;
    if (!(names[i] = malloc(size))) {
      rc = SD_ERROR("%s: out of memory", path);
      break;
    }
    int kind = style == SD_LORA_KEYS_PEFT ? 1 : strcmp(l->prefix, "unet") != 0 ? 2 : 0;
    snprintf(names[i], size, "%s.%s.%s.weight", l->prefix, l->module, parts[kind][i % 2]);
    sd_st_tensor *st = &tensors[i];
    st->name = names[i];
    st->dtype = SD_DTYPE_F32;
    st->ndim = 2;
    st->shape[0] = i % 2 ? l->out : t->cfg.rank;
    st->shape[1] = i % 2 ? t->cfg.rank : l->in;
    st->data = t->opt.values[i];
    st->bytes = (size_t)t->opt.sizes[i] * sizeof(float);
  }
  const char *keys[2] = {"format", "lora_adapter_metadata"};
  const char *values[2] = {"pt", NULL};
  size_t n_meta = 1;
  if (rc == 0 && t->cfg.alpha != (double)t->cfg.rank) {
    if (!(values[1] = adapter_metadata(t)))
      rc = SD_ERROR("%s: out of memory", path);
    n_meta = 2;
  }
  if (rc == 0)
    rc = sd_safetensors_write(path, tensors, n, keys, values, n_meta);
  free((char *)values[1]);
  for (size_t i = 0; names && i < n; i++)
    free(names[i]);
  free(names);
  free(tensors);
  return rc < 0 ? sd_error_context("lora training: saving") : 0;
}
