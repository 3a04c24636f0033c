/* Spatial parallelism: one image's activations split into row bands over the ranks of a group
 * (docs/spatial.md). A decomposition is made for one model's stack of resolutions: level 0 is
 * the finest (height H, width W), each next level halves both sides rounding up, as the UNet's
 * stride-2 downsamplers do (the VAE decoder's levels are exact halves). The band boundaries are
 * chosen at the coarsest level (rows [a_r, a_{r+1}) of rank r, as even as possible) and scaled
 * by 2 per finer level, clipped to the level's height, so that stride-2 convolutions and nearest
 * 2x upsampling map each rank's band onto its own band at the next level, odd heights included.
 * A tensor's level is found from its width, which is never split.
 *
 * The sd_spatial_* ops below take band tensors (B, C, rows, W) and give what the one-rank op
 * gives on the whole image, cut to the band: 3x3 convolutions exchange one halo row (two above
 * for stride 2) with the neighbours; GroupNorm all-reduces its per-group sums (two passes, mean
 * then squared deviations, as the one-rank op computes them); self-attention all-gathers K and
 * V and keeps its queries. Every op takes `sp` NULL (or a group of one) for the plain op, so the
 * models are written once for both. The communicator's memory kind must suit the backend (host
 * memory for the CPU backend and MPI, device memory for CUDA and NCCL). */
#ifndef SD_SPATIAL_H
#define SD_SPATIAL_H

#include "../../cluster/comm.h"
#include "../../kernels/ops.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_spatial sd_spatial;

/* Communication figures of a decomposition, for benchmarks. */
typedef struct sd_spatial_stats {
  uint64_t bytes_sent; /* by this rank */
  double comm_seconds; /* waiting in collectives and exchanges (includes waiting for peers) */
  uint64_t halo_calls; /* neighbour exchanges */
  uint64_t gather_calls;
  uint64_t reduce_calls;
} sd_spatial_stats;

/* A decomposition of images whose finest level is (height, width) with `levels` levels over the
 * ranks of comm (borrowed, as is be). The coarsest level, ceil(height / 2^(levels - 1)) rows,
 * must have at least one row per rank. */
int sd_spatial_create(sd_comm *comm, sd_backend *be, int64_t height, int64_t width, int levels,
                      sd_spatial **out);
void sd_spatial_free(sd_spatial *sp);

int sd_spatial_rank(const sd_spatial *sp);
int sd_spatial_size(const sd_spatial *sp);
sd_comm *sd_spatial_comm(const sd_spatial *sp);
sd_spatial_stats sd_spatial_get_stats(const sd_spatial *sp);

/* Rank `rank`'s band at the level whose width is `width`: its first row and row count, and the
 * level's full height (any may be NULL). Fails when no level has that width. */
int sd_spatial_band(const sd_spatial *sp, int64_t width, int rank, int64_t *first, int64_t *rows,
                    int64_t *height);
/* This rank's band rows at the level of `width`; `whole` when sp is NULL (the one-rank size). */
int64_t sd_spatial_rows(const sd_spatial *sp, int64_t width, int64_t whole);

/* y band = conv2d of the whole x, cut to y's band (ops.h conv2d). 1x1 unpadded stride-1 convs
 * are local; 3x3 convs with padding 1 and stride 1 or 2 exchange halo rows; other geometries are
 * an error under a group of more than one rank. */
int sd_spatial_conv2d(sd_backend *be, const sd_spatial *sp, const sd_tensor *x, const sd_tensor *w,
                      const sd_tensor *b, int stride, int pad, sd_tensor *y);
/* ops.h group_norm with the statistics of the whole image: group_norm_sums on the band,
 * all-reduced (mean first, then squared deviations from it), group_norm_apply. y may alias x. */
int sd_spatial_group_norm(sd_backend *be, const sd_spatial *sp, const sd_tensor *x,
                          const sd_tensor *gamma, const sd_tensor *beta, int groups, float eps,
                          bool silu, sd_tensor *y);
/* Self-attention of a band's queries q (B, Lq, H*D) over the keys and values of the whole image:
 * k and v (B, Lq, H*D) are the band's (Lq = band rows * width) and are all-gathered in row
 * order before ops.h attention (not causal). */
int sd_spatial_attention(sd_backend *be, const sd_spatial *sp, const sd_tensor *q,
                         const sd_tensor *k, const sd_tensor *v, int64_t width, int heads,
                         float scale, sd_tensor *o);

/* The band of the whole tensor `full` (B, C, H, W) at its level: a copy into band (B, C, rows,
 * W). */
int sd_spatial_cut(sd_backend *be, const sd_spatial *sp, const sd_tensor *full, sd_tensor *band);
/* The whole tensor from every rank's band (all-gather): full (B, C, H, W) on every rank. */
int sd_spatial_gather(sd_backend *be, const sd_spatial *sp, const sd_tensor *band, sd_tensor *full);

#ifdef __cplusplus
}
#endif

#endif
