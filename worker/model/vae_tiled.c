/* Tiled VAE decoding, as diffusers' AutoencoderKL.tiled_decode: overlapping latent tiles decoded
 * one at a time, seams cross-faded, the kept part of each tile placed in the image. Unlike
 * diffusers, which keeps every decoded tile until the end, only the seams the next tiles need
 * are kept: the bottom strip of each tile of the previous tile row and the right strip of the
 * previous tile, both taken after the tile's own blending (diffusers blends in place, so a tile's
 * neighbours see it blended). Scratch memory is one tile's decode plus these strips. */
#include "vae.h"

#include "../../kernels/error.h"

#include <stdio.h>

/* diffusers' tile_overlap_factor is 0.25: tile stride int(0.75 L), blend extent int(0.25 S). */
typedef struct tile_plan {
  int64_t factor;      /* image pixels per latent pixel */
  int64_t tile_latent; /* L: latent tile side (tile_latent_min_size) */
  int64_t stride;      /* latent pixels between tile starts (overlap_size) */
  int64_t blend;       /* image pixels cross-faded at a seam (blend_extent) */
  int64_t keep;        /* image rows / columns kept of a tile (row_limit) */
  int64_t rows, cols;  /* tiles down and across */
} tile_plan;

static int make_plan(const sd_vae_config *cfg, int tile_sample_size, int64_t h, int64_t w,
                     tile_plan *p) {
  p->factor = (int64_t)1 << (cfg->num_levels - 1);
  p->tile_latent = tile_sample_size / p->factor;
  p->stride = (int64_t)((double)p->tile_latent * 0.75);
  p->blend = (int64_t)((double)tile_sample_size * 0.25);
  p->keep = tile_sample_size - p->blend;
  if (tile_sample_size < 1 || p->stride < 1 || p->keep != p->factor * p->stride)
    return SD_ERROR("tile size %d px: the kept %lld px of a tile must be %lld x the tile stride of "
                    "%lld latent px (use a multiple of %lld px)",
                    tile_sample_size, (long long)p->keep, (long long)p->factor,
                    (long long)p->stride, (long long)(4 * p->factor));
  p->rows = (h + p->stride - 1) / p->stride;
  p->cols = (w + p->stride - 1) / p->stride;
  return 0;
}

static int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

/* Image pixels of tile `index` along a side of `latent` latent pixels. */
static int64_t tile_extent(const tile_plan *p, int64_t latent, int64_t index) {
  return p->factor * min64(p->tile_latent, latent - index * p->stride);
}

/* Buffers of one tiled decode (arena memory). */
typedef struct tile_state {
  sd_tensor latent; /* (B, latent_channels, L, L) the tile's latents */
  sd_tensor tile;   /* (B, out_channels, S, S) the decoded tile */
  sd_tensor below;  /* (B, out_channels, blend, cols * S): bottom strip of each tile above */
  sd_tensor right;  /* (B, out_channels, S, blend): right strip of the tile to the left */
} tile_state;

/* A (B, C, h, w) header on the memory of `buf`. */
static sd_tensor view_on(const sd_tensor *buf, int64_t h, int64_t w) {
  sd_tensor t = sd_tensor_4d(buf->dtype, buf->shape[0], buf->shape[1], h, w);
  t.data = buf->data;
  return t;
}

/* Decodes tile (i, j), blends it with its neighbours, keeps its seams and places it. */
static int decode_tile(sd_vae *model, const tile_plan *p, const sd_tensor *z, int64_t i, int64_t j,
                       tile_state *st, sd_tensor *image) {
  sd_backend *be = sd_vae_get_backend(model);
  const int64_t s = p->factor * p->tile_latent;
  const int64_t z_row = i * p->stride, z_col = j * p->stride;
  const int64_t th = tile_extent(p, z->shape[2], i), tw = tile_extent(p, z->shape[3], j);
  const int64_t lh = th / p->factor, lw = tw / p->factor;
  sd_tensor latent = view_on(&st->latent, lh, lw); /* (B, latent_channels, lh, lw) */
  sd_tensor tile = view_on(&st->tile, th, tw);     /* (B, out_channels, th, tw) */

  SD_TRY(sd_op_blend_window(be, z, z_row, z_col, &latent, 0, 0, lh, lw, SD_BLEND_COPY));
  SD_TRY(sd_vae_decode(model, &latent, &tile));
  /* diffusers blends min(blend, a's extent, b's extent) pixels; a (above, left) is never the
   * last tile of its side, so its extent exceeds keep >= blend, and its strip holds blend. */
  if (i > 0) {
    const int64_t n = min64(p->blend, th);
    SD_TRY(
        sd_op_blend_window(be, &st->below, p->blend - n, j * s, &tile, 0, 0, n, tw, SD_BLEND_ROWS));
  }
  if (j > 0) {
    const int64_t n = min64(p->blend, tw);
    SD_TRY(sd_op_blend_window(be, &st->right, 0, p->blend - n, &tile, 0, 0, th, n, SD_BLEND_COLS));
  }
  if (i + 1 < p->rows)
    SD_TRY(sd_op_blend_window(be, &tile, th - p->blend, 0, &st->below, 0, j * s, p->blend, tw,
                              SD_BLEND_COPY));
  if (j + 1 < p->cols)
    SD_TRY(sd_op_blend_window(be, &tile, 0, tw - p->blend, &st->right, 0, 0, th, p->blend,
                              SD_BLEND_COPY));
  return sd_op_blend_window(be, &tile, 0, 0, image, i * p->keep, j * p->keep, min64(p->keep, th),
                            min64(p->keep, tw), SD_BLEND_COPY);
}

static int decode_tiles(sd_vae *model, const tile_plan *p, const sd_tensor *z, sd_tensor *image) {
  sd_backend *be = sd_vae_get_backend(model);
  const sd_vae_config *cfg = sd_vae_get_config(model);
  const sd_dtype dt = be->ops->act_dtype;
  const int64_t b = z->shape[0], s = p->factor * p->tile_latent;
  tile_state st;
  st.latent = sd_tensor_4d(dt, b, cfg->latent_channels, p->tile_latent, p->tile_latent);
  st.tile = sd_tensor_4d(dt, b, cfg->out_channels, s, s);
  st.below = sd_tensor_4d(dt, b, cfg->out_channels, p->blend, p->cols * s);
  st.right = sd_tensor_4d(dt, b, cfg->out_channels, s, p->blend);
  SD_TRY(sd_tensor_alloc(be, &st.latent));
  SD_TRY(sd_tensor_alloc(be, &st.tile));
  SD_TRY(sd_tensor_alloc(be, &st.below));
  SD_TRY(sd_tensor_alloc(be, &st.right));
  for (int64_t i = 0; i < p->rows; i++)
    for (int64_t j = 0; j < p->cols; j++)
      if (decode_tile(model, p, z, i, j, &st, image) < 0)
        return sd_error_context("tile (%lld, %lld) of %lldx%lld", (long long)i, (long long)j,
                                (long long)p->rows, (long long)p->cols);
  return 0;
}

int sd_vae_decode_tiled(sd_vae *model, const sd_tensor *z, int tile_sample_size, sd_tensor *image) {
  sd_backend *be = sd_vae_get_backend(model);
  const sd_vae_config *cfg = sd_vae_get_config(model);
  char zs[96], is[96];
  tile_plan plan = {0};
  if (z->ndim != 4 || z->shape[1] != cfg->latent_channels || z->shape[2] < 1 || z->shape[3] < 1)
    return SD_ERROR("vae tiled decode: latents must be (B, %d, h, w), got %s", cfg->latent_channels,
                    sd_tensor_shape_str(z, zs, sizeof zs));
  if (make_plan(cfg, tile_sample_size, z->shape[2], z->shape[3], &plan) < 0)
    return sd_error_context("vae tiled decode");
  if (z->shape[2] <= plan.tile_latent && z->shape[3] <= plan.tile_latent)
    return sd_vae_decode(model, z, image);
  if (image->ndim != 4 || image->shape[0] != z->shape[0] || image->shape[1] != cfg->out_channels ||
      image->shape[2] != plan.factor * z->shape[2] || image->shape[3] != plan.factor * z->shape[3])
    return SD_ERROR("vae tiled decode: image must be (%lld, %d, %lld, %lld) for latents %s, got %s",
                    (long long)z->shape[0], cfg->out_channels,
                    (long long)(plan.factor * z->shape[2]), (long long)(plan.factor * z->shape[3]),
                    sd_tensor_shape_str(z, zs, sizeof zs),
                    sd_tensor_shape_str(image, is, sizeof is));
  const sd_arena_mark mark = sd_arena_get_mark(be);
  int rc = decode_tiles(model, &plan, z, image);
  sd_arena_release(be, mark);
  return rc < 0 ? sd_error_context("vae tiled decode %s in %d px tiles",
                                   sd_tensor_shape_str(z, zs, sizeof zs), tile_sample_size)
                : 0;
}
