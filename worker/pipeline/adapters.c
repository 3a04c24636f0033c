/* Adapters at load time (docs/adapters.md): LoRA files merged into the weights, textual-inversion
 * embeddings added to the tokenizer and the token embedding table as diffusers'
 * load_textual_inversion adds them, and its multi-vector prompt expansion. */
#include "engine_internal.h"

#include "../io/embedding.h"
#include "../io/lora.h"

#include "../../kernels/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the token embedding table, named with or without "text_model." (transformers >= 5.6) */
static const char *const token_embedding_names[2] = {"text_model.embeddings.token_embedding.weight",
                                                     "embeddings.token_embedding.weight"};

void sd_engine_free_adapters(sd_engine *engine) {
  for (int i = 0; i < engine->multi_vector_count; i++)
    free(engine->multi_vectors[i].token);
  free(engine->multi_vectors);
  engine->multi_vectors = NULL;
  engine->multi_vector_count = 0;
  sd_patched_free(engine->patched);
  engine->patched = NULL;
}

/* Adds the embedding's tokens (token, token_1, ...) with ids first_id, first_id + 1, ... */
static int add_tokens(sd_engine *engine, const sd_embedding *e) {
  char name[300];
  snprintf(name, sizeof name, "%s_1", e->token);
  if (sd_tokenizer_token_id(engine->tokenizer, name) >= 0)
    return SD_ERROR("token '%s' is already in the tokenizer's vocabulary: '%s' cannot be a "
                    "multi-vector token",
                    name, e->token);
  sd_error_clear();
  int32_t first = -1;
  for (int v = 0; v < e->vectors; v++) {
    if (v)
      snprintf(name, sizeof name, "%s_%d", e->token, v);
    else
      snprintf(name, sizeof name, "%s", e->token);
    int32_t id;
    SD_TRY(sd_tokenizer_add_token(engine->tokenizer, name, &id));
    if (!v)
      first = id;
  }
  if (e->vectors > 1) {
    struct sd_multi_vector *grown =
        realloc(engine->multi_vectors,
                (size_t)(engine->multi_vector_count + 1) * sizeof *engine->multi_vectors);
    char *token = strdup(e->token);
    if (!grown || !token) {
      if (grown)
        engine->multi_vectors = grown;
      free(token);
      return SD_ERROR("out of memory");
    }
    engine->multi_vectors = grown;
    engine->multi_vectors[engine->multi_vector_count++] =
        (struct sd_multi_vector){token, e->vectors, first};
  }
  return 0;
}

/* The token embedding table (V, C) grown to (V + total vectors, C), new rows in token order. */
static int add_embeddings(sd_engine *engine, const sd_embedding *embeddings,
                          const sd_embedding_spec *specs, int count) {
  sd_model_files *files = engine->files;
  const char *table_name = token_embedding_names[0];
  const sd_st_tensor *table = sd_tensor_map_get(files->clip_tensors, table_name);
  if (!table) {
    table_name = token_embedding_names[1];
    table = sd_tensor_map_get(files->clip_tensors, table_name);
  }
  if (!table || table->ndim != 2)
    return SD_ERROR("the text encoder has no token embedding table '%s'", table_name);
  int64_t rows = table->shape[0], dim = table->shape[1];
  if (rows != sd_tokenizer_length(engine->tokenizer))
    return SD_ERROR("the text encoder has %lld token embeddings but the tokenizer %d tokens: "
                    "cannot add textual-inversion tokens",
                    (long long)rows, (int)sd_tokenizer_length(engine->tokenizer));
  int64_t added = 0;
  for (int i = 0; i < count; i++) {
    if (embeddings[i].dim != dim)
      return SD_ERROR("%s: embedding '%s': vectors of %d values, this text encoder's are %lld "
                      "(an embedding for another model?)",
                      specs[i].path, embeddings[i].token, embeddings[i].dim, (long long)dim);
    added += embeddings[i].vectors;
  }
  for (int i = 0; i < count; i++)
    if (add_tokens(engine, &embeddings[i]) < 0)
      return sd_error_context("%s: embedding '%s'", specs[i].path, embeddings[i].token);
  sd_dtype dtype = table->dtype;
  const void *old = table->data;
  int64_t shape[2] = {rows + added, dim};
  float *grown;
  SD_TRY(sd_patched_put(engine->patched, files->clip_tensors, table_name, 2, shape, &grown));
  sd_convert_to_f32(dtype, old, grown, (size_t)(rows * dim));
  float *row = grown + rows * dim;
  for (int i = 0; i < count; i++) {
    size_t n = (size_t)embeddings[i].vectors * (size_t)dim;
    memcpy(row, embeddings[i].data, n * sizeof *row);
    row += n;
  }
  files->clip.vocab_size = (int)(rows + added);
  return 0;
}

int sd_engine_apply_adapters(sd_engine *engine, const sd_engine_params *params) {
  if (params->lora_count <= 0 && params->embedding_count <= 0)
    return 0;
  SD_TRY(sd_patched_create(&engine->patched));
  sd_model_files *files = engine->files;
  for (int i = 0; i < params->lora_count; i++)
    SD_TRY(sd_lora_merge(params->loras[i].path, params->loras[i].scale, files->unet_tensors,
                         files->clip_tensors, engine->patched));
  if (params->embedding_count <= 0)
    return 0;
  sd_embedding *embeddings = calloc((size_t)params->embedding_count, sizeof *embeddings);
  if (!embeddings)
    return SD_ERROR("out of memory");
  int rc = 0, loaded = 0;
  for (; loaded < params->embedding_count && rc == 0; loaded++)
    rc = sd_embedding_load(params->embeddings[loaded].path, params->embeddings[loaded].token,
                           &embeddings[loaded]);
  if (rc == 0)
    rc = add_embeddings(engine, embeddings, params->embeddings, params->embedding_count);
  for (int i = 0; i < loaded; i++)
    sd_embedding_free(&embeddings[i]);
  free(embeddings);
  return rc;
}

/* s with every occurrence of from replaced by to (Python's str.replace), new string. */
static char *replace_all(const char *s, const char *from, const char *to) {
  size_t from_len = strlen(from), to_len = strlen(to), count = 0;
  for (const char *p = strstr(s, from); p; p = strstr(p + from_len, from))
    count++;
  char *out = malloc(strlen(s) + count * to_len + 1);
  if (!out)
    return NULL;
  char *w = out;
  const char *p;
  while ((p = strstr(s, from))) {
    memcpy(w, s, (size_t)(p - s));
    w += p - s;
    memcpy(w, to, to_len);
    w += to_len;
    s = p + from_len;
  }
  strcpy(w, s);
  return out;
}

int sd_engine_expand_prompt(const sd_engine *engine, const char *prompt, char **out) {
  *out = strdup(prompt);
  if (!*out)
    return SD_ERROR("out of memory");
  if (engine->multi_vector_count == 0)
    return 0;
  int length = sd_tokenizer_max_length(engine->tokenizer);
  int32_t *ids = malloc((size_t)length * sizeof *ids);
  if (!ids)
    return SD_ERROR("out of memory");
  int rc = sd_tokenizer_encode(engine->tokenizer, prompt, ids);
  for (int m = 0; m < engine->multi_vector_count && rc == 0; m++) {
    const struct sd_multi_vector *mv = &engine->multi_vectors[m];
    bool present = false;
    for (int i = 0; i < length && !present; i++)
      present = ids[i] == mv->first_id;
    if (!present)
      continue;
    size_t size = (strlen(mv->token) + 12) * (size_t)mv->vectors;
    char *replacement = malloc(size);
    if (!replacement) {
      rc = SD_ERROR("out of memory");
      break;
    }
    size_t used = (size_t)snprintf(replacement, size, "%s", mv->token);
    for (int v = 1; v < mv->vectors; v++)
      used += (size_t)snprintf(replacement + used, size - used, " %s_%d", mv->token, v);
    char *expanded = replace_all(*out, mv->token, replacement);
    free(replacement);
    if (!expanded) {
      rc = SD_ERROR("out of memory");
      break;
    }
    free(*out);
    *out = expanded;
  }
  free(ids);
  if (rc < 0) {
    free(*out);
    *out = NULL;
  }
  return rc;
}

int sd_adapters_check(sd_model_files *files, const sd_lora_spec *loras, int lora_count,
                      const sd_embedding_spec *embeddings, int embedding_count) {
  sd_patched *patched;
  SD_TRY(sd_patched_create(&patched));
  int rc = 0;
  for (int i = 0; i < lora_count && rc == 0; i++)
    rc = sd_lora_merge(loras[i].path, loras[i].scale, files->unet_tensors, files->clip_tensors,
                       patched);
  for (int i = 0; i < embedding_count && rc == 0; i++) {
    sd_embedding e;
    rc = sd_embedding_load(embeddings[i].path, embeddings[i].token, &e);
    if (rc < 0)
      break;
    if (e.dim != files->clip.hidden_size)
      rc = SD_ERROR("%s: embedding '%s': vectors of %d values, this text encoder's are %d (an "
                    "embedding for another model?)",
                    embeddings[i].path, e.token, e.dim, files->clip.hidden_size);
    sd_embedding_free(&e);
  }
  sd_patched_free(patched);
  return rc;
}
