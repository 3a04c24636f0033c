/* The CPU backend: host memory, float32 everywhere, and the vtable of kernels/cpu ops. */
#include "cpu_ops.h"

#include "../error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static void *cpu_alloc(sd_backend *be, size_t bytes) {
  (void)be;
  void *ptr = NULL;
  if (posix_memalign(&ptr, 64, bytes ? bytes : 1) != 0) {
    SD_ERROR("out of host memory allocating %zu bytes", bytes);
    return NULL;
  }
  return ptr;
}

static void cpu_free(sd_backend *be, void *ptr) {
  (void)be;
  free(ptr);
}

static int cpu_upload(sd_backend *be, sd_tensor *dst, sd_dtype src_dtype, const void *src) {
  (void)be;
  size_t n = (size_t)sd_tensor_numel(dst);
  if (dst->dtype == src_dtype) {
    memcpy(dst->data, src, n * sd_dtype_size(src_dtype));
    return 0;
  }
  if (dst->dtype != SD_DTYPE_F32)
    return SD_ERROR("cpu upload: cannot convert %s to %s", sd_dtype_name(src_dtype),
                    sd_dtype_name(dst->dtype));
  sd_convert_to_f32(src_dtype, src, dst->data, n);
  return 0;
}

static int cpu_download_f32(sd_backend *be, const sd_tensor *src, float *dst) {
  (void)be;
  sd_convert_to_f32(src->dtype, src->data, dst, (size_t)sd_tensor_numel(src));
  return 0;
}

static int cpu_synchronize(sd_backend *be) {
  (void)be;
  return 0;
}

static void cpu_destroy(sd_backend *be) {
  sd_arena_destroy(be);
  free(be);
}

static const sd_backend_ops cpu_ops = {
    .name = "cpu",
    .act_dtype = SD_DTYPE_F32,
    .weight_dtype = SD_DTYPE_F32,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download_f32 = cpu_download_f32,
    .synchronize = cpu_synchronize,
    .destroy = cpu_destroy,
    .linear = sd_cpu_linear,
    .conv2d = sd_cpu_conv2d,
    .group_norm = sd_cpu_group_norm,
    .layer_norm = sd_cpu_layer_norm,
    .attention = sd_cpu_attention,
    .activation = sd_cpu_activation,
    .geglu = sd_cpu_geglu,
    .lincomb = sd_cpu_lincomb,
    .add_channel_bias = sd_cpu_add_channel_bias,
    .upsample_nearest = sd_cpu_upsample_nearest,
    .concat_channels = sd_cpu_concat_channels,
    .transpose = sd_cpu_transpose,
    .embedding = sd_cpu_embedding,
    .clamp = sd_cpu_clamp,
    .mask_blend = sd_cpu_mask_blend,
    .blend_window = sd_cpu_blend_window,
    .randn_philox = sd_cpu_randn_philox,
    .timestep_embedding = sd_cpu_timestep_embedding,
    .interpolate = sd_cpu_interpolate,
    .max_pool2d = sd_cpu_max_pool2d,
    .pad2d = sd_cpu_pad2d,
    .conv_transpose2d = sd_cpu_conv_transpose2d,
    .group_norm_sums = sd_cpu_group_norm_sums,
    .group_norm_apply = sd_cpu_group_norm_apply,
};

/* The "model name" line of /proc/cpuinfo, or "cpu". */
static void read_cpu_name(char *name, size_t size) {
  snprintf(name, size, "cpu");
  FILE *info = fopen("/proc/cpuinfo", "r");
  if (!info)
    return;
  char line[512];
  while (fgets(line, sizeof line, info)) {
    char *colon = strchr(line, ':');
    if (strncmp(line, "model name", 10) == 0 && colon) {
      colon += 2;
      colon[strcspn(colon, "\n")] = '\0';
      snprintf(name, size, "%s", colon);
      break;
    }
  }
  fclose(info);
}

sd_backend *sd_backend_cpu_create(int threads) {
  sd_backend *be = calloc(1, sizeof *be);
  if (!be) {
    SD_ERROR("out of host memory creating the cpu backend");
    return NULL;
  }
  be->ops = &cpu_ops;
  read_cpu_name(be->device_name, sizeof be->device_name);
#ifdef _OPENMP
  if (threads > 0)
    omp_set_num_threads(threads);
  be->threads = threads > 0 ? threads : omp_get_max_threads();
#else
  be->threads = 1;
#endif
  return be;
}
