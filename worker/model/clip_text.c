/* CLIP text encoder (transformers CLIPTextModel) on the op interface: token + position
 * embeddings, num_hidden_layers pre-LN encoder layers (LayerNorm -> causal multi-head
 * self-attention -> residual; LayerNorm -> fc1 + quick_gelu/gelu -> fc2 -> residual), final
 * LayerNorm. The output is last_hidden_state, the conditioning SD's pipelines use. */
#include "clip_text_internal.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_config(const sd_clip_config *cfg) {
  if (cfg->vocab_size < 1 || cfg->hidden_size < 1 || cfg->intermediate_size < 1 ||
      cfg->num_hidden_layers < 1 || cfg->num_attention_heads < 1 ||
      cfg->max_position_embeddings < 1)
    return SD_ERROR("config: vocab_size %d, hidden_size %d, intermediate_size %d, "
                    "num_hidden_layers %d, num_attention_heads %d, max_position_embeddings %d "
                    "must all be positive",
                    cfg->vocab_size, cfg->hidden_size, cfg->intermediate_size,
                    cfg->num_hidden_layers, cfg->num_attention_heads, cfg->max_position_embeddings);
  if (cfg->hidden_size % cfg->num_attention_heads)
    return SD_ERROR("config: hidden_size %d does not split into %d attention heads",
                    cfg->hidden_size, cfg->num_attention_heads);
  if (cfg->hidden_act != SD_ACT_QUICK_GELU && cfg->hidden_act != SD_ACT_GELU)
    return SD_ERROR("config: hidden_act must be quick_gelu or gelu (got activation %d)",
                    (int)cfg->hidden_act);
  if (!(cfg->layer_norm_eps > 0.0f))
    return SD_ERROR("config: layer_norm_eps %g must be positive", cfg->layer_norm_eps);
  return 0;
}

/* Weights are named "text_model...." (transformers 4.x, the Hub's SD checkpoints) or without that
 * prefix (transformers 5.x save_pretrained); the unprefixed form is used only when the weights
 * hold it and not the prefixed one, so a weights recorder lists "text_model." names. */
static const char *weight_prefix(const sd_weights *weights) {
  if (!sd_weights_find(weights, "text_model.final_layer_norm.weight") &&
      sd_weights_find(weights, "final_layer_norm.weight"))
    return "";
  return "text_model.";
}

static int get_vec(const sd_weights *w, const sd_tensor **out, int64_t n, const char *prefix,
                   const char *name) {
  const int64_t shape[1] = {n};
  return sd_weights_get(w, out, 1, shape, "%s%s", prefix, name);
}

static int get_mat(const sd_weights *w, const sd_tensor **out, int64_t rows, int64_t cols,
                   const char *prefix, const char *name) {
  const int64_t shape[2] = {rows, cols};
  return sd_weights_get(w, out, 2, shape, "%s%s", prefix, name);
}

static int get_linear(const sd_weights *w, const sd_tensor **weight, const sd_tensor **bias,
                      int64_t n, int64_t k, const char *prefix, const char *name) {
  char key[256];
  snprintf(key, sizeof key, "%s.weight", name);
  SD_TRY(get_mat(w, weight, n, k, prefix, key));
  snprintf(key, sizeof key, "%s.bias", name);
  return get_vec(w, bias, n, prefix, key);
}

static int resolve_layer(const sd_weights *w, const sd_clip_config *cfg, const char *prefix,
                         int index, clip_layer *layer) {
  const int64_t c = cfg->hidden_size, inner = cfg->intermediate_size;
  char p[256];
  snprintf(p, sizeof p, "%sencoder.layers.%d.", prefix, index);
  SD_TRY(get_vec(w, &layer->ln1_w, c, p, "layer_norm1.weight"));
  SD_TRY(get_vec(w, &layer->ln1_b, c, p, "layer_norm1.bias"));
  SD_TRY(get_linear(w, &layer->q_w, &layer->q_b, c, c, p, "self_attn.q_proj"));
  SD_TRY(get_linear(w, &layer->k_w, &layer->k_b, c, c, p, "self_attn.k_proj"));
  SD_TRY(get_linear(w, &layer->v_w, &layer->v_b, c, c, p, "self_attn.v_proj"));
  SD_TRY(get_linear(w, &layer->out_w, &layer->out_b, c, c, p, "self_attn.out_proj"));
  SD_TRY(get_vec(w, &layer->ln2_w, c, p, "layer_norm2.weight"));
  SD_TRY(get_vec(w, &layer->ln2_b, c, p, "layer_norm2.bias"));
  SD_TRY(get_linear(w, &layer->fc1_w, &layer->fc1_b, inner, c, p, "mlp.fc1"));
  SD_TRY(get_linear(w, &layer->fc2_w, &layer->fc2_b, c, inner, p, "mlp.fc2"));
  return 0;
}

int sd_clip_text_create(sd_backend *be, const sd_clip_config *cfg, const sd_weights *weights,
                        sd_clip_text **out) {
  *out = NULL;
  if (check_config(cfg) < 0)
    return sd_error_context("text encoder");
  sd_clip_text *model = calloc(1, sizeof *model);
  if (!model)
    return SD_ERROR("text encoder: out of host memory");
  model->be = be;
  model->cfg = *cfg;
  model->layers = calloc((size_t)cfg->num_hidden_layers, sizeof *model->layers);
  model->position_ids = malloc((size_t)cfg->max_position_embeddings * sizeof(int32_t));
  if (!model->layers || !model->position_ids) {
    sd_clip_text_free(model);
    return SD_ERROR("text encoder: out of host memory");
  }
  for (int i = 0; i < cfg->max_position_embeddings; i++)
    model->position_ids[i] = i;

  const char *prefix = weight_prefix(weights);
  const int64_t c = cfg->hidden_size;
  if (get_mat(weights, &model->token_embedding, cfg->vocab_size, c, prefix,
              "embeddings.token_embedding.weight") < 0 ||
      get_mat(weights, &model->position_embedding, cfg->max_position_embeddings, c, prefix,
              "embeddings.position_embedding.weight") < 0 ||
      get_vec(weights, &model->final_ln_w, c, prefix, "final_layer_norm.weight") < 0 ||
      get_vec(weights, &model->final_ln_b, c, prefix, "final_layer_norm.bias") < 0) {
    sd_clip_text_free(model);
    return sd_error_context("text encoder");
  }
  for (int i = 0; i < cfg->num_hidden_layers; i++) {
    if (resolve_layer(weights, cfg, prefix, i, &model->layers[i]) < 0) {
      sd_clip_text_free(model);
      return sd_error_context("text encoder: layer %d", i);
    }
  }
  *out = model;
  return 0;
}

void sd_clip_text_free(sd_clip_text *model) {
  if (!model)
    return;
  free(model->layers);
  free(model->position_ids);
  free(model);
}

/* x (B, L, C) += position_embedding[0 .. L) for every batch row; scratch from the arena. */
static int add_position_embeddings(sd_clip_text *model, int batch, sd_tensor *x) {
  sd_backend *be = model->be;
  const int64_t len = x->shape[1], c = x->shape[2];
  sd_tensor pos = sd_tensor_3d(be->ops->act_dtype, batch, len, c); /* (B, L, C) */
  SD_TRY(sd_tensor_alloc(be, &pos));
  for (int b = 0; b < batch; b++) {
    sd_tensor row = sd_tensor_slice0(&pos, b, 1); /* (1, L, C) */
    SD_TRY(sd_op_embedding(be, model->position_embedding, model->position_ids, len, &row));
  }
  return sd_op_add(be, x, &pos, x);
}

/* One pre-LN encoder layer, updating the residual stream x (B, L, C) in place. */
static int encoder_layer(sd_clip_text *model, const clip_layer *layer, sd_tensor *x) {
  sd_backend *be = model->be;
  const sd_clip_config *cfg = &model->cfg;
  const int64_t batch = x->shape[0], len = x->shape[1], c = x->shape[2];
  const float eps = cfg->layer_norm_eps;
  const int heads = cfg->num_attention_heads;
  const float scale = sd_clip_text_attention_scale(model);

  sd_tensor h = sd_tensor_3d(be->ops->act_dtype, batch, len, c); /* (B, L, C) */
  sd_tensor q = h, k = h, v = h, o = h;                          /* (B, L, C) */
  sd_tensor f =
      sd_tensor_3d(be->ops->act_dtype, batch, len, cfg->intermediate_size); /* (B, L, I) */
  SD_TRY(sd_tensor_alloc(be, &h));
  SD_TRY(sd_tensor_alloc(be, &q));
  SD_TRY(sd_tensor_alloc(be, &k));
  SD_TRY(sd_tensor_alloc(be, &v));
  SD_TRY(sd_tensor_alloc(be, &o));
  SD_TRY(sd_tensor_alloc(be, &f));

  /* x = x + out_proj(attention(layer_norm1(x))) */
  SD_TRY(sd_op_layer_norm(be, x, layer->ln1_w, layer->ln1_b, eps, &h));
  SD_TRY(sd_op_linear(be, &h, layer->q_w, layer->q_b, SD_ACT_NONE, &q));
  SD_TRY(sd_op_linear(be, &h, layer->k_w, layer->k_b, SD_ACT_NONE, &k));
  SD_TRY(sd_op_linear(be, &h, layer->v_w, layer->v_b, SD_ACT_NONE, &v));
  SD_TRY(sd_op_attention(be, &q, &k, &v, heads, scale, true, &o));
  SD_TRY(sd_op_linear(be, &o, layer->out_w, layer->out_b, SD_ACT_NONE, &h));
  SD_TRY(sd_op_add(be, x, &h, x));

  /* x = x + fc2(act(fc1(layer_norm2(x)))) */
  SD_TRY(sd_op_layer_norm(be, x, layer->ln2_w, layer->ln2_b, eps, &h));
  SD_TRY(sd_op_linear(be, &h, layer->fc1_w, layer->fc1_b, cfg->hidden_act, &f));
  SD_TRY(sd_op_linear(be, &f, layer->fc2_w, layer->fc2_b, SD_ACT_NONE, &h));
  return sd_op_add(be, x, &h, x);
}

float sd_clip_text_attention_scale(const sd_clip_text *model) {
  return 1.0f / sqrtf((float)(model->cfg.hidden_size / model->cfg.num_attention_heads));
}

int sd_clip_text_check_hidden(const sd_clip_text *model, int batch, const sd_tensor *hidden) {
  const int64_t len = model->cfg.max_position_embeddings, c = model->cfg.hidden_size;
  if (batch < 1 || !hidden || !hidden->data || hidden->ndim != 3 || hidden->shape[0] != batch ||
      hidden->shape[1] != len || hidden->shape[2] != c) {
    char got[96];
    return SD_ERROR("text encoder: hidden must be (%d, %lld, %lld), got %s", batch, (long long)len,
                    (long long)c, hidden ? sd_tensor_shape_str(hidden, got, sizeof got) : "none");
  }
  return 0;
}

int sd_clip_text_embed(sd_clip_text *model, const int32_t *ids, int batch, sd_tensor *x) {
  sd_backend *be = model->be;
  const sd_arena_mark mark = sd_arena_get_mark(be);
  int rc = sd_op_embedding(be, model->token_embedding, ids, batch * x->shape[1], x);
  if (rc == 0)
    rc = add_position_embeddings(model, batch, x);
  sd_arena_release(be, mark);
  return rc < 0 ? sd_error_context("text encoder: embeddings") : 0;
}

int sd_clip_text_forward(sd_clip_text *model, const int32_t *ids, int batch, sd_tensor *hidden) {
  sd_backend *be = model->be;
  const sd_clip_config *cfg = &model->cfg;
  SD_TRY(sd_clip_text_check_hidden(model, batch, hidden));

  /* hidden (B, L, C) carries the residual stream from the embeddings to the final LayerNorm. */
  const sd_arena_mark mark = sd_arena_get_mark(be);
  SD_TRY(sd_clip_text_embed(model, ids, batch, hidden));
  for (int i = 0; i < cfg->num_hidden_layers; i++) {
    int rc = encoder_layer(model, &model->layers[i], hidden);
    sd_arena_release(be, mark);
    if (rc < 0)
      return sd_error_context("text encoder: layer %d", i);
  }
  if (sd_op_layer_norm(be, hidden, model->final_ln_w, model->final_ln_b, cfg->layer_norm_eps,
                       hidden) < 0)
    return sd_error_context("text encoder: final_layer_norm");
  return 0;
}
