/* 2-D convolution (zero padding, square stride) with oneDNN's convolution primitive: direct
 * JIT kernels picked by the CPU's features (AVX2, AVX-512, ...) that read the input in place in a
 * blocked layout, with no im2col copy, and add the bias in the same pass. The primitive chooses
 * its layouts ("any"); activations stay NCHW between ops, so each image is reordered into the
 * primitive's layout and back (a small fraction of the convolution's time), and the weight is
 * reordered once and kept (prepared_weights.c). With bf16 compute (sd_backend_cpu_create_precision)
 * the same reorders round the image and the weight to bfloat16; the primitive accumulates in
 * float32 and writes float32.
 *
 * Batch invariance: the primitive is made for one image and run once per image, so an image's
 * result is the same whatever else is in the batch.
 *
 * Algorithm: direct, except for the large 3x3 layers (use_winograd): there Winograd F(4x4, 3x3)
 * (oneDNN's jit_wino_4x3, AVX-512) does the same convolution with about 2.5x fewer
 * multiplications, at 2.5x the direct kernel's rate on the VAE decoder's 128- to 512-channel
 * layers at 128x128 to 512x512; also on the UNet's 320- and 640-channel ones at 64x64 and
 * 32x32. Its rounding error is of the same order as the direct kernel's (relative 1e-6;
 * docs/cpu.md, "Winograd"). */
#include "cpu_internal.h"

/* One oneDNN call of conv2d's setup; on failure records it and jumps to the cleanup. */
#define CONV_CHECK(call)                                                                           \
  do {                                                                                             \
    dnnl_status_t conv_status_ = (call);                                                           \
    if (conv_status_ != dnnl_success) {                                                            \
      sd_error_set(__FILE__, __LINE__, "oneDNN: %s: %s", #call, dnnl_status2str(conv_status_));    \
      goto out_release;                                                                            \
    }                                                                                              \
  } while (0)

/* A memory object over ptr with layout md. */
static dnnl_status_t wrap(const sd_cpu_state *st, const dnnl_memory_desc_t *md, const void *ptr,
                          dnnl_memory_t *mem) {
  return dnnl_memory_create(mem, md, st->engine, (void *)ptr);
}

/* A reorder primitive from layout `from` to layout `to`. */
static dnnl_status_t make_reorder(const sd_cpu_state *st, const dnnl_memory_desc_t *from,
                                  const dnnl_memory_desc_t *to, dnnl_primitive_t *prim) {
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, from, st->engine, to, st->engine, NULL);
  if (s == dnnl_success)
    s = dnnl_primitive_create(prim, pd);
  dnnl_primitive_desc_destroy(pd);
  return s;
}

static dnnl_status_t run_reorder(const sd_cpu_state *st, dnnl_primitive_t prim, dnnl_memory_t from,
                                 dnnl_memory_t to) {
  dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
  return dnnl_primitive_execute(prim, st->stream, 2, args);
}

/* Winograd for float32 3x3 stride-1 convolutions whose channels are multiples of 16 (the
 * kernel's blocking) and large enough for it to pay: at least 64 input and output channels at
 * 128 x 128 output pixels or more (the VAE decoder's large levels), or at least 256 channels at
 * 32 x 32 or more (the SD UNet's 64 x 64 and 32 x 32 levels, 320 and 640 channels at 512 x 512,
 * and the VAE's 512-channel 64 x 64 level; the UNet's 16 x 16 level would gain 2 % more for 2 GiB
 * more of transformed weights). The small test models (at most 128 channels) keep the direct
 * kernel, so their results stay as they were; SDBATCH_CPU_WINOGRAD=0 turns it off. Where the CPU
 * has no Winograd kernel (no AVX-512), the direct one runs. */
#define WINOGRAD_MIN_CHANNELS      64
#define WINOGRAD_MIN_PIXELS        (128 * 128)
#define WINOGRAD_WIDE_MIN_CHANNELS 256
#define WINOGRAD_WIDE_MIN_PIXELS   (32 * 32)
/* The transformed tiles (the scratchpad, 2.25x the input and output: 0.6 GiB for 256 channels
 * at 512 x 512) beyond which the direct kernel runs instead (a 2048 x 2048 VAE decode). */
#define WINOGRAD_MAX_SCRATCHPAD ((size_t)1 << 30)

static bool use_winograd(const sd_cpu_state *st, int64_t c, int64_t k, int64_t kh, int64_t kw,
                         int stride, int64_t ho, int64_t wo) {
  if (!st->winograd || st->compute != SD_DTYPE_F32 || kh != 3 || kw != 3 || stride != 1 ||
      c % 16 != 0 || k % 16 != 0)
    return false;
  int64_t narrow = c < k ? c : k, pixels = ho * wo;
  return (narrow >= WINOGRAD_MIN_CHANNELS && pixels >= WINOGRAD_MIN_PIXELS) ||
         (narrow >= WINOGRAD_WIDE_MIN_CHANNELS && pixels >= WINOGRAD_WIDE_MIN_PIXELS);
}

int sd_cpu_conv2d(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                  int stride, int pad, sd_tensor *y) {
  sd_cpu_state *st = be->impl;
  int64_t batch = x->shape[0], c = x->shape[1], h = x->shape[2], wd = x->shape[3];
  int64_t k = w->shape[0], kh = w->shape[2], kw = w->shape[3];
  int64_t ho = y->shape[2], wo = y->shape[3];
  dnnl_dims_t src_dims = {1, c, h, wd}, dst_dims = {1, k, ho, wo};
  dnnl_dims_t w_dims = {k, c, kh, kw}, b_dims = {k};
  dnnl_dims_t strides = {stride, stride}, padding = {pad, pad};
  dnnl_memory_desc_t src_any, w_any, b_md, dst_any, src_plain, w_plain, dst_plain;
  dnnl_convolution_desc_t desc;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_t conv = NULL, src_reorder = NULL, dst_reorder = NULL;
  dnnl_memory_t src_user = NULL, src_mem = NULL, w_mem = NULL, b_mem = NULL, dst_mem = NULL,
                dst_user = NULL, pad_mem = NULL;
  dnnl_primitive_attr_t attr = NULL;
  sd_arena_mark mark = sd_arena_get_mark(be);
  int rc = -1;

  /* inputs and weights in the compute dtype (bfloat16 with --precision bf16), float32 out */
  dnnl_data_type_t in_type = st->compute == SD_DTYPE_BF16 ? dnnl_bf16 : dnnl_f32;
  CONV_CHECK(dnnl_memory_desc_init_by_tag(&src_any, 4, src_dims, in_type, dnnl_format_tag_any));
  CONV_CHECK(dnnl_memory_desc_init_by_tag(&w_any, 4, w_dims, in_type, dnnl_format_tag_any));
  CONV_CHECK(dnnl_memory_desc_init_by_tag(&b_md, 1, b_dims, dnnl_f32, dnnl_x));
  CONV_CHECK(dnnl_memory_desc_init_by_tag(&dst_any, 4, dst_dims, dnnl_f32, dnnl_format_tag_any));
  CONV_CHECK(dnnl_memory_desc_init_by_tag(&src_plain, 4, src_dims, dnnl_f32, dnnl_nchw));
  CONV_CHECK(dnnl_memory_desc_init_by_tag(&w_plain, 4, w_dims, dnnl_f32, dnnl_oihw));
  CONV_CHECK(dnnl_memory_desc_init_by_tag(&dst_plain, 4, dst_dims, dnnl_f32, dnnl_nchw));
  /* the primitive's scratchpad comes from the arena (reused across calls: oneDNN's own would be
   * allocated and first touched again at every call) */
  CONV_CHECK(dnnl_primitive_attr_create(&attr));
  CONV_CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
  bool winograd = use_winograd(st, c, k, kh, kw, stride, ho, wo);
  if (winograd && (dnnl_convolution_forward_desc_init(
                       &desc, dnnl_forward_inference, dnnl_convolution_winograd, &src_any, &w_any,
                       b ? &b_md : NULL, &dst_any, strides, padding, padding) != dnnl_success ||
                   dnnl_primitive_desc_create(&pd, &desc, attr, st->engine, NULL) != dnnl_success))
    winograd = false; /* no Winograd kernel for this CPU or shape: the direct one */
  if (winograd && dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(
                      pd, dnnl_query_scratchpad_md, 0)) > WINOGRAD_MAX_SCRATCHPAD) {
    dnnl_primitive_desc_destroy(pd); /* its transformed tiles would not fit: the direct one */
    pd = NULL;
    winograd = false;
  }
  if (!winograd) {
    CONV_CHECK(dnnl_convolution_forward_desc_init(
        &desc, dnnl_forward_inference, dnnl_convolution_direct, &src_any, &w_any, b ? &b_md : NULL,
        &dst_any, strides, padding, padding));
    CONV_CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, st->engine, NULL));
  }
  CONV_CHECK(dnnl_primitive_create(&conv, pd));
  const char *impl = NULL;
  CONV_CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
  sd_cpu_note_kernel(be, "conv2d", impl);
  const dnnl_memory_desc_t *src_md = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
  const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
  const dnnl_memory_desc_t *pad_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  size_t pad_bytes = dnnl_memory_desc_get_size(pad_md);
  if (pad_bytes > 0) {
    float *scratch = sd_cpu_scratch(be, pad_bytes / sizeof(float) + 1, "conv2d scratchpad");
    if (!scratch)
      goto out_release;
    CONV_CHECK(wrap(st, pad_md, scratch, &pad_mem));
  }

  const void *weights = NULL;
  if (sd_cpu_prepared_weight(be, w, &w_plain, w_md, &weights) < 0) {
    sd_error_context("conv2d weight (%lld, %lld, %lld, %lld)", (long long)k, (long long)c,
                     (long long)kh, (long long)kw);
    goto out_release;
  }
  CONV_CHECK(wrap(st, w_md, weights, &w_mem));
  if (b)
    CONV_CHECK(wrap(st, &b_md, b->data, &b_mem));
  /* the image's own memory when the primitive takes NCHW, else a scratch copy in its layout */
  bool src_same = dnnl_memory_desc_equal(src_md, &src_plain);
  bool dst_same = dnnl_memory_desc_equal(dst_md, &dst_plain);
  CONV_CHECK(wrap(st, &src_plain, x->data, &src_user));
  CONV_CHECK(wrap(st, &dst_plain, y->data, &dst_user));
  if (!src_same) {
    size_t bytes = dnnl_memory_desc_get_size(src_md);
    float *scratch = sd_cpu_scratch(be, bytes / sizeof(float) + 1, "conv2d input");
    if (!scratch)
      goto out_release;
    CONV_CHECK(wrap(st, src_md, scratch, &src_mem));
    CONV_CHECK(make_reorder(st, &src_plain, src_md, &src_reorder));
  }
  if (!dst_same) {
    size_t bytes = dnnl_memory_desc_get_size(dst_md);
    float *scratch = sd_cpu_scratch(be, bytes / sizeof(float) + 1, "conv2d output");
    if (!scratch)
      goto out_release;
    CONV_CHECK(wrap(st, dst_md, scratch, &dst_mem));
    CONV_CHECK(make_reorder(st, dst_md, &dst_plain, &dst_reorder));
  }

  for (int64_t n = 0; n < batch; n++) {
    const float *image = (const float *)x->data + n * c * h * wd; /* (C, H, W) */
    float *out = (float *)y->data + n * k * ho * wo;              /* (K, Ho, Wo) */
    CONV_CHECK(dnnl_memory_set_data_handle(src_user, (void *)image));
    CONV_CHECK(dnnl_memory_set_data_handle(dst_user, out));
    if (!src_same)
      CONV_CHECK(run_reorder(st, src_reorder, src_user, src_mem));
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, src_same ? src_user : src_mem},
                               {DNNL_ARG_WEIGHTS, w_mem},
                               {DNNL_ARG_DST, dst_same ? dst_user : dst_mem}};
    int n_args = 3;
    if (b)
      args[n_args++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, b_mem};
    if (pad_mem)
      args[n_args++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, pad_mem};
    CONV_CHECK(dnnl_primitive_execute(conv, st->stream, n_args, args));
    if (!dst_same)
      CONV_CHECK(run_reorder(st, dst_reorder, dst_mem, dst_user));
  }
  CONV_CHECK(dnnl_stream_wait(st->stream));
  rc = 0;

out_release:
  dnnl_memory_destroy(src_user);
  dnnl_memory_destroy(src_mem);
  dnnl_memory_destroy(w_mem);
  dnnl_memory_destroy(b_mem);
  dnnl_memory_destroy(dst_mem);
  dnnl_memory_destroy(dst_user);
  dnnl_memory_destroy(pad_mem);
  dnnl_primitive_attr_destroy(attr);
  dnnl_primitive_destroy(src_reorder);
  dnnl_primitive_destroy(dst_reorder);
  dnnl_primitive_destroy(conv);
  dnnl_primitive_desc_destroy(pd);
  sd_arena_release(be, mark);
  return rc;
}
