/* torch.randn's float32 numbers without torch: the cuda generator (Philox4x32-10 counters fed
 * through curand's Box-Muller, one counter per element) and the cpu generator (MT19937 uniforms
 * through torch's 16-wide Box-Muller). /work/shared/docs/RNG.md states both streams. */
#include "rng.h"

#include "../../kernels/error.h"

#include <math.h>
#include <string.h>

/* Philox4x32-10 constants (curand's). */
#define PHILOX_M0     0xD2511F53u
#define PHILOX_M1     0xCD9E8D57u
#define PHILOX_W0     0x9E3779B9u
#define PHILOX_W1     0xBB67AE85u
#define PHILOX_ROUNDS 10

/* 2^-32 and 2pi * 2^-32 as curand's float Box-Muller uses them. */
#define CURAND_2POW32_INV     2.3283064e-10f
#define CURAND_2POW32_INV_2PI (2.3283064e-10f * 6.2831855f)

#define MT_N          624
#define MT_M          397
#define MT_UPPER_MASK 0x80000000u
#define MT_LOWER_MASK 0x7fffffffu
#define MT_MATRIX_A   0x9908b0dfu

/* torch's normal_fill works on blocks of this many uniforms. */
#define TORCH_NORMAL_BLOCK 16

int sd_rng_kind_parse(const char *name, sd_rng_kind *out) {
  if (name && strcmp(name, "cuda") == 0) {
    *out = SD_RNG_CUDA;
    return 0;
  }
  if (name && strcmp(name, "cpu") == 0) {
    *out = SD_RNG_CPU;
    return 0;
  }
  return SD_ERROR("unknown rng '%s' (expected cuda or cpu)", name ? name : "(null)");
}

/* The standard init_genrand (torch's mt19937 takes the seed's low 32 bits). */
static void mt_seed(sd_rng *rng, uint32_t seed) {
  rng->mt[0] = seed;
  for (uint32_t j = 1; j < MT_N; j++)
    rng->mt[j] = 1812433253u * (rng->mt[j - 1] ^ (rng->mt[j - 1] >> 30)) + j;
  rng->mt_index = MT_N;
}

static void mt_twist(sd_rng *rng) {
  uint32_t *mt = rng->mt;
  for (int k = 0; k < MT_N; k++) {
    uint32_t y = (mt[k] & MT_UPPER_MASK) | (mt[(k + 1) % MT_N] & MT_LOWER_MASK);
    mt[k] = mt[(k + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
  }
  rng->mt_index = 0;
}

static uint32_t mt_next(sd_rng *rng) {
  if (rng->mt_index >= MT_N)
    mt_twist(rng);
  uint32_t y = rng->mt[rng->mt_index++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

/* torch's uniform_real_distribution<float>(0, 1): 24 random bits. */
static float mt_uniform(sd_rng *rng) {
  return (float)(mt_next(rng) & 0xFFFFFFu) * 0x1p-24f;
}

void sd_rng_init(sd_rng *rng, sd_rng_kind kind, uint64_t seed) {
  memset(rng, 0, sizeof *rng);
  rng->kind = kind;
  rng->seed = seed;
  rng->philox_offset = 0;
  mt_seed(rng, (uint32_t)(seed & 0xffffffffu));
}

/* Philox4x32-10 of the counter under the key; out receives the four words. */
static void philox4x32_10(const uint32_t counter[4], uint32_t key0, uint32_t key1,
                          uint32_t out[4]) {
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  for (int round = 0; round < PHILOX_ROUNDS; round++) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
    uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ key0;
    uint32_t n1 = (uint32_t)p1;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ key1;
    uint32_t n3 = (uint32_t)p0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    key0 += PHILOX_W0;
    key1 += PHILOX_W1;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* curand's float Box-Muller of two words, first output (the GPU contracts x * a + b to an FMA,
 * so fmaf reproduces its rounding). */
static float curand_box_muller_first(uint32_t x0, uint32_t x1) {
  float u = fmaf((float)x0, CURAND_2POW32_INV, CURAND_2POW32_INV / 2.0f);
  float v = fmaf((float)x1, CURAND_2POW32_INV_2PI, CURAND_2POW32_INV_2PI / 2.0f);
  float s = sqrtf(-2.0f * logf(u));
  return sinf(v) * s;
}

static void randn_cuda(sd_rng *rng, float *out, size_t n) {
  uint32_t key0 = (uint32_t)(rng->seed & 0xffffffffu);
  uint32_t key1 = (uint32_t)(rng->seed >> 32);
  uint64_t block = rng->philox_offset / 4;
  for (size_t i = 0; i < n; i++) {
    uint64_t sub = (uint64_t)i;
    uint32_t counter[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)sub,
                           (uint32_t)(sub >> 32)};
    uint32_t words[4];
    philox4x32_10(counter, key0, key1, words);
    out[i] = curand_box_muller_first(words[0], words[1]);
  }
  rng->philox_offset += 4;
}

/* torch's normal_fill_16: uniforms u[0..16) -> 16 normals in place. */
static void torch_normal_fill_16(float *data) {
  const float two_pi = (float)(2.0 * M_PI);
  for (int j = 0; j < TORCH_NORMAL_BLOCK / 2; j++) {
    float u1 = 1.0f - data[j];
    float u2 = data[j + TORCH_NORMAL_BLOCK / 2];
    float radius = sqrtf(-2.0f * logf(u1));
    float theta = two_pi * u2;
    data[j] = radius * cosf(theta);
    data[j + TORCH_NORMAL_BLOCK / 2] = radius * sinf(theta);
  }
}

static int randn_cpu(sd_rng *rng, float *out, size_t n) {
  if (n < TORCH_NORMAL_BLOCK)
    return SD_ERROR("rng: cpu generator draws of %zu < %d values are not supported", n,
                    TORCH_NORMAL_BLOCK);
  for (size_t i = 0; i < n; i++)
    out[i] = mt_uniform(rng);
  for (size_t b = 0; b + TORCH_NORMAL_BLOCK <= n; b += TORCH_NORMAL_BLOCK)
    torch_normal_fill_16(out + b);
  if (n % TORCH_NORMAL_BLOCK != 0) {
    float *tail = out + n - TORCH_NORMAL_BLOCK;
    for (int i = 0; i < TORCH_NORMAL_BLOCK; i++)
      tail[i] = mt_uniform(rng);
    torch_normal_fill_16(tail);
  }
  return 0;
}

int sd_rng_randn(sd_rng *rng, float *out, size_t n) {
  switch (rng->kind) {
  case SD_RNG_CUDA:
    randn_cuda(rng, out, n);
    return 0;
  case SD_RNG_CPU:
    return randn_cpu(rng, out, n);
  }
  return SD_ERROR("rng: unknown generator kind %d", (int)rng->kind);
}
