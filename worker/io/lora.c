/* LoRA files merged into the UNet and text-encoder weights (see lora.h). */
#include "lora.h"

#include "lora_keys.h"
#include "safetensors.h"

#include "../../kernels/error.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One adapted layer: its down and up tensors and alpha. */
typedef struct lora_layer {
  sd_lora_component component;
  char module[512];
  const sd_st_tensor *down, *up;
  const char *alpha_key;
  float alpha;
} lora_layer;

typedef struct lora_file {
  const char *path;
  sd_safetensors *file;
  lora_layer *layers; /* (count) */
  size_t count;
  char **keys; /* (count) "<component>/<module>", the index's keys */
  sd_name_index index;
  cJSON *metadata; /* lora_adapter_metadata, NULL when absent */
} lora_file;

static void lora_file_free(lora_file *lf) {
  for (size_t i = 0; i < lf->count; i++)
    free(lf->keys[i]);
  free(lf->keys);
  free(lf->layers);
  sd_name_index_free(&lf->index);
  cJSON_Delete(lf->metadata);
  sd_safetensors_close(lf->file);
}

/* The layer record for (component, module), added when new. */
static int layer_for(lora_file *lf, sd_lora_component component, const char *module,
                     lora_layer **out) {
  char key[600];
  snprintf(key, sizeof key, "%d/%s", (int)component, module);
  size_t at;
  if (sd_name_index_get(&lf->index, key, &at)) {
    *out = &lf->layers[at];
    return 0;
  }
  size_t n = lf->count + 1;
  lora_layer *layers = realloc(lf->layers, n * sizeof *layers);
  if (layers)
    lf->layers = layers;
  char **keys = realloc(lf->keys, n * sizeof *keys);
  if (keys)
    lf->keys = keys;
  char *owned = strdup(key);
  if (!layers || !keys || !owned) {
    free(owned);
    return SD_ERROR("out of memory");
  }
  lora_layer *layer = &lf->layers[lf->count];
  memset(layer, 0, sizeof *layer);
  layer->component = component;
  snprintf(layer->module, sizeof layer->module, "%s", module);
  lf->keys[lf->count] = owned;
  if (sd_name_index_put(&lf->index, owned, lf->count) < 0) {
    free(owned);
    return -1;
  }
  lf->count++;
  *out = layer;
  return 0;
}

static int read_alpha(const sd_st_tensor *t, float *out) {
  sd_tensor header = sd_tensor_make(t->dtype, t->ndim, t->shape);
  if (sd_tensor_numel(&header) != 1 || t->dtype == SD_DTYPE_I32)
    return SD_ERROR("key '%s': alpha must be one floating-point number", t->name);
  sd_convert_to_f32(t->dtype, t->data, out, 1);
  if (!isfinite(*out))
    return SD_ERROR("key '%s': alpha is not finite", t->name);
  return 0;
}

/* Sorts every tensor of the file into layers. */
static int collect(lora_file *lf, const sd_tensor_map *const maps[2]) {
  sd_lora_kohya_names kohya;
  bool have_kohya = false;
  int rc = 0;
  for (size_t i = 0; i < sd_safetensors_count(lf->file) && rc == 0; i++) {
    const sd_st_tensor *t = sd_safetensors_at(lf->file, i);
    sd_lora_component component;
    sd_lora_role role;
    char module[512];
    bool need_kohya;
    rc = sd_lora_parse_key(t->name, maps, have_kohya ? &kohya : NULL, &need_kohya, &component,
                           module, sizeof module, &role);
    if (rc < 0 && need_kohya) {
      if ((rc = sd_lora_kohya_names_build(&kohya, maps[0], maps[1])) < 0)
        break;
      have_kohya = true;
      rc = sd_lora_parse_key(t->name, maps, &kohya, &need_kohya, &component, module, sizeof module,
                             &role);
    }
    lora_layer *layer = NULL;
    if (rc < 0 || (rc = layer_for(lf, component, module, &layer)) < 0)
      break;
    const sd_st_tensor **slot = role == SD_LORA_DOWN ? &layer->down : &layer->up;
    if (role == SD_LORA_ALPHA) {
      if (layer->alpha_key)
        rc = SD_ERROR("keys '%s' and '%s' both give the alpha of layer '%s'", layer->alpha_key,
                      t->name, module);
      else if ((rc = read_alpha(t, &layer->alpha)) == 0)
        layer->alpha_key = t->name;
    } else if (*slot) {
      rc = SD_ERROR("keys '%s' and '%s' both give the %s of layer '%s'", (*slot)->name, t->name,
                    role == SD_LORA_DOWN ? "down (lora_A)" : "up (lora_B)", module);
    } else {
      *slot = t;
    }
  }
  if (have_kohya)
    sd_lora_kohya_names_free(&kohya);
  if (rc == 0 && lf->count == 0)
    rc = SD_ERROR("no LoRA tensors in the file");
  return rc;
}

/* Alpha of a layer without an alpha tensor: diffusers' lora_adapter_metadata (lora_alpha, and
 * alpha_pattern entries naming the layer or a suffix of it), else the rank (scale 1). */
static float default_alpha(const lora_file *lf, const lora_layer *layer, int64_t rank) {
  if (!lf->metadata)
    return (float)rank;
  const char *prefix = layer->component == SD_LORA_UNET ? "unet" : "text_encoder";
  char key[64];
  snprintf(key, sizeof key, "%s.alpha_pattern", prefix);
  const cJSON *patterns = cJSON_GetObjectItemCaseSensitive(lf->metadata, key);
  const cJSON *p;
  size_t mlen = strlen(layer->module);
  cJSON_ArrayForEach(p, patterns) {
    size_t plen = strlen(p->string);
    if (cJSON_IsNumber(p) && plen <= mlen && strcmp(layer->module + mlen - plen, p->string) == 0 &&
        (plen == mlen || layer->module[mlen - plen - 1] == '.'))
      return (float)p->valuedouble;
  }
  snprintf(key, sizeof key, "%s.lora_alpha", prefix);
  const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(lf->metadata, key);
  return cJSON_IsNumber(alpha) ? (float)alpha->valuedouble : (float)rank;
}

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
  sd_tensor header = sd_tensor_make(SD_DTYPE_F32, ndim, shape);
  sd_tensor_shape_str(&header, buf, size);
}

/* Checks down (r, K...) and up (out, r[, 1, 1]) against the layer's weight (out, in[, kh, kw]);
 * sets rank and the flattened K = numel / out. */
static int check_fit(const lora_layer *layer, const sd_st_tensor *w, int64_t *rank, int64_t *k) {
  const sd_st_tensor *down = layer->down, *up = layer->up;
  char ds[96], us[96], ws[96];
  shape_str(down->ndim, down->shape, ds, sizeof ds);
  shape_str(up->ndim, up->shape, us, sizeof us);
  shape_str(w->ndim, w->shape, ws, sizeof ws);
  bool ok = (down->ndim == 2 || down->ndim == 4) && (up->ndim == 2 || up->ndim == 4) &&
            (w->ndim == 2 || w->ndim == 4) && down->shape[0] > 0 && up->shape[0] == w->shape[0] &&
            up->shape[1] == down->shape[0] && down->shape[1] == w->shape[1];
  if (ok && up->ndim == 4)
    ok = up->shape[2] == 1 && up->shape[3] == 1;
  if (ok && down->ndim == 4) /* a conv down: the layer's kernel (1x1 fits a linear layer) */
    ok = w->ndim == 4 ? down->shape[2] == w->shape[2] && down->shape[3] == w->shape[3]
                      : down->shape[2] == 1 && down->shape[3] == 1;
  if (ok && down->ndim == 2 && w->ndim == 4) /* a linear down fits a 1x1 conv */
    ok = w->shape[2] == 1 && w->shape[3] == 1;
  if (!ok || down->dtype == SD_DTYPE_I32 || up->dtype == SD_DTYPE_I32)
    return SD_ERROR("keys '%s' %s and '%s' %s do not fit the %s layer '%s' %s (a LoRA for "
                    "another model architecture?)",
                    down->name, ds, up->name, us,
                    layer->component == SD_LORA_UNET ? "unet" : "text encoder", layer->module, ws);
  *rank = down->shape[0];
  int64_t numel = 1;
  for (int i = 0; i < w->ndim; i++)
    numel *= w->shape[i];
  *k = numel / w->shape[0];
  return 0;
}

/* W (out, K) += scale * alpha / rank * up (out, r) @ down (r, K). */
static int merge_layer(const lora_file *lf, const lora_layer *layer, float scale,
                       sd_tensor_map *map, sd_patched *patched) {
  if (!layer->down && !layer->up)
    return SD_ERROR("layer '%s': an alpha but no down / up weights", layer->module);
  if (!layer->down || !layer->up)
    return SD_ERROR("layer '%s': key '%s' has no %s", layer->module,
                    layer->down ? layer->down->name : layer->up->name,
                    layer->down ? "up (lora_B / lora_up) partner"
                                : "down (lora_A / lora_down) "
                                  "partner");
  char name[600];
  snprintf(name, sizeof name, "%s.weight", layer->module);
  const sd_st_tensor *w = sd_tensor_map_get(map, name);
  int64_t rank = 0, k = 0;
  SD_TRY(check_fit(layer, w, &rank, &k));
  int64_t out = w->shape[0];
  float alpha = layer->alpha_key ? layer->alpha : default_alpha(lf, layer, rank);
  float factor = scale * alpha / (float)rank;
  float *weight;
  SD_TRY(sd_patched_f32(patched, map, name, &weight));
  float *down = malloc((size_t)(rank * k) * sizeof *down);
  float *up = malloc((size_t)(out * rank) * sizeof *up);
  if (!down || !up) {
    free(down);
    free(up);
    return SD_ERROR("layer '%s': out of memory", layer->module);
  }
  sd_convert_to_f32(layer->down->dtype, layer->down->data, down, (size_t)(rank * k));
  sd_convert_to_f32(layer->up->dtype, layer->up->data, up, (size_t)(out * rank));
  int rc = sd_lora_add_product(weight, out, k, rank, factor, up, down);
  free(down);
  free(up);
  return rc < 0 ? sd_error_context("layer '%s'", layer->module) : 0;
}

int sd_lora_add_product(float *w, int64_t out, int64_t k, int64_t rank, float factor,
                        const float *up, const float *down) {
  /* weight (out, k) += factor * up (out, rank) . down (rank, k) */
  dnnl_status_t status = dnnl_sgemm('N', 'N', out, k, rank, factor, up, rank, down, k, 1.0f, w, k);
  if (status != dnnl_success)
    return SD_ERROR("oneDNN: dnnl_sgemm: %s", dnnl_status2str(status));
  return 0;
}

int sd_lora_merge(const char *path, float scale, sd_tensor_map *unet, sd_tensor_map *text_encoder,
                  sd_patched *patched) {
  if (!isfinite(scale))
    return SD_ERROR("%s: the LoRA scale is not a finite number", path);
  lora_file lf = {.path = path};
  int rc = sd_safetensors_open(path, &lf.file);
  if (rc == 0) {
    const char *meta = sd_safetensors_metadata(lf.file, "lora_adapter_metadata");
    if (meta && !(lf.metadata = cJSON_Parse(meta)))
      rc = SD_ERROR("metadata 'lora_adapter_metadata' is not JSON");
  }
  sd_tensor_map *maps[2] = {unet, text_encoder};
  const sd_tensor_map *const_maps[2] = {unet, text_encoder};
  if (rc == 0)
    rc = collect(&lf, const_maps);
  for (size_t i = 0; rc == 0 && i < lf.count; i++)
    rc = merge_layer(&lf, &lf.layers[i], scale, maps[lf.layers[i].component], patched);
  if (rc < 0 && lf.file)
    sd_error_context("%s", path);
  lora_file_free(&lf);
  return rc;
}
