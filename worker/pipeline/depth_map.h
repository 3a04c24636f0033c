/* The depth conditioning of StableDiffusionDepth2ImgPipeline (prepare_depth_map): a depth map
 * (the estimator's predicted_depth or the user's) resized bicubically (align_corners=False) to
 * the latent size, then min-max normalized to [-1, 1]. */
#ifndef SD_DEPTH_MAP_H
#define SD_DEPTH_MAP_H

#include "../../kernels/ops.h"

/* depth (1, H, W) on the backend -> out (1, 1, h, w) (allocated by the caller) = 2 (d - min) /
 * (max - min) - 1 of the resized map, in float32 in torch's order of operations. A constant
 * map (max == min, where diffusers would divide by zero) is refused; `what` names the map in
 * errors (a file name, or "the depth estimator's map"). */
int sd_depth_map_prepare(sd_backend *be, const sd_tensor *depth, const char *what, sd_tensor *out);

/* A depth map file by its extension: .npy (npy.h), or a grayscale .png whose samples (0..255 at
 * 8 bits, 0..65535 at 16) are the depths (the normalization makes their scale irrelevant).
 * *data (H * W floats; free() it). */
int sd_depth_map_read(const char *path, float **data, int *height, int *width);

#endif
