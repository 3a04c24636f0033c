/* Textual-inversion embedding files (see embedding.h). */
#include "embedding.h"

#include "safetensors.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int has_extension(const char *path, const char *ext) {
  size_t n = strlen(path), k = strlen(ext);
  return n >= k && strcasecmp(path + n - k, ext) == 0;
}

/* The file's name without folders and extension. */
static void file_stem(const char *path, char *out, size_t size) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  const char *dot = strrchr(base, '.');
  size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
  if (len >= size)
    len = size - 1;
  memcpy(out, base, len);
  out[len] = '\0';
}

void sd_embedding_free(sd_embedding *embedding) {
  free(embedding->data);
  embedding->data = NULL;
}

static int read_vectors(const sd_st_tensor *t, const char *token, sd_embedding *out) {
  if (t->dtype == SD_DTYPE_I32 || (t->ndim != 1 && t->ndim != 2) || t->shape[t->ndim - 1] < 1 ||
      (t->ndim == 2 && (t->shape[0] < 1 || t->shape[0] > 1024)))
    return SD_ERROR("tensor '%s': expected floating-point (C) or (N, C) vectors with 1 <= N <= "
                    "1024, got %d dimensions of %s",
                    t->name, t->ndim, sd_dtype_name(t->dtype));
  if (strlen(token) >= sizeof out->token)
    return SD_ERROR("token '%s' is too long", token);
  snprintf(out->token, sizeof out->token, "%s", token);
  out->vectors = t->ndim == 2 ? (int)t->shape[0] : 1;
  out->dim = (int)t->shape[t->ndim - 1];
  size_t n = (size_t)out->vectors * (size_t)out->dim;
  out->data = malloc(n * sizeof *out->data);
  if (!out->data)
    return SD_ERROR("out of memory");
  sd_convert_to_f32(t->dtype, t->data, out->data, n);
  for (size_t i = 0; i < n; i++)
    if (!isfinite(out->data[i])) {
      sd_embedding_free(out);
      return SD_ERROR("tensor '%s': value %zu is not finite", t->name, i);
    }
  return 0;
}

int sd_embedding_load(const char *path, const char *token, sd_embedding *out) {
  memset(out, 0, sizeof *out);
  if (has_extension(path, ".bin") || has_extension(path, ".pt") || has_extension(path, ".ckpt") ||
      has_extension(path, ".pth"))
    return SD_ERROR("%s: a pickle file (.bin/.pt/.ckpt); sdbatch reads only .safetensors "
                    "embeddings, since loading a pickle can run code. Convert it once where you "
                    "trust it, e.g. with safetensors.torch.save_file",
                    path);
  sd_safetensors *file;
  SD_TRY(sd_safetensors_open(path, &file));
  int rc;
  if (sd_safetensors_count(file) != 1) {
    rc = SD_ERROR("expected one tensor (diffusers: named by its token; A1111: 'emb_params'), "
                  "found %zu",
                  sd_safetensors_count(file));
  } else {
    const sd_st_tensor *t = sd_safetensors_at(file, 0);
    char stem[256];
    file_stem(path, stem, sizeof stem);
    int a1111 = !strcmp(t->name, "emb_params") || !strcmp(t->name, "string_to_param.*");
    const char *name = token ? token : a1111 ? stem : t->name;
    rc = read_vectors(t, name, out);
  }
  if (rc < 0)
    sd_error_context("%s", path);
  sd_safetensors_close(file);
  return rc;
}
