/* Scaled dot-product attention o = softmax(q k^T * scale [+ causal mask]) v per (image, head),
 * for q (B, Lq, H*D), k and v (B, Lk, H*D); head h uses channels [h*D, (h+1)*D).
 *
 * Head dims up to SD_ATTN_FUSED_MAX_D (SD: 40, 64, 80, 160; tiny test models 4..16): one fused
 * kernel in the style of flash attention. A block owns ATTN_BQ queries of one (image, head) and
 * walks over the keys in tiles of ATTN_BK, keeping for each query a running max m, a running sum
 * l and an unnormalized output acc in float32 ("online softmax"): per tile,
 *   m' = max(m, max_j s_j),  p_j = exp(s_j - m'),  l = l e^(m - m') + sum_j p_j,
 *   acc = acc e^(m - m') + sum_j p_j v_j,
 * and at the end o = acc / l. Scores never leave the chip, so memory is O(L) whatever Lq, Lk.
 * Layout inside a block: ATTN_WARPS warps, each owning ATTN_ROWS queries. For the scores, lane j
 * of a warp takes key j of the tile (dot products over D from shared memory, 4 values per load);
 * for p v, lane l accumulates output dims l, l + 32, ... (DPL = ceil(D / 32) per lane). This uses
 * CUDA cores only: simple and exact in float32; a tensor-core version is left for tuning.
 *
 * Larger head dims (the VAE's single head of 512): S = q k^T * scale with cuBLAS into float32
 * scratch, a row softmax kernel writing P in the activation dtype, then o = P v with cuBLAS;
 * one image at a time, chunked over queries so that S and P stay within SD_ATTN_SCORES_BYTES. */
#include "cuda_internal.h"

#include <limits.h>

#define SD_ATTN_FUSED_MAX_D 160
/* Bound of the score and probability scratch of the GEMM path. */
#define SD_ATTN_SCORES_BYTES ((size_t)64 << 20)

#define ATTN_WARPS 4
#define ATTN_ROWS  4                        /* queries per warp */
#define ATTN_BQ    (ATTN_WARPS * ATTN_ROWS) /* queries per block */
#define ATTN_BK    32                       /* keys per tile: one per lane */

/* Shared-memory row stride (floats) of the q and k tiles: D rounded up to a multiple of 4 for
 * float4 loads, and an odd number of float4s so that the 8 lanes of a quarter warp reading 8
 * different k rows hit different banks. */
static int attn_tile_stride(int d) {
  int d4 = (d + 3) / 4 * 4;
  return (d4 / 4) % 2 == 1 ? d4 : d4 + 4;
}

/* Grid (ceil(Lq / ATTN_BQ), heads, B); ATTN_WARPS * 32 threads. Dynamic shared memory:
 * q tile (ATTN_BQ, ds), k tile (ATTN_BK, ds), v tile (ATTN_BK, 32 * DPL), float32, zero past D.
 * Asking for 4 resident blocks per SM lets ptxas keep acc in registers (no spills at DPL 4). */
template <typename T, int DPL>
__global__ void __launch_bounds__(ATTN_WARPS * 32, 4)
    flash_attention_kernel(const T *__restrict__ q, const T *__restrict__ k,
                           const T *__restrict__ v, T *__restrict__ o, int lq, int lk, int width,
                           int d, int ds, float scale, bool causal) {
  extern __shared__ float4 attn_smem4[];
  const int dv = 32 * DPL;
  float *q_tile = (float *)attn_smem4;   /* (ATTN_BQ, ds) */
  float *k_tile = q_tile + ATTN_BQ * ds; /* (ATTN_BK, ds) */
  float *v_tile = k_tile + ATTN_BK * ds; /* (ATTN_BK, dv) */

  const int batch = blockIdx.z, head = blockIdx.y, q0 = blockIdx.x * ATTN_BQ;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T *qh = q + (int64_t)batch * lq * width + (int64_t)head * d; /* row i: qh + i * width */
  const T *kh = k + (int64_t)batch * lk * width + (int64_t)head * d;
  const T *vh = v + (int64_t)batch * lk * width + (int64_t)head * d;
  T *oh = o + (int64_t)batch * lq * width + (int64_t)head * d;

  for (int idx = threadIdx.x; idx < ATTN_BQ * ds; idx += blockDim.x) {
    int r = idx / ds, c = idx % ds;
    q_tile[idx] = q0 + r < lq && c < d ? sd_load_f32(qh + (int64_t)(q0 + r) * width + c) : 0.0f;
  }

  float m[ATTN_ROWS], l[ATTN_ROWS], acc[ATTN_ROWS][DPL];
  for (int r = 0; r < ATTN_ROWS; r++) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
    for (int i = 0; i < DPL; i++)
      acc[r][i] = 0.0f;
  }

  /* causal: keys after the block's last query are masked for all its rows */
  const int key_end = causal ? min(lk, q0 + ATTN_BQ) : lk;
  for (int k0 = 0; k0 < key_end; k0 += ATTN_BK) {
    __syncthreads(); /* the previous tile is consumed (and, the first time, q is loaded) */
    for (int idx = threadIdx.x; idx < ATTN_BK * ds; idx += blockDim.x) {
      int j = idx / ds, c = idx % ds;
      k_tile[idx] = k0 + j < lk && c < d ? sd_load_f32(kh + (int64_t)(k0 + j) * width + c) : 0.0f;
    }
    for (int idx = threadIdx.x; idx < ATTN_BK * dv; idx += blockDim.x) {
      int j = idx / dv, c = idx % dv;
      v_tile[idx] = k0 + j < lk && c < d ? sd_load_f32(vh + (int64_t)(k0 + j) * width + c) : 0.0f;
    }
    __syncthreads();

    /* scores of this lane's key for the warp's rows */
    const int key = k0 + lane;
    float s[ATTN_ROWS];
    for (int r = 0; r < ATTN_ROWS; r++)
      s[r] = 0.0f;
    const float4 *k_row = (const float4 *)(k_tile + lane * ds);
    for (int c4 = 0; c4 < ds / 4; c4++) {
      float4 kv = k_row[c4];
      for (int r = 0; r < ATTN_ROWS; r++) {
        float4 qv = ((const float4 *)(q_tile + (warp * ATTN_ROWS + r) * ds))[c4];
        s[r] += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
      }
    }

    /* online softmax update; p[r] is this lane's (key's) weight for row r */
    float p[ATTN_ROWS];
    for (int r = 0; r < ATTN_ROWS; r++) {
      int query = q0 + warp * ATTN_ROWS + r;
      bool visible = key < lk && (!causal || key <= query);
      float score = visible ? s[r] * scale : -INFINITY;
      float m_new = fmaxf(m[r], sd_warp_max(score));
      /* m_new is -inf only while no key has been visible to this row: nothing to rescale */
      p[r] = visible ? expf(score - m_new) : 0.0f;
      float alpha = m[r] == -INFINITY ? 0.0f : expf(m[r] - m_new);
      l[r] = l[r] * alpha + sd_warp_sum(p[r]);
      m[r] = m_new;
      for (int i = 0; i < DPL; i++)
        acc[r][i] *= alpha;
    }
    for (int j = 0; j < ATTN_BK; j++) {
      float vj[DPL];
      for (int i = 0; i < DPL; i++)
        vj[i] = v_tile[j * dv + lane + 32 * i];
      for (int r = 0; r < ATTN_ROWS; r++) {
        float pj = __shfl_sync(0xffffffffu, p[r], j);
        for (int i = 0; i < DPL; i++)
          acc[r][i] += pj * vj[i];
      }
    }
  }

  for (int r = 0; r < ATTN_ROWS; r++) {
    int query = q0 + warp * ATTN_ROWS + r;
    if (query >= lq)
      continue;
    float inv = 1.0f / l[r];
    for (int i = 0; i < DPL; i++) {
      int c = lane + 32 * i;
      if (c < d)
        sd_store_f32(oh + (int64_t)query * width + c, acc[r][i] * inv);
    }
  }
}

template <typename T, int DPL>
static int launch_fused(sd_cuda *cu, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                        int heads, float scale, bool causal, sd_tensor *o) {
  int lq = (int)q->shape[1], lk = (int)k->shape[1], width = (int)q->shape[2];
  int d = width / heads, ds = attn_tile_stride(d);
  size_t smem = (size_t)((ATTN_BQ + ATTN_BK) * ds + ATTN_BK * 32 * DPL) * sizeof(float);
  /* above 48 KiB a kernel must opt in; the attribute is a host-side setting, not a sync */
  if (smem > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(flash_attention_kernel<T, DPL>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  dim3 grid((unsigned)((lq + ATTN_BQ - 1) / ATTN_BQ), (unsigned)heads, (unsigned)q->shape[0]);
  flash_attention_kernel<T, DPL><<<grid, ATTN_WARPS * 32, smem, cu->stream>>>(
      (const T *)q->data, (const T *)k->data, (const T *)v->data, (T *)o->data, lq, lk, width, d,
      ds, scale, causal);
  CUDA_CHECK_LAUNCH("flash_attention_kernel");
  return 0;
}

template <typename T>
static int attention_fused(sd_cuda *cu, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                           int heads, float scale, bool causal, sd_tensor *o) {
  int d = (int)(q->shape[2] / heads);
  switch ((d + 31) / 32) {
  case 1:
    return launch_fused<T, 1>(cu, q, k, v, heads, scale, causal, o);
  case 2:
    return launch_fused<T, 2>(cu, q, k, v, heads, scale, causal, o);
  case 3:
    return launch_fused<T, 3>(cu, q, k, v, heads, scale, causal, o);
  case 4:
    return launch_fused<T, 4>(cu, q, k, v, heads, scale, causal, o);
  case 5:
    return launch_fused<T, 5>(cu, q, k, v, heads, scale, causal, o);
  }
  return SD_ERROR("attention: head dim %d beyond the fused kernel's %d", d, SD_ATTN_FUSED_MAX_D);
}

/* ---- GEMM path for large head dims -------------------------------------------------------- */

/* probs (rows, Lk) = softmax over each row of scores (rows, Lk), keys after the query masked when
 * causal; query index = q0 + row. One block per row. */
template <typename T>
__global__ void softmax_rows_kernel(const float *__restrict__ scores, T *__restrict__ probs,
                                    int64_t rows, int64_t lk, int64_t q0, bool causal) {
  __shared__ float reduce_buffer[32];
  for (int64_t i = blockIdx.x; i < rows; i += gridDim.x) {
    const float *s = scores + i * lk;
    T *p = probs + i * lk;
    int64_t keep = causal ? (q0 + i + 1 < lk ? q0 + i + 1 : lk) : lk;
    float max = -INFINITY;
    for (int64_t j = threadIdx.x; j < keep; j += blockDim.x)
      max = fmaxf(max, s[j]);
    max = sd_block_max(max, reduce_buffer);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < keep; j += blockDim.x)
      sum += expf(s[j] - max);
    float inv = 1.0f / sd_block_sum(sum, reduce_buffer);
    for (int64_t j = threadIdx.x; j < lk; j += blockDim.x)
      sd_store_f32(p + j, j < keep ? expf(s[j] - max) * inv : 0.0f);
  }
}

/* One image at a time (batch invariance, ops.h): the chunk size and every GEMM's problem are
 * those of one image, so cuBLAS's algorithm choice (per problem size and batch count) cannot see
 * the batch. */
template <typename T>
static int attention_gemm(sd_cuda *cu, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                          int heads, float scale, bool causal, sd_tensor *o) {
  int64_t batch = q->shape[0], lq = q->shape[1], lk = k->shape[1], width = q->shape[2];
  int64_t d = width / heads;
  if (lq > INT_MAX || lk > INT_MAX || width > INT_MAX)
    return SD_ERROR("attention: sizes beyond cuBLAS's int range");
  /* queries per chunk: S (chunk, Lk) float32 and P in T within the bound */
  size_t per_query = (size_t)lk * (sizeof(float) + sizeof(T));
  int64_t chunk = (int64_t)(SD_ATTN_SCORES_BYTES / per_query);
  chunk = chunk < 1 ? 1 : (chunk > lq ? lq : chunk);
  size_t scores_bytes = (size_t)(chunk * lk) * sizeof(float);
  void *scratch;
  SD_TRY(sd_cuda_scratch(cu, scores_bytes + (size_t)(chunk * lk) * sizeof(T), &scratch));
  float *scores = (float *)scratch;                 /* (chunk, Lk) */
  T *probs = (T *)((char *)scratch + scores_bytes); /* (chunk, Lk) */
  cudaDataType_t type = sd_cuda_data_type(q->dtype);
  const float zero = 0.0f, one = 1.0f;

  for (int64_t image = 0; image < batch; image++)
    for (int64_t h = 0; h < heads; h++) {
      const T *qh = (const T *)q->data + image * lq * width + h * d; /* (Lq, D), ld width */
      const T *kh = (const T *)k->data + image * lk * width + h * d; /* (Lk, D), ld width */
      const T *vh = (const T *)v->data + image * lk * width + h * d;
      T *oh = (T *)o->data + image * lq * width + h * d;
      for (int64_t q0 = 0; q0 < lq; q0 += chunk) {
        int64_t rows = lq - q0 < chunk ? lq - q0 : chunk;
        /* column-major: S^T (Lk, rows) = K^T (Lk, D) . Q^T (D, rows) */
        CUBLAS_CHECK(cublasGemmEx(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)lk, (int)rows, (int)d,
                                  &scale, kh, type, (int)width, qh + q0 * width, type, (int)width,
                                  &zero, scores, CUDA_R_32F, (int)lk, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
        unsigned blocks = (unsigned)(rows < INT32_MAX ? rows : INT32_MAX);
        softmax_rows_kernel<T>
            <<<blocks, SD_CUDA_THREADS, 0, cu->stream>>>(scores, probs, rows, lk, q0, causal);
        CUDA_CHECK_LAUNCH("softmax_rows_kernel");
        /* column-major: O^T (D, rows) = V^T (D, Lk) . P^T (Lk, rows) */
        CUBLAS_CHECK(cublasGemmEx(cu->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)d, (int)rows, (int)lk,
                                  &one, vh, type, (int)width, probs, type, (int)lk, &zero,
                                  oh + q0 * width, type, (int)width, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
      }
    }
  return 0;
}

template <typename T>
static int launch_attention(sd_cuda *cu, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                            int heads, float scale, bool causal, sd_tensor *o) {
  if (sd_tensor_numel(q) == 0)
    return 0;
  if (q->shape[1] > INT_MAX || k->shape[1] > INT_MAX || q->shape[2] > INT_MAX ||
      q->shape[0] > 65535 || heads > 65535)
    return SD_ERROR("attention: (B, L, H*D) sizes beyond the kernels' limits");
  if (q->shape[2] / heads <= SD_ATTN_FUSED_MAX_D)
    return attention_fused<T>(cu, q, k, v, heads, scale, causal, o);
  return attention_gemm<T>(cu, q, k, v, heads, scale, causal, o);
}

int sd_cuda_attention(sd_backend *be, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                      int heads, float scale, bool causal, sd_tensor *o) {
  return SD_CUDA_TYPED_CALL(q->dtype, "attention", launch_attention, sd_cuda_of(be), q, k, v, heads,
                            scale, causal, o);
}
