/* Checked dispatch of the op interface: shape and dtype checks that every backend relies on,
 * then a call through the backend's vtable. */
#include "ops.h"

#include "error.h"

#include <string.h>

#define SHAPE(t, buf) sd_tensor_shape_str((t), (buf), sizeof(buf))

static int check_act(sd_backend *be, const char *op, const char *what, const sd_tensor *t) {
  if (!t || !t->data)
    return SD_ERROR("%s: %s has no memory", op, what);
  if (t->dtype != be->ops->act_dtype)
    return SD_ERROR("%s: %s has dtype %s, backend %s computes in %s", op, what,
                    sd_dtype_name(t->dtype), be->ops->name, sd_dtype_name(be->ops->act_dtype));
  return 0;
}

static int check_weight(sd_backend *be, const char *op, const char *what, const sd_tensor *t) {
  if (!t || !t->data)
    return SD_ERROR("%s: %s has no memory", op, what);
  if (t->dtype != be->ops->weight_dtype && t->dtype != be->ops->act_dtype)
    return SD_ERROR("%s: %s has dtype %s, backend %s expects %s", op, what, sd_dtype_name(t->dtype),
                    be->ops->name, sd_dtype_name(be->ops->weight_dtype));
  return 0;
}

static int mismatch(const char *op, const char *what, const sd_tensor *a, const sd_tensor *b) {
  char sa[96], sb[96];
  return SD_ERROR("%s: %s: %s vs %s", op, what, SHAPE(a, sa), SHAPE(b, sb));
}

static int64_t last_dim(const sd_tensor *t) {
  return t->shape[t->ndim - 1];
}

static int64_t rows(const sd_tensor *t) {
  return sd_tensor_numel(t) / last_dim(t);
}

int sd_op_linear(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                 sd_activation act, sd_tensor *y) {
  SD_TRY(check_act(be, "linear", "x", x));
  SD_TRY(check_weight(be, "linear", "weight", w));
  SD_TRY(check_act(be, "linear", "y", y));
  if (w->ndim != 2 || last_dim(x) != w->shape[1])
    return mismatch("linear", "x (.., K) and weight (N, K)", x, w);
  if (last_dim(y) != w->shape[0] || rows(y) != rows(x))
    return mismatch("linear", "y (.., N) and weight (N, K)", y, w);
  if (b) {
    SD_TRY(check_weight(be, "linear", "bias", b));
    if (sd_tensor_numel(b) != w->shape[0])
      return mismatch("linear", "bias (N) and weight (N, K)", b, w);
  }
  be->flops += 2ull * (uint64_t)rows(x) * (uint64_t)w->shape[0] * (uint64_t)w->shape[1];
  return be->ops->linear(be, x, w, b, act, y);
}

int sd_op_conv2d(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                 int stride, int pad, sd_tensor *y) {
  SD_TRY(check_act(be, "conv2d", "x", x));
  SD_TRY(check_weight(be, "conv2d", "weight", w));
  SD_TRY(check_act(be, "conv2d", "y", y));
  if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4 || x->shape[1] != w->shape[1])
    return mismatch("conv2d", "x (B, C, H, W) and weight (K, C, kh, kw)", x, w);
  if (stride < 1 || pad < 0)
    return SD_ERROR("conv2d: stride %d, pad %d", stride, pad);
  int64_t ho = (x->shape[2] + 2 * pad - w->shape[2]) / stride + 1;
  int64_t wo = (x->shape[3] + 2 * pad - w->shape[3]) / stride + 1;
  if (y->shape[0] != x->shape[0] || y->shape[1] != w->shape[0] || y->shape[2] != ho ||
      y->shape[3] != wo)
    return mismatch("conv2d", "y (B, K, Ho, Wo) and x", y, x);
  if (b) {
    SD_TRY(check_weight(be, "conv2d", "bias", b));
    if (sd_tensor_numel(b) != w->shape[0])
      return mismatch("conv2d", "bias (K) and weight (K, C, kh, kw)", b, w);
  }
  be->flops +=
      2ull * (uint64_t)sd_tensor_numel(y) * (uint64_t)(w->shape[1] * w->shape[2] * w->shape[3]);
  return be->ops->conv2d(be, x, w, b, stride, pad, y);
}

int sd_op_group_norm(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                     const sd_tensor *beta, int groups, float eps, bool silu, sd_tensor *y) {
  SD_TRY(check_act(be, "group_norm", "x", x));
  SD_TRY(check_act(be, "group_norm", "y", y));
  SD_TRY(check_weight(be, "group_norm", "gamma", gamma));
  SD_TRY(check_weight(be, "group_norm", "beta", beta));
  if (x->ndim < 2 || !sd_tensor_same_shape(x, y))
    return mismatch("group_norm", "x and y", x, y);
  int64_t channels = x->shape[1];
  if (groups < 1 || channels % groups)
    return SD_ERROR("group_norm: %lld channels do not split into %d groups", (long long)channels,
                    groups);
  if (sd_tensor_numel(gamma) != channels || sd_tensor_numel(beta) != channels)
    return mismatch("group_norm", "gamma and x channels", gamma, x);
  return be->ops->group_norm(be, x, gamma, beta, groups, eps, silu, y);
}

int sd_op_group_norm_sums(sd_backend *be, const sd_tensor *x, int groups, const float *center,
                          double *sums) {
  SD_TRY(check_act(be, "group_norm_sums", "x", x));
  if (x->ndim < 2 || groups < 1 || x->shape[1] % groups)
    return SD_ERROR("group_norm_sums: x of %d dims with %lld channels does not split into %d "
                    "groups",
                    x->ndim, x->ndim >= 2 ? (long long)x->shape[1] : 0LL, groups);
  if (!sums)
    return SD_ERROR("group_norm_sums: no output array");
  return be->ops->group_norm_sums(be, x, groups, center, sums);
}

int sd_op_group_norm_apply(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                           const sd_tensor *beta, int groups, const float *stats, bool silu,
                           sd_tensor *y) {
  SD_TRY(check_act(be, "group_norm_apply", "x", x));
  SD_TRY(check_act(be, "group_norm_apply", "y", y));
  SD_TRY(check_weight(be, "group_norm_apply", "gamma", gamma));
  SD_TRY(check_weight(be, "group_norm_apply", "beta", beta));
  if (x->ndim < 2 || !sd_tensor_same_shape(x, y))
    return mismatch("group_norm_apply", "x and y", x, y);
  int64_t channels = x->shape[1];
  if (groups < 1 || channels % groups)
    return SD_ERROR("group_norm_apply: %lld channels do not split into %d groups",
                    (long long)channels, groups);
  if (sd_tensor_numel(gamma) != channels || sd_tensor_numel(beta) != channels)
    return mismatch("group_norm_apply", "gamma and x channels", gamma, x);
  if (!stats)
    return SD_ERROR("group_norm_apply: no statistics");
  return be->ops->group_norm_apply(be, x, gamma, beta, groups, stats, silu, y);
}

int sd_op_layer_norm(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                     const sd_tensor *beta, float eps, sd_tensor *y) {
  SD_TRY(check_act(be, "layer_norm", "x", x));
  SD_TRY(check_act(be, "layer_norm", "y", y));
  SD_TRY(check_weight(be, "layer_norm", "gamma", gamma));
  SD_TRY(check_weight(be, "layer_norm", "beta", beta));
  if (sd_tensor_numel(x) != sd_tensor_numel(y) || last_dim(x) != last_dim(y))
    return mismatch("layer_norm", "x and y", x, y);
  if (sd_tensor_numel(gamma) != last_dim(x) || sd_tensor_numel(beta) != last_dim(x))
    return mismatch("layer_norm", "gamma and x (.., C)", gamma, x);
  return be->ops->layer_norm(be, x, gamma, beta, eps, y);
}

int sd_op_attention(sd_backend *be, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                    int heads, float scale, bool causal, sd_tensor *o) {
  SD_TRY(check_act(be, "attention", "q", q));
  SD_TRY(check_act(be, "attention", "k", k));
  SD_TRY(check_act(be, "attention", "v", v));
  SD_TRY(check_act(be, "attention", "o", o));
  if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || !sd_tensor_same_shape(q, o))
    return mismatch("attention", "q (B, Lq, H*D) and o", q, o);
  if (!sd_tensor_same_shape(k, v) || k->shape[0] != q->shape[0] || k->shape[2] != q->shape[2])
    return mismatch("attention", "k/v (B, Lk, H*D) and q (B, Lq, H*D)", k, q);
  if (heads < 1 || q->shape[2] % heads)
    return SD_ERROR("attention: %lld channels do not split into %d heads", (long long)q->shape[2],
                    heads);
  if (causal && q->shape[1] != k->shape[1])
    return mismatch("attention", "causal attention needs Lq == Lk", q, k);
  /* q k^T and p v: 2 x (2 B Lq Lk H D) */
  be->flops += 4ull * (uint64_t)q->shape[0] * (uint64_t)q->shape[1] * (uint64_t)k->shape[1] *
               (uint64_t)q->shape[2];
  return be->ops->attention(be, q, k, v, heads, scale, causal, o);
}

int sd_op_activation(sd_backend *be, const sd_tensor *x, sd_activation act, sd_tensor *y) {
  SD_TRY(check_act(be, "activation", "x", x));
  SD_TRY(check_act(be, "activation", "y", y));
  if (sd_tensor_numel(x) != sd_tensor_numel(y))
    return mismatch("activation", "x and y", x, y);
  if (act == SD_ACT_NONE)
    return x->data == y->data ? 0 : sd_op_copy(be, x, y);
  return be->ops->activation(be, x, act, y);
}

int sd_op_geglu(sd_backend *be, const sd_tensor *x, sd_tensor *y) {
  SD_TRY(check_act(be, "geglu", "x", x));
  SD_TRY(check_act(be, "geglu", "y", y));
  if (last_dim(x) != 2 * last_dim(y) || rows(x) != rows(y))
    return mismatch("geglu", "x (.., 2N) and y (.., N)", x, y);
  return be->ops->geglu(be, x, y);
}

int sd_op_lincomb(sd_backend *be, int n, const float *coeffs, const sd_tensor *const *xs,
                  sd_tensor *y) {
  if (n < 1 || n > SD_LINCOMB_MAX)
    return SD_ERROR("lincomb: %d inputs (1 to %d)", n, SD_LINCOMB_MAX);
  SD_TRY(check_act(be, "lincomb", "y", y));
  for (int i = 0; i < n; i++) {
    SD_TRY(check_act(be, "lincomb", "input", xs[i]));
    if (sd_tensor_numel(xs[i]) != sd_tensor_numel(y))
      return mismatch("lincomb", "input and y", xs[i], y);
  }
  return be->ops->lincomb(be, n, coeffs, xs, y);
}

int sd_op_add(sd_backend *be, const sd_tensor *a, const sd_tensor *b, sd_tensor *y) {
  const float coeffs[2] = {1.0f, 1.0f};
  const sd_tensor *xs[2] = {a, b};
  return sd_op_lincomb(be, 2, coeffs, xs, y);
}

int sd_op_scale(sd_backend *be, const sd_tensor *x, float s, sd_tensor *y) {
  const sd_tensor *xs[1] = {x};
  return sd_op_lincomb(be, 1, &s, xs, y);
}

int sd_op_copy(sd_backend *be, const sd_tensor *x, sd_tensor *y) {
  return sd_op_scale(be, x, 1.0f, y);
}

int sd_op_add_channel_bias(sd_backend *be, const sd_tensor *x, const sd_tensor *v, sd_tensor *y) {
  SD_TRY(check_act(be, "add_channel_bias", "x", x));
  SD_TRY(check_act(be, "add_channel_bias", "v", v));
  SD_TRY(check_act(be, "add_channel_bias", "y", y));
  if (x->ndim != 4 || !sd_tensor_same_shape(x, y))
    return mismatch("add_channel_bias", "x (B, C, H, W) and y", x, y);
  if (sd_tensor_numel(v) != x->shape[0] * x->shape[1])
    return mismatch("add_channel_bias", "v (B, C) and x (B, C, H, W)", v, x);
  return be->ops->add_channel_bias(be, x, v, y);
}

int sd_op_upsample_nearest(sd_backend *be, const sd_tensor *x, sd_tensor *y) {
  SD_TRY(check_act(be, "upsample_nearest", "x", x));
  SD_TRY(check_act(be, "upsample_nearest", "y", y));
  if (x->ndim != 4 || y->ndim != 4 || y->shape[0] != x->shape[0] || y->shape[1] != x->shape[1] ||
      x->shape[2] < 1 || x->shape[3] < 1 || y->shape[2] < 1 || y->shape[3] < 1)
    return mismatch("upsample_nearest", "x (B, C, H, W) and y (B, C, Ho, Wo), sides >= 1", x, y);
  return be->ops->upsample_nearest(be, x, y);
}

int sd_op_concat_channels(sd_backend *be, const sd_tensor *a, const sd_tensor *b, sd_tensor *y) {
  SD_TRY(check_act(be, "concat_channels", "a", a));
  SD_TRY(check_act(be, "concat_channels", "b", b));
  SD_TRY(check_act(be, "concat_channels", "y", y));
  if (a->ndim != 4 || b->ndim != 4 || y->ndim != 4 || a->shape[0] != b->shape[0] ||
      a->shape[2] != b->shape[2] || a->shape[3] != b->shape[3])
    return mismatch("concat_channels", "a (B, Ca, H, W) and b (B, Cb, H, W)", a, b);
  if (y->shape[0] != a->shape[0] || y->shape[1] != a->shape[1] + b->shape[1] ||
      y->shape[2] != a->shape[2] || y->shape[3] != a->shape[3])
    return mismatch("concat_channels", "y (B, Ca + Cb, H, W) and a", y, a);
  return be->ops->concat_channels(be, a, b, y);
}

int sd_op_transpose(sd_backend *be, const sd_tensor *x, sd_tensor *y) {
  SD_TRY(check_act(be, "transpose", "x", x));
  SD_TRY(check_act(be, "transpose", "y", y));
  if (x->ndim != 3 || y->ndim != 3 || y->shape[0] != x->shape[0] || y->shape[1] != x->shape[2] ||
      y->shape[2] != x->shape[1])
    return mismatch("transpose", "x (B, M, N) and y (B, N, M)", x, y);
  return be->ops->transpose(be, x, y);
}

int sd_op_embedding(sd_backend *be, const sd_tensor *table, const int32_t *ids, int64_t n,
                    sd_tensor *y) {
  SD_TRY(check_weight(be, "embedding", "table", table));
  SD_TRY(check_act(be, "embedding", "y", y));
  if (table->ndim != 2 || rows(y) != n || last_dim(y) != table->shape[1])
    return mismatch("embedding", "y (n, C) and table (V, C)", y, table);
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= table->shape[0])
      return SD_ERROR("embedding: id %d at position %lld outside the table of %lld rows", ids[i],
                      (long long)i, (long long)table->shape[0]);
  return be->ops->embedding(be, table, ids, n, y);
}

int sd_op_clamp(sd_backend *be, const sd_tensor *x, float lo, float hi, sd_tensor *y) {
  SD_TRY(check_act(be, "clamp", "x", x));
  SD_TRY(check_act(be, "clamp", "y", y));
  if (sd_tensor_numel(x) != sd_tensor_numel(y))
    return mismatch("clamp", "x and y", x, y);
  return be->ops->clamp(be, x, lo, hi, y);
}

int sd_op_mask_blend(sd_backend *be, const sd_tensor *a, const sd_tensor *b, const sd_tensor *m,
                     sd_tensor *y) {
  SD_TRY(check_act(be, "mask_blend", "a", a));
  SD_TRY(check_act(be, "mask_blend", "b", b));
  SD_TRY(check_act(be, "mask_blend", "m", m));
  SD_TRY(check_act(be, "mask_blend", "y", y));
  if (a->ndim != 4 || !sd_tensor_same_shape(a, b) || !sd_tensor_same_shape(a, y))
    return mismatch("mask_blend", "a, b and y (B, C, H, W)", a, y);
  if (m->ndim != 4 || m->shape[0] != a->shape[0] || m->shape[1] != 1 ||
      m->shape[2] != a->shape[2] || m->shape[3] != a->shape[3])
    return mismatch("mask_blend", "m (B, 1, H, W) and a (B, C, H, W)", m, a);
  return be->ops->mask_blend(be, a, b, m, y);
}

int sd_op_blend_window(sd_backend *be, const sd_tensor *x, int64_t x_row, int64_t x_col,
                       sd_tensor *y, int64_t y_row, int64_t y_col, int64_t rows, int64_t cols,
                       sd_blend_mode mode) {
  SD_TRY(check_act(be, "blend_window", "x", x));
  SD_TRY(check_act(be, "blend_window", "y", y));
  if (x->ndim != 4 || y->ndim != 4 || x->shape[0] != y->shape[0] || x->shape[1] != y->shape[1])
    return mismatch("blend_window", "x (B, C, Hx, Wx) and y (B, C, Hy, Wy)", x, y);
  if (mode != SD_BLEND_COPY && mode != SD_BLEND_ROWS && mode != SD_BLEND_COLS)
    return SD_ERROR("blend_window: unknown mode %d", (int)mode);
  if (x->data == y->data)
    return SD_ERROR("blend_window: y aliases x");
  if (rows < 0 || cols < 0 || x_row < 0 || x_col < 0 || y_row < 0 || y_col < 0 ||
      x_row + rows > x->shape[2] || x_col + cols > x->shape[3] || y_row + rows > y->shape[2] ||
      y_col + cols > y->shape[3]) {
    char sx[96], sy[96];
    return SD_ERROR("blend_window: window of %lldx%lld at (%lld, %lld) in x %s and (%lld, %lld) "
                    "in y %s leaves a tensor",
                    (long long)rows, (long long)cols, (long long)x_row, (long long)x_col,
                    SHAPE(x, sx), (long long)y_row, (long long)y_col, SHAPE(y, sy));
  }
  if (rows == 0 || cols == 0 || x->shape[0] * x->shape[1] == 0)
    return 0;
  return be->ops->blend_window(be, x, x_row, x_col, y, y_row, y_col, rows, cols, mode);
}

int sd_op_randn_philox(sd_backend *be, const uint64_t *seeds, const uint64_t *offsets,
                       sd_tensor *out) {
  SD_TRY(check_act(be, "randn_philox", "out", out));
  if (out->ndim < 1 || out->shape[0] < 1) {
    char so[96];
    return SD_ERROR("randn_philox: out %s has no batch dim", SHAPE(out, so));
  }
  if (!seeds || !offsets)
    return SD_ERROR("randn_philox: no seeds or offsets");
  for (int64_t b = 0; b < out->shape[0]; b++)
    if (offsets[b] % 4 != 0)
      return SD_ERROR("randn_philox: offset %llu of item %lld is not a multiple of 4",
                      (unsigned long long)offsets[b], (long long)b);
  if (sd_tensor_numel(out) == 0)
    return 0;
  return be->ops->randn_philox(be, seeds, offsets, out);
}

int sd_op_timestep_embedding(sd_backend *be, double timestep, bool flip_sin_to_cos,
                             float freq_shift, double max_period, sd_tensor *out) {
  SD_TRY(check_act(be, "timestep_embedding", "out", out));
  char so[96];
  if (out->ndim != 2 || out->shape[0] < 1 || out->shape[1] < 2)
    return SD_ERROR("timestep_embedding: out %s is not (B, dim) with B >= 1, dim >= 2",
                    SHAPE(out, so));
  int64_t half = out->shape[1] / 2;
  if ((float)half - freq_shift == 0.0f)
    return SD_ERROR("timestep_embedding: out %s: dim / 2 = %lld equals freq_shift %g",
                    SHAPE(out, so), (long long)half, freq_shift);
  if (!(max_period > 0.0))
    return SD_ERROR("timestep_embedding: max_period %g is not positive", max_period);
  return be->ops->timestep_embedding(be, timestep, flip_sin_to_cos, freq_shift, max_period, out);
}

static bool sides_positive(const sd_tensor *t) {
  return t->ndim == 4 && t->shape[2] >= 1 && t->shape[3] >= 1;
}

int sd_op_interpolate(sd_backend *be, const sd_tensor *x, sd_interp_mode mode, bool align_corners,
                      sd_tensor *y) {
  SD_TRY(check_act(be, "interpolate", "x", x));
  SD_TRY(check_act(be, "interpolate", "y", y));
  if (!sides_positive(x) || !sides_positive(y) || y->shape[0] != x->shape[0] ||
      y->shape[1] != x->shape[1])
    return mismatch("interpolate", "x (B, C, H, W) and y (B, C, Ho, Wo), sides >= 1", x, y);
  if (mode != SD_INTERP_BILINEAR && mode != SD_INTERP_BICUBIC)
    return SD_ERROR("interpolate: unknown mode %d", (int)mode);
  if (sd_tensor_numel(y) == 0)
    return 0;
  return be->ops->interpolate(be, x, mode, align_corners, y);
}

int sd_op_max_pool2d(sd_backend *be, const sd_tensor *x, int kernel, int stride, int pad,
                     sd_tensor *y) {
  SD_TRY(check_act(be, "max_pool2d", "x", x));
  SD_TRY(check_act(be, "max_pool2d", "y", y));
  if (kernel < 1 || stride < 1 || pad < 0 || pad > kernel / 2)
    return SD_ERROR("max_pool2d: kernel %d, stride %d, pad %d (pad at most half the kernel)",
                    kernel, stride, pad);
  if (x->ndim != 4 || y->ndim != 4 || x->shape[2] + 2 * pad < kernel ||
      x->shape[3] + 2 * pad < kernel)
    return mismatch("max_pool2d", "x (B, C, H, W) at least one window, y (B, C, Ho, Wo)", x, y);
  int64_t ho = (x->shape[2] + 2 * pad - kernel) / stride + 1;
  int64_t wo = (x->shape[3] + 2 * pad - kernel) / stride + 1;
  if (y->shape[0] != x->shape[0] || y->shape[1] != x->shape[1] || y->shape[2] != ho ||
      y->shape[3] != wo)
    return mismatch("max_pool2d", "y (B, C, Ho, Wo) and x", y, x);
  if (sd_tensor_numel(y) == 0)
    return 0;
  return be->ops->max_pool2d(be, x, kernel, stride, pad, y);
}

int sd_op_pad2d(sd_backend *be, const sd_tensor *x, int64_t top, int64_t left, float value,
                sd_tensor *y) {
  SD_TRY(check_act(be, "pad2d", "x", x));
  SD_TRY(check_act(be, "pad2d", "y", y));
  if (x->ndim != 4 || y->ndim != 4 || y->shape[0] != x->shape[0] || y->shape[1] != x->shape[1] ||
      top < 0 || left < 0 || y->shape[2] < top + x->shape[2] || y->shape[3] < left + x->shape[3]) {
    char sx[96], sy[96];
    return SD_ERROR("pad2d: x %s with %lld rows above and %lld columns left does not fit y %s",
                    SHAPE(x, sx), (long long)top, (long long)left, SHAPE(y, sy));
  }
  if (sd_tensor_numel(y) == 0)
    return 0;
  return be->ops->pad2d(be, x, top, left, value, y);
}

int sd_op_conv_transpose2d(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                           const sd_tensor *b, int stride, int pad, sd_tensor *y) {
  SD_TRY(check_act(be, "conv_transpose2d", "x", x));
  SD_TRY(check_weight(be, "conv_transpose2d", "weight", w));
  SD_TRY(check_act(be, "conv_transpose2d", "y", y));
  if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4 || x->shape[1] != w->shape[0] ||
      !sides_positive(x))
    return mismatch("conv_transpose2d", "x (B, C, H, W) and weight (C, K, kh, kw)", x, w);
  if (stride < 1 || pad < 0)
    return SD_ERROR("conv_transpose2d: stride %d, pad %d", stride, pad);
  int64_t ho = (x->shape[2] - 1) * stride - 2 * pad + w->shape[2];
  int64_t wo = (x->shape[3] - 1) * stride - 2 * pad + w->shape[3];
  if (ho < 1 || wo < 1 || y->shape[0] != x->shape[0] || y->shape[1] != w->shape[1] ||
      y->shape[2] != ho || y->shape[3] != wo)
    return mismatch("conv_transpose2d", "y (B, K, (H - 1) stride - 2 pad + kh, ..) and x", y, x);
  if (b) {
    SD_TRY(check_weight(be, "conv_transpose2d", "bias", b));
    if (sd_tensor_numel(b) != w->shape[1])
      return mismatch("conv_transpose2d", "bias (K) and weight (C, K, kh, kw)", b, w);
  }
  if (sd_tensor_numel(y) == 0)
    return 0;
  be->flops +=
      2ull * (uint64_t)sd_tensor_numel(x) * (uint64_t)(w->shape[1] * w->shape[2] * w->shape[3]);
  return be->ops->conv_transpose2d(be, x, w, b, stride, pad, y);
}

int sd_tensor_alloc_persistent(sd_backend *be, sd_tensor *t) {
  t->data = be->ops->alloc(be, sd_tensor_bytes(t) ? sd_tensor_bytes(t) : 1);
  return t->data ? 0 : -1;
}

void sd_tensor_free(sd_backend *be, sd_tensor *t) {
  if (t && t->data) {
    be->ops->free(be, t->data);
    t->data = NULL;
  }
}

int sd_tensor_upload(sd_backend *be, sd_tensor *dst, sd_dtype src_dtype, const void *src) {
  return be->ops->upload(be, dst, src_dtype, src);
}

int sd_tensor_upload_f32(sd_backend *be, sd_tensor *dst, const float *src) {
  return be->ops->upload(be, dst, SD_DTYPE_F32, src);
}

int sd_tensor_download_f32(sd_backend *be, const sd_tensor *src, float *dst) {
  return be->ops->download_f32(be, src, dst);
}

sd_backend *sd_backend_create(const char *name) {
  if (strcmp(name, "cpu") == 0)
    return sd_backend_cpu_create(0);
  if (strcmp(name, "cuda") == 0)
    return sd_backend_cuda_create(0, SD_DTYPE_F16);
  if (strcmp(name, "auto") == 0) {
    sd_backend *be = sd_backend_cuda_create(0, SD_DTYPE_F16);
    if (be)
      return be;
    sd_error_clear();
    return sd_backend_cpu_create(0);
  }
  SD_ERROR("unknown device '%s' (cpu, cuda or auto)", name);
  return NULL;
}

void sd_backend_destroy(sd_backend *be) {
  if (be)
    be->ops->destroy(be);
}

const char *sd_backend_kernels(sd_backend *be, char *buf, size_t size) {
  if (size > 0)
    buf[0] = '\0';
  if (be->ops->describe_kernels && size > 0)
    be->ops->describe_kernels(be, buf, size);
  return buf;
}

/* Backward passes: the forward op's shape rules, each gradient of its tensor's shape, and an
 * error naming the op where the backend has no backward for it. */

static int check_backward_entry(sd_backend *be, const void *entry, const char *op) {
  if (!entry)
    return SD_ERROR("op %s: not available on backend %s", op, be->ops->name);
  return 0;
}

/* A gradient (NULL: not wanted) of `of`'s shape. */
static int check_grad(sd_backend *be, const char *op, const char *what, const sd_tensor *grad,
                      const sd_tensor *of) {
  if (!grad)
    return 0;
  SD_TRY(check_act(be, op, what, grad));
  if (!sd_tensor_same_shape(grad, of)) {
    char sg[96], so[96];
    return SD_ERROR("%s: %s %s is not of shape %s", op, what, SHAPE(grad, sg), SHAPE(of, so));
  }
  return 0;
}

/* A bias gradient (NULL: not wanted) of w->shape[0] elements. */
static int check_bias_grad(sd_backend *be, const char *op, const sd_tensor *db,
                           const sd_tensor *w) {
  if (!db)
    return 0;
  SD_TRY(check_act(be, op, "db", db));
  if (sd_tensor_numel(db) != w->shape[0])
    return mismatch(op, "db (N) and weight (N, ..)", db, w);
  return 0;
}

int sd_op_linear_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                          const sd_tensor *dy, sd_tensor *dx, sd_tensor *dw, sd_tensor *db) {
  const char *op = "linear_backward";
  SD_TRY(check_backward_entry(be, (const void *)be->ops->linear_backward, op));
  SD_TRY(check_act(be, op, "x", x));
  SD_TRY(check_weight(be, op, "weight", w));
  SD_TRY(check_act(be, op, "dy", dy));
  if (w->ndim != 2 || last_dim(x) != w->shape[1])
    return mismatch(op, "x (.., K) and weight (N, K)", x, w);
  if (last_dim(dy) != w->shape[0] || rows(dy) != rows(x) || dy->shape[0] != x->shape[0])
    return mismatch(op, "dy (.., N) and x (.., K)", dy, x);
  SD_TRY(check_grad(be, op, "dx", dx, x));
  SD_TRY(check_grad(be, op, "dw", dw, w));
  SD_TRY(check_bias_grad(be, op, db, w));
  /* one GEMM of the forward's size for dx, one for dw */
  uint64_t gemm = 2ull * (uint64_t)rows(x) * (uint64_t)w->shape[0] * (uint64_t)w->shape[1];
  be->flops += (dx ? gemm : 0) + (dw ? gemm : 0);
  return be->ops->linear_backward(be, x, w, dy, dx, dw, db);
}

int sd_op_conv2d_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                          const sd_tensor *dy, int stride, int pad, sd_tensor *dx, sd_tensor *dw,
                          sd_tensor *db) {
  const char *op = "conv2d_backward";
  SD_TRY(check_backward_entry(be, (const void *)be->ops->conv2d_backward, op));
  SD_TRY(check_act(be, op, "x", x));
  SD_TRY(check_weight(be, op, "weight", w));
  SD_TRY(check_act(be, op, "dy", dy));
  if (x->ndim != 4 || w->ndim != 4 || dy->ndim != 4 || x->shape[1] != w->shape[1])
    return mismatch(op, "x (B, C, H, W) and weight (K, C, kh, kw)", x, w);
  if (stride < 1 || pad < 0)
    return SD_ERROR("%s: stride %d, pad %d", op, stride, pad);
  int64_t ho = (x->shape[2] + 2 * pad - w->shape[2]) / stride + 1;
  int64_t wo = (x->shape[3] + 2 * pad - w->shape[3]) / stride + 1;
  if (ho < 1 || wo < 1 || dy->shape[0] != x->shape[0] || dy->shape[1] != w->shape[0] ||
      dy->shape[2] != ho || dy->shape[3] != wo)
    return mismatch(op, "dy (B, K, Ho, Wo) and x", dy, x);
  SD_TRY(check_grad(be, op, "dx", dx, x));
  SD_TRY(check_grad(be, op, "dw", dw, w));
  SD_TRY(check_bias_grad(be, op, db, w));
  /* one convolution's worth for dx, one for dw */
  uint64_t conv_flops =
      2ull * (uint64_t)sd_tensor_numel(dy) * (uint64_t)(w->shape[1] * w->shape[2] * w->shape[3]);
  be->flops += (dx ? conv_flops : 0) + (dw ? conv_flops : 0);
  return be->ops->conv2d_backward(be, x, w, dy, stride, pad, dx, dw, db);
}

int sd_op_group_norm_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                              const sd_tensor *beta, const sd_tensor *dy, int groups, float eps,
                              bool silu, sd_tensor *dx, sd_tensor *dgamma, sd_tensor *dbeta) {
  const char *op = "group_norm_backward";
  SD_TRY(check_backward_entry(be, (const void *)be->ops->group_norm_backward, op));
  SD_TRY(check_act(be, op, "x", x));
  SD_TRY(check_act(be, op, "dy", dy));
  SD_TRY(check_weight(be, op, "gamma", gamma));
  SD_TRY(check_weight(be, op, "beta", beta));
  if (x->ndim < 2 || !sd_tensor_same_shape(x, dy))
    return mismatch(op, "x and dy", x, dy);
  int64_t channels = x->shape[1];
  if (groups < 1 || channels % groups)
    return SD_ERROR("%s: %lld channels do not split into %d groups", op, (long long)channels,
                    groups);
  if (sd_tensor_numel(gamma) != channels || sd_tensor_numel(beta) != channels)
    return mismatch(op, "gamma and x channels", gamma, x);
  SD_TRY(check_grad(be, op, "dx", dx, x));
  SD_TRY(check_grad(be, op, "dgamma", dgamma, gamma));
  SD_TRY(check_grad(be, op, "dbeta", dbeta, beta));
  return be->ops->group_norm_backward(be, x, gamma, beta, dy, groups, eps, silu, dx, dgamma, dbeta);
}

int sd_op_layer_norm_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                              const sd_tensor *dy, float eps, sd_tensor *dx, sd_tensor *dgamma,
                              sd_tensor *dbeta) {
  const char *op = "layer_norm_backward";
  SD_TRY(check_backward_entry(be, (const void *)be->ops->layer_norm_backward, op));
  SD_TRY(check_act(be, op, "x", x));
  SD_TRY(check_act(be, op, "dy", dy));
  SD_TRY(check_weight(be, op, "gamma", gamma));
  if (!sd_tensor_same_shape(x, dy))
    return mismatch(op, "x and dy", x, dy);
  if (sd_tensor_numel(gamma) != last_dim(x))
    return mismatch(op, "gamma and x (.., C)", gamma, x);
  SD_TRY(check_grad(be, op, "dx", dx, x));
  SD_TRY(check_grad(be, op, "dgamma", dgamma, gamma));
  SD_TRY(check_grad(be, op, "dbeta", dbeta, gamma));
  return be->ops->layer_norm_backward(be, x, gamma, dy, eps, dx, dgamma, dbeta);
}

int sd_op_attention_backward(sd_backend *be, const sd_tensor *q, const sd_tensor *k,
                             const sd_tensor *v, const sd_tensor *dout, int heads, float scale,
                             bool causal, sd_tensor *dq, sd_tensor *dk, sd_tensor *dv) {
  const char *op = "attention_backward";
  SD_TRY(check_backward_entry(be, (const void *)be->ops->attention_backward, op));
  SD_TRY(check_act(be, op, "q", q));
  SD_TRY(check_act(be, op, "k", k));
  SD_TRY(check_act(be, op, "v", v));
  SD_TRY(check_act(be, op, "dout", dout));
  if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || !sd_tensor_same_shape(q, dout))
    return mismatch(op, "q (B, Lq, H*D) and dout", q, dout);
  if (!sd_tensor_same_shape(k, v) || k->shape[0] != q->shape[0] || k->shape[2] != q->shape[2])
    return mismatch(op, "k/v (B, Lk, H*D) and q (B, Lq, H*D)", k, q);
  if (heads < 1 || q->shape[2] % heads)
    return SD_ERROR("%s: %lld channels do not split into %d heads", op, (long long)q->shape[2],
                    heads);
  if (causal && q->shape[1] != k->shape[1])
    return mismatch(op, "causal attention needs Lq == Lk", q, k);
  SD_TRY(check_grad(be, op, "dq", dq, q));
  SD_TRY(check_grad(be, op, "dk", dk, k));
  SD_TRY(check_grad(be, op, "dv", dv, v));
  /* GEMMs of 2 B Lq Lk H D each: q k^T again; P^T dout for dv; dout v^T, then dS k for dq and
   * dS^T q for dk */
  uint64_t gemms = 1 + (dv ? 1 : 0) + (dq || dk ? 1 : 0) + (dq ? 1 : 0) + (dk ? 1 : 0);
  be->flops += gemms * 2ull * (uint64_t)q->shape[0] * (uint64_t)q->shape[1] *
               (uint64_t)k->shape[1] * (uint64_t)q->shape[2];
  return be->ops->attention_backward(be, q, k, v, dout, heads, scale, causal, dq, dk, dv);
}

int sd_op_activation_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *dy,
                              sd_activation act, sd_tensor *dx) {
  const char *op = "activation_backward";
  SD_TRY(check_backward_entry(be, (const void *)be->ops->activation_backward, op));
  SD_TRY(check_act(be, op, "x", x));
  SD_TRY(check_act(be, op, "dy", dy));
  SD_TRY(check_act(be, op, "dx", dx));
  if (sd_tensor_numel(x) != sd_tensor_numel(dy) || sd_tensor_numel(x) != sd_tensor_numel(dx))
    return mismatch(op, "x, dy and dx", x, dy);
  if (act == SD_ACT_NONE)
    return dx->data == dy->data ? 0 : sd_op_copy(be, dy, dx);
  return be->ops->activation_backward(be, x, dy, act, dx);
}

int sd_op_geglu_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *dy, sd_tensor *dx) {
  const char *op = "geglu_backward";
  SD_TRY(check_backward_entry(be, (const void *)be->ops->geglu_backward, op));
  SD_TRY(check_act(be, op, "x", x));
  SD_TRY(check_act(be, op, "dy", dy));
  SD_TRY(check_act(be, op, "dx", dx));
  if (last_dim(x) != 2 * last_dim(dy) || rows(x) != rows(dy))
    return mismatch(op, "x (.., 2N) and dy (.., N)", x, dy);
  SD_TRY(check_grad(be, op, "dx", dx, x));
  return be->ops->geglu_backward(be, x, dy, dx);
}

int sd_op_add_channel_bias_backward(sd_backend *be, const sd_tensor *dy, sd_tensor *dv) {
  const char *op = "add_channel_bias_backward";
  SD_TRY(check_backward_entry(be, (const void *)be->ops->add_channel_bias_backward, op));
  SD_TRY(check_act(be, op, "dy", dy));
  SD_TRY(check_act(be, op, "dv", dv));
  if (dy->ndim != 4 || sd_tensor_numel(dv) != dy->shape[0] * dy->shape[1])
    return mismatch(op, "dv (B, C) and dy (B, C, H, W)", dv, dy);
  return be->ops->add_channel_bias_backward(be, dy, dv);
}

int sd_op_upsample_nearest_backward(sd_backend *be, const sd_tensor *dy, sd_tensor *dx) {
  const char *op = "upsample_nearest_backward";
  SD_TRY(check_backward_entry(be, (const void *)be->ops->upsample_nearest_backward, op));
  SD_TRY(check_act(be, op, "dy", dy));
  SD_TRY(check_act(be, op, "dx", dx));
  if (dy->ndim != 4 || dx->ndim != 4 || dy->shape[0] != dx->shape[0] ||
      dy->shape[1] != dx->shape[1] || dy->shape[2] != 2 * dx->shape[2] ||
      dy->shape[3] != 2 * dx->shape[3])
    return mismatch(op, "dy (B, C, 2H, 2W) and dx (B, C, H, W) (only 2x is differentiated)", dy,
                    dx);
  return be->ops->upsample_nearest_backward(be, dy, dx);
}

int sd_op_concat_channels_backward(sd_backend *be, const sd_tensor *dy, sd_tensor *da,
                                   sd_tensor *db) {
  const char *op = "concat_channels_backward";
  SD_TRY(check_backward_entry(be, (const void *)be->ops->concat_channels_backward, op));
  SD_TRY(check_act(be, op, "dy", dy));
  if (!da || !db)
    return SD_ERROR("%s: da and db describe the split and are both needed", op);
  SD_TRY(check_act(be, op, "da", da));
  SD_TRY(check_act(be, op, "db", db));
  if (dy->ndim != 4 || da->ndim != 4 || db->ndim != 4 || da->shape[0] != dy->shape[0] ||
      db->shape[0] != dy->shape[0] || da->shape[1] + db->shape[1] != dy->shape[1] ||
      da->shape[2] != dy->shape[2] || db->shape[2] != dy->shape[2] ||
      da->shape[3] != dy->shape[3] || db->shape[3] != dy->shape[3])
    return mismatch(op, "dy (B, Ca + Cb, H, W) and da (B, Ca, H, W)", dy, da);
  return be->ops->concat_channels_backward(be, dy, da, db);
}

int sd_op_embedding_backward(sd_backend *be, const int32_t *ids, int64_t n, const sd_tensor *dy,
                             sd_tensor *dtable) {
  const char *op = "embedding_backward";
  SD_TRY(check_backward_entry(be, (const void *)be->ops->embedding_backward, op));
  SD_TRY(check_act(be, op, "dy", dy));
  SD_TRY(check_act(be, op, "dtable", dtable));
  if (dtable->ndim != 2 || rows(dy) != n || last_dim(dy) != dtable->shape[1])
    return mismatch(op, "dy (n, C) and dtable (V, C)", dy, dtable);
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= dtable->shape[0])
      return SD_ERROR("%s: id %d at position %lld outside the table of %lld rows", op, ids[i],
                      (long long)i, (long long)dtable->shape[0]);
  return be->ops->embedding_backward(be, ids, n, dy, dtable);
}

int sd_op_pad2d_backward(sd_backend *be, const sd_tensor *dy, int64_t top, int64_t left,
                         sd_tensor *dx) {
  const char *op = "pad2d_backward";
  SD_TRY(check_backward_entry(be, (const void *)be->ops->pad2d_backward, op));
  SD_TRY(check_act(be, op, "dy", dy));
  SD_TRY(check_act(be, op, "dx", dx));
  if (dx->ndim != 4 || dy->ndim != 4 || dy->shape[0] != dx->shape[0] ||
      dy->shape[1] != dx->shape[1] || top < 0 || left < 0 || dy->shape[2] < top + dx->shape[2] ||
      dy->shape[3] < left + dx->shape[3]) {
    char sx[96], sy[96];
    return SD_ERROR("%s: dx %s with %lld rows above and %lld columns left does not fit dy %s", op,
                    SHAPE(dx, sx), (long long)top, (long long)left, SHAPE(dy, sy));
  }
  if (sd_tensor_numel(dx) == 0)
    return 0;
  return be->ops->pad2d_backward(be, dy, top, left, dx);
}

int sd_op_transpose_backward(sd_backend *be, const sd_tensor *dy, sd_tensor *dx) {
  return sd_op_transpose(be, dy, dx);
}
