/* The op interface: a backend is a vtable of memory functions and compute ops. The model code
 * (worker/model) is written once against the sd_op_* functions below; each backend (kernels/cpu,
 * kernels/cuda) fills an sd_backend_ops table. sd_op_* check shapes and dtypes, then dispatch.
 *
 * Conventions:
 *  - Shapes are PyTorch's: images (B, C, H, W); sequences (B, L, C); linear weights (N, K).
 *  - Every op writes into a caller-provided output tensor (already allocated); ops never allocate
 *    their outputs, so a backend can plan memory and capture graphs.
 *  - Activations have the backend's activation dtype (be->ops->act_dtype: F32 on the CPU).
 *    Weights are uploaded once with sd_backend_upload_weight and have be->ops->weight_dtype.
 *  - Unless an op says otherwise, the output must not alias an input.
 *  - Every op returns 0 on success or -1 with a message (error.h).
 *  - Batch invariance: the outermost dim of an activation is the batch, and an item's result is
 *    bit for bit the same whatever else is in the batch (an image never depends on its
 *    neighbours; tests/test_ops_cpu.c and tests/test_txt2img.c check it). */
#ifndef SD_OPS_H
#define SD_OPS_H

#include "tensor.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_backend sd_backend;

typedef enum sd_activation {
  SD_ACT_NONE = 0,
  SD_ACT_SILU,       /* x * sigmoid(x) */
  SD_ACT_GELU,       /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
  SD_ACT_GELU_TANH,  /* tanh approximation */
  SD_ACT_QUICK_GELU, /* x * sigmoid(1.702 x) (CLIP ViT-L) */
  SD_ACT_RELU,       /* max(x, 0), NaN passes through (DPT, BiT) */
} sd_activation;

/* How sd_op_interpolate resamples (torch's F.interpolate modes). */
typedef enum sd_interp_mode {
  SD_INTERP_BILINEAR = 0, /* mode="bilinear": 2 taps per axis */
  SD_INTERP_BICUBIC,      /* mode="bicubic": 4 taps per axis, Keys' kernel with A = -0.75 */
} sd_interp_mode;

/* What sd_op_blend_window does with each element of its window (tiled VAE decoding). */
typedef enum sd_blend_mode {
  SD_BLEND_COPY = 0, /* d = s */
  SD_BLEND_ROWS,     /* d = s * (1 - r / rows) + d * (r / rows): diffusers' blend_v */
  SD_BLEND_COLS,     /* d = s * (1 - c / cols) + d * (c / cols): diffusers' blend_h */
} sd_blend_mode;

/* Up to this many inputs to sd_op_lincomb. */
#define SD_LINCOMB_MAX 4

typedef struct sd_backend_ops {
  const char *name;   /* "cpu", "cuda" */
  sd_dtype act_dtype; /* dtype of activations */
  sd_dtype weight_dtype;

  /* Memory. alloc returns NULL (with error) on failure. Copies are blocking. */
  void *(*alloc)(sd_backend *be, size_t bytes);
  void (*free)(sd_backend *be, void *ptr);
  /* host (src_dtype, n elements) -> dst tensor memory, converting to dst->dtype */
  int (*upload)(sd_backend *be, sd_tensor *dst, sd_dtype src_dtype, const void *src);
  /* tensor -> host float32 (numel elements) */
  int (*download_f32)(sd_backend *be, const sd_tensor *src, float *dst);
  int (*synchronize)(sd_backend *be);
  void (*destroy)(sd_backend *be);
  /* Optional (NULL: nothing to say): writes into buf a line naming the kernels the backend runs
   * (library, instruction set, the implementations chosen so far), for benchmarks. */
  void (*describe_kernels)(sd_backend *be, char *buf, size_t size);

  /* y (M, N) = act(x (M, K) . w (N, K)^T + b (N)); b may be NULL. x and y may have leading dims
   * that flatten to M; the outermost dim is the batch (pass (B, L, K), never (B*L, K)): a
   * backend computes each batch item on its own so results never depend on the batch. */
  int (*linear)(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                sd_activation act, sd_tensor *y);
  /* y (B, K, Ho, Wo) = conv(x (B, C, H, W), w (K, C, kh, kw)) + b (K); zero padding `pad` on each
   * side; Ho = (H + 2 pad - kh) / stride + 1. b may be NULL. */
  int (*conv2d)(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                int stride, int pad, sd_tensor *y);
  /* y = GroupNorm(x (B, C, ...)) * gamma (C) + beta (C), then SiLU when silu; eps as given.
   * y may alias x. */
  int (*group_norm)(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                    const sd_tensor *beta, int groups, float eps, bool silu, sd_tensor *y);
  /* y (M, C) = LayerNorm over the last dim of x (..., C). y may alias x. */
  int (*layer_norm)(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                    const sd_tensor *beta, float eps, sd_tensor *y);
  /* o (B, Lq, H*D) = softmax(q k^T * scale [+ causal mask]) v, per head, with
   * q (B, Lq, H*D), k (B, Lk, H*D), v (B, Lk, H*D); head h uses channels [h*D, (h+1)*D). */
  int (*attention)(sd_backend *be, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                   int heads, float scale, bool causal, sd_tensor *o);
  /* y = act(x), elementwise. y may alias x. */
  int (*activation)(sd_backend *be, const sd_tensor *x, sd_activation act, sd_tensor *y);
  /* y (..., N) = x[..., :N] * gelu(x[..., N:]) for x (..., 2N) (diffusers GEGLU). */
  int (*geglu)(sd_backend *be, const sd_tensor *x, sd_tensor *y);
  /* y = sum_i coeffs[i] * xs[i], all of one shape; n in [1, SD_LINCOMB_MAX]. y may alias any x.
   * Evaluated left to right in float32: ((c0 x0 + c1 x1) + c2 x2) + ... */
  int (*lincomb)(sd_backend *be, int n, const float *coeffs, const sd_tensor *const *xs,
                 sd_tensor *y);
  /* y (B, C, H, W) = x (B, C, H, W) + v (B, C) broadcast over H, W. y may alias x. */
  int (*add_channel_bias)(sd_backend *be, const sd_tensor *x, const sd_tensor *v, sd_tensor *y);
  /* y (B, C, Ho, Wo): nearest-neighbour resize of x (B, C, H, W) as torch's
   * F.interpolate(x, size=(Ho, Wo), mode="nearest"): source row min(floor(i * s), H - 1) with the
   * float32 scale s = H / Ho (i / 2 exactly when Ho = 2H), columns alike. */
  int (*upsample_nearest)(sd_backend *be, const sd_tensor *x, sd_tensor *y);
  /* y (B, Ca + Cb, H, W) = cat(a (B, Ca, H, W), b (B, Cb, H, W)) along channels. */
  int (*concat_channels)(sd_backend *be, const sd_tensor *a, const sd_tensor *b, sd_tensor *y);
  /* y (B, N, M) = x (B, M, N) transposed per batch (NCHW <-> NLC with M = C, N = H*W). */
  int (*transpose)(sd_backend *be, const sd_tensor *x, sd_tensor *y);
  /* y (n, C) = table (V, C) rows at ids (n, int32, host memory); ids are checked < V. */
  int (*embedding)(sd_backend *be, const sd_tensor *table, const int32_t *ids, int64_t n,
                   sd_tensor *y);
  /* y = min(max(x, lo), hi). y may alias x. */
  int (*clamp)(sd_backend *be, const sd_tensor *x, float lo, float hi, sd_tensor *y);
  /* y (B, C, H, W) = (1 - m) * a + m * b with the mask m (B, 1, H, W) broadcast over channels,
   * each product and the sum rounded to float32 (diffusers' 4-channel inpainting blend). y may
   * alias a or b. */
  int (*mask_blend)(sd_backend *be, const sd_tensor *a, const sd_tensor *b, const sd_tensor *m,
                    sd_tensor *y);
  /* A window of rows x cols pixels of x (B, C, Hx, Wx) at (x_row, x_col) onto y (B, C, Hy, Wy) at
   * (y_row, y_col): for window row r and column c, s = x[:, :, x_row + r, x_col + c] and
   * d = y[:, :, y_row + r, y_col + c] become what `mode` says. The blend weights are
   * float32(1 - r / rows) and float32(r / rows) (quotients in double), and each product and the
   * sum are rounded to float32, as torch evaluates diffusers' blend_v / blend_h. y must not
   * alias x. */
  int (*blend_window)(sd_backend *be, const sd_tensor *x, int64_t x_row, int64_t x_col,
                      sd_tensor *y, int64_t y_row, int64_t y_col, int64_t rows, int64_t cols,
                      sd_blend_mode mode);
  /* out (B, ...): item b is torch.randn of one item's shape drawn from torch.Generator('cuda')
   * seeded with seeds[b] whose philox offset is offsets[b] (a multiple of 4); seeds and offsets
   * are host arrays of B entries (kernels/philox.h, /work/shared/docs/RNG.md). Computed in
   * float32, rounded once to out's dtype. */
  int (*randn_philox)(sd_backend *be, const uint64_t *seeds, const uint64_t *offsets,
                      sd_tensor *out);
  /* out (B, dim): every row is diffusers' get_timestep_embedding of the one float timestep
   * (sin half then cos half, swapped when flip_sin_to_cos; frequencies
   * exp(-ln(max_period) i / (dim / 2 - freq_shift)); a trailing 0 when dim is odd), computed in
   * float32 as kernels/timestep_embedding.h states it and rounded once to out's dtype. The
   * timestep is an argument: nothing is copied from the host. */
  int (*timestep_embedding)(sd_backend *be, double timestep, bool flip_sin_to_cos, float freq_shift,
                            double max_period, sd_tensor *out);
  /* y (B, C, Ho, Wo) = F.interpolate(x (B, C, H, W), size=(Ho, Wo), mode, align_corners) as
   * torch's CPU kernel computes it in float32. Per axis: scale = (in - 1) / (out - 1) with
   * align_corners (0 when out = 1), else in / out; source coordinate s = scale * o with
   * align_corners, else scale * (o + 0.5) - 0.5, clamped at 0 for bilinear; index i = floor(s)
   * capped at in - 1, fraction t = s - i clamped to [0, 1]; taps i, i + 1 (bilinear, the second
   * only while i < in - 1) or i - 1 .. i + 2 (bicubic) with indices clamped into [0, in). Each
   * row's taps are weighted and summed along the width first, then the rows along the height,
   * each sum left to right. */
  int (*interpolate)(sd_backend *be, const sd_tensor *x, sd_interp_mode mode, bool align_corners,
                     sd_tensor *y);
  /* y (B, C, Ho, Wo) = max of x (B, C, H, W) over kernel x kernel windows at `stride`, with
   * `pad` rows and columns of -inf on each side (torch's max_pool2d, floor mode, dilation 1):
   * Ho = (H + 2 pad - kernel) / stride + 1. NaN propagates as in torch. */
  int (*max_pool2d)(sd_backend *be, const sd_tensor *x, int kernel, int stride, int pad,
                    sd_tensor *y);
  /* y (B, C, top + H + bottom, left + W + right) = x surrounded by `value` (F.pad, "constant");
   * bottom and right follow from y's shape. */
  int (*pad2d)(sd_backend *be, const sd_tensor *x, int64_t top, int64_t left, float value,
               sd_tensor *y);
  /* y (B, K, Ho, Wo) = conv_transpose2d(x (B, C, H, W), w (C, K, kh, kw)) + b (K) (torch's
   * ConvTranspose2d, groups 1, dilation 1, output_padding 0): Ho = (H - 1) stride - 2 pad + kh.
   * b may be NULL. */
  int (*conv_transpose2d)(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                          const sd_tensor *b, int stride, int pad, sd_tensor *y);
  /* GroupNorm statistics gathered from several parts of an image (spatial parallelism,
   * docs/spatial.md): sums (B, groups, 2), host doubles, = (sum of d, sum of d^2) with
   * d = x - center[b, g] over the group's channels and positions of x (B, C, ...); center
   * (B, groups) host floats, or NULL for 0. Values are summed in float within runs of at most
   * 4096 of one channel, runs in double. */
  int (*group_norm_sums)(sd_backend *be, const sd_tensor *x, int groups, const float *center,
                         double *sums);
  /* y = x * scale + shift, then SiLU when silu, with scale = gamma[c] * rstd and
   * shift = beta[c] - mean * scale for stats (B, groups, 2) host floats = (mean, rstd): the
   * affine step of group_norm with given statistics (the same arithmetic, so equal statistics
   * give equal bits). y may alias x. */
  int (*group_norm_apply)(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                          const sd_tensor *beta, int groups, const float *stats, bool silu,
                          sd_tensor *y);

  /* Backward passes (training, docs/training.md). Each takes the forward op's inputs and dy, the
   * gradient of the loss with respect to the forward output (of y's shape), and writes:
   *  - input gradients (dx, dq, ..: activations), OVERWRITTEN;
   *  - parameter gradients (dw, db, dgamma, dbeta, dtable), ACCUMULATED (dw += ..), so that a
   *    weight used twice, or gradients of several micro-batches, add up.
   * In linear, conv2d, group_norm, layer_norm and attention any gradient may be NULL when it is
   * not wanted (a frozen weight, an input that needs no gradient); the other ops need theirs.
   * Nothing is saved by the forward op: what a backward needs beyond the inputs
   * (normalization statistics, softmax probabilities) it recomputes from them. Parameter
   * gradients add the batch items in order (item 0 first) in a way that does not depend on the
   * thread count; an item's input gradient depends on that item only. Gradients must not alias
   * the forward inputs or each other unless an op says otherwise. A backend may leave these
   * entries NULL (the CUDA backend does): sd_op_*_backward then fails naming the op and backend. */

  /* Of linear with act NONE: dx (M, K) = dy (M, N) . w (N, K); dw (N, K) += dy^T . x (M, K);
   * db (N) += the sum of dy's rows. x, dy and dx have the forward's leading dims. A fused
   * activation is not differentiated here: run the forward as linear(NONE) + activation and
   * pass dy through activation_backward first. */
  int (*linear_backward)(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                         const sd_tensor *dy, sd_tensor *dx, sd_tensor *dw, sd_tensor *db);
  /* Of conv2d: dx (B, C, H, W) = the transposed convolution of dy (B, K, Ho, Wo) with
   * w (K, C, kh, kw) (positions of x that no window reads get 0); dw (K, C, kh, kw) += the
   * correlation of dy with x; db (K) += the sum of dy over B, Ho, Wo. */
  int (*conv2d_backward)(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                         const sd_tensor *dy, int stride, int pad, sd_tensor *dx, sd_tensor *dw,
                         sd_tensor *db);
  /* Of group_norm (with its fused SiLU when silu): x (B, C, ...), dy of x's shape; the group
   * statistics are recomputed from x as the forward computes them (and, with silu, the
   * pre-activation from gamma and beta). dx (B, C, ...); dgamma (C), dbeta (C) accumulated. */
  int (*group_norm_backward)(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                             const sd_tensor *beta, const sd_tensor *dy, int groups, float eps,
                             bool silu, sd_tensor *dx, sd_tensor *dgamma, sd_tensor *dbeta);
  /* Of layer_norm over the last dim of x (..., C), statistics recomputed per row: dx of x's
   * shape; dgamma (C), dbeta (C) accumulated (rows added in order). */
  int (*layer_norm_backward)(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                             const sd_tensor *dy, float eps, sd_tensor *dx, sd_tensor *dgamma,
                             sd_tensor *dbeta);
  /* Of attention: dout (B, Lq, H*D) the gradient of o; dq (B, Lq, H*D), dk, dv (B, Lk, H*D).
   * The probabilities P = softmax(q k^T scale [+ causal mask]) are recomputed per (batch, head)
   * in blocks of query rows, as the forward computes them, never stored as a whole (Lq, Lk)
   * matrix: dv = P^T dout, dS = P * (dout v^T - rowsum(P * dout v^T)), dq = scale dS k,
   * dk = scale dS^T q. */
  int (*attention_backward)(sd_backend *be, const sd_tensor *q, const sd_tensor *k,
                            const sd_tensor *v, const sd_tensor *dout, int heads, float scale,
                            bool causal, sd_tensor *dq, sd_tensor *dk, sd_tensor *dv);
  /* Of activation: dx = dy * act'(x), elementwise, act' as torch's autograd computes it (ReLU:
   * 0 at x <= 0). dx may alias dy. */
  int (*activation_backward)(sd_backend *be, const sd_tensor *x, const sd_tensor *dy,
                             sd_activation act, sd_tensor *dx);
  /* Of geglu: x (.., 2N) = [hidden, gate], dy (.., N); dx (.., 2N) = [dy * gelu(gate),
   * dy * hidden * gelu'(gate)]. */
  int (*geglu_backward)(sd_backend *be, const sd_tensor *x, const sd_tensor *dy, sd_tensor *dx);
  /* Of add_channel_bias: dv (B, C) = the sum of dy (B, C, H, W) over H, W, overwritten (v is an
   * activation, e.g. a projected time embedding). The gradient of x is dy itself: no op. */
  int (*add_channel_bias_backward)(sd_backend *be, const sd_tensor *dy, sd_tensor *dv);
  /* Of upsample_nearest at exactly 2x: dx (B, C, H, W) = the sum of each 2x2 block of
   * dy (B, C, 2H, 2W), added in dy's row-major order as torch's backward adds them. */
  int (*upsample_nearest_backward)(sd_backend *be, const sd_tensor *dy, sd_tensor *dx);
  /* Of concat_channels: dy (B, Ca + Cb, H, W) split into da (B, Ca, H, W) and db (B, Cb, H, W);
   * both are needed (their shapes give the split). */
  int (*concat_channels_backward)(sd_backend *be, const sd_tensor *dy, sd_tensor *da,
                                  sd_tensor *db);
  /* Of embedding: dtable (V, C) rows at ids (n, host memory) += dy (n, C) rows, for i = 0 .. n-1
   * in order (a repeated id adds up). */
  int (*embedding_backward)(sd_backend *be, const int32_t *ids, int64_t n, const sd_tensor *dy,
                            sd_tensor *dtable);
  /* Of pad2d: dx (B, C, H, W) = dy (B, C, Ho, Wo) at rows top .. top + H - 1 and columns
   * left .. left + W - 1 (the padding's own gradient is dropped: its value is a constant). */
  int (*pad2d_backward)(sd_backend *be, const sd_tensor *dy, int64_t top, int64_t left,
                        sd_tensor *dx);
} sd_backend_ops;

/* Scratch memory: a chain of chunks with stack discipline. Allocations after a mark are all
 * released by sd_arena_release(mark). */
typedef struct sd_arena_chunk sd_arena_chunk;
typedef struct sd_arena {
  sd_arena_chunk *chunks; /* in use, singly linked, newest first */
  sd_arena_chunk *spare;  /* released chunks kept for reuse */
  size_t chunk_bytes;     /* default size of a new chunk */
  size_t used_bytes;      /* bytes handed out now */
  size_t peak_bytes;      /* high-water mark of used_bytes */
} sd_arena;

typedef struct sd_arena_mark {
  sd_arena_chunk *chunk;
  size_t offset;
  size_t used_bytes;
} sd_arena_mark;

struct sd_backend {
  const sd_backend_ops *ops;
  void *impl; /* backend private state */
  sd_arena arena;
  int threads;           /* CPU worker threads (0 = default) */
  char device_name[128]; /* e.g. "NVIDIA H100 80GB HBM3" or the CPU's model name */
  /* Floating-point operations of the GEMM-like ops dispatched so far (2 per multiply-add of
   * linear, conv2d and attention, as torch's FlopCounterMode counts them); for benchmarks. */
  uint64_t flops;
};

/* Backends. Return NULL with an error when unavailable (e.g. no GPU, built without CUDA). */
sd_backend *sd_backend_cpu_create(int threads);
/* The CPU backend with GEMMs and convolutions taking their inputs in `compute`: SD_DTYPE_F32
 * (what sd_backend_cpu_create gives), or SD_DTYPE_BF16 where the CPU has AVX512_BF16 or AMX
 * (inputs and weights rounded to bfloat16, products accumulated in float32; activations between
 * ops stay float32). NULL with an error where the CPU cannot. */
sd_backend *sd_backend_cpu_create_precision(int threads, sd_dtype compute);
sd_backend *sd_backend_cuda_create(int device_index, sd_dtype act_dtype);
/* "cpu", "cuda", or "auto" (cuda when a GPU and the CUDA backend are there, else cpu) */
sd_backend *sd_backend_create(const char *name);
void sd_backend_destroy(sd_backend *be);
/* The backend's describe_kernels line in buf ("" when it has none); returns buf. */
const char *sd_backend_kernels(sd_backend *be, char *buf, size_t size);

/* Scratch tensors from the arena (activation dtype unless given). data is NULL on failure. */
int sd_tensor_alloc(sd_backend *be, sd_tensor *t);
sd_arena_mark sd_arena_get_mark(sd_backend *be);
void sd_arena_release(sd_backend *be, sd_arena_mark mark);
/* Frees all arena memory (used by backends' destroy). */
void sd_arena_destroy(sd_backend *be);
/* Whether ptr lies in the arena's memory (scratch, in use or spare), as opposed to persistent
 * memory; backends use it to keep prepared copies of persistent weights only. */
bool sd_arena_owns(const sd_backend *be, const void *ptr);

/* Persistent tensors (weights, latents kept across calls). */
int sd_tensor_alloc_persistent(sd_backend *be, sd_tensor *t);
void sd_tensor_free(sd_backend *be, sd_tensor *t);

/* Host <-> backend. */
int sd_tensor_upload(sd_backend *be, sd_tensor *dst, sd_dtype src_dtype, const void *src);
int sd_tensor_upload_f32(sd_backend *be, sd_tensor *dst, const float *src);
int sd_tensor_download_f32(sd_backend *be, const sd_tensor *src, float *dst);

/* Checked dispatch to the backend (see sd_backend_ops for each op's contract). */
int sd_op_linear(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                 sd_activation act, sd_tensor *y);
int sd_op_conv2d(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                 int stride, int pad, sd_tensor *y);
int sd_op_group_norm(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                     const sd_tensor *beta, int groups, float eps, bool silu, sd_tensor *y);
int sd_op_layer_norm(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                     const sd_tensor *beta, float eps, sd_tensor *y);
int sd_op_attention(sd_backend *be, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                    int heads, float scale, bool causal, sd_tensor *o);
int sd_op_activation(sd_backend *be, const sd_tensor *x, sd_activation act, sd_tensor *y);
int sd_op_geglu(sd_backend *be, const sd_tensor *x, sd_tensor *y);
int sd_op_lincomb(sd_backend *be, int n, const float *coeffs, const sd_tensor *const *xs,
                  sd_tensor *y);
/* y = a + b (same shape); y may alias a or b. */
int sd_op_add(sd_backend *be, const sd_tensor *a, const sd_tensor *b, sd_tensor *y);
/* y = s * x; y may alias x. */
int sd_op_scale(sd_backend *be, const sd_tensor *x, float s, sd_tensor *y);
/* y = x (same shape, copy). */
int sd_op_copy(sd_backend *be, const sd_tensor *x, sd_tensor *y);
int sd_op_add_channel_bias(sd_backend *be, const sd_tensor *x, const sd_tensor *v, sd_tensor *y);
int sd_op_upsample_nearest(sd_backend *be, const sd_tensor *x, sd_tensor *y);
int sd_op_concat_channels(sd_backend *be, const sd_tensor *a, const sd_tensor *b, sd_tensor *y);
int sd_op_transpose(sd_backend *be, const sd_tensor *x, sd_tensor *y);
int sd_op_embedding(sd_backend *be, const sd_tensor *table, const int32_t *ids, int64_t n,
                    sd_tensor *y);
int sd_op_clamp(sd_backend *be, const sd_tensor *x, float lo, float hi, sd_tensor *y);
/* a, b and y of one (B, C, H, W) shape, m (B, 1, H, W). */
int sd_op_mask_blend(sd_backend *be, const sd_tensor *a, const sd_tensor *b, const sd_tensor *m,
                     sd_tensor *y);
/* The window must lie inside both tensors; rows or cols 0 does nothing. */
int sd_op_blend_window(sd_backend *be, const sd_tensor *x, int64_t x_row, int64_t x_col,
                       sd_tensor *y, int64_t y_row, int64_t y_col, int64_t rows, int64_t cols,
                       sd_blend_mode mode);
/* torch.randn of each item's generator (see sd_backend_ops.randn_philox); the offsets must be
 * multiples of 4. An item's numbers depend only on its seed and offset, never on the batch. */
int sd_op_randn_philox(sd_backend *be, const uint64_t *seeds, const uint64_t *offsets,
                       sd_tensor *out);
/* See sd_backend_ops.group_norm_sums / group_norm_apply (x (B, C, ...) with C a multiple of
 * groups; the host arrays have B * groups entries of 2 doubles, 1 float and 2 floats). */
int sd_op_group_norm_sums(sd_backend *be, const sd_tensor *x, int groups, const float *center,
                          double *sums);
int sd_op_group_norm_apply(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                           const sd_tensor *beta, int groups, const float *stats, bool silu,
                           sd_tensor *y);
/* See sd_backend_ops.timestep_embedding; dim = out->shape[1] needs dim / 2 >= 1 and
 * dim / 2 != freq_shift, and max_period must be positive. */
int sd_op_timestep_embedding(sd_backend *be, double timestep, bool flip_sin_to_cos,
                             float freq_shift, double max_period, sd_tensor *out);
/* Sides of x and y must be >= 1. */
int sd_op_interpolate(sd_backend *be, const sd_tensor *x, sd_interp_mode mode, bool align_corners,
                      sd_tensor *y);
/* kernel >= 1, stride >= 1, 0 <= pad <= kernel / 2 (as torch requires), y of the shape stated. */
int sd_op_max_pool2d(sd_backend *be, const sd_tensor *x, int kernel, int stride, int pad,
                     sd_tensor *y);
/* top, left >= 0 and y at least as large as x plus them. */
int sd_op_pad2d(sd_backend *be, const sd_tensor *x, int64_t top, int64_t left, float value,
                sd_tensor *y);
/* stride >= 1, 0 <= pad, Ho and Wo >= 1. */
int sd_op_conv_transpose2d(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                           const sd_tensor *b, int stride, int pad, sd_tensor *y);

/* Backward passes: see sd_backend_ops.linear_backward and the entries after it for each contract
 * (input gradients overwritten, parameter gradients accumulated, NULL for a gradient not wanted).
 * Each checks shapes against the forward op's rules, with every gradient of its tensor's shape,
 * and fails with "op <name>_backward: not available on backend <name>" where the backend has no
 * such entry. */
int sd_op_linear_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                          const sd_tensor *dy, sd_tensor *dx, sd_tensor *dw, sd_tensor *db);
int sd_op_conv2d_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                          const sd_tensor *dy, int stride, int pad, sd_tensor *dx, sd_tensor *dw,
                          sd_tensor *db);
int sd_op_group_norm_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                              const sd_tensor *beta, const sd_tensor *dy, int groups, float eps,
                              bool silu, sd_tensor *dx, sd_tensor *dgamma, sd_tensor *dbeta);
int sd_op_layer_norm_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                              const sd_tensor *dy, float eps, sd_tensor *dx, sd_tensor *dgamma,
                              sd_tensor *dbeta);
int sd_op_attention_backward(sd_backend *be, const sd_tensor *q, const sd_tensor *k,
                             const sd_tensor *v, const sd_tensor *dout, int heads, float scale,
                             bool causal, sd_tensor *dq, sd_tensor *dk, sd_tensor *dv);
/* act NONE copies dy (nothing when dx is dy). */
int sd_op_activation_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *dy,
                              sd_activation act, sd_tensor *dx);
int sd_op_geglu_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *dy, sd_tensor *dx);
int sd_op_add_channel_bias_backward(sd_backend *be, const sd_tensor *dy, sd_tensor *dv);
/* dy must be exactly twice dx's height and width. */
int sd_op_upsample_nearest_backward(sd_backend *be, const sd_tensor *dy, sd_tensor *dx);
int sd_op_concat_channels_backward(sd_backend *be, const sd_tensor *dy, sd_tensor *da,
                                   sd_tensor *db);
/* ids checked < V as in sd_op_embedding. */
int sd_op_embedding_backward(sd_backend *be, const int32_t *ids, int64_t n, const sd_tensor *dy,
                             sd_tensor *dtable);
/* top, left >= 0 and dy at least as large as dx plus them (the forward's rule). */
int sd_op_pad2d_backward(sd_backend *be, const sd_tensor *dy, int64_t top, int64_t left,
                         sd_tensor *dx);
/* Of transpose: dx (B, M, N) = dy (B, N, M) transposed, i.e. sd_op_transpose(dy, dx); every
 * backend has it. */
int sd_op_transpose_backward(sd_backend *be, const sd_tensor *dy, sd_tensor *dx);

#ifdef __cplusplus
}
#endif

#endif
