/* A model component's weights on a backend: uploaded once from a tensor map (converted to the
 * backend's weight dtype), looked up by diffusers name with shape checks. */
#ifndef SD_WEIGHTS_H
#define SD_WEIGHTS_H

#include "../../kernels/ops.h"
#include "tensor_map.h"

typedef struct sd_weights sd_weights;

/* Uploads every tensor of map. component names the part in errors ("unet", "vae", ...). */
int sd_weights_upload(sd_backend *be, const sd_tensor_map *map, const char *component,
                      sd_weights **out);
void sd_weights_free(sd_weights *weights);

/* The tensor named by the printf-style name, checked to have `ndim` dims equal to `shape`
 * (entries < 0 match anything). Missing or mis-shaped: -1 with an error naming the component,
 * the tensor, and both shapes. */
int sd_weights_get(const sd_weights *weights, const sd_tensor **out, int ndim, const int64_t *shape,
                   const char *name_fmt, ...) __attribute__((format(printf, 5, 6)));
/* A weights object that records every tensor asked of it by sd_weights_get (name and exact
 * shape, in order) and hands out tensors without memory: running a model's create function on it
 * lists the tensors that model needs (used to write random-weight demo models). A recorder
 * rejects shape entries < 0. */
int sd_weights_recorder_create(sd_weights **out);
/* Tensors held (uploaded or recorded), in order. */
size_t sd_weights_count(const sd_weights *weights);
const char *sd_weights_name_at(const sd_weights *weights, size_t index);
const sd_tensor *sd_weights_at(const sd_weights *weights, size_t index);

/* NULL when absent, no error. */
const sd_tensor *sd_weights_find(const sd_weights *weights, const char *name);
/* Backend bytes of the tensors (a recorder: what they would take in float32). */
size_t sd_weights_bytes(const sd_weights *weights);

#endif
