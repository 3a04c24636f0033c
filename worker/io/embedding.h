/* Textual-inversion embedding files (.safetensors): diffusers' learned_embeds.safetensors (one
 * tensor named by its token, (C) or (N, C)) and A1111's (one tensor "emb_params", (N, C); the
 * token is the file's name without its extension, as A1111 names it, unless one is given).
 * Pickle files (.bin, .pt, .ckpt) are refused: they can run code when loaded. */
#ifndef SD_EMBEDDING_H
#define SD_EMBEDDING_H

typedef struct sd_embedding {
  char token[256]; /* the (first) token */
  int vectors;     /* N: the token expands to token, token_1, ..., token_{N-1} */
  int dim;         /* C */
  float *data;     /* (N, C), malloc'ed */
} sd_embedding;

/* Reads path; token overrides the file's token when not NULL. Errors name the file. */
int sd_embedding_load(const char *path, const char *token, sd_embedding *out);
void sd_embedding_free(sd_embedding *embedding);

#endif
