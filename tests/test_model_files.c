/* Model loading: the tiny SD 1.x / 2.x fixtures as diffusers folders and as original single
 * files give equal configs and bit-identical tensors under every diffusers name; configs match
 * the fixtures' config.json values; bad configs, YAMLs and checkpoints give errors naming the
 * file and field; weights upload with exact fp16 -> fp32 values and checked shapes. Exported
 * single files (ldm_export.h) carry the original names of SD 1.5's and SD 2.1's key lists, equal
 * the fixtures make_fixtures.py converted with its own key maps, and read back to the folder's
 * tensors. */
#include "test_util.h"

#include "io/config_json.h"
#include "io/ldm_checkpoint.h"
#include "io/ldm_export.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/weights.h"

#include "error.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIXTURE(name) SD_TEST_FIXTURES "/" name

/* A scratch folder for this run's files. */
static char scratch[256];

static const char *scratch_path(const char *name) {
  static char paths[8][512];
  static int next;
  char *p = paths[next++ % 8];
  snprintf(p, 512, "%s/%s", scratch, name);
  return p;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL, "cannot write %s", path);
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

static int error_has(const char *a, const char *b) {
  const char *msg = sd_error_message();
  return strstr(msg, a) != NULL && (!b || strstr(msg, b) != NULL);
}

/* Expects rc == -1 and an error message containing a and b (b may be NULL). */
#define CHECK_ERROR(rc, a, b)                                                                      \
  CHECK((rc) == -1 && error_has((a), (b)), "expected an error with '%s' / '%s', got rc %d: %s",    \
        (a), (b) ? (b) : "", (rc), sd_error_message())

/* Configs ------------------------------------------------------------------------------------- */

static void compare_clip(const char *what, const sd_clip_config *a, const sd_clip_config *b) {
  CHECK(a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
            a->intermediate_size == b->intermediate_size &&
            a->num_hidden_layers == b->num_hidden_layers &&
            a->num_attention_heads == b->num_attention_heads &&
            a->max_position_embeddings == b->max_position_embeddings &&
            a->hidden_act == b->hidden_act && a->layer_norm_eps == b->layer_norm_eps &&
            a->bos_token_id == b->bos_token_id && a->eos_token_id == b->eos_token_id,
        "%s: text encoder configs differ", what);
}

static void compare_unet(const char *what, const sd_unet_config *a, const sd_unet_config *b) {
  int same = a->in_channels == b->in_channels && a->out_channels == b->out_channels &&
             a->num_levels == b->num_levels && a->layers_per_block == b->layers_per_block &&
             a->cross_attention_dim == b->cross_attention_dim &&
             a->norm_num_groups == b->norm_num_groups && a->norm_eps == b->norm_eps &&
             a->use_linear_projection == b->use_linear_projection &&
             a->upcast_attention == b->upcast_attention &&
             a->flip_sin_to_cos == b->flip_sin_to_cos && a->freq_shift == b->freq_shift &&
             a->sample_size == b->sample_size && a->num_class_embeds == b->num_class_embeds;
  for (int i = 0; same && i < a->num_levels; i++)
    same = a->block_out_channels[i] == b->block_out_channels[i] &&
           a->down_block_has_attention[i] == b->down_block_has_attention[i] &&
           a->up_block_has_attention[i] == b->up_block_has_attention[i] &&
           a->transformer_layers_per_block[i] == b->transformer_layers_per_block[i] &&
           a->num_attention_heads[i] == b->num_attention_heads[i] &&
           a->only_cross_attention[i] == b->only_cross_attention[i];
  CHECK(same, "%s: UNet configs differ", what);
}

static void compare_vae(const char *what, const sd_vae_config *a, const sd_vae_config *b) {
  int same = a->in_channels == b->in_channels && a->out_channels == b->out_channels &&
             a->latent_channels == b->latent_channels && a->num_levels == b->num_levels &&
             a->layers_per_block == b->layers_per_block &&
             a->norm_num_groups == b->norm_num_groups && a->scaling_factor == b->scaling_factor &&
             a->sample_size == b->sample_size &&
             a->mid_block_add_attention == b->mid_block_add_attention;
  for (int i = 0; same && i < a->num_levels; i++)
    same = a->block_out_channels[i] == b->block_out_channels[i];
  CHECK(same, "%s: VAE configs differ", what);
}

static void compare_scheduler(const char *what, const sd_scheduler_config *a,
                              const sd_scheduler_config *b) {
  CHECK(strcmp(a->class_name, b->class_name) == 0 &&
            a->num_train_timesteps == b->num_train_timesteps && a->beta_start == b->beta_start &&
            a->beta_end == b->beta_end && a->beta_schedule == b->beta_schedule &&
            a->prediction_type == b->prediction_type &&
            a->timestep_spacing == b->timestep_spacing && a->steps_offset == b->steps_offset &&
            a->set_alpha_to_one == b->set_alpha_to_one && a->clip_sample == b->clip_sample &&
            a->skip_prk_steps == b->skip_prk_steps,
        "%s: scheduler configs differ (%s vs %s)", what, a->class_name, b->class_name);
}

/* The fixture folders' config.json values (tests/reference/make_fixtures.py). */
static void check_folder_values(const sd_model_files *m, int sd2) {
  const char *what = sd2 ? "tiny-sd2" : "tiny-sd1";
  CHECK(m->family == (sd2 ? SD_FAMILY_SD2 : SD_FAMILY_SD1), "%s: family %d", what, m->family);
  const sd_clip_config *c = &m->clip;
  CHECK(c->vocab_size == 49408 && c->hidden_size == 32 && c->intermediate_size == 64 &&
            c->num_hidden_layers == 2 && c->num_attention_heads == 4 &&
            c->max_position_embeddings == 77 &&
            c->hidden_act == (sd2 ? SD_ACT_GELU : SD_ACT_QUICK_GELU) &&
            c->layer_norm_eps == 1e-5f && c->bos_token_id == 49406 && c->eos_token_id == 49407,
        "%s: text encoder config", what);
  const sd_unet_config *u = &m->unet;
  static const int heads_sd1[3] = {4, 4, 4}, heads_sd2[3] = {2, 4, 4};
  const int *heads = sd2 ? heads_sd2 : heads_sd1;
  CHECK(u->in_channels == 4 && u->out_channels == 4 && u->num_levels == 3 &&
            u->block_out_channels[0] == 32 && u->block_out_channels[1] == 64 &&
            u->block_out_channels[2] == 64 && u->down_block_has_attention[0] &&
            u->down_block_has_attention[1] && !u->down_block_has_attention[2] &&
            !u->up_block_has_attention[0] && u->up_block_has_attention[1] &&
            u->up_block_has_attention[2] && u->layers_per_block == 2 &&
            u->transformer_layers_per_block[0] == 1 && u->transformer_layers_per_block[2] == 1 &&
            u->num_attention_heads[0] == heads[0] && u->num_attention_heads[1] == heads[1] &&
            u->num_attention_heads[2] == heads[2] && u->cross_attention_dim == 32 &&
            u->norm_num_groups == 32 && u->norm_eps == 1e-5f && u->use_linear_projection == sd2 &&
            u->upcast_attention == sd2 && u->flip_sin_to_cos && u->freq_shift == 0.0f &&
            u->sample_size == 16,
        "%s: UNet config", what);
  const sd_vae_config *v = &m->vae;
  CHECK(v->in_channels == 3 && v->out_channels == 3 && v->latent_channels == 4 &&
            v->num_levels == 4 && v->block_out_channels[0] == 32 &&
            v->block_out_channels[1] == 32 && v->block_out_channels[2] == 64 &&
            v->block_out_channels[3] == 64 && v->layers_per_block == 1 &&
            v->norm_num_groups == 32 && v->scaling_factor == 0.18215f && v->sample_size == 128 &&
            v->mid_block_add_attention,
        "%s: VAE config", what);
  const sd_scheduler_config *s = &m->scheduler;
  CHECK(strcmp(s->class_name, sd2 ? "DDIMScheduler" : "PNDMScheduler") == 0 &&
            s->num_train_timesteps == 1000 && s->beta_start == 0.00085f && s->beta_end == 0.012f &&
            s->beta_schedule == SD_BETA_SCALED_LINEAR &&
            s->prediction_type == (sd2 ? SD_PREDICT_V : SD_PREDICT_EPSILON) &&
            s->steps_offset == 1 && !s->set_alpha_to_one && !s->clip_sample && s->skip_prk_steps,
        "%s: scheduler config", what);
  /* the PNDM config states no prediction_type or timestep_spacing, the DDIM one both */
  unsigned stated = SD_SCHED_FIELD_PREDICTION_TYPE | SD_SCHED_FIELD_TIMESTEP_SPACING;
  CHECK((s->fields_set & stated) == (sd2 ? stated : 0u) &&
            (s->fields_set & SD_SCHED_FIELD_CLIP_SAMPLE) &&
            !(s->fields_set & SD_SCHED_FIELD_USE_KARRAS_SIGMAS),
        "%s: scheduler fields_set 0x%x", what, s->fields_set);
  const sd_tokenizer_files *t = &m->tokenizer;
  CHECK(strstr(t->vocab_json, "tokenizer/vocab.json") && strstr(t->merges_txt, "merges.txt") &&
            !t->tokenizer_json[0] && !t->bpe_gz[0] &&
            strcmp(t->pad_token, sd2 ? "!" : "<|endoftext|>") == 0 && t->model_max_length == 77,
        "%s: tokenizer files (pad '%s')", what, t->pad_token);
}

/* Tensors ------------------------------------------------------------------------------------- */

/* Every tensor of want is in got with the same dtype, shape and bytes, and nothing else is. */
static void compare_maps(const char *what, const sd_tensor_map *got, const sd_tensor_map *want) {
  size_t n = sd_tensor_map_count(want), bad = 0;
  for (size_t i = 0; i < n; i++) {
    const sd_st_tensor *w = sd_tensor_map_at(want, i);
    const sd_st_tensor *g = sd_tensor_map_get(got, w->name);
    int same = g && g->dtype == w->dtype && g->ndim == w->ndim && g->bytes == w->bytes;
    for (int d = 0; same && d < w->ndim; d++)
      same = g->shape[d] == w->shape[d];
    same = same && memcmp(g->data, w->data, w->bytes) == 0;
    if (!same && bad++ < 5)
      fprintf(stderr, "%s: tensor '%s' %s\n", what, w->name, g ? "differs" : "missing");
  }
  CHECK(bad == 0, "%s: %zu of %zu tensors missing or different", what, bad, n);
  CHECK(sd_tensor_map_count(got) == n, "%s: %zu tensors, the folder has %zu", what,
        sd_tensor_map_count(got), n);
}

/* A YAML for a tiny single file: the fixture's sizes plus what shapes cannot tell. */
static const char *write_tiny_yaml(int sd2, const char *extra_text_params) {
  char text[2048];
  snprintf(text, sizeof text,
           "model:\n"
           "  params:\n"
           "    parameterization: \"%s\"\n"
           "    image_size: 16\n"
           "    scale_factor: 0.18215\n"
           "    unet_config:\n"
           "      params:\n"
           "        model_channels: 32\n"
           "        channel_mult: [1, 2, 2]\n"
           "        attention_resolutions: [1, 2]\n"
           "        num_res_blocks: 2\n"
           "        %s\n"
           "        context_dim: 32\n"
           "        use_linear_in_transformer: %s\n"
           "    first_stage_config:\n"
           "      params:\n"
           "        ddconfig:\n"
           "          ch: 32\n"
           "          ch_mult: [1, 1, 2, 2]\n"
           "          z_channels: 4\n"
           "          num_res_blocks: 1\n"
           "    cond_stage_config:\n"
           "      params:\n"
           "%s",
           sd2 ? "v" : "eps", sd2 ? "num_head_channels: 16" : "num_heads: 4",
           sd2 ? "True" : "False", extra_text_params);
  const char *path = scratch_path(sd2 ? "tiny-sd2.yaml" : "tiny-sd1.yaml");
  write_text(path, text);
  return path;
}

static void test_layouts_agree(int sd2) {
  const char *what = sd2 ? "tiny-sd2" : "tiny-sd1";
  const char *bpe = SD_SOURCE_DIR "/third_party/clip/bpe_simple_vocab_16e6.txt.gz";
  sd_model_files *folder = NULL, *single = NULL;
  int rc =
      sd_model_files_open(sd2 ? FIXTURE("tiny-sd2") : FIXTURE("tiny-sd1"), NULL, NULL, &folder);
  CHECK(rc == 0, "%s folder: %s", what, sd_error_message());
  const char *yaml = write_tiny_yaml(sd2, "        num_attention_heads: 4\n");
  rc = sd_model_files_open(sd2 ? FIXTURE("tiny-sd2.safetensors") : FIXTURE("tiny-sd1.safetensors"),
                           yaml, bpe, &single);
  CHECK(rc == 0, "%s single file: %s", what, sd_error_message());
  if (folder && single) {
    check_folder_values(folder, sd2);
    CHECK(single->family == folder->family, "%s: families differ", what);
    compare_clip(what, &single->clip, &folder->clip);
    compare_unet(what, &single->unet, &folder->unet);
    compare_vae(what, &single->vae, &folder->vae);
    compare_scheduler(what, &single->scheduler, &folder->scheduler);
    CHECK(strcmp(single->tokenizer.pad_token, folder->tokenizer.pad_token) == 0 &&
              single->tokenizer.model_max_length == 77 &&
              strcmp(single->tokenizer.bpe_gz, bpe) == 0 && !single->tokenizer.vocab_json[0],
          "%s: single-file tokenizer (pad '%s')", what, single->tokenizer.pad_token);
    compare_maps(sd2 ? "tiny-sd2 clip" : "tiny-sd1 clip", single->clip_tensors,
                 folder->clip_tensors);
    compare_maps(sd2 ? "tiny-sd2 unet" : "tiny-sd1 unet", single->unet_tensors,
                 folder->unet_tensors);
    compare_maps(sd2 ? "tiny-sd2 vae" : "tiny-sd1 vae", single->vae_tensors, folder->vae_tensors);
    /* names the model code looks up */
    CHECK(sd_tensor_map_get(folder->clip_tensors, "text_model.final_layer_norm.weight") &&
              sd_tensor_map_get(folder->unet_tensors, "up_blocks.0.upsamplers.0.conv.weight") &&
              sd_tensor_map_get(folder->vae_tensors, "decoder.mid_block.attentions.0.to_q.weight"),
          "%s: expected diffusers names missing", what);
  }
  sd_model_files_close(folder);
  sd_model_files_close(single);
}

/* The single-file upscaler's VAE config is the folder's but for sample_size, which a single file
 * cannot state: UNet sample size x 4 (64) where the fixture folder's VAE (upscaler-vae) says 32. */
static void compare_upscaler_vae(const char *what, const sd_vae_config *single,
                                 const sd_vae_config *folder) {
  sd_vae_config want = *folder;
  want.sample_size = 64;
  compare_vae(what, single, &want);
}

static void compare_upscaler(const char *what, const sd_upscaler_config *a,
                             const sd_upscaler_config *b) {
  CHECK(a->present && b->present && a->max_noise_level == b->max_noise_level,
        "%s: upscaler present %d / %d, max_noise_level %d / %d", what, a->present, b->present,
        a->max_noise_level, b->max_noise_level);
  compare_scheduler(what, &a->low_res, &b->low_res);
}

/* The tiny x4 upscaler (tests/reference/make_upscale_single_file.py) as a single file with its
 * YAML gives the folder's configs (class embeddings, only_cross_attention), low-res scheduler and
 * max_noise_level, and the folder's tensors under every diffusers name (class_embedding.weight
 * from label_emb.weight). */
static void test_upscaler_layouts_agree(void) {
  const char *what = "tiny-upscaler";
  sd_model_files *folder = NULL, *single = NULL;
  int rc = sd_model_files_open(FIXTURE("tiny-upscaler"), NULL, NULL, &folder);
  CHECK(rc == 0, "%s folder: %s", what, sd_error_message());
  rc = sd_model_files_open(FIXTURE("tiny-upscaler.safetensors"), FIXTURE("tiny-upscaler.yaml"),
                           NULL, &single);
  CHECK(rc == 0, "%s single file: %s", what, sd_error_message());
  if (folder && single) {
    const sd_unet_config *u = &folder->unet;
    const sd_scheduler_config *low = &folder->upscaler.low_res;
    CHECK(u->in_channels == 7 && u->num_class_embeds == 1000 && u->only_cross_attention[0] &&
              !u->only_cross_attention[1] && u->num_attention_heads[0] == 4 &&
              folder->upscaler.max_noise_level == 350 &&
              strcmp(low->class_name, "DDPMScheduler") == 0 && low->beta_start == 0.0001f &&
              low->beta_end == 0.02f && low->beta_schedule == SD_BETA_SCALED_LINEAR &&
              low->num_train_timesteps == 1000 && low->clip_sample,
          "%s folder: config values", what);
    CHECK(single->family == SD_FAMILY_SD2 && folder->family == SD_FAMILY_SD2, "%s: families", what);
    compare_clip(what, &single->clip, &folder->clip);
    compare_unet(what, &single->unet, &folder->unet);
    compare_upscaler_vae(what, &single->vae, &folder->vae);
    compare_scheduler(what, &single->scheduler, &folder->scheduler);
    compare_upscaler(what, &single->upscaler, &folder->upscaler);
    compare_maps("tiny-upscaler clip", single->clip_tensors, folder->clip_tensors);
    compare_maps("tiny-upscaler unet", single->unet_tensors, folder->unet_tensors);
    compare_maps("tiny-upscaler vae", single->vae_tensors, folder->vae_tensors);
    CHECK(sd_tensor_map_get(single->unet_tensors, "class_embedding.weight") != NULL,
          "%s: class_embedding.weight missing", what);
  }
  sd_model_files_close(folder);
  sd_model_files_close(single);
}

/* The fixture YAML with one piece of text replaced, in the scratch folder. */
static const char *upscaler_yaml_variant(const char *name, const char *from, const char *to) {
  FILE *f = fopen(FIXTURE("tiny-upscaler.yaml"), "rb");
  static char text[8192], out[8192];
  size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
  if (f)
    fclose(f);
  text[len] = '\0';
  const char *at = strstr(text, from);
  CHECK(at != NULL, "tiny-upscaler.yaml has no '%s'", from);
  if (!at)
    at = text + len;
  snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, *at ? at + strlen(from) : "");
  const char *path = scratch_path(name);
  write_text(path, out);
  return path;
}

/* An upscaler single file with a YAML stating only what the tiny shapes cannot tell and LDM's
 * files never state (text heads, VAE groups) takes x4-upscaling.yaml's values: v-prediction,
 * 8 heads, betas 0.0001..0.02, scale factor 0.08333, 128 latents, no upcast, the low-res DDPM
 * config, max_noise_level 350; level 0 (as wide as the context) gets only_cross_attention false
 * without disable_self_attentions. YAMLs disagreeing with the file are refused by name. */
static void test_upscaler_single_file_inference(void) {
  const char *ckpt = FIXTURE("tiny-upscaler.safetensors");
  const char *minimal = scratch_path("upscaler-minimal.yaml");
  write_text(minimal, "model:\n"
                      "  params:\n"
                      "    first_stage_config:\n"
                      "      params:\n"
                      "        ddconfig:\n"
                      "          norm_num_groups: 8\n"
                      "    cond_stage_config:\n"
                      "      params:\n"
                      "        num_attention_heads: 4\n");
  sd_model_files *m = NULL, *folder = NULL;
  int rc = sd_model_files_open(ckpt, minimal, NULL, &m);
  CHECK(rc == 0, "upscaler without YAML values: %s", sd_error_message());
  if (rc == 0) {
    const sd_unet_config *u = &m->unet;
    const sd_scheduler_config *s = &m->scheduler, *low = &m->upscaler.low_res;
    CHECK(u->num_class_embeds == 1000 && !u->only_cross_attention[0] &&
              !u->only_cross_attention[1] && u->num_attention_heads[0] == 8 &&
              u->num_attention_heads[1] == 8 && !u->upcast_attention && u->sample_size == 128 &&
              m->vae.scaling_factor == 0.08333f && m->vae.norm_num_groups == 8,
          "upscaler defaults: UNet / VAE config (heads %d %d, sample %d)",
          u->num_attention_heads[0], u->num_attention_heads[1], u->sample_size);
    CHECK(strcmp(s->class_name, "DDIMScheduler") == 0 && s->prediction_type == SD_PREDICT_V &&
              s->beta_start == 0.0001f && s->beta_end == 0.02f &&
              s->beta_schedule == SD_BETA_SCALED_LINEAR,
          "upscaler defaults: scheduler %s", s->class_name);
    CHECK(m->upscaler.present && m->upscaler.max_noise_level == 350 &&
              strcmp(low->class_name, "DDPMScheduler") == 0,
          "upscaler defaults: low-res scheduler");
    rc = sd_model_files_open(FIXTURE("tiny-upscaler"), NULL, NULL, &folder);
    CHECK(rc == 0, "tiny-upscaler folder: %s", sd_error_message());
    if (rc == 0)
      compare_scheduler("upscaler defaults: low-res scheduler", low, &folder->upscaler.low_res);
  }
  sd_model_files_close(m);
  sd_model_files_close(folder);

  /* the YAML's low_scale_config is read */
  m = NULL;
  rc = sd_model_files_open(
      ckpt,
      upscaler_yaml_variant("low-scale.yaml",
                            "          linear_end: 0.02\n        max_noise_level: 350",
                            "          linear_end: 0.03\n          timesteps: 500\n"
                            "        max_noise_level: 200"),
      NULL, &m);
  CHECK(rc == 0 && m->upscaler.max_noise_level == 200 && m->upscaler.low_res.beta_end == 0.03f &&
            m->upscaler.low_res.num_train_timesteps == 500,
        "low_scale_config read: %s", rc == 0 ? "wrong values" : sd_error_message());
  sd_model_files_close(m);

  static const struct {
    const char *name, *from, *to, *want;
  } bad[] = {
      {"classes.yaml", "num_classes: 1000", "num_classes: 10", "num_classes = 10"},
      {"mid.yaml", "disable_middle_self_attn: False", "disable_middle_self_attn: True",
       "disable_middle_self_attn"},
      {"levels.yaml", "[True, False]", "[True, False, False]", "disable_self_attentions"},
      {"noise.yaml", "max_noise_level: 350", "max_noise_level: 1000", "at most 999"},
      {"cosine.yaml", "noise_schedule_config: # image space\n",
       "noise_schedule_config: # image space\n          beta_schedule: cosine\n", "cosine"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    m = NULL;
    rc = sd_model_files_open(ckpt, upscaler_yaml_variant(bad[i].name, bad[i].from, bad[i].to), NULL,
                             &m);
    CHECK_ERROR(rc, bad[i].name, bad[i].want);
    sd_model_files_close(m);
  }
}

/* Exported single files ------------------------------------------------------------------------ */

/* The tiny models with a single-file fixture: sd1, sd2 (make_fixtures.py) and the x4 upscaler
 * (make_upscale_single_file.py, OpenCLIP text keys like sd2's). */
enum { TINY_SD1, TINY_SD2, TINY_UPSCALER };
static const char *const tiny_names[] = {"tiny-sd1", "tiny-sd2", "tiny-upscaler"};
static const char *const tiny_folders[] = {FIXTURE("tiny-sd1"), FIXTURE("tiny-sd2"),
                                           FIXTURE("tiny-upscaler")};
static const char *const tiny_single_files[] = {FIXTURE("tiny-sd1.safetensors"),
                                                FIXTURE("tiny-sd2.safetensors"),
                                                FIXTURE("tiny-upscaler.safetensors")};

/* The YAML a tiny single file is read with. */
static const char *tiny_yaml(int which) {
  if (which == TINY_UPSCALER)
    return FIXTURE("tiny-upscaler.yaml");
  return write_tiny_yaml(which == TINY_SD2, "        num_attention_heads: 4\n");
}

/* A fixture key the export leaves out: SD 2.x's OpenCLIP heads and extra last resblock (the
 * fixture has 2 layers + 1). */
static int fixture_extra(const char *name) {
  return strstr(name, "text_projection") || strstr(name, "logit_scale") ||
         strstr(name, ".resblocks.2.");
}

/* The tiny folder exported: every tensor equal (name, dtype, shape, bytes) to the single-file
 * fixture make_fixtures.py wrote with its own key maps (tests/reference/ldm_keys.py), nothing
 * more, nothing of the fixture's missing but its unused OpenCLIP parts; read back with the
 * single-file reader, the folder's tensors under every diffusers name. */
static void test_export_round_trip(int which) {
  char what[64], name[64];
  snprintf(what, sizeof what, "%s export", tiny_names[which]);
  snprintf(name, sizeof name, "export-%s.safetensors", tiny_names[which]);
  const char *path = scratch_path(name);
  bool open_clip = which != TINY_SD1;
  sd_model_files *folder = NULL, *back = NULL;
  sd_safetensors *got = NULL, *want = NULL;
  int rc = sd_model_files_open(tiny_folders[which], NULL, NULL, &folder);
  CHECK(rc == 0, "%s folder: %s", what, sd_error_message());
  if (rc == 0)
    rc = sd_ldm_export_checkpoint(folder, path);
  CHECK(rc == 0, "%s: %s", what, sd_error_message());
  if (rc == 0)
    rc = sd_safetensors_open(path, &got);
  if (rc == 0)
    rc = sd_safetensors_open(tiny_single_files[which], &want);
  CHECK(rc == 0, "%s: %s", what, sd_error_message());
  if (rc != 0)
    goto out;
  size_t bad = 0, matched = 0;
  for (size_t i = 0; i < sd_safetensors_count(want); i++) {
    const sd_st_tensor *w = sd_safetensors_at(want, i);
    const sd_st_tensor *g = sd_safetensors_find(got, w->name);
    if (!g && open_clip && fixture_extra(w->name))
      continue;
    int same = g && g->dtype == w->dtype && g->ndim == w->ndim && g->bytes == w->bytes;
    for (int d = 0; same && d < w->ndim; d++)
      same = g->shape[d] == w->shape[d];
    same = same && memcmp(g->data, w->data, w->bytes) == 0;
    matched += same;
    if (!same && bad++ < 5)
      fprintf(stderr, "%s: '%s' %s\n", what, w->name, g ? "differs" : "missing");
  }
  CHECK(bad == 0 && matched == sd_safetensors_count(got),
        "%s: %zu fixture tensors missing or different, %zu of %zu written matched", what, bad,
        matched, sd_safetensors_count(got));
  rc = sd_model_files_open(path, tiny_yaml(which),
                           SD_SOURCE_DIR "/third_party/clip/bpe_simple_vocab_16e6.txt.gz", &back);
  CHECK(rc == 0, "%s read back: %s", what, sd_error_message());
  if (rc == 0) {
    compare_clip(what, &back->clip, &folder->clip);
    compare_unet(what, &back->unet, &folder->unet);
    if (which == TINY_UPSCALER)
      compare_upscaler_vae(what, &back->vae, &folder->vae);
    else
      compare_vae(what, &back->vae, &folder->vae);
    compare_maps(what, back->clip_tensors, folder->clip_tensors);
    compare_maps(what, back->unet_tensors, folder->unet_tensors);
    compare_maps(what, back->vae_tensors, folder->vae_tensors);
  }
out:
  sd_safetensors_close(got);
  sd_safetensors_close(want);
  sd_model_files_close(back);
  sd_model_files_close(folder);
}

/* Full-size layouts ------------------------------------------------------------------------- */

/* A sparse safetensors file with the layout's names, dtypes and shapes (zero data); in_channels
 * > 0 replaces the UNet's input channels (an inpainting model's 9). */
static int write_sparse_checkpoint(const cJSON *ldm, const char *path, int in_channels) {
  cJSON *header = cJSON_CreateObject();
  uint64_t offset = 0;
  const cJSON *entry;
  cJSON_ArrayForEach(entry, ldm) {
    const char *dtype = cJSON_GetArrayItem(entry, 1)->valuestring;
    cJSON *shape = cJSON_GetArrayItem(entry, 2);
    if (in_channels > 0 && strcmp(cJSON_GetArrayItem(entry, 0)->valuestring,
                                  "model.diffusion_model.input_blocks.0.0.weight") == 0)
      cJSON_SetNumberValue(cJSON_GetArrayItem(shape, 1), in_channels);
    uint64_t bytes = strcmp(dtype, "F16") == 0 ? 2 : strcmp(dtype, "F32") == 0 ? 4 : 8;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, shape) bytes *= (uint64_t)dim->valuedouble;
    cJSON *t = cJSON_AddObjectToObject(header, cJSON_GetArrayItem(entry, 0)->valuestring);
    cJSON_AddStringToObject(t, "dtype", dtype);
    cJSON_AddItemToObject(t, "shape", cJSON_Duplicate(shape, 1));
    cJSON *offsets = cJSON_AddArrayToObject(t, "data_offsets");
    cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset));
    cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(offset + bytes)));
    offset += bytes;
  }
  char *text = cJSON_PrintUnformatted(header);
  cJSON_Delete(header);
  FILE *f = fopen(path, "wb");
  int ok = text && f;
  if (ok) {
    uint64_t len = strlen(text);
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
      le[i] = (unsigned char)(len >> (8 * i));
    ok = fwrite(le, 1, 8, f) == 8 && fwrite(text, 1, len, f) == len &&
         ftruncate(fileno(f), (off_t)(8 + len + offset)) == 0;
  }
  if (f)
    fclose(f);
  free(text);
  CHECK(ok, "cannot write %s", path);
  return ok ? 0 : -1;
}

/* Every (name, shape) of the layout's diffusers list is in map, and nothing else. */
static void compare_names(const char *what, const cJSON *list, const sd_tensor_map *map) {
  size_t n = 0, bad = 0;
  const cJSON *entry;
  cJSON_ArrayForEach(entry, list) {
    const char *name = cJSON_GetArrayItem(entry, 0)->valuestring;
    const cJSON *shape = cJSON_GetArrayItem(entry, 1);
    const sd_st_tensor *t = sd_tensor_map_get(map, name);
    int same = t && t->ndim == cJSON_GetArraySize(shape);
    for (int d = 0; same && d < t->ndim; d++)
      same = t->shape[d] == (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble;
    if (!same && bad++ < 5)
      fprintf(stderr, "%s: '%s' %s\n", what, name, t ? "has another shape" : "missing");
    n++;
  }
  CHECK(bad == 0, "%s: %zu of %zu diffusers tensors missing or mis-shaped", what, bad, n);
  CHECK(sd_tensor_map_count(map) == n, "%s: %zu tensors mapped, diffusers has %zu", what,
        sd_tensor_map_count(map), n);
}

/* Keys of a released checkpoint that an export leaves out: the training schedule's buffers, the
 * EMA decay, SD 1.x's position_ids buffer, and the OpenCLIP heads and last resblock SD 2.x does
 * not use. */
static int export_leaves_out(const char *name) {
  int component = strncmp(name, "model.diffusion_model.", 22) == 0 ||
                  strncmp(name, "first_stage_model.", 18) == 0 ||
                  strncmp(name, "cond_stage_model.", 17) == 0;
  return !component || strstr(name, "position_ids") || strstr(name, "text_projection") ||
         strstr(name, "logit_scale") || strstr(name, ".resblocks.23.");
}

/* The export of m (read from the layout's sparse file) names exactly the layout's original keys,
 * with their shapes and dtypes, but those export_leaves_out lists. */
static void compare_export_names(const char *what, const cJSON *ldm, const sd_model_files *m) {
  sd_ldm_export out = {0};
  int rc = sd_ldm_unet_export(&m->unet, m->unet_tensors, &out);
  if (rc == 0)
    rc = sd_ldm_vae_export(&m->vae, m->vae_tensors, &out);
  if (rc == 0)
    rc = sd_ldm_clip_export(m->family, &m->clip, m->clip_tensors, &out);
  CHECK(rc == 0, "%s export: %s", what, sd_error_message());
  size_t expected = 0, bad = 0;
  const cJSON *entry;
  cJSON_ArrayForEach(entry, ldm) {
    const char *name = cJSON_GetArrayItem(entry, 0)->valuestring;
    if (export_leaves_out(name))
      continue;
    expected++;
    const sd_st_tensor *t = NULL;
    for (size_t i = 0; i < out.count && !t; i++)
      if (strcmp(out.tensors[i].name, name) == 0)
        t = &out.tensors[i];
    const cJSON *shape = cJSON_GetArrayItem(entry, 2);
    const char *dtype = cJSON_GetArrayItem(entry, 1)->valuestring;
    int same = t && t->ndim == cJSON_GetArraySize(shape) &&
               t->dtype == (strcmp(dtype, "F16") == 0 ? SD_DTYPE_F16 : SD_DTYPE_F32);
    for (int d = 0; same && d < t->ndim; d++)
      same = t->shape[d] == (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble;
    if (!same && bad++ < 5)
      fprintf(stderr, "%s export: '%s' %s\n", what, name, t ? "has another shape" : "missing");
  }
  CHECK(bad == 0, "%s export: %zu of %zu original keys missing or mis-shaped", what, bad, expected);
  CHECK(out.count == expected, "%s export: %zu tensors, the original has %zu", what, out.count,
        expected);
  sd_ldm_export_free(&out);
}

/* The layout's config.json contents through the folder readers. */
static int read_layout_configs(const cJSON *configs, sd_model_files *want) {
  static const char *const parts[] = {"unet", "vae", "text_encoder"};
  for (int i = 0; i < 3; i++) {
    const char *path = scratch_path("layout-config.json");
    char *text = cJSON_PrintUnformatted(cJSON_GetObjectItem(configs, parts[i]));
    write_text(path, text ? text : "");
    free(text);
    int rc = i == 0   ? sd_unet_config_read(path, &want->unet)
             : i == 1 ? sd_vae_config_read(path, &want->vae)
                      : sd_clip_config_read(path, &want->clip);
    CHECK(rc == 0, "layout %s config: %s", parts[i], sd_error_message());
    if (rc)
      return -1;
  }
  return 0;
}

/* SD 1.5 (no YAML: the defaults) and SD 2.1 768-v (its v2-inference-v.yaml) at full size;
 * in_channels > 0 makes the checkpoint an inpainting / depth variant. */
static void test_full_size_layout(const char *name, const char *yaml_text, int in_channels) {
  char layout_path[512], ckpt[64];
  snprintf(layout_path, sizeof layout_path, "%s/layouts/%s.json", SD_TEST_FIXTURES, name);
  snprintf(ckpt, sizeof ckpt, "%s.safetensors", name);
  cJSON *layout = NULL;
  sd_model_files *m = NULL, want;
  const char *path = scratch_path(ckpt);
  int rc = sd_json_read_file(layout_path, &layout);
  CHECK(rc == 0, "%s", sd_error_message());
  if (rc != 0 ||
      write_sparse_checkpoint(cJSON_GetObjectItem(layout, "ldm"), path, in_channels) != 0 ||
      read_layout_configs(cJSON_GetObjectItem(layout, "config"), &want) != 0)
    goto out;
  const char *yaml = NULL;
  if (yaml_text) {
    yaml = scratch_path("full-size.yaml");
    write_text(yaml, yaml_text);
  }
  rc = sd_model_files_open(path, yaml, NULL, &m);
  CHECK(rc == 0, "%s: %s", name, sd_error_message());
  if (rc != 0)
    goto out;
  if (in_channels > 0) {
    CHECK(m->unet.in_channels == in_channels, "%s: in_channels %d, want %d", name,
          m->unet.in_channels, in_channels);
    want.unet.in_channels = in_channels;
  }
  compare_unet(name, &m->unet, &want.unet);
  compare_vae(name, &m->vae, &want.vae);
  compare_clip(name, &m->clip, &want.clip);
  const cJSON *names = cJSON_GetObjectItem(layout, "diffusers");
  char what[64];
  snprintf(what, sizeof what, "%s unet", name);
  if (in_channels <= 0)
    compare_names(what, cJSON_GetObjectItem(names, "unet"), m->unet_tensors);
  snprintf(what, sizeof what, "%s vae", name);
  compare_names(what, cJSON_GetObjectItem(names, "vae"), m->vae_tensors);
  snprintf(what, sizeof what, "%s text encoder", name);
  compare_names(what, cJSON_GetObjectItem(names, "text_encoder"), m->clip_tensors);
  if (in_channels <= 0)
    compare_export_names(name, cJSON_GetObjectItem(layout, "ldm"), m);
out:
  sd_model_files_close(m);
  cJSON_Delete(layout);
  unlink(path);
}

static const char *const sd21_v_yaml =
    "model:\n"
    "  params:\n"
    "    parameterization: \"v\"\n"
    "    linear_start: 0.00085\n"
    "    linear_end: 0.0120\n"
    "    timesteps: 1000\n"
    "    image_size: 96\n"
    "    scale_factor: 0.18215\n"
    "    unet_config:\n"
    "      params:\n"
    "        use_checkpoint: True\n"
    "        use_fp16: True\n"
    "        image_size: 32 # unused\n"
    "        in_channels: 4\n"
    "        out_channels: 4\n"
    "        model_channels: 320\n"
    "        attention_resolutions: [ 4, 2, 1 ]\n"
    "        num_res_blocks: 2\n"
    "        channel_mult: [ 1, 2, 4, 4 ]\n"
    "        num_head_channels: 64 # need to fix for flash-attn\n"
    "        use_spatial_transformer: True\n"
    "        use_linear_in_transformer: True\n"
    "        transformer_depth: 1\n"
    "        context_dim: 1024\n"
    "        legacy: False\n"
    "    first_stage_config:\n"
    "      params:\n"
    "        embed_dim: 4\n"
    "        ddconfig:\n"
    "          double_z: true\n"
    "          z_channels: 4\n"
    "          resolution: 256\n"
    "          in_channels: 3\n"
    "          out_ch: 3\n"
    "          ch: 128\n"
    "          ch_mult:\n"
    "          - 1\n"
    "          - 2\n"
    "          - 4\n"
    "          - 4\n"
    "          num_res_blocks: 2\n"
    "          attn_resolutions: []\n"
    "    cond_stage_config:\n"
    "      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder\n"
    "      params:\n"
    "        freeze: True\n"
    "        layer: \"penultimate\"\n";

/* Single files: defaults, the committed fixture YAML, and errors ------------------------------ */

static void test_single_file_inference(void) {
  sd_model_files *m = NULL;
  /* a YAML stating no text encoder heads: 32 channels are not 64-channel heads */
  const char *no_heads = scratch_path("no-heads.yaml");
  write_text(no_heads, "model:\n  params:\n    scale_factor: 0.18215\n");
  int rc = sd_model_files_open(FIXTURE("tiny-sd1.safetensors"), no_heads, NULL, &m);
  CHECK_ERROR(rc, "tiny-sd1.safetensors", "num_attention_heads");
  /* the fixture YAML states them (and the UNet's 4 heads) */
  rc = sd_model_files_open(FIXTURE("tiny-sd1.safetensors"), FIXTURE("tiny-sd1.yaml"), NULL, &m);
  CHECK(rc == 0, "tiny-sd1 with its YAML: %s", sd_error_message());
  if (m) {
    CHECK(m->clip.num_attention_heads == 4 && m->unet.num_attention_heads[0] == 4,
          "tiny-sd1 YAML heads: text %d, unet %d", m->clip.num_attention_heads,
          m->unet.num_attention_heads[0]);
    sd_model_files_close(m);
    m = NULL;
  }
  /* without a YAML, SD 1.x UNets get 8 heads and SD 2.x epsilon prediction with 64 latents */
  const char *heads_only = scratch_path("heads-only.yaml");
  write_text(heads_only, "model:\n  params:\n    cond_stage_config:\n      params:\n"
                         "        num_attention_heads: 4\n");
  rc = sd_model_files_open(FIXTURE("tiny-sd1.safetensors"), heads_only, NULL, &m);
  CHECK(rc == 0, "tiny-sd1 with heads-only YAML: %s", sd_error_message());
  if (m) {
    CHECK(m->unet.num_attention_heads[0] == 8 && m->unet.num_attention_heads[2] == 8 &&
              m->unet.sample_size == 64 && m->vae.sample_size == 512 &&
              m->scheduler.prediction_type == SD_PREDICT_EPSILON &&
              strcmp(m->scheduler.class_name, "PNDMScheduler") == 0 && !m->tokenizer.bpe_gz[0],
          "tiny-sd1 defaults");
    sd_model_files_close(m);
    m = NULL;
  }
  /* SD 2.x: channels / 64 heads cannot split 32 channels */
  rc = sd_model_files_open(FIXTURE("tiny-sd2.safetensors"), heads_only, NULL, &m);
  CHECK_ERROR(rc, "tiny-sd2.safetensors", "head size 64");
  /* structural YAML fields must agree with the shapes */
  const char *wrong = scratch_path("wrong.yaml");
  write_text(wrong, "model:\n  params:\n    unet_config:\n      params:\n"
                    "        model_channels: 320\n        num_heads: 4\n"
                    "    cond_stage_config:\n      params:\n        num_attention_heads: 4\n");
  rc = sd_model_files_open(FIXTURE("tiny-sd1.safetensors"), wrong, NULL, &m);
  CHECK_ERROR(rc, "wrong.yaml", "model_channels = 320");
  write_text(wrong, "model:\n  params:\n    unet_config:\n      params:\n"
                    "        attention_resolutions: [4, 2]\n        num_heads: 4\n"
                    "    cond_stage_config:\n      params:\n        num_attention_heads: 4\n");
  rc = sd_model_files_open(FIXTURE("tiny-sd1.safetensors"), wrong, NULL, &m);
  CHECK_ERROR(rc, "wrong.yaml", "attention_resolutions");
  /* a malformed YAML names its line */
  write_text(wrong, "model:\n  params:\n    image_size: [1, 2\n");
  rc = sd_model_files_open(FIXTURE("tiny-sd1.safetensors"), wrong, NULL, &m);
  CHECK_ERROR(rc, "wrong.yaml", "line");
  write_text(wrong, "model:\n  params:\n    parameterization: \"x1\"\n");
  rc = sd_model_files_open(FIXTURE("tiny-sd1.safetensors"), wrong, NULL, &m);
  CHECK_ERROR(rc, "wrong.yaml", "'x1'");
  /* a YAML with a folder, a missing BPE file, a file that is neither */
  rc = sd_model_files_open(FIXTURE("tiny-sd1"), heads_only, NULL, &m);
  CHECK_ERROR(rc, "tiny-sd1", "single-file");
  rc = sd_model_files_open(FIXTURE("tiny-sd1.safetensors"), heads_only, "/nonexistent/bpe.gz", &m);
  CHECK_ERROR(rc, "/nonexistent/bpe.gz", NULL);
  rc = sd_model_files_open(FIXTURE("tiny-sd1.yaml"), NULL, NULL, &m);
  CHECK_ERROR(rc, "tiny-sd1.yaml", "neither");
  /* a checkpoint without a text encoder: the stage references file */
  rc = sd_model_files_open(FIXTURE("stages-sd1.safetensors"), NULL, NULL, &m);
  CHECK_ERROR(rc, "stages-sd1.safetensors", "no text encoder keys");
  CHECK(m == NULL, "no model on failure");
}

/* Folder errors ------------------------------------------------------------------------------- */

/* scratch/<name>/: links to the tiny-sd1 components except `replaced`, which gets a folder with
 * its weights linked and the given config.json. */
static const char *folder_with_config(const char *name, const char *replaced,
                                      const char *config_name, const char *config_text) {
  static char dir[512];
  char path[1024], target[1024];
  snprintf(dir, sizeof dir, "%s/%s", scratch, name);
  mkdir(dir, 0755);
  static const char *const parts[] = {"model_index.json", "text_encoder", "unet", "vae",
                                      "scheduler",        "tokenizer"};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, parts[i]);
    snprintf(target, sizeof target, "%s/%s", FIXTURE("tiny-sd1"), parts[i]);
    if (strcmp(parts[i], replaced) != 0) {
      CHECK(symlink(target, path) == 0, "symlink %s", path);
      continue;
    }
    if (strcmp(parts[i], "model_index.json") == 0) {
      write_text(path, config_text);
      continue;
    }
    mkdir(path, 0755);
    static const char *const weights[] = {"diffusion_pytorch_model.safetensors",
                                          "model.safetensors"};
    for (int w = 0; w < 2; w++) {
      char wsrc[1200], wdst[1200];
      snprintf(wsrc, sizeof wsrc, "%s/%s", target, weights[w]);
      snprintf(wdst, sizeof wdst, "%s/%s", path, weights[w]);
      if (access(wsrc, R_OK) == 0)
        CHECK(symlink(wsrc, wdst) == 0, "symlink %s", wdst);
    }
    snprintf(path + strlen(path), sizeof path - strlen(path), "/%s", config_name);
    write_text(path, config_text);
  }
  return dir;
}

/* Diffusers before 0.14 saved the VAE attention as query/key/value/proj_attn. */
static void test_old_vae_names(void) {
  char *config = sd_test_read_file(FIXTURE("tiny-sd1/vae/config.json"), NULL);
  CHECK(config && config[0], "read the fixture VAE config");
  if (!config || !config[0]) {
    free(config);
    return;
  }
  const char *dir = folder_with_config("old-vae", "vae", "config.json", config);
  free(config);
  sd_model_files *fixture = NULL, *old = NULL;
  sd_safetensors *weights = NULL;
  int rc = sd_model_files_open(FIXTURE("tiny-sd1"), NULL, NULL, &fixture);
  if (rc == 0)
    rc = sd_safetensors_open(FIXTURE("tiny-sd1/vae/diffusion_pytorch_model.safetensors"), &weights);
  CHECK(rc == 0, "open tiny-sd1: %s", sd_error_message());
  if (rc != 0)
    goto out;
  size_t n = sd_safetensors_count(weights), renamed = 0;
  sd_st_tensor *records = calloc(n, sizeof *records);
  char(*names)[256] = calloc(n, sizeof *names);
  static const char *const from[] = {".to_q.", ".to_k.", ".to_v.", ".to_out.0."};
  static const char *const to[] = {".query.", ".key.", ".value.", ".proj_attn."};
  for (size_t i = 0; records && names && i < n; i++) {
    records[i] = *sd_safetensors_at(weights, i);
    snprintf(names[i], sizeof names[i], "%s", records[i].name);
    for (int k = 0; k < 4; k++) {
      char *at = strstr(names[i], from[k]);
      if (at && strstr(names[i], "mid_block.attentions.0.")) {
        char rest[256];
        snprintf(rest, sizeof rest, "%s", at + strlen(from[k]));
        snprintf(at, sizeof names[i] - (size_t)(at - names[i]), "%s%s", to[k], rest);
        renamed++;
      }
    }
    records[i].name = names[i];
  }
  char path[600];
  snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", dir);
  unlink(path);
  rc = records && names ? sd_safetensors_write(path, records, n, NULL, NULL, 0) : -1;
  CHECK(rc == 0 && renamed == 16, "write old-name VAE (%zu renamed): %s", renamed,
        sd_error_message());
  free(records);
  free(names);
  rc = sd_model_files_open(dir, NULL, NULL, &old);
  CHECK(rc == 0, "open old-vae: %s", sd_error_message());
  if (rc == 0)
    compare_maps("old VAE names", old->vae_tensors, fixture->vae_tensors);
out:
  sd_safetensors_close(weights);
  sd_model_files_close(fixture);
  sd_model_files_close(old);
}

static void test_folder_errors(void) {
  sd_model_files *m = NULL;
  const char *dir = folder_with_config("no-block-out", "unet", "config.json",
                                       "{\"down_block_types\": [\"DownBlock2D\"], "
                                       "\"up_block_types\": [\"UpBlock2D\"]}");
  int rc = sd_model_files_open(dir, NULL, NULL, &m);
  CHECK_ERROR(rc, "no-block-out/unet/config.json", "'block_out_channels' missing");

  dir = folder_with_config("mid-block", "unet", "config.json",
                           "{\"block_out_channels\": [32], \"mid_block_type\": null}");
  rc = sd_model_files_open(dir, NULL, NULL, &m);
  CHECK_ERROR(rc, "mid-block/unet/config.json", "mid_block_type = null");

  dir = folder_with_config("bad-scheduler", "scheduler", "scheduler_config.json",
                           "{\"_class_name\": \"DDIMScheduler\", \"prediction_type\": \"flow\"}");
  rc = sd_model_files_open(dir, NULL, NULL, &m);
  CHECK_ERROR(rc, "bad-scheduler/scheduler/scheduler_config.json", "prediction_type 'flow'");

  dir = folder_with_config(
      "sdxl", "model_index.json", "",
      "{\"unet\": [\"diffusers\", \"UNet2DConditionModel\"], "
      "\"vae\": [\"diffusers\", \"AutoencoderKL\"], "
      "\"text_encoder\": [\"transformers\", \"CLIPTextModel\"], "
      "\"tokenizer\": [\"transformers\", \"CLIPTokenizer\"], "
      "\"text_encoder_2\": [\"transformers\", \"CLIPTextModelWithProjection\"]}");
  rc = sd_model_files_open(dir, NULL, NULL, &m);
  CHECK_ERROR(rc, "sdxl/model_index.json", "second text encoder");

  dir = folder_with_config("bad-json", "vae", "config.json", "{\"block_out_channels\": [32,");
  rc = sd_model_files_open(dir, NULL, NULL, &m);
  CHECK_ERROR(rc, "bad-json/vae/config.json", "not valid JSON");

  /* the text encoder is read first: a missing weights file names the folder */
  dir = folder_with_config("no-weights", "text_encoder", "config.json",
                           "{\"hidden_size\": 32, \"intermediate_size\": 64, "
                           "\"num_hidden_layers\": 2, \"num_attention_heads\": 4}");
  char weights[600];
  snprintf(weights, sizeof weights, "%s/text_encoder/model.safetensors", dir);
  unlink(weights);
  rc = sd_model_files_open(dir, NULL, NULL, &m);
  CHECK_ERROR(rc, "no-weights/text_encoder", "model.safetensors");
  CHECK(m == NULL, "no model on failure");
}

/* Config readers on their own ------------------------------------------------------------------ */

static void test_config_readers(void) {
  const char *path = scratch_path("config.json");
  sd_unet_config unet;
  sd_vae_config vae;
  sd_clip_config clip;
  sd_scheduler_config sched;
  static const char *const unet_base =
      "{\"block_out_channels\": [32, 64], \"layers_per_block\": 1, \"cross_attention_dim\": 16,"
      " \"sample_size\": 8, \"up_block_types\": [\"CrossAttnUpBlock2D\", \"UpBlock2D\"], %s}";
  char text[1024];

  snprintf(text, sizeof text, unet_base,
           "\"down_block_types\": [\"DownBlock2D\", \"SimpleCrossAttnDownBlock2D\"]");
  write_text(path, text);
  CHECK_ERROR(sd_unet_config_read(path, &unet), "config.json",
              "down_block_types[1] 'SimpleCrossAttnDownBlock2D' is not supported");

  snprintf(text, sizeof text, unet_base,
           "\"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"], "
           "\"time_embedding_type\": \"fourier\"");
  write_text(path, text);
  CHECK_ERROR(sd_unet_config_read(path, &unet), "config.json", "time_embedding_type");

  snprintf(text, sizeof text, unet_base,
           "\"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"], "
           "\"class_embed_type\": \"timestep\"");
  write_text(path, text);
  CHECK_ERROR(sd_unet_config_read(path, &unet), "config.json", "class_embed_type");

  /* heads: num_attention_heads (per level) wins over attention_head_dim */
  snprintf(text, sizeof text, unet_base,
           "\"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"], "
           "\"attention_head_dim\": 8, \"num_attention_heads\": [2, 4], "
           "\"transformer_layers_per_block\": [1, 2], \"use_linear_projection\": true");
  write_text(path, text);
  int rc = sd_unet_config_read(path, &unet);
  CHECK(rc == 0 && unet.num_attention_heads[0] == 2 && unet.num_attention_heads[1] == 4 &&
            unet.transformer_layers_per_block[1] == 2 && unet.use_linear_projection &&
            unet.down_block_has_attention[0] && !unet.up_block_has_attention[1] &&
            unet.in_channels == 4 && unet.norm_num_groups == 32,
        "UNet config with per-level heads: %s", sd_error_message());
  /* 64 channels in 3 heads */
  snprintf(text, sizeof text, unet_base,
           "\"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"], "
           "\"attention_head_dim\": 3");
  write_text(path, text);
  CHECK_ERROR(sd_unet_config_read(path, &unet), "attention_head_dim", "3 heads");
  snprintf(text, sizeof text, unet_base,
           "\"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"], "
           "\"attention_head_dim\": [1, 2, 3]");
  write_text(path, text);
  CHECK_ERROR(sd_unet_config_read(path, &unet), "attention_head_dim", "list of 2");

  write_text(path, "{\"block_out_channels\": [32], \"latent_channels\": 4}");
  CHECK_ERROR(sd_vae_config_read(path, &vae), "config.json", "'layers_per_block' missing");
  write_text(path, "{\"block_out_channels\": [32], \"layers_per_block\": 1, "
                   "\"use_post_quant_conv\": false}");
  CHECK_ERROR(sd_vae_config_read(path, &vae), "config.json", "use_post_quant_conv");

  write_text(path, "{\"intermediate_size\": 64, \"num_hidden_layers\": 2, "
                   "\"num_attention_heads\": 4}");
  CHECK_ERROR(sd_clip_config_read(path, &clip), "config.json", "'hidden_size' missing");
  write_text(path, "{\"hidden_size\": \"32\", \"intermediate_size\": 64, "
                   "\"num_hidden_layers\": 2, \"num_attention_heads\": 4}");
  CHECK_ERROR(sd_clip_config_read(path, &clip), "'hidden_size'", "integer");
  write_text(path, "{\"hidden_size\": 32, \"intermediate_size\": 64, \"num_hidden_layers\": 2,"
                   " \"num_attention_heads\": 4, \"hidden_act\": \"relu\"}");
  CHECK_ERROR(sd_clip_config_read(path, &clip), "hidden_act 'relu'", NULL);

  write_text(path, "{\"_class_name\": \"EulerDiscreteScheduler\", \"use_karras_sigmas\": true,"
                   " \"timestep_spacing\": \"trailing\", \"trained_betas\": null}");
  rc = sd_scheduler_config_read(path, &sched);
  CHECK(rc == 0 && sched.use_karras_sigmas && sched.timestep_spacing == SD_SPACING_TRAILING &&
            sched.fields_set ==
                (SD_SCHED_FIELD_USE_KARRAS_SIGMAS | SD_SCHED_FIELD_TIMESTEP_SPACING) &&
            sched.num_train_timesteps == 1000,
        "scheduler config: %s (fields 0x%x)", sd_error_message(), sched.fields_set);
  write_text(path, "{\"beta_start\": 0.001}");
  CHECK_ERROR(sd_scheduler_config_read(path, &sched), "config.json", "'_class_name' missing");
}

static void test_tokenizer_files(void) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/tok", scratch);
  mkdir(dir, 0755);
  sd_tokenizer_files tok;
  CHECK_ERROR(sd_tokenizer_files_read(dir, 77, &tok), "tok", "no tokenizer files");
  char path[600];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  write_text(path, "{}");
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  write_text(path, "{\"pad_token\": {\"content\": \"!\", \"lstrip\": false}, "
                   "\"model_max_length\": 1000000000000000019884624838656}");
  int rc = sd_tokenizer_files_read(dir, 77, &tok);
  CHECK(rc == 0 && strstr(tok.tokenizer_json, "tok/tokenizer.json") && !tok.vocab_json[0] &&
            strcmp(tok.pad_token, "!") == 0 && tok.model_max_length == 77,
        "tokenizer.json folder: %s (pad '%s', length %d)", sd_error_message(), tok.pad_token,
        tok.model_max_length);
  /* special_tokens_map.json wins over tokenizer_config.json; a shorter length is kept */
  snprintf(path, sizeof path, "%s/special_tokens_map.json", dir);
  write_text(path, "{\"pad_token\": \"<|endoftext|>\"}");
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  write_text(path, "{\"pad_token\": \"!\", \"model_max_length\": 64}");
  rc = sd_tokenizer_files_read(dir, 77, &tok);
  CHECK(rc == 0 && strcmp(tok.pad_token, "<|endoftext|>") == 0 && tok.model_max_length == 64,
        "special_tokens_map.json pad: %s ('%s', %d)", sd_error_message(), tok.pad_token,
        tok.model_max_length);
}

/* Weights ------------------------------------------------------------------------------------ */

static void test_weights(void) {
  sd_model_files *m = NULL;
  sd_backend *be = sd_backend_cpu_create(1);
  sd_weights *w = NULL;
  int rc = be ? sd_model_files_open(FIXTURE("tiny-sd1"), NULL, NULL, &m) : -1;
  CHECK(rc == 0, "open tiny-sd1: %s", sd_error_message());
  if (rc == 0)
    rc = sd_weights_upload(be, m->unet_tensors, "unet", &w);
  CHECK(rc == 0, "upload: %s", sd_error_message());
  if (rc != 0)
    goto out;
  const char *name = "down_blocks.0.resnets.0.conv1.weight";
  const sd_st_tensor *src = sd_tensor_map_get(m->unet_tensors, name);
  const sd_tensor *t = NULL;
  int64_t shape[4] = {32, 32, 3, 3};
  rc = sd_weights_get(w, &t, 4, shape, "down_blocks.%d.resnets.%d.conv1.weight", 0, 0);
  CHECK(rc == 0 && t && t->dtype == SD_DTYPE_F32 && src && src->dtype == SD_DTYPE_F16, "get %s: %s",
        name, sd_error_message());
  if (rc == 0 && src) {
    size_t n = (size_t)sd_tensor_numel(t);
    float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
    sd_convert_to_f32(src->dtype, src->data, want, n);
    CHECK(sd_tensor_download_f32(be, t, got) == 0, "download");
    sd_test_compare_f32("uploaded conv1 (fp16 -> fp32 is exact)", got, want, n, 0.0f, 0.0f);
    free(want);
    free(got);
  }
  int64_t wrong[4] = {32, 16, 3, 3};
  CHECK_ERROR(sd_weights_get(w, &t, 4, wrong, "%s", name),
              "unet: tensor 'down_blocks.0.resnets.0.conv1.weight': expected (32, 16, 3, 3), "
              "checkpoint has (32, 32, 3, 3)",
              NULL);
  int64_t any[4] = {-1, 32, -1, 3};
  CHECK(sd_weights_get(w, &t, 4, any, "%s", name) == 0, "wildcard shape");
  CHECK_ERROR(sd_weights_get(w, &t, 2, any, "%s", name), "expected (*, 32)", NULL);
  CHECK_ERROR(sd_weights_get(w, &t, 1, shape, "mid_block.nothing.%d", 7),
              "unet: tensor 'mid_block.nothing.7' missing", NULL);
  CHECK(t == NULL, "out cleared on failure");
  CHECK(sd_weights_find(w, "conv_in.weight") != NULL && sd_weights_find(w, "nothing") == NULL,
        "find");
  size_t bytes = 0;
  for (size_t i = 0; i < sd_tensor_map_count(m->unet_tensors); i++) {
    sd_tensor header = sd_tensor_make(SD_DTYPE_F32, sd_tensor_map_at(m->unet_tensors, i)->ndim,
                                      sd_tensor_map_at(m->unet_tensors, i)->shape);
    bytes += sd_tensor_bytes(&header);
  }
  CHECK(sd_weights_bytes(w) == bytes, "weights bytes %zu, want %zu", sd_weights_bytes(w), bytes);
out:
  sd_weights_free(w);
  sd_model_files_close(m);
  if (be)
    sd_backend_destroy(be);
}

static void test_weights_recorder(void) {
  sd_weights *r = NULL;
  CHECK(sd_weights_recorder_create(&r) == 0, "recorder: %s", sd_error_message());
  if (!r)
    return;
  const sd_tensor *a = NULL, *b = NULL, *again = NULL;
  int64_t conv[4] = {8, 4, 3, 3}, vec[1] = {8};
  CHECK(sd_weights_find(r, "conv.weight") == NULL, "nothing recorded yet");
  CHECK(sd_weights_get(r, &a, 4, conv, "conv.%s", "weight") == 0 && a && a->ndim == 4 &&
            a->shape[1] == 4 && !a->data,
        "record conv: %s", sd_error_message());
  int recorded = 0;
  for (int i = 0; i < 600; i++) /* grows past the first allocation: a stays valid */
    recorded += sd_weights_get(r, &b, 1, vec, "bias.%d", i) == 0;
  CHECK(recorded == 600, "recorded %d of 600 biases: %s", recorded, sd_error_message());
  CHECK(sd_weights_get(r, &again, 4, conv, "conv.weight") == 0 && again == a && a->shape[0] == 8 &&
            a->shape[3] == 3,
        "a second request returns the record");
  int64_t other[4] = {8, 5, 3, 3}, any[1] = {-1};
  CHECK_ERROR(sd_weights_get(r, &again, 4, other, "conv.weight"),
              "tensor 'conv.weight': expected (8, 5, 3, 3), checkpoint has (8, 4, 3, 3)", NULL);
  CHECK_ERROR(sd_weights_get(r, &again, 1, any, "new.bias"), "'new.bias'", "wildcard");
  CHECK(sd_weights_count(r) == 601 && strcmp(sd_weights_name_at(r, 0), "conv.weight") == 0 &&
            sd_weights_at(r, 0) == a && strcmp(sd_weights_name_at(r, 600), "bias.599") == 0 &&
            sd_weights_at(r, 601) == NULL && sd_weights_find(r, "bias.7") == sd_weights_at(r, 8),
        "recorded in order");
  CHECK(sd_weights_bytes(r) == (8 * 4 * 9 + 600 * 8) * sizeof(float), "recorder bytes %zu",
        sd_weights_bytes(r));
  sd_weights_free(r);
}

int main(void) {
  snprintf(scratch, sizeof scratch, "/tmp/sd_test_model_files.XXXXXX");
  if (!mkdtemp(scratch)) {
    perror("mkdtemp");
    return 1;
  }
  test_layouts_agree(0);
  test_layouts_agree(1);
  test_upscaler_layouts_agree();
  test_upscaler_single_file_inference();
  test_export_round_trip(TINY_SD1);
  test_export_round_trip(TINY_SD2);
  test_export_round_trip(TINY_UPSCALER);
  test_full_size_layout("sd15", NULL, 0);
  test_full_size_layout("sd15", NULL, 9);
  test_full_size_layout("sd21-v", sd21_v_yaml, 0);
  test_single_file_inference();
  test_folder_errors();
  test_old_vae_names();
  test_config_readers();
  test_tokenizer_files();
  test_weights();
  test_weights_recorder();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", scratch);
  return sd_test_finish();
}
