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
 * A plan (descriptors + the heuristic's algorithm) is cached per shape, epilogue and pointer
 * alignment. Split-K reductions are limited to ones in the compute type. When the heuristic finds
 * no algorithm, the plan falls back to cublasGemmEx followed by the bias + activation kernel. */
#include "cuda_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define SD_LINEAR_PLANS 128

typedef struct linear_key {
  int64_t m, n, k;
  sd_dtype dtype;
  cublasLtEpilogue_t epilogue;
  uint32_t align_x, align_w, align_y, align_bias; /* bytes, powers of two up to 256 */
} linear_key;

typedef struct linear_plan {
  linear_key key;
  bool used;
  bool have_algo; /* false: cublasGemmEx fallback */
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t w_layout; /* A: (K, N), ld K, transposed by the op */
  cublasLtMatrixLayout_t x_layout; /* B: (K, M), ld K */
  cublasLtMatrixLayout_t y_layout; /* C = D: (N, M), ld N */
  cublasLtMatmulAlgo_t algo;
} linear_plan;

struct sd_cuda_linear_cache {
  linear_plan plans[SD_LINEAR_PLANS];
  int next_evict; /* round robin once all plans are used */
};

static uint32_t alignment_of(const void *ptr) {
  uintptr_t address = (uintptr_t)ptr;
  uint32_t align = 256;
  while (align > 1 && address % align)
    align /= 2;
  return align;
}

/* Teardown of one plan: nothing to report to, so statuses are ignored. */
static void plan_release(linear_plan *plan) {
  if (plan->y_layout)
    (void)cublasLtMatrixLayoutDestroy(plan->y_layout);
  if (plan->x_layout)
    (void)cublasLtMatrixLayoutDestroy(plan->x_layout);
  if (plan->w_layout)
    (void)cublasLtMatrixLayoutDestroy(plan->w_layout);
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

/* Asks the heuristic for the best algorithm under the workspace and alignment limits. */
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
  plan->key = *key;
  plan->used = true;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &transpose,
                                              sizeof transpose));
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof keep));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                              &key->epilogue, sizeof key->epilogue));
  if (bias)
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                &bias, sizeof bias));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->w_layout, type, (uint64_t)key->k, (uint64_t)key->n,
                                          key->k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->x_layout, type, (uint64_t)key->k, (uint64_t)key->m,
                                          key->k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->y_layout, type, (uint64_t)key->n, (uint64_t)key->m,
                                          key->n));
  cublasLtMatmulPreference_t pref;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  int rc = plan_search(cu, plan, pref);
  (void)cublasLtMatmulPreferenceDestroy(pref); /* the search's outcome is what matters */
  return rc;
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
    return sd_error_context("linear plan for M %lld, N %lld, K %lld", (long long)key->m,
                            (long long)key->n, (long long)key->k);
  }
  *out = slot;
  return 0;
}

int sd_cuda_linear(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                   sd_activation act, sd_tensor *y) {
  sd_cuda *cu = sd_cuda_of(be);
  int64_t n = w->shape[0], k = w->shape[1];
  int64_t m = sd_tensor_numel(x) / k;
  if (m == 0 || n == 0)
    return 0;
  const void *bias = b ? b->data : NULL;
  /* F32, the debugging mode, keeps the activation in our float32 kernel */
  bool fuse_act = act == SD_ACT_GELU_TANH && y->dtype != SD_DTYPE_F32;

  linear_key key;
  memset(&key, 0, sizeof key); /* padding too: keys compare with memcmp */
  key.m = m;
  key.n = n;
  key.k = k;
  key.dtype = y->dtype;
  key.epilogue = fuse_act ? (bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU)
                          : (bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT);
  key.align_x = alignment_of(x->data);
  key.align_w = alignment_of(w->data);
  key.align_y = alignment_of(y->data);
  key.align_bias = bias ? alignment_of(bias) : 0;
  linear_plan *plan = NULL;
  SD_TRY(plan_for(cu, &key, bias, &plan));

  const float alpha = 1.0f, beta = 0.0f;
  if (plan->have_algo) {
    if (bias)
      CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                  &bias, sizeof bias));
    CUBLAS_CHECK(cublasLtMatmul(cu->lt, plan->desc, &alpha, w->data, plan->w_layout, x->data,
                                plan->x_layout, &beta, y->data, plan->y_layout, y->data,
                                plan->y_layout, &plan->algo, cu->lt_workspace,
                                cu->lt_workspace_bytes, cu->stream));
    if (!fuse_act && act != SD_ACT_NONE)
      return sd_cuda_bias_activation(cu, y->dtype, y->data, NULL, act, m, n, y->data);
    return 0;
  }

  if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
    return SD_ERROR("linear: M %lld, N %lld, K %lld too large for cublasGemmEx", (long long)m,
                    (long long)n, (long long)k);
  cudaDataType_t type = sd_cuda_data_type(y->dtype);
  CUBLAS_CHECK(cublasGemmEx(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)m, (int)k, &alpha,
                            w->data, type, (int)k, x->data, type, (int)k, &beta, y->data, type,
                            (int)n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (bias || act != SD_ACT_NONE)
    return sd_cuda_bias_activation(cu, y->dtype, y->data, bias, act, m, n, y->data);
  return 0;
}
