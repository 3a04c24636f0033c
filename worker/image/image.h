/* Input images: reading PNG and JPEG files into 8-bit RGB exactly as diffusers receives them
 * (diffusers.utils.load_image: PIL's Image.open(...).convert("RGB")), resizing exactly as PIL's
 * Image.resize, and PIL's convert("L"). Everything here runs on the host, on uint8 pixels.
 *
 * Layout: an sd_image is (height, width, channels) uint8, rows top to bottom, channels 3 (RGB)
 * or 1 (luma / a mask). */
#ifndef SD_IMAGE_H
#define SD_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* Files larger than this are refused before anything is decoded. */
#define SD_IMAGE_MAX_FILE_BYTES ((size_t)256 << 20)
/* Images wider or taller than this, or with more pixels than SD_IMAGE_MAX_PIXELS, are refused
 * from their header, before any pixel memory is allocated. */
#define SD_IMAGE_MAX_SIDE   16384
#define SD_IMAGE_MAX_PIXELS ((int64_t)1 << 26)

typedef struct sd_image {
  int width, height;
  int channels;  /* 3 (RGB) or 1 (L) */
  uint8_t *data; /* (height, width, channels), malloc'ed */
} sd_image;

/* Reads a PNG or JPEG file (told apart by its signature, not its name) into out (channels 3),
 * converted to RGB as PIL's convert("RGB") converts what Image.open gives:
 *  - PNG: 8-bit RGB as is; RGBA and gray+alpha lose alpha (no compositing); gray is replicated;
 *    1-, 2- and 4-bit gray scale to 0..255 (x255, x85, x17); palette images look up their PLTE
 *    (indices past its end are black; tRNS is ignored); 16-bit RGB, RGBA and gray+alpha keep
 *    the high byte; 16-bit gray is clipped to 255 (PIL opens it as mode "I;16" and convert
 *    clips, so values above 255 are white); interlaced files are fine.
 *  - JPEG (libjpeg-turbo, PIL's decoder settings: islow IDCT, fancy upsampling): YCbCr and RGB
 *    to RGB, gray replicated; CMYK / YCCK are refused as unsupported.
 * The path must name a regular file of at most SD_IMAGE_MAX_FILE_BYTES. Every failure (missing,
 * not a regular file, empty, too large, not PNG or JPEG, corrupt, truncated, unsupported kind,
 * dimensions over the limits) returns -1 with one error naming the file. */
int sd_image_read_rgb(const char *path, sd_image *out);

void sd_image_free(sd_image *image);

/* A grayscale PNG (1 to 16 bits, no alpha: depth maps) read as sd_image_read_rgb reads files,
 * its samples as stored (0..255 at 8 bits, 0..65535 at 16) into *samples (height, width;
 * malloc'ed, the caller frees). A color PNG, or any other file, is refused naming it. */
int sd_image_read_gray_samples(const char *path, float **samples, int *width, int *height);

/* PIL's convolution resampling filters (NEAREST, a different code path in PIL, is not here). */
typedef enum sd_resample {
  SD_RESAMPLE_BOX = 4,
  SD_RESAMPLE_BILINEAR = 2,
  SD_RESAMPLE_HAMMING = 5,
  SD_RESAMPLE_BICUBIC = 3,
  SD_RESAMPLE_LANCZOS = 1,
} sd_resample;

/* "box", "bilinear", "hamming", "bicubic", "lanczos" (diffusers' PIL_INTERPOLATION names); -1
 * with an error naming the choices otherwise. */
int sd_resample_parse(const char *name, sd_resample *out);

/* out = in resized to width x height as PIL's (Pillow 13) Image.resize((width, height), filter)
 * does for an "RGB" or "L" image (reducing_gap None): the same fixed-point separable convolution
 * with the same coefficients and pass order, so the pixels are identical. The same size gives a
 * copy. */
int sd_image_resize(const sd_image *in, int width, int height, sd_resample filter, sd_image *out);

/* out = in resized to width x height as torch's CPU interpolate(mode, antialias=True,
 * align_corners=False) resizes a uint8 (C, H, W) tensor, which is what torchvision's
 * resize(..., antialias=True) runs for uint8 images (image_resize_torch.c): PIL's filters with
 * torch's int16 fixed point, so up to a level away from sd_image_resize on some pixels.
 * filter: SD_RESAMPLE_BILINEAR or SD_RESAMPLE_BICUBIC (others are refused). "RGB" or "L"; the
 * same size gives a copy. */
int sd_image_resize_torch_aa(const sd_image *in, int width, int height, sd_resample filter,
                             sd_image *out);

/* out (channels 1) = PIL's convert("L") of an RGB image: (19595 R + 38470 G + 7471 B + 0x8000)
 * >> 16. */
int sd_image_to_luma(const sd_image *rgb, sd_image *out);

/* ---- diffusers' preprocessing (VaeImageProcessor), image_preprocess.c ---- */

/* The size diffusers renders an input of width x height at: each side rounded down to a
 * multiple of factor (get_default_height_width). -1 with an error naming `what` when a side
 * becomes 0. */
int sd_image_vae_size(const char *what, int width, int height, int factor, int *out_width,
                      int *out_height);

/* VaeImageProcessor(vae_scale_factor).preprocess(image, height, width) of an RGB image:
 * PIL resize with LANCZOS to width x height (a copy at the same size), x / 255 in float32, then
 * 2 x - 1. out: (3, height, width) float32 in [-1, 1]. */
int sd_image_preprocess(const sd_image *rgb, int width, int height, float *out);
/* The same with another resampling filter (the x4 upscaler's processor uses BICUBIC). */
int sd_image_preprocess_resample(const sd_image *rgb, int width, int height, sd_resample filter,
                                 float *out);

/* The inpainting mask processor (VaeImageProcessor(do_normalize=False, do_binarize=True,
 * do_convert_grayscale=True)).preprocess(mask, height, width) of an RGB mask image: PIL resize
 * with LANCZOS, convert("L"), x / 255, then binarised: values below 0.5 become 0, the rest 1
 * (so a soft mask becomes hard at 128 / 255). out: (1, height, width) float32 of 0 and 1. */
int sd_mask_preprocess(const sd_image *rgb, int width, int height, float *out);

/* The mask at latent size, as StableDiffusionInpaintPipeline.prepare_mask_latents resizes it
 * (F.interpolate nearest from (H, W) to (H / factor, W / factor): the top-left pixel of each
 * factor x factor cell). mask (1, H, W) -> out (1, H / factor, W / factor). */
void sd_mask_to_latent_size(const float *mask, int width, int height, int factor, float *out);

/* The masked image of 9-channel inpainting: image * (mask < 0.5), image (3, H, W) in [-1, 1],
 * mask (1, H, W) -> out (3, H, W). */
void sd_masked_image(const float *image, const float *mask, int width, int height, float *out);

#endif
