/* A model's identity for the output file's model_identity attribute: SHA-256 (hex) of a
 * canonical text of the model's family, the config fields that shape its images (heads,
 * norms, VAE scaling, the scheduler config) and its tensor records (diffusers name, dtype,
 * shape, sorted by name). The weights' bytes are not read: the identity tells models apart by
 * structure and configuration, in O(tensors), independent of the path. */
#ifndef SD_RUN_MODEL_IDENTITY_H
#define SD_RUN_MODEL_IDENTITY_H

#include "../worker/io/model_files.h"

int sd_model_identity(const sd_model_files *model, char hex[65]);

#endif
