/* DreamBooth's instance images (train_dreambooth.py's DreamBoothDataset without class images):
 * every .png, .jpg and .jpeg file of a folder, sorted by name, read as PIL's convert("RGB") and
 * resized once with their shorter side to the resolution (torchvision's Resize(resolution,
 * BILINEAR) on a PIL image: PIL's bilinear resize, the longer side int(resolution x long /
 * short)); then per draw the script's crop (CenterCrop or RandomCrop), an optional horizontal
 * flip (RandomHorizontalFlip(0.5)), ToTensor and Normalize([0.5], [0.5]). */
#ifndef SD_INSTANCE_DATA_H
#define SD_INSTANCE_DATA_H

#include "../image/image.h"
#include "../rng/rng.h"

#include <stdbool.h>

typedef struct sd_instance_data {
  int count;
  int resolution;
  char **paths;     /* (count) */
  sd_image *images; /* (count) RGB, shorter side = resolution */
} sd_instance_data;

/* Lists and reads dir's images. Files with other names (captions, metadata.jsonl) and dot files
 * are skipped; a folder that cannot be read or holds no image, and an image file that cannot be
 * decoded, are errors naming it. */
int sd_instance_data_load(const char *dir, int resolution, sd_instance_data *out);
/* The same for another folder: key names it in errors (e.g. "class_data_dir"), and only the
 * first limit images by name are read (0: all). */
int sd_instance_data_load_as(const char *key, const char *dir, int resolution, int limit,
                             sd_instance_data *out);
void sd_instance_data_free(sd_instance_data *data);
/* Whether a file name is one the loaders read: .png, .jpg or .jpeg (any case), not a dot file. */
bool sd_instance_data_is_image_name(const char *name);

/* How one draw was cropped and flipped. */
typedef struct sd_instance_view {
  int top, left;
  bool flipped;
} sd_instance_view;

/* Image i's training pixels: out (3, resolution, resolution) float32 in [-1, 1]. RandomCrop
 * (center_crop false) draws top then left as torchvision does (torch.randint(0, h - size + 1),
 * then for the width; no draw when the image is already square), RandomHorizontalFlip draws
 * torch.rand(1) < 0.5 (24 random bits) when random_flip; both from rng (the cpu kind). */
int sd_instance_data_pixels(const sd_instance_data *data, int i, bool center_crop, bool random_flip,
                            sd_rng *rng, float *out, sd_instance_view *view);

/* Whether image i's crop is the same on every draw (center crop, or already square). */
bool sd_instance_data_fixed_crop(const sd_instance_data *data, int i, bool center_crop);

#endif
