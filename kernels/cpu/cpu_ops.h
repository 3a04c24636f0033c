/* The CPU backend's ops, one per file in kernels/cpu (float32 activations and weights,
 * oneDNN for GEMM, OpenMP over cores). Contracts are those of sd_backend_ops in ops.h; shapes
 * are already checked by sd_op_*. */
#ifndef SD_CPU_OPS_H
#define SD_CPU_OPS_H

#include "../ops.h"

int sd_cpu_linear(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                  sd_activation act, sd_tensor *y);
int sd_cpu_conv2d(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                  int stride, int pad, sd_tensor *y);
int sd_cpu_group_norm(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                      const sd_tensor *beta, int groups, float eps, bool silu, sd_tensor *y);
int sd_cpu_group_norm_sums(sd_backend *be, const sd_tensor *x, int groups, const float *center,
                           double *sums);
int sd_cpu_group_norm_apply(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                            const sd_tensor *beta, int groups, const float *stats, bool silu,
                            sd_tensor *y);
int sd_cpu_layer_norm(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                      const sd_tensor *beta, float eps, sd_tensor *y);
int sd_cpu_attention(sd_backend *be, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                     int heads, float scale, bool causal, sd_tensor *o);
int sd_cpu_activation(sd_backend *be, const sd_tensor *x, sd_activation act, sd_tensor *y);
int sd_cpu_geglu(sd_backend *be, const sd_tensor *x, sd_tensor *y);
int sd_cpu_lincomb(sd_backend *be, int n, const float *coeffs, const sd_tensor *const *xs,
                   sd_tensor *y);
int sd_cpu_add_channel_bias(sd_backend *be, const sd_tensor *x, const sd_tensor *v, sd_tensor *y);
int sd_cpu_upsample_nearest(sd_backend *be, const sd_tensor *x, sd_tensor *y);
int sd_cpu_concat_channels(sd_backend *be, const sd_tensor *a, const sd_tensor *b, sd_tensor *y);
int sd_cpu_transpose(sd_backend *be, const sd_tensor *x, sd_tensor *y);
int sd_cpu_embedding(sd_backend *be, const sd_tensor *table, const int32_t *ids, int64_t n,
                     sd_tensor *y);
int sd_cpu_clamp(sd_backend *be, const sd_tensor *x, float lo, float hi, sd_tensor *y);
int sd_cpu_mask_blend(sd_backend *be, const sd_tensor *a, const sd_tensor *b, const sd_tensor *m,
                      sd_tensor *y);
int sd_cpu_blend_window(sd_backend *be, const sd_tensor *x, int64_t x_row, int64_t x_col,
                        sd_tensor *y, int64_t y_row, int64_t y_col, int64_t rows, int64_t cols,
                        sd_blend_mode mode);
int sd_cpu_randn_philox(sd_backend *be, const uint64_t *seeds, const uint64_t *offsets,
                        sd_tensor *out);
int sd_cpu_timestep_embedding(sd_backend *be, double timestep, bool flip_sin_to_cos,
                              float freq_shift, double max_period, sd_tensor *out);

int sd_cpu_interpolate(sd_backend *be, const sd_tensor *x, sd_interp_mode mode, bool align_corners,
                       sd_tensor *y);
int sd_cpu_max_pool2d(sd_backend *be, const sd_tensor *x, int kernel, int stride, int pad,
                      sd_tensor *y);
int sd_cpu_pad2d(sd_backend *be, const sd_tensor *x, int64_t top, int64_t left, float value,
                 sd_tensor *y);
int sd_cpu_conv_transpose2d(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                            const sd_tensor *b, int stride, int pad, sd_tensor *y);

/* Backward passes (contracts in ops.h after sd_backend_ops.linear_backward). */
int sd_cpu_linear_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                           const sd_tensor *dy, sd_tensor *dx, sd_tensor *dw, sd_tensor *db);
int sd_cpu_conv2d_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *w,
                           const sd_tensor *dy, int stride, int pad, sd_tensor *dx, sd_tensor *dw,
                           sd_tensor *db);
int sd_cpu_group_norm_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                               const sd_tensor *beta, const sd_tensor *dy, int groups, float eps,
                               bool silu, sd_tensor *dx, sd_tensor *dgamma, sd_tensor *dbeta);
int sd_cpu_layer_norm_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *gamma,
                               const sd_tensor *dy, float eps, sd_tensor *dx, sd_tensor *dgamma,
                               sd_tensor *dbeta);
int sd_cpu_attention_backward(sd_backend *be, const sd_tensor *q, const sd_tensor *k,
                              const sd_tensor *v, const sd_tensor *dout, int heads, float scale,
                              bool causal, sd_tensor *dq, sd_tensor *dk, sd_tensor *dv);
int sd_cpu_activation_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *dy,
                               sd_activation act, sd_tensor *dx);
int sd_cpu_geglu_backward(sd_backend *be, const sd_tensor *x, const sd_tensor *dy, sd_tensor *dx);
int sd_cpu_add_channel_bias_backward(sd_backend *be, const sd_tensor *dy, sd_tensor *dv);
int sd_cpu_upsample_nearest_backward(sd_backend *be, const sd_tensor *dy, sd_tensor *dx);
int sd_cpu_concat_channels_backward(sd_backend *be, const sd_tensor *dy, sd_tensor *da,
                                    sd_tensor *db);
int sd_cpu_embedding_backward(sd_backend *be, const int32_t *ids, int64_t n, const sd_tensor *dy,
                              sd_tensor *dtable);
int sd_cpu_pad2d_backward(sd_backend *be, const sd_tensor *dy, int64_t top, int64_t left,
                          sd_tensor *dx);

/* Scalar activation shared by linear (fused epilogue) and activation. */
float sd_cpu_activate(float x, sd_activation act);

#endif
