/* LoRA key names (see lora_keys.h and, for the formats, lora.h). */
#include "lora_keys.h"

#include "../../kernels/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const component_names[2] = {"unet", "text encoder"};

void sd_lora_kohya_names_free(sd_lora_kohya_names *names) {
  for (size_t i = 0; i < names->count; i++) {
    free(names->modules[i]);
    free(names->kohya[i]);
  }
  free(names->modules);
  free(names->kohya);
  sd_name_index_free(&names->index[0]);
  sd_name_index_free(&names->index[1]);
  memset(names, 0, sizeof *names);
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

int sd_lora_kohya_names_build(sd_lora_kohya_names *names, const sd_tensor_map *unet,
                              const sd_tensor_map *text_encoder) {
  memset(names, 0, sizeof *names);
  const sd_tensor_map *maps[2] = {unet, text_encoder};
  static const char *const prefixes[2] = {"lora_unet_", "lora_te_"};
  size_t total = sd_tensor_map_count(unet) + sd_tensor_map_count(text_encoder);
  names->modules = calloc(total ? total : 1, sizeof *names->modules);
  names->kohya = calloc(total ? total : 1, sizeof *names->kohya);
  if (!names->modules || !names->kohya)
    goto oom;
  for (int c = 0; c < 2; c++)
    for (size_t i = 0; i < sd_tensor_map_count(maps[c]); i++) {
      const char *name = sd_tensor_map_at(maps[c], i)->name;
      if (!ends_with(name, ".weight"))
        continue;
      size_t len = strlen(name) - strlen(".weight");
      /* kohya names text-encoder layers text_model.*, whether or not the checkpoint does */
      const char *prefix =
          c == 1 && !starts_with(name, "text_model.") ? "lora_te_text_model_" : prefixes[c];
      char *module = strndup(name, len);
      char *kohya = malloc(strlen(prefix) + len + 1);
      if (!module || !kohya) {
        free(module);
        free(kohya);
        goto oom;
      }
      strcpy(kohya, prefix);
      for (size_t k = 0; k <= len; k++)
        kohya[strlen(prefix) + k] = module[k] == '.' ? '_' : module[k];
      names->modules[names->count] = module;
      names->kohya[names->count] = kohya;
      if (sd_name_index_put(&names->index[c], kohya, names->count++) < 0)
        goto oom;
    }
  return 0;
oom:
  sd_lora_kohya_names_free(names);
  return SD_ERROR("out of memory listing layer names");
}

/* Whether the component's map has "<module>.weight". */
static bool has_layer(const sd_tensor_map *map, const char *module) {
  char name[512];
  int n = snprintf(name, sizeof name, "%s.weight", module);
  return n > 0 && (size_t)n < sizeof name && sd_tensor_map_get(map, name) != NULL;
}

static int parse_kohya(const char *key, const sd_lora_kohya_names *kohya,
                       sd_lora_component *component, char *module, size_t module_size,
                       sd_lora_role *role) {
  const char *dot = strchr(key, '.');
  if (!dot)
    return SD_ERROR("key '%s': not a kohya LoRA name (<layer>.lora_down.weight, .lora_up.weight "
                    "or .alpha)",
                    key);
  const char *rest = dot + 1;
  if (!strcmp(rest, "lora_down.weight"))
    *role = SD_LORA_DOWN;
  else if (!strcmp(rest, "lora_up.weight"))
    *role = SD_LORA_UP;
  else if (!strcmp(rest, "alpha"))
    *role = SD_LORA_ALPHA;
  else
    return SD_ERROR("key '%s': '%s' is not plain LoRA / LoCon (lora_down, lora_up, alpha); "
                    "DoRA, LoHa, LoKr and other LyCORIS kinds are not supported",
                    key, rest);
  char lora_name[512];
  size_t len = (size_t)(dot - key);
  if (len >= sizeof lora_name)
    return SD_ERROR("key '%s': name too long", key);
  memcpy(lora_name, key, len);
  lora_name[len] = '\0';
  *component = starts_with(key, "lora_unet_") ? SD_LORA_UNET : SD_LORA_TEXT_ENCODER;
  size_t at;
  if (!sd_name_index_get(&kohya->index[*component], lora_name, &at))
    return SD_ERROR("key '%s': the %s has no layer '%s' (a LoRA for another model "
                    "architecture?)",
                    key, component_names[*component], lora_name);
  if (strlen(kohya->modules[at]) >= module_size)
    return SD_ERROR("key '%s': name too long", key);
  strcpy(module, kohya->modules[at]);
  return 0;
}

/* Removes every ".processor" segment (diffusers' attention-processor names). */
static void drop_processor(char *s) {
  char *p;
  while ((p = strstr(s, ".processor")) && (p[10] == '.' || p[10] == '\0'))
    memmove(p, p + 10, strlen(p + 10) + 1);
}

/* Old attention-processor layer names: <attention>.to_q_lora -> the linear layer. */
static int old_processor_layer(char *stem, size_t size, sd_lora_component component,
                               const char *key) {
  static const char *const unet_names[4][2] = {
      {".to_q", ".to_q"}, {".to_k", ".to_k"}, {".to_v", ".to_v"}, {".to_out", ".to_out.0"}};
  static const char *const te_names[4][2] = {
      {".to_q", ".q_proj"}, {".to_k", ".k_proj"}, {".to_v", ".v_proj"}, {".to_out", ".out_proj"}};
  const char *const(*table)[2] = component == SD_LORA_UNET ? unet_names : te_names;
  for (int i = 0; i < 4; i++)
    if (ends_with(stem, table[i][0])) {
      size_t base = strlen(stem) - strlen(table[i][0]);
      if (base + strlen(table[i][1]) >= size)
        break;
      strcpy(stem + base, table[i][1]);
      return 0;
    }
  return SD_ERROR("key '%s': '<layer>_lora' names are to_q_lora, to_k_lora, to_v_lora or "
                  "to_out_lora",
                  key);
}

static int parse_diffusers(const char *key, const sd_tensor_map *const maps[2],
                           sd_lora_component *component, char *module, size_t module_size,
                           sd_lora_role *role) {
  static const struct {
    const char *suffix;
    sd_lora_role role;
    bool old; /* <layer>_lora.down: the older attention-processor names */
  } suffixes[] = {
      {".lora_A.weight", SD_LORA_DOWN, false},
      {".lora_B.weight", SD_LORA_UP, false},
      {".lora_linear_layer.down.weight", SD_LORA_DOWN, false},
      {".lora_linear_layer.up.weight", SD_LORA_UP, false},
      {".lora.down.weight", SD_LORA_DOWN, false},
      {".lora.up.weight", SD_LORA_UP, false},
      {"_lora.down.weight", SD_LORA_DOWN, true},
      {"_lora.up.weight", SD_LORA_UP, true},
      {".alpha", SD_LORA_ALPHA, false},
  };
  const char *rest = key;
  if (starts_with(key, "text_encoder_2.") || starts_with(key, "lora_te1_") ||
      starts_with(key, "lora_te2_"))
    return SD_ERROR("key '%s': a LoRA for SDXL (two text encoders); this model has one", key);
  *component = SD_LORA_UNET;
  if (starts_with(key, "unet.")) {
    rest += strlen("unet.");
  } else if (starts_with(key, "text_encoder.")) {
    *component = SD_LORA_TEXT_ENCODER;
    rest += strlen("text_encoder.");
  }
  if (strstr(key, "lora_magnitude_vector") || strstr(key, "dora_scale"))
    return SD_ERROR("key '%s': DoRA is not supported (plain LoRA only)", key);
  if (ends_with(key, ".bias") && strstr(key, "lora_B"))
    return SD_ERROR("key '%s': LoRA biases (lora_bias) are not supported", key);
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    if (!ends_with(rest, suffixes[i].suffix))
      continue;
    size_t len = strlen(rest) - strlen(suffixes[i].suffix);
    if (len == 0 || len >= module_size)
      break;
    memcpy(module, rest, len);
    module[len] = '\0';
    drop_processor(module);
    if (suffixes[i].old)
      SD_TRY(old_processor_layer(module, module_size, *component, key));
    *role = suffixes[i].role;
    const sd_tensor_map *map = maps[*component];
    if (has_layer(map, module))
      return 0;
    /* text-encoder layers are text_model.* or, as transformers >= 5.6 saves them, without
     * "text_model.": either spelling finds the layer */
    char other[512];
    if (*component == SD_LORA_TEXT_ENCODER) {
      if (starts_with(module, "text_model."))
        snprintf(other, sizeof other, "%s", module + strlen("text_model."));
      else if ((size_t)snprintf(other, sizeof other, "text_model.%s", module) >= sizeof other)
        other[0] = '\0';
      if (other[0] && strlen(other) < module_size && has_layer(map, other)) {
        strcpy(module, other);
        return 0;
      }
    }
    return SD_ERROR("key '%s': the %s has no layer '%s' (a LoRA for another model "
                    "architecture?)",
                    key, component_names[*component], module);
  }
  return SD_ERROR("key '%s': not a LoRA key this loader knows (diffusers/peft lora_A/lora_B, "
                  "to_q_lora.down/up, or kohya lora_unet_/lora_te_ names)",
                  key);
}

int sd_lora_parse_key(const char *key, const sd_tensor_map *const maps[2],
                      const sd_lora_kohya_names *kohya, bool *need_kohya,
                      sd_lora_component *component, char *module, size_t module_size,
                      sd_lora_role *role) {
  *need_kohya = false;
  if (starts_with(key, "lora_unet_") || starts_with(key, "lora_te_")) {
    if (!kohya) {
      *need_kohya = true;
      return -1;
    }
    return parse_kohya(key, kohya, component, module, module_size, role);
  }
  return parse_diffusers(key, maps, component, module, module_size, role);
}
