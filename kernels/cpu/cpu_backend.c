/* The CPU backend: host memory, float32 everywhere, oneDNN's engine, and the vtable of
 * kernels/cpu ops. */
#include "cpu_internal.h"

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
  sd_cpu_forget(be, ptr);
  free(ptr);
}

static int cpu_upload(sd_backend *be, sd_tensor *dst, sd_dtype src_dtype, const void *src) {
  SD_TRY(sd_cpu_note_upload(be, dst->data));
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
  sd_cpu_state *st = be->impl;
  if (st) {
    sd_cpu_prepared_destroy(be);
    dnnl_stream_destroy(st->stream);
    dnnl_engine_destroy(st->engine);
    free(st);
  }
  free(be);
}

static const char *isa_name(dnnl_cpu_isa_t isa);

void sd_cpu_note_kernel(sd_backend *be, const char *op, const char *impl) {
  sd_cpu_state *st = be->impl;
  char entry[128];
  snprintf(entry, sizeof entry, "%s %s", op, impl);
  size_t len = strlen(st->kernels), add = strlen(entry);
  for (const char *p = strstr(st->kernels, entry); p; p = strstr(p + 1, entry))
    if ((p == st->kernels || p[-1] == ' ') && (p[add] == '\0' || p[add] == ';'))
      return;
  if (len + add + 3 < sizeof st->kernels)
    snprintf(st->kernels + len, sizeof st->kernels - len, "%s%s", len ? "; " : "", entry);
}

/* "oneDNN 2.6.3, AVX-512 BF16 kernels, fp32 inputs: GEMM dnnl_sgemm; conv2d brgconv:...;
 * prepared weights N MiB" */
static void cpu_describe_kernels(sd_backend *be, char *buf, size_t size) {
  sd_cpu_state *st = be->impl;
  const dnnl_version_t *v = dnnl_version();
  snprintf(buf, size,
           "oneDNN %d.%d.%d, %s kernels, %s inputs: GEMM dnnl_sgemm%s%s; prepared weights %.0f MiB",
           v->major, v->minor, v->patch, isa_name(dnnl_get_effective_cpu_isa()),
           st->compute == SD_DTYPE_BF16 ? "bf16" : "fp32", st->kernels[0] ? "; " : "", st->kernels,
           (double)st->prepared_bytes / (1 << 20));
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
    .describe_kernels = cpu_describe_kernels,
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
    .linear_backward = sd_cpu_linear_backward,
    .conv2d_backward = sd_cpu_conv2d_backward,
    .group_norm_backward = sd_cpu_group_norm_backward,
    .layer_norm_backward = sd_cpu_layer_norm_backward,
    .attention_backward = sd_cpu_attention_backward,
    .activation_backward = sd_cpu_activation_backward,
    .geglu_backward = sd_cpu_geglu_backward,
    .add_channel_bias_backward = sd_cpu_add_channel_bias_backward,
    .upsample_nearest_backward = sd_cpu_upsample_nearest_backward,
    .concat_channels_backward = sd_cpu_concat_channels_backward,
    .embedding_backward = sd_cpu_embedding_backward,
    .pad2d_backward = sd_cpu_pad2d_backward,
};

static int create_engine(sd_cpu_state *st) {
  DNNL_CHECK(dnnl_engine_create(&st->engine, dnnl_cpu, 0));
  DNNL_CHECK(dnnl_stream_create(&st->stream, st->engine, dnnl_stream_default_flags));
  return 0;
}

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

/* oneDNN's name of the instruction set its kernels use on this CPU. */
static const char *isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
  case dnnl_cpu_isa_sse41:
    return "SSE4.1";
  case dnnl_cpu_isa_avx:
    return "AVX";
  case dnnl_cpu_isa_avx2:
    return "AVX2";
  case dnnl_cpu_isa_avx2_vnni:
    return "AVX2 VNNI";
  case dnnl_cpu_isa_avx512_core:
    return "AVX-512";
  case dnnl_cpu_isa_avx512_core_vnni:
    return "AVX-512 VNNI";
  case dnnl_cpu_isa_avx512_core_bf16:
    return "AVX-512 BF16";
  case dnnl_cpu_isa_avx512_core_amx:
    return "AVX-512 AMX";
  default:
    return "baseline x86-64";
  }
}

/* Whether oneDNN runs bfloat16 natively here (AVX512_BF16 or AMX), not emulated. */
static bool has_native_bf16(void) {
  dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  return ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) ==
         (unsigned)dnnl_cpu_isa_avx512_core_bf16;
}

sd_backend *sd_backend_cpu_create(int threads) {
  return sd_backend_cpu_create_precision(threads, SD_DTYPE_F32);
}

sd_backend *sd_backend_cpu_create_precision(int threads, sd_dtype compute) {
  if (compute != SD_DTYPE_F32 && compute != SD_DTYPE_BF16) {
    SD_ERROR("cpu backend: compute dtype %s: expected F32 or BF16", sd_dtype_name(compute));
    return NULL;
  }
  if (compute == SD_DTYPE_BF16 && !has_native_bf16()) {
    SD_ERROR("cpu backend: bf16 needs AVX512_BF16 or AMX; this CPU (%s kernels) has neither",
             isa_name(dnnl_get_effective_cpu_isa()));
    return NULL;
  }
  sd_backend *be = calloc(1, sizeof *be);
  if (!be) {
    SD_ERROR("out of host memory creating the cpu backend");
    return NULL;
  }
  be->ops = &cpu_ops;
  sd_cpu_state *st = calloc(1, sizeof *st);
  if (!st) {
    free(be);
    SD_ERROR("out of host memory creating the cpu backend");
    return NULL;
  }
  be->impl = st;
  st->compute = compute;
  const char *winograd = getenv("SDBATCH_CPU_WINOGRAD");
  st->winograd = !(winograd && strcmp(winograd, "0") == 0);
  if (create_engine(st) < 0) {
    sd_error_context("cpu backend");
    cpu_destroy(be);
    return NULL;
  }
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
