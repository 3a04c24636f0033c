/* Depth maps given as NumPy .npy files: a strict, bounded reader of the one layout sdbatch takes,
 * little-endian float32 ('<f4'), C order, shape (H, W) or (1, H, W), every value finite. Any other
 * dtype, order, rank, size or a file of the wrong length is refused with an error naming the file
 * and what is wrong; nothing about the file is trusted before it is checked. */
#ifndef SD_NPY_H
#define SD_NPY_H

#include <stdint.h>

/* Largest side accepted (a depth map is resized to the latent size anyway). */
#define SD_NPY_MAX_SIDE 8192

/* *data (H * W floats, row-major; free() it), *height, *width. */
int sd_npy_read_depth(const char *path, float **data, int *height, int *width);

#endif
