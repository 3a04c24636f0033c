/* torch.randn's float32 numbers without torch: the cuda generator (Philox4x32-10 counters fed
 * through curand's Box-Muller, one counter per element) and the cpu generator (MT19937 uniforms
 * through torch's 16-wide Box-Muller). /work/shared/docs/RNG.md states both streams. */
#include "rng.h"

#include "../../kernels/error.h"
#include "../../kernels/philox.h"

#include <math.h>
#include <string.h>

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

static void randn_cuda(sd_rng *rng, float *out, size_t n) {
  uint64_t seed, offset;
  sd_rng_philox_next(rng, &seed, &offset);
  for (size_t i = 0; i < n; i++)
    out[i] = sd_philox_randn(seed, offset, (uint64_t)i);
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

int sd_rng_philox_next(sd_rng *rng, uint64_t *seed, uint64_t *offset) {
  if (rng->kind != SD_RNG_CUDA)
    return SD_ERROR("rng: generator kind %d has no philox offset (only the cuda kind)",
                    (int)rng->kind);
  *seed = rng->seed;
  *offset = rng->philox_offset;
  rng->philox_offset += 4;
  return 0;
}

int sd_rng_randint(sd_rng *rng, int64_t low, int64_t high, int64_t *out, size_t n) {
  if (rng->kind != SD_RNG_CPU)
    return SD_ERROR("rng: randint is implemented for the cpu generator only");
  if (high <= low || (uint64_t)(high - low) > UINT32_MAX)
    return SD_ERROR("rng: randint range [%lld, %lld) is empty or wider than 2^32", (long long)low,
                    (long long)high);
  uint32_t range = (uint32_t)(high - low);
  for (size_t i = 0; i < n; i++)
    out[i] = low + (int64_t)(mt_next(rng) % range);
  return 0;
}

int sd_rng_randperm(sd_rng *rng, int64_t n, int64_t *out) {
  if (rng->kind != SD_RNG_CPU)
    return SD_ERROR("rng: randperm is implemented for the cpu generator only");
  if (n < 1 || n >= (int64_t)(UINT32_MAX / 20))
    return SD_ERROR("rng: randperm of %lld is outside 1 .. 2^32 / 20", (long long)n);
  for (int64_t i = 0; i < n; i++)
    out[i] = i;
  for (int64_t i = 0; i + 1 < n; i++) {
    int64_t z = (int64_t)(mt_next(rng) % (uint32_t)(n - i));
    int64_t t = out[i];
    out[i] = out[i + z];
    out[i + z] = t;
  }
  return 0;
}
