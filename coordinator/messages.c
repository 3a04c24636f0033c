/* RESULT message layout (messages.h). */
#include "messages.h"

#include "../kernels/error.h"

#include <string.h>

typedef struct result_header {
  int64_t index;
  int32_t done;
  int32_t reason_bytes; /* with the NUL; 0 when done */
} result_header;

static size_t latent_bytes(const sd_render_shape *s) {
  return (size_t)s->latent_channels * (size_t)s->latent_h * (size_t)s->latent_w * sizeof(float);
}

static size_t rgb_bytes(const sd_render_shape *s) {
  return (size_t)s->width * (size_t)s->height * 3;
}

size_t sd_result_msg_bytes(const sd_render_shape *shape, const sd_item_result *result) {
  if (result->done)
    return sizeof(result_header) + latent_bytes(shape) + rgb_bytes(shape);
  return sizeof(result_header) + strlen(result->reason) + 1;
}

void sd_result_msg_encode(const sd_render_shape *shape, const sd_item_result *result,
                          uint8_t *buf) {
  result_header h = {result->index, result->done ? 1 : 0, 0};
  if (!result->done)
    h.reason_bytes = (int32_t)(strlen(result->reason) + 1);
  memcpy(buf, &h, sizeof h);
  buf += sizeof h;
  if (result->done) {
    memcpy(buf, result->latents, latent_bytes(shape));
    memcpy(buf + latent_bytes(shape), result->rgb, rgb_bytes(shape));
  } else {
    memcpy(buf, result->reason, (size_t)h.reason_bytes);
  }
}

int sd_result_msg_decode(const sd_render_shape *shape, const uint8_t *buf, size_t bytes,
                         sd_item_result *out) {
  result_header h;
  if (bytes < sizeof h)
    return SD_ERROR("result message of %zu bytes: shorter than its header", bytes);
  memcpy(&h, buf, sizeof h);
  const uint8_t *body = buf + sizeof h;
  size_t body_bytes = bytes - sizeof h;
  out->index = h.index;
  out->done = h.done != 0;
  if (out->done) {
    if (body_bytes != latent_bytes(shape) + rgb_bytes(shape))
      return SD_ERROR("result of item %lld: %zu bytes of data, expected %zu", (long long)h.index,
                      body_bytes, latent_bytes(shape) + rgb_bytes(shape));
    out->latents = (const float *)(const void *)body;
    out->rgb = body + latent_bytes(shape);
    out->reason = "";
    return 0;
  }
  if (h.reason_bytes < 1 || (size_t)h.reason_bytes != body_bytes || body[body_bytes - 1] != '\0')
    return SD_ERROR("result of item %lld: malformed failure reason", (long long)h.index);
  out->rgb = NULL;
  out->latents = NULL;
  out->reason = (const char *)body;
  return 0;
}
