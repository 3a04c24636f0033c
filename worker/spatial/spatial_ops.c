/* The ops that see across band edges (spatial.h): 3x3 convolutions with halo rows, GroupNorm with
 * all-reduced statistics, self-attention with all-gathered keys and values. */
#include "spatial_internal.h"

#include "../../kernels/error.h"

#include <math.h>
#include <stdlib.h>

static bool alone(const sd_spatial *sp) {
  return !sp || sd_spatial_size(sp) == 1;
}

/* ---- convolution ---- */

/* Halo rows: each rank sends its first k rows to the previous rank and its last k rows to the
 * next (k = stride: a stride-2 output row 2i needs input rows 2i-1..2i+1, so the first output row
 * of a band starting at even row s needs row s-1, and the convolution below is aligned by
 * giving it rows s-2 and s-1 above the band). ext (B, C, top + rows + bottom, W) is the band with
 * its halo; the convolution with padding 1 on ext puts output row i of the band at ext output
 * row top / stride + i. */
static int conv3x3(sd_backend *be, const sd_spatial *sp, const sd_tensor *x, const sd_tensor *w,
                   const sd_tensor *b, int stride, sd_tensor *y) {
  int rank = sd_spatial_rank(sp), size = sd_spatial_size(sp);
  int64_t batch = x->shape[0], c = x->shape[1], rows = x->shape[2], width = x->shape[3];
  int64_t first, want_rows, out_first, out_rows;
  SD_TRY(sd_spatial_band(sp, width, rank, &first, &want_rows, NULL));
  SD_TRY(sd_spatial_band(sp, y->shape[3], rank, &out_first, &out_rows, NULL));
  if (rows != want_rows || y->shape[2] != out_rows || (stride == 2 && first != 2 * out_first))
    return SD_ERROR("spatial conv2d: x rows %lld (band %lld), y rows %lld (band %lld): not this "
                    "rank's bands",
                    (long long)rows, (long long)want_rows, (long long)y->shape[2],
                    (long long)out_rows);
  bool has_prev = rank > 0, has_next = rank < size - 1;
  int64_t k = stride;
  int64_t top = has_prev ? k : 0, bottom = has_next && stride == 1 ? 1 : 0;
  sd_dtype dt = x->dtype;
  sd_tensor send_prev = sd_tensor_4d(dt, batch, c, k, width); /* (B, C, k, W) */
  sd_tensor send_next = send_prev, recv_prev = send_prev, recv_next = send_prev;
  sd_tensor ext = sd_tensor_4d(dt, batch, c, top + rows + bottom, width);
  int64_t ext_out = (top + rows + bottom + 2 - 3) / stride + 1;
  int64_t o0 = top / stride;
  if (ext_out - o0 < out_rows)
    return SD_ERROR("spatial conv2d: %lld output rows from a %lld-row band", (long long)out_rows,
                    (long long)rows);
  SD_TRY(sd_tensor_alloc(be, &send_prev));
  SD_TRY(sd_tensor_alloc(be, &send_next));
  SD_TRY(sd_tensor_alloc(be, &recv_prev));
  SD_TRY(sd_tensor_alloc(be, &recv_next));
  SD_TRY(sd_tensor_alloc(be, &ext));
  int64_t kp = k < rows ? k : rows; /* a band may be shorter than the halo it is asked for */
  if (has_prev)
    SD_TRY(sd_op_blend_window(be, x, 0, 0, &send_prev, 0, 0, kp, width, SD_BLEND_COPY));
  if (has_next)
    SD_TRY(
        sd_op_blend_window(be, x, rows - kp, 0, &send_next, k - kp, 0, kp, width, SD_BLEND_COPY));
  SD_TRY(sd_spatial_sync(sp));
  double t0 = sd_spatial_now();
  int rc = sd_comm_exchange_neighbors(sp->comm, send_prev.data, recv_prev.data, send_next.data,
                                      recv_next.data, sd_tensor_bytes(&send_prev));
  sp->stats->comm_seconds += sd_spatial_now() - t0;
  sp->stats->halo_calls++;
  SD_TRY(rc);
  if (has_prev)
    SD_TRY(sd_op_blend_window(be, &recv_prev, 0, 0, &ext, 0, 0, k, width, SD_BLEND_COPY));
  SD_TRY(sd_op_blend_window(be, x, 0, 0, &ext, top, 0, rows, width, SD_BLEND_COPY));
  if (bottom)
    SD_TRY(sd_op_blend_window(be, &recv_next, 0, 0, &ext, top + rows, 0, 1, width, SD_BLEND_COPY));
  if (o0 == 0 && ext_out == out_rows)
    return sd_op_conv2d(be, &ext, w, b, stride, 1, y);
  sd_tensor full = sd_tensor_4d(y->dtype, batch, y->shape[1], ext_out, y->shape[3]);
  SD_TRY(sd_tensor_alloc(be, &full));
  SD_TRY(sd_op_conv2d(be, &ext, w, b, stride, 1, &full));
  return sd_op_blend_window(be, &full, o0, 0, y, 0, 0, out_rows, y->shape[3], SD_BLEND_COPY);
}

int sd_spatial_conv2d(sd_backend *be, const sd_spatial *sp, const sd_tensor *x, const sd_tensor *w,
                      const sd_tensor *b, int stride, int pad, sd_tensor *y) {
  if (alone(sp))
    return sd_op_conv2d(be, x, w, b, stride, pad, y);
  int64_t kh = w->ndim == 4 ? w->shape[2] : 0, kw = w->ndim == 4 ? w->shape[3] : 0;
  if (kh == 1 && kw == 1 && stride == 1 && pad == 0)
    return sd_op_conv2d(be, x, w, b, stride, pad, y);
  if (kh != 3 || kw != 3 || pad != 1 || (stride != 1 && stride != 2) || x->ndim != 4 ||
      y->ndim != 4)
    return SD_ERROR("spatial conv2d: a %lldx%lld kernel with stride %d and padding %d is not "
                    "supported over bands (1x1, or 3x3 with padding 1 and stride 1 or 2)",
                    (long long)kh, (long long)kw, stride, pad);
  sd_arena_mark mark = sd_arena_get_mark(be);
  int rc = conv3x3(be, sp, x, w, b, stride, y);
  sd_arena_release(be, mark);
  return rc < 0 ? sd_error_context("spatial conv2d (rank %d of %d)", sd_spatial_rank(sp),
                                   sd_spatial_size(sp))
                : 0;
}

/* ---- GroupNorm ---- */

static int all_reduce(const sd_spatial *sp, double *data, size_t n) {
  double t0 = sd_spatial_now();
  int rc = sd_comm_allreduce_sum_f64(sp->comm, data, n);
  sp->stats->comm_seconds += sd_spatial_now() - t0;
  sp->stats->reduce_calls++;
  return rc;
}

/* Two passes as the one-rank op: mean = (float)(sum / n); rstd from the squared deviations
 * from that float mean; every rank gets the same bits (rank-ordered all-reduce). */
static int group_stats(sd_backend *be, const sd_spatial *sp, const sd_tensor *x, int groups,
                       float eps, double *sums, float *center, float *stats) {
  int64_t bg = x->shape[0] * groups;
  SD_TRY(sd_op_group_norm_sums(be, x, groups, NULL, sums));
  sums[2 * bg] = (double)(sd_tensor_numel(x) / bg); /* values per group in this band */
  SD_TRY(all_reduce(sp, sums, (size_t)(2 * bg + 1)));
  double n = sums[2 * bg];
  for (int64_t k = 0; k < bg; k++)
    center[k] = (float)(sums[2 * k] / n);
  SD_TRY(sd_op_group_norm_sums(be, x, groups, center, sums));
  SD_TRY(all_reduce(sp, sums, (size_t)(2 * bg)));
  for (int64_t k = 0; k < bg; k++) {
    stats[2 * k] = center[k];
    stats[2 * k + 1] = (float)(1.0 / sqrt(sums[2 * k + 1] / n + (double)eps));
  }
  return 0;
}

int sd_spatial_group_norm(sd_backend *be, const sd_spatial *sp, const sd_tensor *x,
                          const sd_tensor *gamma, const sd_tensor *beta, int groups, float eps,
                          bool silu, sd_tensor *y) {
  if (alone(sp))
    return sd_op_group_norm(be, x, gamma, beta, groups, eps, silu, y);
  if (x->ndim < 2 || groups < 1)
    return SD_ERROR("spatial group_norm: x of %d dims in %d groups", x->ndim, groups);
  int64_t bg = x->shape[0] * groups;
  double *sums = malloc((size_t)(2 * bg + 1) * sizeof *sums);
  float *floats = malloc((size_t)(3 * bg) * sizeof *floats); /* center (BG), stats (BG, 2) */
  int rc = sums && floats ? 0 : SD_ERROR("spatial group_norm: out of memory");
  if (rc == 0)
    rc = group_stats(be, sp, x, groups, eps, sums, floats, floats + bg);
  if (rc == 0)
    rc = sd_op_group_norm_apply(be, x, gamma, beta, groups, floats + bg, silu, y);
  free(sums);
  free(floats);
  return rc < 0 ? sd_error_context("spatial group_norm (rank %d of %d)", sd_spatial_rank(sp),
                                   sd_spatial_size(sp))
                : 0;
}

/* ---- self-attention ---- */

/* whole (B, L, C) = every rank's part (B, L_r, C) in rank order along L. */
static int gather_tokens(sd_backend *be, const sd_spatial *sp, const sd_tensor *part, int64_t width,
                         sd_tensor *whole) {
  int size = sd_spatial_size(sp);
  int64_t batch = part->shape[0], ch = part->shape[2];
  size_t elem = sd_dtype_size(part->dtype);
  size_t *bytes = malloc((size_t)size * sizeof *bytes);
  int64_t *tokens = malloc((size_t)size * sizeof *tokens);
  if (!bytes || !tokens) {
    free(bytes);
    free(tokens);
    return SD_ERROR("out of memory");
  }
  int64_t total = 0;
  for (int r = 0; r < size; r++) {
    int64_t rows;
    sd_spatial_band(sp, width, r, NULL, &rows, NULL);
    tokens[r] = rows * width;
    bytes[r] = (size_t)(batch * tokens[r] * ch) * elem;
    total += tokens[r];
  }
  int rc = 0;
  if (part->shape[1] != tokens[sd_spatial_rank(sp)] || whole->shape[1] != total)
    rc = SD_ERROR("spatial attention: %lld tokens in the band, want %lld (width %lld)",
                  (long long)part->shape[1], (long long)tokens[sd_spatial_rank(sp)],
                  (long long)width);
  if (rc == 0 && batch == 1) {
    rc = sd_spatial_allgatherv(sp, part->data, whole->data, bytes);
  } else if (rc == 0) {
    sd_tensor parts = sd_tensor_1d(part->dtype, sd_tensor_numel(whole)); /* rank by rank */
    rc = sd_tensor_alloc(be, &parts);
    if (rc == 0)
      rc = sd_spatial_allgatherv(sp, part->data, parts.data, bytes);
    /* (B, 1, L_r, C) windows into (B, 1, L, C) */
    sd_tensor whole4 = sd_tensor_4d(whole->dtype, batch, 1, total, ch);
    whole4.data = whole->data;
    size_t offset = 0;
    int64_t at = 0;
    for (int r = 0; r < size && rc == 0; r++) {
      sd_tensor p = sd_tensor_4d(part->dtype, batch, 1, tokens[r], ch);
      p.data = (char *)parts.data + offset;
      rc = sd_op_blend_window(be, &p, 0, 0, &whole4, at, 0, tokens[r], ch, SD_BLEND_COPY);
      offset += bytes[r];
      at += tokens[r];
    }
  }
  free(bytes);
  free(tokens);
  return rc;
}

int sd_spatial_attention(sd_backend *be, const sd_spatial *sp, const sd_tensor *q,
                         const sd_tensor *k, const sd_tensor *v, int64_t width, int heads,
                         float scale, sd_tensor *o) {
  if (alone(sp))
    return sd_op_attention(be, q, k, v, heads, scale, false, o);
  if (k->ndim != 3 || v->ndim != 3 || !sd_tensor_same_shape(k, v))
    return SD_ERROR("spatial attention: k and v must be (B, L, C) alike");
  int64_t total;
  SD_TRY(sd_spatial_band(sp, width, 0, NULL, NULL, &total));
  total *= width;
  sd_arena_mark mark = sd_arena_get_mark(be);
  sd_tensor kw = sd_tensor_3d(k->dtype, k->shape[0], total, k->shape[2]); /* (B, L, C) */
  sd_tensor vw = kw;
  int rc = sd_tensor_alloc(be, &kw);
  if (rc == 0)
    rc = sd_tensor_alloc(be, &vw);
  if (rc == 0)
    rc = gather_tokens(be, sp, k, width, &kw);
  if (rc == 0)
    rc = gather_tokens(be, sp, v, width, &vw);
  if (rc == 0)
    rc = sd_op_attention(be, q, &kw, &vw, heads, scale, false, o);
  sd_arena_release(be, mark);
  return rc < 0 ? sd_error_context("spatial attention (rank %d of %d)", sd_spatial_rank(sp),
                                   sd_spatial_size(sp))
                : 0;
}
