/* diffusers' VaeImageProcessor preprocessing of input images and inpainting masks (see
 * image.h), in float32 as numpy and torch compute it: np.array(img).astype(float32) / 255.0,
 * then 2 * x - 1 for images, or the x < 0.5 threshold for masks. */
#include "image.h"

#include "../../kernels/error.h"

#include <string.h>

int sd_image_vae_size(const char *what, int width, int height, int factor, int *out_width,
                      int *out_height) {
  *out_width = width - width % factor;
  *out_height = height - height % factor;
  if (*out_width < factor || *out_height < factor)
    return SD_ERROR("%s: %dx%d is smaller than the VAE's %d pixels per latent in a side", what,
                    width, height, factor);
  return 0;
}

/* rgb resized to width x height by PIL LANCZOS (a copy when the size is already right). */
static int resized(const sd_image *rgb, int width, int height, sd_image *out) {
  return sd_image_resize(rgb, width, height, SD_RESAMPLE_LANCZOS, out);
}

int sd_image_preprocess(const sd_image *rgb, int width, int height, float *out) {
  return sd_image_preprocess_resample(rgb, width, height, SD_RESAMPLE_LANCZOS, out);
}

int sd_image_preprocess_resample(const sd_image *rgb, int width, int height, sd_resample filter,
                                 float *out) {
  sd_image img;
  SD_TRY(sd_image_resize(rgb, width, height, filter, &img));
  size_t plane = (size_t)width * height;
  for (size_t i = 0; i < plane; i++)
    for (int c = 0; c < 3; c++) {
      float x = (float)img.data[3 * i + c] / 255.0f;
      out[c * plane + i] = 2.0f * x - 1.0f;
    }
  sd_image_free(&img);
  return 0;
}

int sd_mask_preprocess(const sd_image *rgb, int width, int height, float *out) {
  sd_image img, luma;
  SD_TRY(resized(rgb, width, height, &img));
  int rc = sd_image_to_luma(&img, &luma);
  sd_image_free(&img);
  if (rc < 0)
    return rc;
  size_t plane = (size_t)width * height;
  for (size_t i = 0; i < plane; i++)
    out[i] = (float)luma.data[i] / 255.0f < 0.5f ? 0.0f : 1.0f;
  sd_image_free(&luma);
  return 0;
}

void sd_mask_to_latent_size(const float *mask, int width, int height, int factor, float *out) {
  int w = width / factor, h = height / factor;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      out[(size_t)y * w + x] = mask[(size_t)y * factor * width + (size_t)x * factor];
}

void sd_masked_image(const float *image, const float *mask, int width, int height, float *out) {
  size_t plane = (size_t)width * height;
  for (int c = 0; c < 3; c++)
    for (size_t i = 0; i < plane; i++)
      out[c * plane + i] = image[c * plane + i] * (mask[i] < 0.5f ? 1.0f : 0.0f);
}
