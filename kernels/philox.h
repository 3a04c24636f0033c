/* torch.randn of torch.Generator('cuda') element by element: Philox4x32-10 (curand's round) and
 * curand's float Box-Muller, as /work/shared/docs/RNG.md states them. One implementation for the
 * host stream (worker/rng), the CPU op and the CUDA kernel (kernels/{cpu,cuda}/randn_philox):
 * plain C, and __host__ __device__ when nvcc compiles it.
 *
 * The one difference between host and device is the one curand makes itself: on the device the
 * sine is __sincosf's (as curand_normal4 in torch's kernel computes it), on the host libm's sinf;
 * the two agree within the 2.5e-6 RNG.md measured between torch on a GPU and the host stream. */
#ifndef SD_PHILOX_H
#define SD_PHILOX_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define SD_PHILOX_FN static inline __host__ __device__
#else
#define SD_PHILOX_FN static inline
#endif
#ifdef __CUDA_ARCH__
#define SD_PHILOX_UNROLL _Pragma("unroll")
#else
#define SD_PHILOX_UNROLL
#endif

/* Philox4x32-10 constants (curand's). */
#define SD_PHILOX_M0     0xD2511F53u
#define SD_PHILOX_M1     0xCD9E8D57u
#define SD_PHILOX_W0     0x9E3779B9u
#define SD_PHILOX_W1     0xBB67AE85u
#define SD_PHILOX_ROUNDS 10

/* 2^-32 and 2pi * 2^-32 as curand's float Box-Muller uses them. */
#define SD_CURAND_2POW32_INV     2.3283064e-10f
#define SD_CURAND_2POW32_INV_2PI (2.3283064e-10f * 6.2831855f)

/* Philox4x32-10 of counter (c0, c1, c2, c3) under key (key0, key1); out receives the four
 * words. */
SD_PHILOX_FN void sd_philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                   uint32_t key0, uint32_t key1, uint32_t out[4]) {
  SD_PHILOX_UNROLL
  for (int round = 0; round < SD_PHILOX_ROUNDS; round++) {
    uint64_t p0 = (uint64_t)SD_PHILOX_M0 * c0;
    uint64_t p1 = (uint64_t)SD_PHILOX_M1 * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ key0;
    uint32_t n1 = (uint32_t)p1;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ key1;
    uint32_t n3 = (uint32_t)p0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    key0 += SD_PHILOX_W0;
    key1 += SD_PHILOX_W1;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* curand's float Box-Muller of two words, first output. The GPU contracts x * a + b to an FMA,
 * so fmaf gives its rounding on the host too. */
SD_PHILOX_FN float sd_curand_box_muller_first(uint32_t x0, uint32_t x1) {
  float u = fmaf((float)x0, SD_CURAND_2POW32_INV, SD_CURAND_2POW32_INV / 2.0f);
  float v = fmaf((float)x1, SD_CURAND_2POW32_INV_2PI, SD_CURAND_2POW32_INV_2PI / 2.0f);
  float s = sqrtf(-2.0f * logf(u));
#ifdef __CUDA_ARCH__
  float sin_v, cos_v;
  __sincosf(v, &sin_v, &cos_v);
#else
  float sin_v = sinf(v);
#endif
  return sin_v * s;
}

/* Element `index` of a torch.randn draw from the generator seeded with `seed` whose philox offset
 * is `offset` (4 per earlier draw): counter (offset / 4, index). */
SD_PHILOX_FN float sd_philox_randn(uint64_t seed, uint64_t offset, uint64_t index) {
  uint64_t block = offset / 4;
  uint32_t words[4];
  sd_philox4x32_10((uint32_t)block, (uint32_t)(block >> 32), (uint32_t)index,
                   (uint32_t)(index >> 32), (uint32_t)(seed & 0xffffffffu), (uint32_t)(seed >> 32),
                   words);
  return sd_curand_box_muller_first(words[0], words[1]);
}

#endif
