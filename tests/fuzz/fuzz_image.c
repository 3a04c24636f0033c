/* Input images (PNG and JPEG, told apart by their signature) as render --init-image and --mask
 * read them, and the same bytes as a grayscale PNG depth map (render --depth-map); a decoded image
 * small enough to keep the fuzzer fast also goes through the resize filters, the luma conversion
 * and both preprocessors, whose sizes come from it. */
#include "fuzz.h"

#include "image/image.h"

#include <stdlib.h>

/* Decoded images with a side above this skip the pixel stages (the decoders are what is fuzzed;
 * a 8192 x 8192 resize per input would make the run slow, not deeper). */
#define PIXEL_STAGES_MAX_SIDE 256

static void pixel_stages(const sd_image *rgb, size_t size) {
  static const sd_resample filters[] = {SD_RESAMPLE_BOX, SD_RESAMPLE_BILINEAR, SD_RESAMPLE_HAMMING,
                                        SD_RESAMPLE_BICUBIC, SD_RESAMPLE_LANCZOS};
  /* odd target sizes, up and down from the input's */
  int width = rgb->width % 2 ? rgb->width * 2 + 1 : rgb->width / 2 + 1;
  int height = rgb->height % 3 ? rgb->height / 3 + 1 : rgb->height + 7;
  sd_image resized = {0}, luma = {0};
  if (sd_image_resize(rgb, width, height, filters[size % 5], &resized) == 0)
    sd_image_free(&resized);
  if (sd_image_to_luma(rgb, &luma) == 0)
    sd_image_free(&luma);
  int vae_width, vae_height;
  if (sd_image_vae_size("the input", rgb->width, rgb->height, 8, &vae_width, &vae_height) < 0)
    return;
  float *pixels = malloc((size_t)3 * vae_width * vae_height * sizeof(float));
  if (pixels) {
    sd_image_preprocess(rgb, vae_width, vae_height, pixels);
    sd_mask_preprocess(rgb, vae_width, vae_height, pixels);
  }
  free(pixels);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = sd_fuzz_file(data, size);
  if (!path)
    return 0;
  float *depth = NULL;
  int depth_width, depth_height;
  if (sd_image_read_gray_samples(path, &depth, &depth_width, &depth_height) == 0)
    free(depth);
  sd_image rgb = {0};
  if (sd_image_read_rgb(path, &rgb) < 0)
    return 0;
  if (rgb.width <= PIXEL_STAGES_MAX_SIDE && rgb.height <= PIXEL_STAGES_MAX_SIDE)
    pixel_stages(&rgb, size);
  sd_image_free(&rgb);
  return 0;
}
