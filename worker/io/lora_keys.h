/* LoRA key names -> (component, diffusers module, role): the diffusers / peft names, the older
 * attention-processor names and kohya-ss names (see lora.h). Internal to lora.c. */
#ifndef SD_LORA_KEYS_H
#define SD_LORA_KEYS_H

#include "name_index.h"
#include "tensor_map.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum sd_lora_component { SD_LORA_UNET = 0, SD_LORA_TEXT_ENCODER = 1 } sd_lora_component;
typedef enum sd_lora_role { SD_LORA_DOWN, SD_LORA_UP, SD_LORA_ALPHA } sd_lora_role;

/* kohya-ss names of a model's layers: "lora_unet_" / "lora_te_" + the module name with '.' as
 * '_' -> the module name, for every ".weight" of the two maps. */
typedef struct sd_lora_kohya_names {
  sd_name_index index[2]; /* per component: kohya name -> position in modules */
  char **modules;         /* (count) diffusers module names (without ".weight") */
  char **kohya;           /* (count) their kohya names (the index's keys) */
  size_t count;
} sd_lora_kohya_names;

int sd_lora_kohya_names_build(sd_lora_kohya_names *names, const sd_tensor_map *unet,
                              const sd_tensor_map *text_encoder);
void sd_lora_kohya_names_free(sd_lora_kohya_names *names);

/* Parses key; on success the module is a name whose "<module>.weight" the component's map has.
 * -1 with an error about the key otherwise (no path: the caller adds it). kohya may be NULL until
 * a kohya key is met: then *need_kohya is set and -1 returned without an error. */
int sd_lora_parse_key(const char *key, const sd_tensor_map *const maps[2],
                      const sd_lora_kohya_names *kohya, bool *need_kohya,
                      sd_lora_component *component, char *module, size_t module_size,
                      sd_lora_role *role);

#endif
