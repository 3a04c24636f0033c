/* 2-D convolution y (B, K, Ho, Wo) = conv(x (B, C, H, W), w (K, C, kh, kw)) + b (K) through
 * cuDNN's convolution forward (PyTorch's conv2d: cross-correlation, zero padding, square stride),
 * NCHW tensors in the activation dtype, float32 compute. 16-bit convolutions may use tensor cores;
 * F32 ones are held to FMA math (no TF32) so that they match the CPU backend closely.
 *
 * Batch invariance (ops.h): an image's result must not depend on the other images of the batch.
 * cuDNN decides per problem, N included: cudnnGetConvolutionForwardAlgorithm_v7 ranks algorithms
 * for the whole (N, C, H, W), and even a fixed algorithm enum is only a family - cuDNN picks the
 * kernel inside it (tile shape, split-K over C * kh * kw, implicit-GEMM tiles over N * Ho * Wo)
 * from the problem size. Pinning the algorithm chosen for N = 1 and running N = B with it would
 * therefore not pin the kernel. So every plan is for ONE image (N = 1): descriptors and algorithm
 * (the first one the heuristic ranks as supported within the workspace limit) are cached per
 * per-image shape, and a batch runs as B calls of that plan, image b at x + b * C * H * W and
 * y + b * K * Ho * Wo. Each image is then exactly the problem it is alone, with the same
 * algorithm, so cuDNN's choices cannot see the batch. What that leaves: cuDNN may also look at
 * pointer alignment, so an image should start 16-byte aligned in the batch as alone (true for
 * fresh allocations when C * H * W * sizeof(dtype) is a multiple of 16, as in every SD model).
 * The cost is B launches instead of one: small next to an SD convolution per image (GFLOPs), and
 * a later version may pin a cuDNN backend engine configuration for the batch once a GPU shows it
 * batch invariant.
 *
 * The workspace comes from the op scratch. The bias is a separate pass over y, as PyTorch adds it
 * after cuDNN's convolution (elementwise: nothing in it depends on the batch). */
#include "cuda_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define SD_CONV_PLANS 64
/* Algorithms asking for more workspace than this are passed over. */
#define SD_CONV_WORKSPACE_MAX ((size_t)1 << 30)

typedef struct conv_key {
  int channels, height, width;          /* one image of x: (1, C, H, W) */
  int out_channels, kernel_h, kernel_w; /* w (K, C, kh, kw) */
  int stride, pad;
  sd_dtype dtype;
} conv_key;

typedef struct conv_plan {
  conv_key key;
  bool used;
  cudnnTensorDescriptor_t x_desc, y_desc;
  cudnnFilterDescriptor_t w_desc;
  cudnnConvolutionDescriptor_t conv_desc;
  cudnnConvolutionFwdAlgo_t algo;
  size_t workspace_bytes;
} conv_plan;

struct sd_cuda_conv_cache {
  conv_plan plans[SD_CONV_PLANS];
  int next_evict; /* round robin once all plans are used */
};

/* Teardown of one plan: nothing to report to, so statuses are ignored. */
static void plan_release(conv_plan *plan) {
  if (plan->y_desc)
    (void)cudnnDestroyTensorDescriptor(plan->y_desc);
  if (plan->x_desc)
    (void)cudnnDestroyTensorDescriptor(plan->x_desc);
  if (plan->w_desc)
    (void)cudnnDestroyFilterDescriptor(plan->w_desc);
  if (plan->conv_desc)
    (void)cudnnDestroyConvolutionDescriptor(plan->conv_desc);
  memset(plan, 0, sizeof *plan);
}

void sd_cuda_conv_cache_destroy(sd_cuda *cu) {
  if (!cu->conv_cache)
    return;
  for (int i = 0; i < SD_CONV_PLANS; i++)
    if (cu->conv_cache->plans[i].used)
      plan_release(&cu->conv_cache->plans[i]);
  free(cu->conv_cache);
  cu->conv_cache = NULL;
}

static cudnnDataType_t cudnn_type(sd_dtype dtype) {
  return dtype == SD_DTYPE_F16    ? CUDNN_DATA_HALF
         : dtype == SD_DTYPE_BF16 ? CUDNN_DATA_BFLOAT16
                                  : CUDNN_DATA_FLOAT;
}

/* Picks the first algorithm the heuristic ranks as supported, within the workspace limit (and
 * without tensor cores for F32). */
static int plan_choose_algorithm(sd_cuda *cu, conv_plan *plan) {
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int returned = 0;
  CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(
      cu->dnn, plan->x_desc, plan->w_desc, plan->conv_desc, plan->y_desc,
      CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf));
  bool f32 = plan->key.dtype == SD_DTYPE_F32;
  for (int i = 0; i < returned; i++) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > SD_CONV_WORKSPACE_MAX)
      continue;
    if (f32 && (perf[i].mathType == CUDNN_TENSOR_OP_MATH ||
                perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
      continue;
    if (!f32)
      CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv_desc, perf[i].mathType));
    plan->algo = perf[i].algo;
    plan->workspace_bytes = perf[i].memory;
    return 0;
  }
  return SD_ERROR("cuDNN offers no forward algorithm (%d candidates examined)", returned);
}

static int plan_create(sd_cuda *cu, const conv_key *key, int out_h, int out_w, conv_plan *plan) {
  cudnnDataType_t type = cudnn_type(key->dtype);
  plan->key = *key;
  plan->used = true;
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->x_desc));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->x_desc, CUDNN_TENSOR_NCHW, type, 1, key->channels,
                                         key->height, key->width));
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&plan->w_desc));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(plan->w_desc, type, CUDNN_TENSOR_NCHW, key->out_channels,
                                         key->channels, key->kernel_h, key->kernel_w));
  CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&plan->conv_desc));
  CUDNN_CHECK(cudnnSetConvolution2dDescriptor(plan->conv_desc, key->pad, key->pad, key->stride,
                                              key->stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                              CUDNN_DATA_FLOAT));
  CUDNN_CHECK(cudnnSetConvolutionMathType(
      plan->conv_desc, key->dtype == SD_DTYPE_F32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH));
  int dims[4];
  CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(plan->conv_desc, plan->x_desc, plan->w_desc,
                                                    &dims[0], &dims[1], &dims[2], &dims[3]));
  if (dims[0] != 1 || dims[1] != key->out_channels || dims[2] != out_h || dims[3] != out_w)
    return SD_ERROR("cuDNN computes output (%d, %d, %d, %d), expected (1, %d, %d, %d)", dims[0],
                    dims[1], dims[2], dims[3], key->out_channels, out_h, out_w);
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->y_desc));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->y_desc, CUDNN_TENSOR_NCHW, type, 1,
                                         key->out_channels, out_h, out_w));
  return plan_choose_algorithm(cu, plan);
}

/* The cached plan for key, created on first use. */
static int plan_for(sd_cuda *cu, const conv_key *key, int out_h, int out_w, conv_plan **out) {
  if (!cu->conv_cache) {
    cu->conv_cache = (sd_cuda_conv_cache *)calloc(1, sizeof *cu->conv_cache);
    if (!cu->conv_cache)
      return SD_ERROR("out of host memory for the conv2d plan cache");
  }
  sd_cuda_conv_cache *cache = cu->conv_cache;
  conv_plan *slot = NULL;
  for (int i = 0; i < SD_CONV_PLANS; i++) {
    conv_plan *plan = &cache->plans[i];
    if (plan->used && memcmp(&plan->key, key, sizeof *key) == 0) {
      *out = plan;
      return 0;
    }
    if (!plan->used && !slot)
      slot = plan;
  }
  if (!slot) {
    slot = &cache->plans[cache->next_evict];
    cache->next_evict = (cache->next_evict + 1) % SD_CONV_PLANS;
    plan_release(slot);
  }
  if (plan_create(cu, key, out_h, out_w, slot) < 0) {
    plan_release(slot);
    return sd_error_context("conv2d plan for an image (1, %d, %d, %d), weight (%d, %d, %d, %d), "
                            "stride %d, pad %d",
                            key->channels, key->height, key->width, key->out_channels,
                            key->channels, key->kernel_h, key->kernel_w, key->stride, key->pad);
  }
  *out = slot;
  return 0;
}

int sd_cuda_conv2d(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                   int stride, int pad, sd_tensor *y) {
  sd_cuda *cu = sd_cuda_of(be);
  const int64_t dims[] = {x->shape[1], x->shape[2], x->shape[3], w->shape[0],
                          w->shape[2], w->shape[3], y->shape[2], y->shape[3]};
  for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
    if (dims[i] > INT_MAX)
      return SD_ERROR("conv2d: dimension %lld beyond cuDNN's int range", (long long)dims[i]);
  if (sd_tensor_numel(y) == 0)
    return 0;

  conv_key key;
  memset(&key, 0, sizeof key); /* keys compare with memcmp */
  key.channels = (int)x->shape[1];
  key.height = (int)x->shape[2];
  key.width = (int)x->shape[3];
  key.out_channels = (int)w->shape[0];
  key.kernel_h = (int)w->shape[2];
  key.kernel_w = (int)w->shape[3];
  key.stride = stride;
  key.pad = pad;
  key.dtype = y->dtype;
  conv_plan *plan = NULL;
  SD_TRY(plan_for(cu, &key, (int)y->shape[2], (int)y->shape[3], &plan));

  void *workspace = NULL;
  if (plan->workspace_bytes)
    SD_TRY(sd_cuda_scratch(cu, plan->workspace_bytes, &workspace));
  const float one = 1.0f, zero = 0.0f; /* float scaling for every non-double dtype */
  size_t size = sd_dtype_size(y->dtype);
  size_t x_image = (size_t)(x->shape[1] * x->shape[2] * x->shape[3]) * size;
  size_t y_image = (size_t)(y->shape[1] * y->shape[2] * y->shape[3]) * size;
  for (int64_t i = 0; i < x->shape[0]; i++) /* one call per image: see the top of the file */
    CUDNN_CHECK(cudnnConvolutionForward(
        cu->dnn, &one, plan->x_desc, (const char *)x->data + (size_t)i * x_image, plan->w_desc,
        w->data, plan->conv_desc, plan->algo, workspace, plan->workspace_bytes, &zero, plan->y_desc,
        (char *)y->data + (size_t)i * y_image));
  if (b)
    return sd_cuda_add_plane_bias(cu, y->dtype, y->data, b->data, 0, y->shape[0], y->shape[1],
                                  y->shape[2] * y->shape[3], y->data);
  return 0;
}
