/* Depth conditioning for depth-to-image, see depth_map.h. The resize runs on the backend; the
 * min-max normalization of the small latent-sized map on the host, in float32 as torch evaluates
 * 2.0 * (d - min) / (max - min) - 1.0. */
#include "depth_map.h"

#include "../image/image.h"
#include "../io/npy.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int sd_depth_map_prepare(sd_backend *be, const sd_tensor *depth, const char *what, sd_tensor *out) {
  char sd[96], so[96];
  if (depth->ndim != 3 || depth->shape[0] != 1 || out->ndim != 4 || out->shape[0] != 1 ||
      out->shape[1] != 1)
    return SD_ERROR("%s: depth %s and conditioning %s are not (1, H, W) and (1, 1, h, w)", what,
                    sd_tensor_shape_str(depth, sd, sizeof sd),
                    sd_tensor_shape_str(out, so, sizeof so));
  sd_tensor d4;
  SD_TRY(
      sd_tensor_reshape(depth, 4, (const int64_t[]){1, 1, depth->shape[1], depth->shape[2]}, &d4));
  SD_TRY(sd_op_interpolate(be, &d4, SD_INTERP_BICUBIC, false, out));
  size_t n = (size_t)sd_tensor_numel(out);
  float *v = malloc(n * sizeof *v);
  if (!v)
    return SD_ERROR("%s: out of memory for the depth conditioning", what);
  int rc = sd_tensor_download_f32(be, out, v);
  float lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    lo = v[i] < lo ? v[i] : lo;
    hi = v[i] > hi ? v[i] : hi;
  }
  if (rc == 0 && !(hi > lo)) {
    rc = SD_ERROR("%s: the depth map is constant (or not finite) at the latent size %lldx%lld; "
                  "min-max normalization needs depth differences",
                  what, (long long)out->shape[2], (long long)out->shape[3]);
  }
  if (rc == 0) {
    float range = hi - lo;
    for (size_t i = 0; i < n; i++) {
      float t = v[i] - lo;
      t = 2.0f * t;
      t = t / range;
      v[i] = t - 1.0f;
    }
    rc = sd_tensor_upload_f32(be, out, v);
  }
  free(v);
  return rc;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

int sd_depth_map_read(const char *path, float **data, int *height, int *width) {
  *data = NULL;
  if (ends_with(path, ".npy"))
    return sd_npy_read_depth(path, data, height, width);
  if (ends_with(path, ".png"))
    return sd_image_read_gray_samples(path, data, width, height);
  return SD_ERROR("%s: depth maps are read from .npy files (float32, (H, W) or (1, H, W)) and "
                  "grayscale .png files (8 or 16 bits)",
                  path);
}
