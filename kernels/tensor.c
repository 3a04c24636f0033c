/* Tensor headers, shapes and host dtype conversions (see tensor.h). */
#include "tensor.h"

#include "error.h"

#include <stdio.h>
#include <string.h>

size_t sd_dtype_size(sd_dtype dtype) {
  switch (dtype) {
  case SD_DTYPE_F32:
  case SD_DTYPE_I32:
    return 4;
  case SD_DTYPE_F16:
  case SD_DTYPE_BF16:
    return 2;
  }
  return 0;
}

const char *sd_dtype_name(sd_dtype dtype) {
  switch (dtype) {
  case SD_DTYPE_F32:
    return "F32";
  case SD_DTYPE_F16:
    return "F16";
  case SD_DTYPE_BF16:
    return "BF16";
  case SD_DTYPE_I32:
    return "I32";
  }
  return "?";
}

int64_t sd_tensor_numel(const sd_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}

size_t sd_tensor_bytes(const sd_tensor *t) {
  return (size_t)sd_tensor_numel(t) * sd_dtype_size(t->dtype);
}

sd_tensor sd_tensor_make(sd_dtype dtype, int ndim, const int64_t *shape) {
  sd_tensor t;
  memset(&t, 0, sizeof t);
  t.dtype = dtype;
  t.ndim = ndim;
  for (int i = 0; i < ndim && i < SD_MAX_DIMS; i++)
    t.shape[i] = shape[i];
  return t;
}

sd_tensor sd_tensor_4d(sd_dtype dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  int64_t shape[4] = {d0, d1, d2, d3};
  return sd_tensor_make(dtype, 4, shape);
}

sd_tensor sd_tensor_3d(sd_dtype dtype, int64_t d0, int64_t d1, int64_t d2) {
  int64_t shape[3] = {d0, d1, d2};
  return sd_tensor_make(dtype, 3, shape);
}

sd_tensor sd_tensor_2d(sd_dtype dtype, int64_t d0, int64_t d1) {
  int64_t shape[2] = {d0, d1};
  return sd_tensor_make(dtype, 2, shape);
}

sd_tensor sd_tensor_1d(sd_dtype dtype, int64_t d0) {
  return sd_tensor_make(dtype, 1, &d0);
}

int sd_tensor_reshape(const sd_tensor *t, int ndim, const int64_t *shape, sd_tensor *out) {
  sd_tensor r = sd_tensor_make(t->dtype, ndim, shape);
  r.data = t->data;
  if (ndim < 1 || ndim > SD_MAX_DIMS || sd_tensor_numel(&r) != sd_tensor_numel(t)) {
    char a[96], b[96];
    return SD_ERROR("cannot reshape %s to %s", sd_tensor_shape_str(t, a, sizeof a),
                    sd_tensor_shape_str(&r, b, sizeof b));
  }
  *out = r;
  return 0;
}

sd_tensor sd_tensor_slice0(const sd_tensor *t, int64_t first, int64_t count) {
  sd_tensor s = *t;
  size_t row_bytes = sd_tensor_bytes(t) / (size_t)(t->shape[0] ? t->shape[0] : 1);
  s.data = (char *)t->data + (size_t)first * row_bytes;
  s.shape[0] = count;
  return s;
}

int sd_tensor_same_shape(const sd_tensor *a, const sd_tensor *b) {
  if (a->ndim != b->ndim)
    return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i])
      return 0;
  return 1;
}

const char *sd_tensor_shape_str(const sd_tensor *t, char *buf, size_t size) {
  size_t used = 0;
  used += (size_t)snprintf(buf + used, size - used, "(");
  for (int i = 0; i < t->ndim && used < size; i++)
    used +=
        (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)t->shape[i]);
  if (used < size)
    snprintf(buf + used, size - used, ")");
  return buf;
}

float sd_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else { /* subnormal: normalise */
      int shift = 0;
      while (!(mantissa & 0x400)) {
        mantissa <<= 1;
        shift++;
      }
      mantissa &= 0x3ff;
      bits = sign | ((uint32_t)(127 - 15 - shift + 1) << 23) | (mantissa << 13);
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t sd_f32_to_f16(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  uint32_t sign = (bits >> 16) & 0x8000;
  uint32_t abs_bits = bits & 0x7fffffff;
  if (abs_bits >= 0x7f800000u) /* inf or nan */
    return (uint16_t)(sign | 0x7c00 | (abs_bits > 0x7f800000u ? 0x200 : 0));
  if (abs_bits >= 0x477ff000u) /* rounds to >= 65520: overflow */
    return (uint16_t)(sign | 0x7c00);
  if (abs_bits < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
    float abs_f;
    memcpy(&abs_f, &abs_bits, sizeof abs_f);
    /* scale so that one half-subnormal ulp (2^-24) becomes 1.0, then round to nearest even */
    float scaled = abs_f * 16777216.0f;
    uint32_t q = (uint32_t)scaled;
    float rest = scaled - (float)q;
    if (rest > 0.5f || (rest == 0.5f && (q & 1)))
      q++;
    return (uint16_t)(sign | q);
  }
  uint32_t exponent = ((abs_bits >> 23) - 127 + 15) << 10;
  uint32_t mantissa = (abs_bits >> 13) & 0x3ff;
  uint32_t rest = abs_bits & 0x1fff;
  uint32_t h = exponent | mantissa;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
    h++;
  return (uint16_t)(sign | h);
}

float sd_bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t sd_f32_to_bf16(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffff) > 0x7f800000u)
    return (uint16_t)((bits >> 16) | 0x40);
  uint32_t rounding = 0x7fff + ((bits >> 16) & 1);
  return (uint16_t)((bits + rounding) >> 16);
}

void sd_convert_to_f32(sd_dtype src_dtype, const void *src, float *dst, size_t n) {
  switch (src_dtype) {
  case SD_DTYPE_F32:
    memcpy(dst, src, n * sizeof(float));
    break;
  /* src may sit at any byte offset (a safetensors header of odd length puts the data there):
   * every element is loaded with memcpy, which compiles to a plain unaligned load */
  case SD_DTYPE_F16:
    for (size_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, (const uint8_t *)src + i * sizeof h, sizeof h);
      dst[i] = sd_f16_to_f32(h);
    }
    break;
  case SD_DTYPE_BF16:
    for (size_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, (const uint8_t *)src + i * sizeof h, sizeof h);
      dst[i] = sd_bf16_to_f32(h);
    }
    break;
  case SD_DTYPE_I32:
    for (size_t i = 0; i < n; i++) {
      int32_t v;
      memcpy(&v, (const uint8_t *)src + i * sizeof v, sizeof v);
      dst[i] = (float)v;
    }
    break;
  }
}
