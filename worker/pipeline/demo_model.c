/* Writing random-weight demo models (see demo_model.h). The tensors each network needs are
 * listed by running its create function on a recording weights object, so the demo model always
 * has exactly the tensors and shapes the model code loads. */
#include "demo_model.h"

#include "../../kernels/error.h"
#include "../io/file_util.h"
#include "../io/safetensors.h"
#include "../io/weights.h"
#include "../model/clip_text.h"
#include "../model/unet.h"
#include "../model/vae.h"
#include "../text/clip_tokenizer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct demo_configs {
  sd_clip_config clip;
  sd_unet_config unet;
  sd_vae_config vae;
  int unet_heads_config; /* diffusers' attention_head_dim (heads per level, SD 1.x) */
} demo_configs;

/* The sizes that tell the demo models apart; the rest is SD 1.x's block structure. */
typedef struct demo_sizes {
  int clip_hidden, clip_intermediate, clip_layers, clip_heads;
  int unet_levels, unet_channels[4], unet_heads, unet_sample;
  int vae_levels, vae_channels[4], vae_layers, vae_sample;
  float vae_scaling;
  const char *prediction_type; /* the scheduler's; NULL: diffusers' default (epsilon) */
} demo_sizes;

/* clang-format off */
/* SD 1.5's shapes (random weights, for benchmarks). */
static const demo_sizes full_sizes = {
    768, 3072, 12, 12, 4, {320, 640, 1280, 1280}, 8, 64, 4, {128, 256, 512, 512}, 2, 512, 0.18215f,
    NULL};
/* The quick start's tiny random model (128x128). */
static const demo_sizes tiny_sizes = {
    32, 64, 2, 4, 3, {32, 64, 64}, 4, 16, 4, {32, 32, 64, 64}, 1, 128, 0.18215f, NULL};
/* The shapes model (docs/demo-model.md): 64x64 pictures through a factor-4 VAE (16x16x4 latents),
 * a 2-level UNet (64, 128 channels; cross-attention at 16x16 and in the mid block), a 2-layer
 * CLIP 64 wide; about 4.4 M + 1.0 M + 3.3 M parameters (17 MB in fp16). The VAE's scaling factor
 * is a placeholder until train-demo measures it. v-prediction: its loss weighs the noisiest
 * steps, where a picture's colour, shape and place are decided, far more than epsilon's does
 * (docs/demo-model.md, "Findings"). */
static const demo_sizes shapes_sizes = {
    64, 256, 2, 4, 2, {64, 128}, 4, 16, 3, {32, 64, 64}, 1, 64, 1.0f, "v_prediction"};
/* clang-format on */

static void demo_configs_fill(const demo_sizes *s, demo_configs *c) {
  memset(c, 0, sizeof *c);
  c->clip = (sd_clip_config){
      .vocab_size = 49408,
      .hidden_size = s->clip_hidden,
      .intermediate_size = s->clip_intermediate,
      .num_hidden_layers = s->clip_layers,
      .num_attention_heads = s->clip_heads,
      .max_position_embeddings = 77,
      .hidden_act = SD_ACT_QUICK_GELU,
      .layer_norm_eps = 1e-5f,
      .bos_token_id = 49406,
      .eos_token_id = 49407,
  };
  sd_unet_config *u = &c->unet;
  u->in_channels = 4;
  u->out_channels = 4;
  u->layers_per_block = 2;
  u->cross_attention_dim = c->clip.hidden_size;
  u->norm_num_groups = 32;
  u->norm_eps = 1e-5f;
  u->flip_sin_to_cos = true;
  u->freq_shift = 0;
  c->unet_heads_config = s->unet_heads;
  u->num_levels = s->unet_levels;
  u->sample_size = s->unet_sample;
  for (int i = 0; i < u->num_levels; i++) {
    u->block_out_channels[i] = s->unet_channels[i];
    u->down_block_has_attention[i] = i < u->num_levels - 1;
    u->up_block_has_attention[i] = i > 0;
    u->transformer_layers_per_block[i] = 1;
    u->num_attention_heads[i] = c->unet_heads_config;
  }
  sd_vae_config *v = &c->vae;
  v->in_channels = 3;
  v->out_channels = 3;
  v->latent_channels = 4;
  v->num_levels = s->vae_levels;
  for (int i = 0; i < v->num_levels; i++)
    v->block_out_channels[i] = s->vae_channels[i];
  v->layers_per_block = s->vae_layers;
  v->norm_num_groups = 32;
  v->scaling_factor = s->vae_scaling;
  v->sample_size = s->vae_sample;
  v->mid_block_add_attention = true;
}

/* ---- JSON configs in diffusers' / transformers' field names ---- */

static cJSON *int_array(const int *values, int n) {
  return cJSON_CreateIntArray(values, n);
}

static cJSON *repeated_strings(const char *first, const char *other, int n, int first_count) {
  cJSON *array = cJSON_CreateArray();
  for (int i = 0; i < n; i++)
    cJSON_AddItemToArray(array, cJSON_CreateString(i < first_count ? first : other));
  return array;
}

static cJSON *unet_json(const demo_configs *c) {
  const sd_unet_config *u = &c->unet;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "_class_name", "UNet2DConditionModel");
  cJSON_AddStringToObject(j, "_diffusers_version", "0.30.0");
  cJSON_AddStringToObject(j, "act_fn", "silu");
  cJSON_AddNumberToObject(j, "attention_head_dim", c->unet_heads_config);
  cJSON_AddItemToObject(j, "block_out_channels", int_array(u->block_out_channels, u->num_levels));
  cJSON_AddBoolToObject(j, "center_input_sample", 0);
  cJSON_AddNumberToObject(j, "cross_attention_dim", u->cross_attention_dim);
  cJSON_AddItemToObject(
      j, "down_block_types",
      repeated_strings("CrossAttnDownBlock2D", "DownBlock2D", u->num_levels, u->num_levels - 1));
  cJSON_AddNumberToObject(j, "downsample_padding", 1);
  cJSON_AddBoolToObject(j, "flip_sin_to_cos", 1);
  cJSON_AddNumberToObject(j, "freq_shift", 0);
  cJSON_AddNumberToObject(j, "in_channels", u->in_channels);
  cJSON_AddNumberToObject(j, "layers_per_block", u->layers_per_block);
  cJSON_AddNumberToObject(j, "mid_block_scale_factor", 1);
  cJSON_AddNumberToObject(j, "norm_eps", 1e-5);
  cJSON_AddNumberToObject(j, "norm_num_groups", u->norm_num_groups);
  cJSON_AddNumberToObject(j, "out_channels", u->out_channels);
  cJSON_AddNumberToObject(j, "sample_size", u->sample_size);
  cJSON_AddItemToObject(j, "up_block_types",
                        repeated_strings("UpBlock2D", "CrossAttnUpBlock2D", u->num_levels, 1));
  cJSON_AddBoolToObject(j, "use_linear_projection", 0);
  cJSON_AddBoolToObject(j, "upcast_attention", 0);
  return j;
}

static cJSON *vae_json(const sd_vae_config *v) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "_class_name", "AutoencoderKL");
  cJSON_AddStringToObject(j, "_diffusers_version", "0.30.0");
  cJSON_AddStringToObject(j, "act_fn", "silu");
  cJSON_AddItemToObject(j, "block_out_channels", int_array(v->block_out_channels, v->num_levels));
  cJSON_AddItemToObject(j, "down_block_types",
                        repeated_strings("DownEncoderBlock2D", "", v->num_levels, v->num_levels));
  cJSON_AddNumberToObject(j, "in_channels", v->in_channels);
  cJSON_AddNumberToObject(j, "latent_channels", v->latent_channels);
  cJSON_AddNumberToObject(j, "layers_per_block", v->layers_per_block);
  cJSON_AddNumberToObject(j, "norm_num_groups", v->norm_num_groups);
  cJSON_AddNumberToObject(j, "out_channels", v->out_channels);
  cJSON_AddNumberToObject(j, "sample_size", v->sample_size);
  cJSON_AddNumberToObject(j, "scaling_factor", v->scaling_factor);
  cJSON_AddItemToObject(j, "up_block_types",
                        repeated_strings("UpDecoderBlock2D", "", v->num_levels, v->num_levels));
  return j;
}

static cJSON *clip_json(const sd_clip_config *t) {
  cJSON *j = cJSON_CreateObject();
  cJSON *architectures = cJSON_AddArrayToObject(j, "architectures");
  cJSON_AddItemToArray(architectures, cJSON_CreateString("CLIPTextModel"));
  cJSON_AddNumberToObject(j, "bos_token_id", t->bos_token_id);
  cJSON_AddNumberToObject(j, "eos_token_id", t->eos_token_id);
  cJSON_AddStringToObject(j, "hidden_act", "quick_gelu");
  cJSON_AddNumberToObject(j, "hidden_size", t->hidden_size);
  cJSON_AddNumberToObject(j, "intermediate_size", t->intermediate_size);
  cJSON_AddNumberToObject(j, "layer_norm_eps", 1e-5);
  cJSON_AddNumberToObject(j, "max_position_embeddings", t->max_position_embeddings);
  cJSON_AddStringToObject(j, "model_type", "clip_text_model");
  cJSON_AddNumberToObject(j, "num_attention_heads", t->num_attention_heads);
  cJSON_AddNumberToObject(j, "num_hidden_layers", t->num_hidden_layers);
  cJSON_AddNumberToObject(j, "pad_token_id", 1);
  cJSON_AddNumberToObject(j, "projection_dim", t->hidden_size);
  /* what from_pretrained gives by default (transformers 5 follows it): float32, as the UNet and
   * the VAE load, though the file holds fp16 */
  cJSON_AddStringToObject(j, "torch_dtype", "float32");
  cJSON_AddNumberToObject(j, "vocab_size", t->vocab_size);
  return j;
}

static cJSON *scheduler_json(const char *prediction_type) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "_class_name", "PNDMScheduler");
  cJSON_AddStringToObject(j, "_diffusers_version", "0.30.0");
  cJSON_AddNumberToObject(j, "beta_end", 0.012);
  cJSON_AddStringToObject(j, "beta_schedule", "scaled_linear");
  cJSON_AddNumberToObject(j, "beta_start", 0.00085);
  cJSON_AddBoolToObject(j, "clip_sample", 0);
  cJSON_AddNumberToObject(j, "num_train_timesteps", 1000);
  if (prediction_type)
    cJSON_AddStringToObject(j, "prediction_type", prediction_type);
  cJSON_AddBoolToObject(j, "set_alpha_to_one", 0);
  cJSON_AddBoolToObject(j, "skip_prk_steps", 1);
  cJSON_AddNumberToObject(j, "steps_offset", 1);
  return j;
}

static cJSON *model_index_json(void) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "_class_name", "StableDiffusionPipeline");
  cJSON_AddStringToObject(j, "_diffusers_version", "0.30.0");
  static const char *const parts[][3] = {
      {"scheduler", "diffusers", "PNDMScheduler"},
      {"text_encoder", "transformers", "CLIPTextModel"},
      {"tokenizer", "transformers", "CLIPTokenizer"},
      {"unet", "diffusers", "UNet2DConditionModel"},
      {"vae", "diffusers", "AutoencoderKL"},
  };
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    cJSON *pair = cJSON_CreateArray();
    cJSON_AddItemToArray(pair, cJSON_CreateString(parts[i][1]));
    cJSON_AddItemToArray(pair, cJSON_CreateString(parts[i][2]));
    cJSON_AddItemToObject(j, parts[i][0], pair);
  }
  cJSON_AddBoolToObject(j, "requires_safety_checker", 0);
  return j;
}

static cJSON *tokenizer_config_json(void) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "bos_token", "<|startoftext|>");
  cJSON_AddStringToObject(j, "eos_token", "<|endoftext|>");
  cJSON_AddStringToObject(j, "pad_token", "<|endoftext|>");
  cJSON_AddStringToObject(j, "unk_token", "<|endoftext|>");
  cJSON_AddBoolToObject(j, "do_lower_case", 1);
  cJSON_AddNumberToObject(j, "model_max_length", 77);
  cJSON_AddStringToObject(j, "tokenizer_class", "CLIPTokenizer");
  return j;
}

/* Writes json (consumed) to dir/name. */
static int write_json(const char *dir, const char *name, cJSON *json) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  char *text = json ? cJSON_Print(json) : NULL;
  cJSON_Delete(json);
  if (!text)
    return SD_ERROR("%s: out of memory building JSON", path);
  FILE *file = fopen(path, "w");
  if (!file) {
    free(text);
    return SD_ERROR("%s: cannot create: %s", path, strerror(errno));
  }
  int ok = fputs(text, file) >= 0 && fputc('\n', file) != EOF;
  ok = (fclose(file) == 0) && ok;
  free(text);
  return ok ? 0 : SD_ERROR("%s: write failed", path);
}

/* ---- random weights ---- */

typedef struct demo_rng {
  uint64_t state;
} demo_rng;

static float demo_uniform(demo_rng *rng) { /* in [-1, 1) */
  rng->state = rng->state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng->state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* PyTorch-like initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and their biases,
 * ones/zeros for normalisation layers, small values for embeddings. */
static void fill_weight(const char *name, const sd_tensor *t, const sd_weights *all, demo_rng *rng,
                        uint16_t *out) {
  size_t n = (size_t)sd_tensor_numel(t);
  bool is_norm = t->ndim == 1 && (strstr(name, "norm") || strstr(name, "ln_"));
  if (is_norm) {
    uint16_t value = sd_f32_to_f16(ends_with(name, ".weight") ? 1.0f : 0.0f);
    for (size_t i = 0; i < n; i++)
      out[i] = value;
    return;
  }
  float bound = 0.02f;
  if (strstr(name, "embedding")) {
    bound = 0.03f;
  } else if (t->ndim >= 2) {
    bound = 1.0f / sqrtf((float)(sd_tensor_numel(t) / t->shape[0]));
  } else if (ends_with(name, ".bias")) {
    char weight_name[512];
    snprintf(weight_name, sizeof weight_name, "%.*s.weight", (int)(strlen(name) - 5), name);
    const sd_tensor *w = sd_weights_find(all, weight_name);
    if (w && w->ndim >= 2)
      bound = 1.0f / sqrtf((float)(sd_tensor_numel(w) / w->shape[0]));
  }
  for (size_t i = 0; i < n; i++)
    out[i] = sd_f32_to_f16(bound * demo_uniform(rng));
}

/* Writes the recorded tensors of `recorded` with random fp16 values to path. */
static int write_random_weights(const char *path, const sd_weights *recorded, demo_rng *rng) {
  size_t count = sd_weights_count(recorded);
  sd_st_tensor *records = calloc(count, sizeof *records);
  uint16_t **buffers = calloc(count, sizeof *buffers);
  int rc = -1;
  if (!records || !buffers) {
    SD_ERROR("out of memory");
    goto out;
  }
  for (size_t i = 0; i < count; i++) {
    const sd_tensor *t = sd_weights_at(recorded, i);
    size_t n = (size_t)sd_tensor_numel(t);
    buffers[i] = malloc(n * sizeof(uint16_t));
    if (!buffers[i]) {
      SD_ERROR("out of memory for %zu weights", n);
      goto out;
    }
    fill_weight(sd_weights_name_at(recorded, i), t, recorded, rng, buffers[i]);
    records[i].name = sd_weights_name_at(recorded, i);
    records[i].dtype = SD_DTYPE_F16;
    records[i].ndim = t->ndim;
    memcpy(records[i].shape, t->shape, sizeof records[i].shape);
    records[i].data = buffers[i];
    records[i].bytes = n * sizeof(uint16_t);
  }
  rc = sd_safetensors_write(path, records, count, NULL, NULL, 0);
out:
  for (size_t i = 0; buffers && i < count; i++)
    free(buffers[i]);
  free(buffers);
  free(records);
  return rc;
}

typedef enum demo_part { DEMO_CLIP, DEMO_UNET, DEMO_VAE } demo_part;

/* Lists the tensors of one network by creating it on a recorder. */
static int record_part(sd_backend *be, const demo_configs *c, demo_part part, sd_weights **out) {
  SD_TRY(sd_weights_recorder_create(out));
  int rc = -1;
  if (part == DEMO_CLIP) {
    sd_clip_text *model = NULL;
    rc = sd_clip_text_create(be, &c->clip, *out, &model);
    sd_clip_text_free(model);
  } else if (part == DEMO_UNET) {
    sd_unet *model = NULL;
    rc = sd_unet_create(be, &c->unet, *out, &model);
    sd_unet_free(model);
  } else {
    sd_vae *model = NULL;
    rc = sd_vae_create(be, &c->vae, *out, &model);
    sd_vae_free(model);
  }
  if (rc < 0) {
    sd_weights_free(*out);
    *out = NULL;
  }
  return rc;
}

static int make_dir(const char *path) {
  if (mkdir(path, 0755) != 0)
    return SD_ERROR("%s: cannot create folder: %s", path, strerror(errno));
  return 0;
}

static int dir_is_absent_or_empty(const char *path) {
  DIR *dir = opendir(path);
  if (!dir)
    return errno == ENOENT;
  struct dirent *entry;
  int empty = 1;
  while ((entry = readdir(dir)))
    if (strcmp(entry->d_name, ".") && strcmp(entry->d_name, ".."))
      empty = 0;
  closedir(dir);
  return empty;
}

static int write_parts(const char *root, const sd_demo_model_params *params) {
  const demo_sizes *sizes = params->shapes      ? &shapes_sizes
                            : params->full_size ? &full_sizes
                                                : &tiny_sizes;
  demo_configs c;
  demo_configs_fill(sizes, &c);
  demo_rng rng = {params->seed * 0x9E3779B97F4A7C15ull + 1};
  char path[4096];
  static const char *const folders[] = {"unet", "vae", "text_encoder", "tokenizer", "scheduler"};
  for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", root, folders[i]);
    SD_TRY(make_dir(path));
  }
  SD_TRY(write_json(root, "model_index.json", model_index_json()));
  snprintf(path, sizeof path, "%s/unet", root);
  SD_TRY(write_json(path, "config.json", unet_json(&c)));
  snprintf(path, sizeof path, "%s/vae", root);
  SD_TRY(write_json(path, "config.json", vae_json(&c.vae)));
  snprintf(path, sizeof path, "%s/text_encoder", root);
  SD_TRY(write_json(path, "config.json", clip_json(&c.clip)));
  snprintf(path, sizeof path, "%s/scheduler", root);
  SD_TRY(write_json(path, "scheduler_config.json", scheduler_json(sizes->prediction_type)));
  snprintf(path, sizeof path, "%s/tokenizer", root);
  SD_TRY(write_json(path, "tokenizer_config.json", tokenizer_config_json()));

  sd_tokenizer *tokenizer = NULL;
  SD_TRY(sd_tokenizer_load_bpe_gz(params->bpe_gz, "<|endoftext|>", 77, &tokenizer));
  char vocab[4096], merges[4096];
  snprintf(vocab, sizeof vocab, "%s/tokenizer/vocab.json", root);
  snprintf(merges, sizeof merges, "%s/tokenizer/merges.txt", root);
  int rc = sd_tokenizer_write_vocab_merges(tokenizer, vocab, merges);
  sd_tokenizer_free(tokenizer);
  SD_TRY(rc);

  sd_backend *be = sd_backend_cpu_create(1);
  if (!be)
    return -1;
  static const struct {
    demo_part part;
    const char *file;
  } weights_files[] = {
      {DEMO_CLIP, "text_encoder/model.safetensors"},
      {DEMO_UNET, "unet/diffusion_pytorch_model.safetensors"},
      {DEMO_VAE, "vae/diffusion_pytorch_model.safetensors"},
  };
  rc = 0;
  for (size_t i = 0; i < 3 && rc == 0; i++) {
    sd_weights *recorded = NULL;
    rc = record_part(be, &c, weights_files[i].part, &recorded);
    if (rc == 0) {
      snprintf(path, sizeof path, "%s/%s", root, weights_files[i].file);
      rc = write_random_weights(path, recorded, &rng);
    }
    sd_weights_free(recorded);
  }
  sd_backend_destroy(be);
  SD_TRY(rc);

  snprintf(path, sizeof path, "%s/README.txt", root);
  FILE *readme = fopen(path, "w");
  if (!readme)
    return SD_ERROR("%s: cannot create: %s", path, strerror(errno));
  fprintf(readme,
          "A random-weight Stable Diffusion model written by sdbatch%s.\n"
          "It has the %s block structure but untrained weights: its pictures are noise.\n"
          "It runs the real code paths without downloading anything. For real images, point\n"
          "--model (or `model:` in a job file) at a diffusers folder or a single-file\n"
          ".safetensors checkpoint of SD 1.x or 2.x that you have.\n",
          params->shapes      ? " (train-demo's starting point)"
          : params->full_size ? " make-demo-model --full-size"
                              : " make-demo-model",
          params->shapes      ? "shapes demo model's"
          : params->full_size ? "SD 1.5 (full-size)"
                              : "SD 1.x (tiny)");
  if (fclose(readme) != 0)
    return SD_ERROR("%s: write failed", path);
  return 0;
}

int sd_demo_model_write(const char *dir, const sd_demo_model_params *params) {
  if (!dir_is_absent_or_empty(dir))
    return SD_ERROR("%s: exists and is not an empty folder", dir);
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp%d", dir, (int)getpid());
  SD_TRY(sd_remove_tree(tmp)); /* a killed writer's leftover */
  SD_TRY(make_dir(tmp));
  if (write_parts(tmp, params) < 0) {
    (void)sd_remove_tree(tmp); /* best effort: the error in hand is the one to report */
    return sd_error_context("%s", dir);
  }
  rmdir(dir); /* an empty folder may stand in the way */
  if (rename(tmp, dir) != 0) {
    int err = errno;
    (void)sd_remove_tree(tmp); /* best effort: the error in hand is the one to report */
    return SD_ERROR("%s: cannot move the finished model into place: %s", dir, strerror(err));
  }
  return 0;
}
