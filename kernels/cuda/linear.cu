/* Linear layer y (M, N) = act(x (M, K) . w (N, K)^T + b (N)) through cuBLASLt, accumulating in
 * float32 (compute type 32F; for F32 activations that excludes TF32).
 *
 * cuBLAS is column-major. Row-major x (M, K) is column-major (K, M) with ld K, w (N, K) is
 * (K, N) with ld K, and y (M, N) is (N, M) with ld N. So the column-major product is
 * y = w^T . x with m = N, n = M, k = K: A = w transposed, B = x. The bias runs along the rows of
 * that column-major y, which is the broadcast of cuBLASLt's BIAS epilogue.
 *
 * Epilogues: BIAS adds b. cuBLASLt's GELU epilogue is the tanh approximation (PyTorch's
 * _addmm_activation treats it so), so it serves SD_ACT_GELU_TANH with 16-bit activations only;
 * exact GELU, SiLU and QuickGELU (and everything in F32) run as a separate kernel on y, which also
 * matches PyTorch's rounding (the GEMM output is rounded to the activation dtype first).
 *
 * Batch invariance (ops.h). The outermost dim of x is the batch: B items of L rows each ((B, L, K);
 * a 2-D x (M, K) is M items of one row). One GEMM over the flattened M = B * L rows would let
 * cuBLASLt's heuristic pick its kernel (tile shape, split-K factor, reduction) from M, i.e. from
 * the batch size, and an item's rows could then round differently in a batch than alone. So:
 *  - a plan is keyed on the per-item problem (L, N, K, dtype, epilogue, alignment) only, and its
 *    algorithm is the heuristic's first choice for ONE item (batch count 1), chosen once and
 *    cached. The algorithm carries its configuration (tile, split-K number, reduction scheme,
 *    stages, swizzle): a split-K factor, if any, is the one for a lone item, never one picked for
 *    the batch;
 *  - B > 1 items run as one strided-batched matmul (CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = B,
 *    batch strides L * K for x, L * N for y, 0 for w and the bias) with that same algorithm, once
 *    cublasLtMatmulAlgoCheck has accepted it for the batched layouts within the workspace (split-K
 *    partials grow with B). The batch is a grid dimension of the kernel: each output value is the
 *    same dot product over K in the same order, whatever B is. Otherwise the items run as B
 *    launches of the per-item matmul with the same algorithm;
 *  - alignment enters the key as the smallest over all items (the base pointer's and that of an
 *    item's stride in bytes, capped at 16 bytes, what vectorized and TMA loads need), so an item
 *    gets the same plan in a batch and alone whenever its tensors start 16-byte aligned there;
 *  - split-K reductions are limited to ones in the compute type (float32), never in the output
 *    dtype;
 *  - when the heuristic finds no algorithm, each item runs through its own cublasGemmEx call
 *    (whose internal choice then depends on the item's problem only), then the bias +
 *    activation kernel, which is elementwise. */
#include "cuda_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define SD_LINEAR_PLANS 128
/* Alignments in plan keys are capped here (bytes): see the comment at the top. */
#define SD_LINEAR_ALIGN_CAP 16

typedef struct linear_key {
  int64_t rows, n, k; /* per item: x (rows, K) -> y (rows, N) */
  sd_dtype dtype;
  cublasLtEpilogue_t epilogue;
  uint32_t align_x, align_w, align_y, align_bias; /* bytes, powers of two up to the cap */
} linear_key;

typedef struct linear_plan {
  linear_key key;
  bool used;
  bool have_algo; /* false: per-item cublasGemmEx fallback */
  cublasLtMatmulDesc_t desc;
  /* one item (batch count 1): what the heuristic chose for */
  cublasLtMatrixLayout_t w_layout; /* A: (K, N), ld K, transposed by the op */
  cublasLtMatrixLayout_t x_layout; /* B: (K, rows), ld K */
  cublasLtMatrixLayout_t y_layout; /* C = D: (N, rows), ld N */
  cublasLtMatmulAlgo_t algo;
  /* the same matrices strided-batched, created on the first call with several items */
  cublasLtMatrixLayout_t wb_layout, xb_layout, yb_layout;
  int32_t batch; /* batch count the batched layouts are set to; 0 before the first */
  bool batch_ok; /* algo passed cublasLtMatmulAlgoCheck for `batch` within the workspace */
} linear_plan;

struct sd_cuda_linear_cache {
  linear_plan plans[SD_LINEAR_PLANS];
  int next_evict; /* round robin once all plans are used */
};

/* Largest power of two (up to the cap) dividing both the address and the item stride (bytes). */
static uint32_t alignment_of(const void *ptr, uint64_t item_bytes) {
  uint64_t value = (uint64_t)(uintptr_t)ptr | item_bytes;
  uint32_t align = SD_LINEAR_ALIGN_CAP;
  while (align > 1 && value % align)
    align /= 2;
  return align;
}

/* Teardown of one plan: nothing to report to, so statuses are ignored. */
static void plan_release(linear_plan *plan) {
  cublasLtMatrixLayout_t layouts[] = {plan->y_layout,  plan->x_layout,  plan->w_layout,
                                      plan->yb_layout, plan->xb_layout, plan->wb_layout};
  for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
    if (layouts[i])
      (void)cublasLtMatrixLayoutDestroy(layouts[i]);
  if (plan->desc)
    (void)cublasLtMatmulDescDestroy(plan->desc);
  memset(plan, 0, sizeof *plan);
}

void sd_cuda_linear_cache_destroy(sd_cuda *cu) {
  if (!cu->linear_cache)
    return;
  for (int i = 0; i < SD_LINEAR_PLANS; i++)
    if (cu->linear_cache->plans[i].used)
      plan_release(&cu->linear_cache->plans[i]);
  free(cu->linear_cache);
  cu->linear_cache = NULL;
}

/* Asks the heuristic for the best algorithm for one item under the workspace and alignment
 * limits. */
static int plan_search(sd_cuda *cu, linear_plan *plan, cublasLtMatmulPreference_t pref) {
  const linear_key *key = &plan->key;
  uint64_t workspace = cu->lt_workspace_bytes;
  uint32_t reduction = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE; /* never in the output dtype */
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &workspace, sizeof workspace));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reduction, sizeof reduction));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key->align_w, sizeof key->align_w));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key->align_x, sizeof key->align_x));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key->align_y, sizeof key->align_y));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key->align_y, sizeof key->align_y));
  cublasLtMatmulHeuristicResult_t result;
  int found = 0;
  cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(cu->lt, plan->desc, plan->w_layout, plan->x_layout,
                                     plan->y_layout, plan->y_layout, pref, 1, &result, &found);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED || (status == CUBLAS_STATUS_SUCCESS && found == 0)) {
    plan->have_algo = false;
    return 0;
  }
  CUBLAS_CHECK(status);
  plan->algo = result.algo;
  plan->have_algo = true;
  return 0;
}

/* Fills plan for key; bias (may be NULL) is set so that the heuristic sees its alignment. */
static int plan_create(sd_cuda *cu, const linear_key *key, const void *bias, linear_plan *plan) {
  cudaDataType_t type = sd_cuda_data_type(key->dtype);
  cublasOperation_t transpose = CUBLAS_OP_T, keep = CUBLAS_OP_N;
  int64_t bias_stride = 0; /* one bias for every item of a batch */
  plan->key = *key;
  plan->used = true;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &transpose,
                                              sizeof transpose));
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof keep));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                              &key->epilogue, sizeof key->epilogue));
  if (bias) {
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                &bias, sizeof bias));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE,
                                                &bias_stride, sizeof bias_stride));
  }
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->w_layout, type, (uint64_t)key->k, (uint64_t)key->n,
                                          key->k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->x_layout, type, (uint64_t)key->k,
                                          (uint64_t)key->rows, key->k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->y_layout, type, (uint64_t)key->n,
                                          (uint64_t)key->rows, key->n));
  cublasLtMatmulPreference_t pref;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  int rc = plan_search(cu, plan, pref);
  (void)cublasLtMatmulPreferenceDestroy(pref); /* the search's outcome is what matters */
  return rc;
}

/* One strided-batched layout: `rows` x `cols`, ld rows, `stride` elements between items. */
static int batched_layout(cublasLtMatrixLayout_t *layout, cudaDataType_t type, int64_t rows,
                          int64_t cols, int64_t stride) {
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(layout, type, (uint64_t)rows, (uint64_t)cols, rows));
  cublasStatus_t status = cublasLtMatrixLayoutSetAttribute(
      *layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride);
  if (status != CUBLAS_STATUS_SUCCESS) { /* no half-made layout stays in the plan */
    (void)cublasLtMatrixLayoutDestroy(*layout);
    *layout = NULL;
    return sd_cuda_fail(__FILE__, __LINE__,
                        "cublasLtMatrixLayoutSetAttribute(CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_"
                        "OFFSET)",
                        cublasGetStatusString(status));
  }
  return 0;
}

/* Sets the batched layouts to `batch` items and decides whether the plan's per-item algorithm
 * runs them in one call (plan->batch_ok). The verdict is kept until the batch count changes. */
static int plan_set_batch(sd_cuda *cu, linear_plan *plan, int32_t batch) {
  if (plan->batch == batch)
    return 0;
  const linear_key *key = &plan->key;
  if (!plan->yb_layout) { /* created in this order; a failure leaves y's missing */
    cudaDataType_t type = sd_cuda_data_type(key->dtype);
    if (!plan->wb_layout)
      SD_TRY(batched_layout(&plan->wb_layout, type, key->k, key->n, 0));
    if (!plan->xb_layout)
      SD_TRY(batched_layout(&plan->xb_layout, type, key->k, key->rows, key->rows * key->k));
    SD_TRY(batched_layout(&plan->yb_layout, type, key->n, key->rows, key->rows * key->n));
  }
  cublasLtMatrixLayout_t layouts[] = {plan->wb_layout, plan->xb_layout, plan->yb_layout};
  for (int i = 0; i < 3; i++)
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layouts[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                  &batch, sizeof batch));
  plan->batch = batch;
  /* A rejection (strided batches unsupported by this algorithm, too much workspace for the
   * split-K partials of the whole batch) is no error: the items then run one call each. */
  cublasLtMatmulHeuristicResult_t result;
  cublasStatus_t status =
      cublasLtMatmulAlgoCheck(cu->lt, plan->desc, plan->wb_layout, plan->xb_layout, plan->yb_layout,
                              plan->yb_layout, &plan->algo, &result);
  plan->batch_ok =
      status == CUBLAS_STATUS_SUCCESS && result.workspaceSize <= cu->lt_workspace_bytes;
  return 0;
}

/* The cached plan for key, created on first use. */
static int plan_for(sd_cuda *cu, const linear_key *key, const void *bias, linear_plan **out) {
  if (!cu->linear_cache) {
    cu->linear_cache = (sd_cuda_linear_cache *)calloc(1, sizeof *cu->linear_cache);
    if (!cu->linear_cache)
      return SD_ERROR("out of host memory for the linear plan cache");
  }
  sd_cuda_linear_cache *cache = cu->linear_cache;
  linear_plan *slot = NULL;
  for (int i = 0; i < SD_LINEAR_PLANS; i++) {
    linear_plan *plan = &cache->plans[i];
    if (plan->used && memcmp(&plan->key, key, sizeof *key) == 0) {
      *out = plan;
      return 0;
    }
    if (!plan->used && !slot)
      slot = plan;
  }
  if (!slot) {
    slot = &cache->plans[cache->next_evict];
    cache->next_evict = (cache->next_evict + 1) % SD_LINEAR_PLANS;
    plan_release(slot);
  }
  if (plan_create(cu, key, bias, slot) < 0) {
    plan_release(slot);
    return sd_error_context("linear plan for items of %lld rows, N %lld, K %lld",
                            (long long)key->rows, (long long)key->n, (long long)key->k);
  }
  *out = slot;
  return 0;
}

/* The items one cuBLASLt call each, with the plan's per-item layouts and algorithm. */
static int run_items_lt(sd_cuda *cu, const linear_plan *plan, const sd_tensor *x,
                        const sd_tensor *w, int64_t items, sd_tensor *y) {
  const float alpha = 1.0f, beta = 0.0f;
  size_t size = sd_dtype_size(y->dtype);
  size_t x_item = (size_t)(plan->key.rows * plan->key.k) * size;
  size_t y_item = (size_t)(plan->key.rows * plan->key.n) * size;
  for (int64_t i = 0; i < items; i++) {
    const char *xi = (const char *)x->data + (size_t)i * x_item;
    char *yi = (char *)y->data + (size_t)i * y_item;
    CUBLAS_CHECK(cublasLtMatmul(cu->lt, plan->desc, &alpha, w->data, plan->w_layout, xi,
                                plan->x_layout, &beta, yi, plan->y_layout, yi, plan->y_layout,
                                &plan->algo, cu->lt_workspace, cu->lt_workspace_bytes, cu->stream));
  }
  return 0;
}

/* No cuBLASLt algorithm: one cublasGemmEx per item, then bias and activation over all of y. */
static int run_items_gemm_ex(sd_cuda *cu, const sd_tensor *x, const sd_tensor *w, const void *bias,
                             sd_activation act, int64_t items, int64_t rows, sd_tensor *y) {
  int64_t n = w->shape[0], k = w->shape[1];
  if (rows > INT_MAX || n > INT_MAX || k > INT_MAX)
    return SD_ERROR("linear: items of %lld rows, N %lld, K %lld too large for cublasGemmEx",
                    (long long)rows, (long long)n, (long long)k);
  const float alpha = 1.0f, beta = 0.0f;
  cudaDataType_t type = sd_cuda_data_type(y->dtype);
  size_t size = sd_dtype_size(y->dtype);
  for (int64_t i = 0; i < items; i++) {
    const char *xi = (const char *)x->data + (size_t)(i * rows * k) * size;
    char *yi = (char *)y->data + (size_t)(i * rows * n) * size;
    CUBLAS_CHECK(cublasGemmEx(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)rows, (int)k, &alpha,
                              w->data, type, (int)k, xi, type, (int)k, &beta, yi, type, (int)n,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  if (bias || act != SD_ACT_NONE)
    return sd_cuda_bias_activation(cu, y->dtype, y->data, bias, act, items * rows, n, y->data);
  return 0;
}

int sd_cuda_linear(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                   sd_activation act, sd_tensor *y) {
  sd_cuda *cu = sd_cuda_of(be);
  int64_t n = w->shape[0], k = w->shape[1];
  int64_t m = sd_tensor_numel(x) / k;
  if (m == 0 || n == 0)
    return 0;
  int64_t items = x->ndim >= 2 ? x->shape[0] : 1; /* the batch, as the CPU backend reads it */
  int64_t rows = m / items;
  const void *bias = b ? b->data : NULL;
  /* F32, the debugging mode, keeps the activation in our float32 kernel */
  bool fuse_act = act == SD_ACT_GELU_TANH && y->dtype != SD_DTYPE_F32;
  size_t size = sd_dtype_size(y->dtype);

  linear_key key;
  memset(&key, 0, sizeof key); /* padding too: keys compare with memcmp */
  key.rows = rows;
  key.n = n;
  key.k = k;
  key.dtype = y->dtype;
  key.epilogue = fuse_act ? (bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU)
                          : (bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT);
  key.align_x = alignment_of(x->data, (uint64_t)(rows * k) * size);
  key.align_w = alignment_of(w->data, 0);
  key.align_y = alignment_of(y->data, (uint64_t)(rows * n) * size);
  key.align_bias = bias ? alignment_of(bias, 0) : 0;
  linear_plan *plan = NULL;
  SD_TRY(plan_for(cu, &key, bias, &plan));
  if (!plan->have_algo)
    return run_items_gemm_ex(cu, x, w, bias, act, items, rows, y);

  if (bias)
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                &bias, sizeof bias));
  if (items > 1 && items <= INT32_MAX)
    SD_TRY(plan_set_batch(cu, plan, (int32_t)items));
  if (items > 1 && items <= INT32_MAX && plan->batch_ok) {
    const float alpha = 1.0f, beta = 0.0f;
    CUBLAS_CHECK(cublasLtMatmul(cu->lt, plan->desc, &alpha, w->data, plan->wb_layout, x->data,
                                plan->xb_layout, &beta, y->data, plan->yb_layout, y->data,
                                plan->yb_layout, &plan->algo, cu->lt_workspace,
                                cu->lt_workspace_bytes, cu->stream));
  } else {
    SD_TRY(run_items_lt(cu, plan, x, w, items, y));
  }
  if (!fuse_act && act != SD_ACT_NONE)
    return sd_cuda_bias_activation(cu, y->dtype, y->data, NULL, act, m, n, y->data);
  return 0;
}
