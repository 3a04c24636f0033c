/* Opening a model as a diffusers folder or an original single-file checkpoint (see
 * model_files.h).
 *
 * Family: a diffusers folder is SD 2.x when its text encoder uses exact GELU (OpenCLIP's text
 * tower) and SD 1.x when it uses quick_gelu (OpenAI CLIP); a single file is SD 2.x when it holds
 * OpenCLIP keys (cond_stage_model.model.), SD 1.x for cond_stage_model.transformer. keys. Sizes
 * never decide, so small test models classify like the real ones.
 *
 * Single files carry no configs; what shapes cannot tell comes from the optional LDM YAML, else
 * (an x4 upscaler, sd_upscaler_config, takes the values of Stability's x4-upscaling.yaml):
 *  - prediction type epsilon unless the YAML says parameterization: "v" (SD 2.x 768-v models
 *    need their v2-inference-v.yaml; diffusers itself guesses from global_step); the upscaler v;
 *  - scheduler: SD 1.x PNDM, SD 2.x DDIM, both scaled_linear 0.00085..0.012 (the upscaler
 *    0.0001..0.02; YAML linear_start, linear_end), 1000 steps (timesteps), steps_offset 1,
 *    set_alpha_to_one false, clip_sample false, skip_prk_steps true, leading spacing;
 *  - UNet heads: YAML num_head_channels / num_heads, else 8 (SD 1.x and the upscaler) or
 *    channels / 64 (SD 2.x); upcast_attention for SD 2.x v-prediction models but the upscaler
 *    (as their diffusers configs); only_cross_attention where the to_k widths cannot tell (a
 *    level as wide as the context): YAML disable_self_attentions, else false;
 *  - sample size: YAML image_size, else 64 latents (96 for SD 2.x v-prediction, 128 for the
 *    upscaler);
 *  - VAE scaling factor: YAML scale_factor, else 0.18215 (the upscaler 0.08333); VAE groups 32
 *    unless the YAML states ddconfig.norm_num_groups (an sdbatch extension for test models);
 *  - the upscaler's low-res scheduler: DDPM, clip_sample, epsilon, scaled_linear with YAML
 *    low_scale_config noise_schedule_config linear_start / linear_end / timesteps, else
 *    0.0001..0.02 and 1000 steps (as diffusers' from_single_file); max_noise_level: YAML
 *    low_scale_config max_noise_level, else 350;
 *  - text encoder heads: hidden size / 64 (CLIP's head size) unless the YAML states
 *    cond_stage_config.params.num_attention_heads (an sdbatch extension for test models);
 *  - tokenizer: the bpe_gz fallback, pad "<|endoftext|>" (SD 1.x) or "!" (SD 2.x), length =
 *    the text encoder's max_position_embeddings. */
#include "model_files.h"

#include "config_check.h"
#include "config_json.h"
#include "ldm_checkpoint.h"

#include "../../kernels/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILES 3

typedef struct model_internal {
  sd_safetensors *files[MAX_FILES];
  int n_files;
} model_internal;

void sd_model_files_close(sd_model_files *model) {
  if (!model)
    return;
  sd_tensor_map_free(model->clip_tensors);
  sd_tensor_map_free(model->unet_tensors);
  sd_tensor_map_free(model->vae_tensors);
  model_internal *internal = model->internal;
  if (internal) {
    for (int i = 0; i < internal->n_files; i++)
      sd_safetensors_close(internal->files[i]);
    free(internal);
  }
  free(model);
}

static int join(char *out, size_t size, const char *a, const char *b) {
  int n = snprintf(out, size, "%s/%s", a, b);
  if (n < 0 || (size_t)n >= size)
    return SD_ERROR("%s/%s: path too long", a, b);
  return 0;
}

/* Present and not a folder (a FIFO or device is then refused, by name, when opened). */
static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

static int open_file(sd_model_files *m, const char *path, sd_safetensors **out) {
  model_internal *internal = m->internal;
  SD_TRY(sd_safetensors_open(path, out));
  internal->files[internal->n_files++] = *out;
  return 0;
}

/* A component's weights file: `<base>.safetensors`, else the fp16 variant. */
static int open_weights(sd_model_files *m, const char *dir, const char *base,
                        sd_safetensors **out) {
  char path[4096], name[256];
  snprintf(name, sizeof name, "%s.safetensors", base);
  SD_TRY(join(path, sizeof path, dir, name));
  if (!is_file(path)) {
    snprintf(name, sizeof name, "%s.fp16.safetensors", base);
    SD_TRY(join(path, sizeof path, dir, name));
  }
  if (!is_file(path)) {
    snprintf(name, sizeof name, "%s.bin", base);
    SD_TRY(join(path, sizeof path, dir, name));
    return SD_ERROR("%s: no %s.safetensors or %s.fp16.safetensors%s", dir, base, base,
                    is_file(path) ? " (PyTorch .bin weights are not read; convert them to "
                                    "safetensors)"
                                  : "");
  }
  return open_file(m, path, out);
}

/* model_index.json must name the components sdbatch implements. */
static int check_model_index(const char *dir) {
  char path[4096];
  SD_TRY(join(path, sizeof path, dir, "model_index.json"));
  cJSON *root;
  SD_TRY(sd_json_read_file(path, &root));
  static const struct {
    const char *component, *class1, *class2;
  } expected[] = {
      {"unet", "UNet2DConditionModel", NULL},
      {"vae", "AutoencoderKL", NULL},
      {"text_encoder", "CLIPTextModel", "CLIPTextModelWithProjection"},
      {"tokenizer", "CLIPTokenizer", "CLIPTokenizerFast"},
  };
  int rc = 0;
  for (size_t i = 0; i < sizeof expected / sizeof expected[0] && rc == 0; i++) {
    const cJSON *entry = cJSON_GetObjectItemCaseSensitive(root, expected[i].component);
    const cJSON *cls = cJSON_IsArray(entry) ? cJSON_GetArrayItem(entry, 1) : NULL;
    if (!cJSON_IsString(cls))
      rc = SD_ERROR("%s: component '%s' missing (expected [library, class])", path,
                    expected[i].component);
    else if (strcmp(cls->valuestring, expected[i].class1) != 0 &&
             (!expected[i].class2 || strcmp(cls->valuestring, expected[i].class2) != 0))
      rc = SD_ERROR("%s: %s class '%s' is not supported (%s)", path, expected[i].component,
                    cls->valuestring, expected[i].class1);
  }
  const cJSON *second = cJSON_GetObjectItemCaseSensitive(root, "text_encoder_2");
  const cJSON *second_class = cJSON_IsArray(second) ? cJSON_GetArrayItem(second, 1) : NULL;
  if (rc == 0 && second_class && !cJSON_IsNull(second_class))
    rc = SD_ERROR("%s: pipelines with a second text encoder (SDXL) are not supported", path);
  cJSON_Delete(root);
  return rc;
}

/* Diffusers before 0.14 named the VAE attention query/key/value/proj_attn. */
static const char *modern_vae_name(const char *name, char *buf, size_t size) {
  static const struct {
    const char *from, *to;
  } renames[] = {
      {".query.", ".to_q."},
      {".key.", ".to_k."},
      {".value.", ".to_v."},
      {".proj_attn.", ".to_out.0."},
  };
  const char *attention = strstr(name, "mid_block.attentions.0.");
  if (!attention)
    return name;
  for (size_t i = 0; i < sizeof renames / sizeof renames[0]; i++) {
    const char *at = strstr(attention, renames[i].from);
    if (at) {
      snprintf(buf, size, "%.*s%s%s", (int)(at - name), name, renames[i].to,
               at + strlen(renames[i].from));
      return buf;
    }
  }
  return name;
}

typedef enum component { COMPONENT_TEXT, COMPONENT_UNET, COMPONENT_VAE } component;

/* Every tensor of a component's weights file into its map, under today's names. */
static int put_all(sd_tensor_map *map, const sd_safetensors *file, component part) {
  char buf[512];
  for (size_t k = 0; k < sd_safetensors_count(file); k++) {
    const sd_st_tensor *t = sd_safetensors_at(file, k);
    const char *name = t->name;
    if (part == COMPONENT_VAE) {
      name = modern_vae_name(name, buf, sizeof buf);
    } else if (part == COMPONENT_TEXT) {
      /* transformers >= 5 saves CLIPTextModel without the text_model. prefix */
      if (strncmp(name, "text_model.", 11) != 0 && strlen(name) + 12 < sizeof buf) {
        snprintf(buf, sizeof buf, "text_model.%s", name);
        name = buf;
      }
      if (strcmp(name, "text_model.embeddings.position_ids") == 0)
        continue;
    }
    SD_TRY(sd_tensor_map_put(map, name, t->dtype, t->ndim, t->shape, t->data));
  }
  return 0;
}

/* The UNet takes the latents and an image and embeds class labels (sd_upscaler_config). */
static bool is_upscaler(const sd_model_files *m) {
  return m->unet.in_channels == m->vae.latent_channels + m->vae.in_channels &&
         m->unet.num_class_embeds > 0;
}

/* max_noise_level must be a timestep of the low-res scheduler and a class of the UNet. */
static int max_noise_level_limit(const sd_model_files *m) {
  int steps = m->upscaler.low_res.num_train_timesteps, classes = m->unet.num_class_embeds;
  return (steps < classes ? steps : classes) - 1;
}

/* A folder's low_res_scheduler/ config and model_index.json's max_noise_level. */
static int open_folder_upscaler(sd_model_files *m, const char *dir) {
  sd_upscaler_config *u = &m->upscaler;
  char path[4096];
  SD_TRY(join(path, sizeof path, dir, "low_res_scheduler/scheduler_config.json"));
  if (sd_scheduler_config_read(path, &u->low_res) < 0 ||
      sd_scheduler_config_check(&u->low_res, path) < 0)
    return sd_error_context("the x4 upscaler's low_res_scheduler");
  u->max_noise_level = 350; /* StableDiffusionUpscalePipeline's default */
  SD_TRY(join(path, sizeof path, dir, "model_index.json"));
  cJSON *index = NULL;
  SD_TRY(sd_json_read_file(path, &index));
  const cJSON *level = cJSON_GetObjectItemCaseSensitive(index, "max_noise_level");
  int rc = 0, limit = max_noise_level_limit(m);
  if (level && !cJSON_IsNull(level)) {
    if (!cJSON_IsNumber(level) || level->valuedouble != (int)level->valuedouble ||
        level->valuedouble < 0 || level->valuedouble > limit)
      rc = SD_ERROR("%s: max_noise_level must be a whole number from 0 to %d (the low-res "
                    "scheduler's timesteps and the UNet's class embeddings)",
                    path, limit);
    else
      u->max_noise_level = (int)level->valuedouble;
  }
  cJSON_Delete(index);
  u->present = rc == 0;
  return rc;
}

static int open_folder(sd_model_files *m, const char *dir) {
  char sub[4096], path[4096];
  sd_safetensors *file;
  SD_TRY(check_model_index(dir));

  SD_TRY(join(sub, sizeof sub, dir, "text_encoder"));
  SD_TRY(join(path, sizeof path, sub, "config.json"));
  SD_TRY(sd_clip_config_read(path, &m->clip));
  SD_TRY(open_weights(m, sub, "model", &file));
  SD_TRY(put_all(m->clip_tensors, file, COMPONENT_TEXT));

  SD_TRY(join(sub, sizeof sub, dir, "unet"));
  SD_TRY(join(path, sizeof path, sub, "config.json"));
  SD_TRY(sd_unet_config_read(path, &m->unet));
  SD_TRY(open_weights(m, sub, "diffusion_pytorch_model", &file));
  SD_TRY(put_all(m->unet_tensors, file, COMPONENT_UNET));

  SD_TRY(join(sub, sizeof sub, dir, "vae"));
  SD_TRY(join(path, sizeof path, sub, "config.json"));
  SD_TRY(sd_vae_config_read(path, &m->vae));
  SD_TRY(open_weights(m, sub, "diffusion_pytorch_model", &file));
  SD_TRY(put_all(m->vae_tensors, file, COMPONENT_VAE));

  SD_TRY(join(path, sizeof path, dir, "scheduler/scheduler_config.json"));
  SD_TRY(sd_scheduler_config_read(path, &m->scheduler));
  SD_TRY(join(sub, sizeof sub, dir, "tokenizer"));
  SD_TRY(sd_tokenizer_files_read(sub, m->clip.max_position_embeddings, &m->tokenizer));

  m->family = m->clip.hidden_act == SD_ACT_GELU ? SD_FAMILY_SD2 : SD_FAMILY_SD1;
  return is_upscaler(m) ? open_folder_upscaler(m, dir) : 0;
}

/* x4-upscaling.yaml's values, for upscaler single files without a YAML. */
#define X4_BETA_START      0.0001f /* linear_start, also of the low-res noise schedule */
#define X4_BETA_END        0.02f   /* linear_end, likewise */
#define X4_SCALE_FACTOR    0.08333f
#define X4_IMAGE_SIZE      128
#define X4_MAX_NOISE_LEVEL 350

static void single_file_scheduler(sd_model_files *m, const sd_ldm_yaml *y,
                                  sd_prediction_type prediction, bool upscaler) {
  sd_scheduler_config *s = &m->scheduler;
  sd_scheduler_config_defaults(s);
  snprintf(s->class_name, sizeof s->class_name, "%s",
           m->family == SD_FAMILY_SD2 ? "DDIMScheduler" : "PNDMScheduler");
  s->num_train_timesteps = y && y->timesteps > 0 ? y->timesteps : 1000;
  s->beta_start = y && y->linear_start == y->linear_start ? y->linear_start
                  : upscaler                              ? X4_BETA_START
                                                          : 0.00085f;
  s->beta_end = y && y->linear_end == y->linear_end ? y->linear_end
                : upscaler                          ? X4_BETA_END
                                                    : 0.012f;
  s->beta_schedule = SD_BETA_SCALED_LINEAR;
  s->prediction_type = prediction;
  s->timestep_spacing = SD_SPACING_LEADING;
  s->steps_offset = 1;
  s->set_alpha_to_one = false;
  s->clip_sample = false;
  s->skip_prk_steps = true;
  s->fields_set = SD_SCHED_FIELD_NUM_TRAIN_TIMESTEPS | SD_SCHED_FIELD_BETA_START |
                  SD_SCHED_FIELD_BETA_END | SD_SCHED_FIELD_BETA_SCHEDULE |
                  SD_SCHED_FIELD_PREDICTION_TYPE | SD_SCHED_FIELD_TIMESTEP_SPACING |
                  SD_SCHED_FIELD_STEPS_OFFSET | SD_SCHED_FIELD_SET_ALPHA_TO_ONE |
                  SD_SCHED_FIELD_CLIP_SAMPLE | SD_SCHED_FIELD_SKIP_PRK_STEPS;
}

/* The upscaler's low-res scheduler as diffusers' from_single_file builds it (DDPM, clip_sample,
 * epsilon) with the YAML's noise_schedule_config betas and steps (LDM's "linear" schedule is
 * diffusers' scaled_linear), and its max_noise_level; x4-upscaling.yaml's values otherwise. */
static int single_file_upscaler(sd_model_files *m, const sd_ldm_yaml *y, const char *path) {
  sd_upscaler_config *u = &m->upscaler;
  sd_scheduler_config *s = &u->low_res;
  sd_scheduler_config_defaults(s);
  snprintf(s->class_name, sizeof s->class_name, "DDPMScheduler");
  s->num_train_timesteps = y && y->low_scale.timesteps > 0 ? y->low_scale.timesteps : 1000;
  s->beta_start = y && y->low_scale.linear_start == y->low_scale.linear_start
                      ? y->low_scale.linear_start
                      : X4_BETA_START;
  s->beta_end = y && y->low_scale.linear_end == y->low_scale.linear_end ? y->low_scale.linear_end
                                                                        : X4_BETA_END;
  s->beta_schedule = SD_BETA_SCALED_LINEAR;
  s->prediction_type = SD_PREDICT_EPSILON;
  s->clip_sample = true;
  s->fields_set = SD_SCHED_FIELD_NUM_TRAIN_TIMESTEPS | SD_SCHED_FIELD_BETA_START |
                  SD_SCHED_FIELD_BETA_END | SD_SCHED_FIELD_BETA_SCHEDULE |
                  SD_SCHED_FIELD_PREDICTION_TYPE | SD_SCHED_FIELD_CLIP_SAMPLE;
  if (sd_scheduler_config_check(s, path) < 0)
    return sd_error_context("the x4 upscaler's low-res noise schedule");
  u->max_noise_level =
      y && y->low_scale.max_noise_level >= 0 ? y->low_scale.max_noise_level : X4_MAX_NOISE_LEVEL;
  int limit = max_noise_level_limit(m);
  if (u->max_noise_level > limit)
    return SD_ERROR("%s: max_noise_level %d: must be at most %d (the low-res schedule's timesteps "
                    "and the UNet's class embeddings)",
                    y && y->low_scale.max_noise_level >= 0 ? y->path : path, u->max_noise_level,
                    limit);
  u->present = true;
  return 0;
}

static int open_single(sd_model_files *m, const char *path, const char *config_yaml,
                       const char *bpe_gz) {
  sd_safetensors *file;
  SD_TRY(open_file(m, path, &file));
  if (sd_safetensors_find(file, SD_LDM_OPENCLIP_PREFIX "token_embedding.weight"))
    m->family = SD_FAMILY_SD2;
  else if (sd_safetensors_find(file,
                               SD_LDM_CLIP_PREFIX "text_model.embeddings.token_embedding.weight") ||
           sd_safetensors_find(file, SD_LDM_CLIP_PREFIX "embeddings.token_embedding.weight"))
    m->family = SD_FAMILY_SD1;
  else
    return SD_ERROR("%s: no text encoder keys (%s... for SD 1.x, %s... for SD 2.x); other "
                    "layouts (SDXL's conditioner.embedders., diffusers-named files) are not "
                    "supported as single files",
                    path, SD_LDM_CLIP_PREFIX, SD_LDM_OPENCLIP_PREFIX);

  sd_ldm_yaml yaml_storage, *yaml = NULL;
  if (config_yaml) {
    SD_TRY(sd_ldm_yaml_read(config_yaml, &yaml_storage));
    yaml = &yaml_storage;
  }
  SD_TRY(sd_ldm_clip(file, yaml, m->family, &m->clip, m->clip_tensors));
  SD_TRY(sd_clip_config_check(&m->clip, path));
  SD_TRY(sd_ldm_unet(file, yaml, m->family, &m->unet, m->unet_tensors));
  SD_TRY(sd_ldm_vae(file, yaml, &m->vae, m->vae_tensors));
  bool upscaler = is_upscaler(m);
  sd_prediction_type prediction = yaml && yaml->parameterization >= 0
                                      ? (sd_prediction_type)yaml->parameterization
                                  : upscaler ? SD_PREDICT_V
                                             : SD_PREDICT_EPSILON;
  /* SD 2.x 768-v: upcast attention, 96 latents (the upscaler has neither) */
  bool v_model = m->family == SD_FAMILY_SD2 && prediction == SD_PREDICT_V && !upscaler;
  m->unet.upcast_attention = v_model;
  m->unet.sample_size = yaml && yaml->image_size > 0 ? yaml->image_size
                        : upscaler                   ? X4_IMAGE_SIZE
                        : v_model                    ? 96
                                                     : 64;
  SD_TRY(sd_unet_config_check(&m->unet, path));
  m->vae.sample_size = m->unet.sample_size << (m->vae.num_levels - 1);
  m->vae.scaling_factor = yaml && yaml->scale_factor == yaml->scale_factor ? yaml->scale_factor
                          : upscaler                                       ? X4_SCALE_FACTOR
                                                                           : 0.18215f;
  SD_TRY(sd_vae_config_check(&m->vae, path));
  single_file_scheduler(m, yaml, prediction, upscaler);
  SD_TRY(sd_scheduler_config_check(&m->scheduler, path));
  if (upscaler)
    SD_TRY(single_file_upscaler(m, yaml, path));

  sd_tokenizer_files *tok = &m->tokenizer;
  memset(tok, 0, sizeof *tok);
  if (bpe_gz) {
    if (access(bpe_gz, R_OK) != 0)
      return SD_ERROR("%s: cannot read the CLIP BPE file: %s", bpe_gz, strerror(errno));
    if (strlen(bpe_gz) >= sizeof tok->bpe_gz)
      return SD_ERROR("%s: path too long", bpe_gz);
    snprintf(tok->bpe_gz, sizeof tok->bpe_gz, "%s", bpe_gz);
  }
  snprintf(tok->pad_token, sizeof tok->pad_token, "%s",
           m->family == SD_FAMILY_SD2 ? "!" : "<|endoftext|>");
  tok->model_max_length = m->clip.max_position_embeddings;
  return 0;
}

/* The components must fit together whichever layout they came from. */
static int check_components(const sd_model_files *m) {
  if (m->unet.cross_attention_dim != m->clip.hidden_size)
    return SD_ERROR("the UNet's cross_attention_dim %d differs from the text encoder's "
                    "hidden_size %d",
                    m->unet.cross_attention_dim, m->clip.hidden_size);
  if (m->unet.out_channels != m->vae.latent_channels)
    return SD_ERROR("the UNet's out_channels %d differ from the VAE's latent_channels %d",
                    m->unet.out_channels, m->vae.latent_channels);
  if (m->unet.in_channels < m->vae.latent_channels)
    return SD_ERROR("the UNet's in_channels %d are fewer than the VAE's latent_channels %d",
                    m->unet.in_channels, m->vae.latent_channels);
  return 0;
}

int sd_model_files_open(const char *path, const char *config_yaml, const char *bpe_gz_fallback,
                        sd_model_files **out) {
  *out = NULL;
  sd_model_files *m = calloc(1, sizeof *m);
  model_internal *internal = calloc(1, sizeof *internal);
  if (m)
    m->internal = internal;
  if (!m || !internal) {
    sd_model_files_close(m);
    return SD_ERROR("%s: out of memory", path);
  }
  int rc = -1;
  struct stat st;
  if (strlen(path) >= sizeof m->path) {
    SD_ERROR("%s: path too long", path);
    goto out_done;
  }
  snprintf(m->path, sizeof m->path, "%s", path);
  m->clip_tensors = sd_tensor_map_create();
  m->unet_tensors = sd_tensor_map_create();
  m->vae_tensors = sd_tensor_map_create();
  if (!m->clip_tensors || !m->unet_tensors || !m->vae_tensors)
    goto out_done;
  if (stat(path, &st) != 0) {
    SD_ERROR("%s: %s", path, strerror(errno));
    goto out_done;
  }
  size_t len = strlen(path);
  if (S_ISDIR(st.st_mode)) {
    if (config_yaml) {
      SD_ERROR("%s: a YAML config (%s) applies to single-file checkpoints only, not to "
               "diffusers folders",
               path, config_yaml);
      goto out_done;
    }
    rc = open_folder(m, path);
  } else if (len > 12 && strcmp(path + len - 12, ".safetensors") == 0) {
    rc = open_single(m, path, config_yaml, bpe_gz_fallback);
  } else {
    SD_ERROR("%s: neither a diffusers folder nor a .safetensors checkpoint (pickle .ckpt files "
             "are not read; convert them to safetensors)",
             path);
    goto out_done;
  }
  if (rc == 0 && check_components(m) != 0) {
    sd_error_context("%s", path);
    rc = -1;
  }
out_done:
  if (rc != 0) {
    sd_model_files_close(m);
    return -1;
  }
  *out = m;
  return 0;
}
