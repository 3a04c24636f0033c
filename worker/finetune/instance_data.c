/* DreamBooth's instance images (instance_data.h). */
#include "instance_data.h"

#include "../../kernels/error.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

bool sd_instance_data_is_image_name(const char *name) {
  const char *dot = strrchr(name, '.');
  return name[0] != '.' && dot &&
         (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void sd_instance_data_free(sd_instance_data *d) {
  for (int i = 0; i < d->count; i++) {
    if (d->paths)
      free(d->paths[i]);
    if (d->images)
      sd_image_free(&d->images[i]);
  }
  free(d->paths);
  free(d->images);
  memset(d, 0, sizeof *d);
}

/* The image files' paths, sorted by name, into d->paths; key names the folder in errors. */
static int list_images(const char *key, const char *dir, sd_instance_data *d) {
  DIR *folder = opendir(dir);
  if (!folder)
    return SD_ERROR("%s %s: cannot read the folder: %s", key, dir, strerror(errno));
  int cap = 0, rc = 0;
  struct dirent *entry;
  while (rc == 0 && (entry = readdir(folder)) != NULL) {
    if (!sd_instance_data_is_image_name(entry->d_name))
      continue;
    if (d->count == cap) {
      cap = cap ? 2 * cap : 16;
      char **grown = realloc(d->paths, (size_t)cap * sizeof *grown);
      if (!grown) {
        rc = SD_ERROR("out of memory listing %s", dir);
        break;
      }
      d->paths = grown;
    }
    size_t len = strlen(dir) + strlen(entry->d_name) + 2;
    char *path = malloc(len);
    if (!path) {
      rc = SD_ERROR("out of memory listing %s", dir);
      break;
    }
    snprintf(path, len, "%s/%s", dir, entry->d_name);
    d->paths[d->count++] = path;
  }
  closedir(folder);
  if (rc == 0 && d->count == 0)
    rc = SD_ERROR("%s %s: no %s images (.png, .jpg or .jpeg files)", key, dir,
                  strcmp(key, "instance_data_dir") ? "class" : "instance");
  if (rc == 0)
    qsort(d->paths, (size_t)d->count, sizeof *d->paths, compare_names);
  return rc;
}

/* torchvision's Resize(size) on a PIL image: the shorter side to size, the longer to
 * int(size x long / short), PIL's bilinear filter. */
static int resize_shorter_side(const sd_image *in, int size, sd_image *out) {
  int w = in->width, h = in->height;
  int short_side = w < h ? w : h, long_side = w < h ? h : w;
  int new_long = (int)((double)size * (double)long_side / (double)short_side);
  int out_w = w <= h ? size : new_long, out_h = w <= h ? new_long : size;
  return sd_image_resize(in, out_w, out_h, SD_RESAMPLE_BILINEAR, out);
}

int sd_instance_data_load(const char *dir, int resolution, sd_instance_data *out) {
  return sd_instance_data_load_as("instance_data_dir", dir, resolution, 0, out);
}

int sd_instance_data_load_as(const char *key, const char *dir, int resolution, int limit,
                             sd_instance_data *out) {
  memset(out, 0, sizeof *out);
  out->resolution = resolution;
  if (list_images(key, dir, out) < 0) {
    sd_instance_data_free(out);
    return -1;
  }
  for (; limit > 0 && out->count > limit; out->count--)
    free(out->paths[out->count - 1]);
  out->images = calloc((size_t)out->count, sizeof *out->images);
  if (!out->images) {
    sd_instance_data_free(out);
    return SD_ERROR("out of memory for %d images", out->count);
  }
  for (int i = 0; i < out->count; i++) {
    sd_image read;
    if (sd_image_read_rgb(out->paths[i], &read) < 0) {
      sd_instance_data_free(out);
      return sd_error_context("%s", key);
    }
    int rc = resize_shorter_side(&read, resolution, &out->images[i]);
    sd_image_free(&read);
    if (rc < 0) {
      rc = sd_error_context("%s: resizing to a shorter side of %d", out->paths[i], resolution);
      sd_instance_data_free(out);
      return rc;
    }
  }
  return 0;
}

bool sd_instance_data_fixed_crop(const sd_instance_data *d, int i, bool center_crop) {
  return center_crop ||
         (d->images[i].width == d->resolution && d->images[i].height == d->resolution);
}

int sd_instance_data_pixels(const sd_instance_data *d, int i, bool center_crop, bool random_flip,
                            sd_rng *rng, float *out, sd_instance_view *view) {
  const sd_image *img = &d->images[i];
  int size = d->resolution, w = img->width, h = img->height;
  *view = (sd_instance_view){0, 0, false};
  if (center_crop) {
    /* torchvision's CenterCrop: int(round((h - size) / 2.0)), Python's round (half to even) */
    view->top = (int)nearbyint((h - size) / 2.0);
    view->left = (int)nearbyint((w - size) / 2.0);
  } else if (w != size || h != size) {
    int64_t top, left;
    SD_TRY(sd_rng_randint(rng, 0, h - size + 1, &top, 1));
    SD_TRY(sd_rng_randint(rng, 0, w - size + 1, &left, 1));
    view->top = (int)top;
    view->left = (int)left;
  }
  if (random_flip) {
    int64_t bits;
    SD_TRY(sd_rng_randint(rng, 0, (int64_t)1 << 24, &bits, 1));
    view->flipped = bits < ((int64_t)1 << 23); /* torch.rand(1) < 0.5 */
  }
  int64_t plane = (int64_t)size * size;
  for (int y = 0; y < size; y++)
    for (int x = 0; x < size; x++) {
      int sx = view->left + (view->flipped ? size - 1 - x : x);
      const uint8_t *px = img->data + ((size_t)(view->top + y) * (size_t)w + (size_t)sx) * 3;
      for (int c = 0; c < 3; c++) {
        float v = (float)px[c] / 255.0f;                            /* ToTensor */
        out[c * plane + (int64_t)y * size + x] = (v - 0.5f) / 0.5f; /* Normalize([0.5], [0.5]) */
      }
    }
  return 0;
}
