/* diffusers' get_timestep_embedding of one timestep, element by element, in float32 with
 * diffusers' order of operations: out (dim) = [sin(t f_i), cos(t f_i)] for i < half = dim / 2
 * (the halves swapped when flip_sin_to_cos; a trailing 0 when dim is odd), with
 * f_i = exp(-ln(max_period) i / (half - freq_shift)). Every product and quotient is rounded to
 * float32 as torch computes them; exp, sin and cos are evaluated in double and rounded once to
 * float32. One implementation for the host (worker/model's sd_unet_time_proj, the CPU op) and the
 * CUDA kernel (kernels/{cpu,cuda}/timestep_embedding): plain C, and __host__ __device__ when nvcc
 * compiles it. The float32 scalars are computed once on the host and passed to the device as they
 * are; only exp, sin and cos run on the device, whose double results round to the same float32 as
 * the host's except when a value lies within a few double ulps of a float32 rounding boundary. */
#ifndef SD_TIMESTEP_EMBEDDING_H
#define SD_TIMESTEP_EMBEDDING_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __CUDACC__
#define SD_TEMB_FN static inline __host__ __device__
#else
#define SD_TEMB_FN static inline
#endif

/* The float32 scalars of one projection (sd_timestep_embedding_setup). */
typedef struct sd_timestep_embedding_args {
  float t;              /* the timestep, as diffusers' timesteps.float() */
  float neg_log_period; /* float32(-ln(max_period)) */
  float denom;          /* half - freq_shift, in float32 */
  int64_t half;         /* dim / 2 */
  bool flip_sin_to_cos; /* cos half first */
} sd_timestep_embedding_args;

SD_TEMB_FN sd_timestep_embedding_args sd_timestep_embedding_setup(double timestep, int64_t dim,
                                                                  bool flip_sin_to_cos,
                                                                  float freq_shift,
                                                                  double max_period) {
  sd_timestep_embedding_args a;
  a.t = (float)timestep;
  a.neg_log_period = (float)-log(max_period);
  a.half = dim / 2;
  a.denom = (float)a.half - freq_shift;
  a.flip_sin_to_cos = flip_sin_to_cos;
  return a;
}

/* Element k (0 <= k < dim) of the projection. */
SD_TEMB_FN float sd_timestep_embedding_element(sd_timestep_embedding_args a, int64_t k) {
  if (k >= 2 * a.half)
    return 0.0f;
  bool first_half = k < a.half;
  int64_t i = first_half ? k : k - a.half;
  float exponent = a.neg_log_period * (float)i / a.denom;
  float arg = a.t * (float)exp((double)exponent);
  bool use_cos = first_half == a.flip_sin_to_cos;
  return use_cos ? (float)cos((double)arg) : (float)sin((double)arg);
}

#endif
