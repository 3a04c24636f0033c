/* Readers for the JSON configs of a diffusers folder: diffusers' unet/ and vae/ config.json,
 * transformers' text_encoder/config.json (CLIPTextConfig), scheduler/scheduler_config.json and
 * the tokenizer/ folder. Used by model_files.c; declared here for tests.
 *
 * Fields absent (or null) take the defaults of the diffusers / transformers class, except the
 * structural fields every Stable Diffusion config states, which are required: UNet
 * block_out_channels, down_block_types, up_block_types, layers_per_block, cross_attention_dim,
 * sample_size; VAE block_out_channels, layers_per_block; CLIP hidden_size, intermediate_size,
 * num_hidden_layers, num_attention_heads; scheduler _class_name. Values the engine does not
 * implement (a block type other than CrossAttn/plain Down/Up blocks, time_embedding_type other
 * than positional, class_embed_type set, ...) are rejected. Errors name the file and the field. */
#ifndef SD_CONFIG_JSON_H
#define SD_CONFIG_JSON_H

#include "model_files.h"

#include <cjson/cJSON.h>

/* Reads and parses a JSON file (a regular file of at most SD_FILE_MAX_CONFIG bytes); the result
 * must be an object. Free with cJSON_Delete. */
int sd_json_read_file(const char *path, cJSON **out);
/* The same for text[0, len) in memory, named name in errors. */
int sd_json_parse_object(const char *text, size_t len, const char *name, cJSON **out);

/* Each reader reads path and calls its parser; parsers take the file's text (for tests and the
 * fuzz harnesses) and name it name in errors. Every size is bounded (config_check.h). */
int sd_unet_config_read(const char *path, sd_unet_config *cfg);
int sd_unet_config_parse(const char *text, size_t len, const char *name, sd_unet_config *cfg);
int sd_vae_config_read(const char *path, sd_vae_config *cfg);
int sd_vae_config_parse(const char *text, size_t len, const char *name, sd_vae_config *cfg);
int sd_clip_config_read(const char *path, sd_clip_config *cfg);
int sd_clip_config_parse(const char *text, size_t len, const char *name, sd_clip_config *cfg);
/* Starts from sd_scheduler_config_defaults and sets, with its fields_set bit, each field the
 * file states. */
int sd_scheduler_config_read(const char *path, sd_scheduler_config *cfg);
int sd_scheduler_config_parse(const char *text, size_t len, const char *name,
                              sd_scheduler_config *cfg);
/* dir: a tokenizer folder (vocab.json + merges.txt, or tokenizer.json). The pad token comes from
 * special_tokens_map.json, else tokenizer_config.json, else CLIPTokenizer's "<|endoftext|>";
 * model_max_length from tokenizer_config.json, capped at max_position_embeddings (the text
 * encoder's), which is also the default. */
int sd_tokenizer_files_read(const char *dir, int max_position_embeddings, sd_tokenizer_files *tok);

#endif
