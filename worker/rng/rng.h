/* Random streams with torch's numbers: torch.randn drawn from torch.Generator('cuda') (Philox4x32
 * -10 with curand's Box-Muller) or torch.Generator('cpu') (MT19937), float32. One generator per
 * image, seeded with the image's seed; successive draws continue the stream as torch's do. */
#ifndef SD_RNG_H
#define SD_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef enum sd_rng_kind {
  SD_RNG_CUDA = 0, /* torch.Generator('cuda').manual_seed(seed) */
  SD_RNG_CPU = 1,  /* torch.Generator('cpu').manual_seed(seed) */
} sd_rng_kind;

typedef struct sd_rng {
  sd_rng_kind kind;
  uint64_t seed;
  uint64_t philox_offset; /* cuda: 4 x the number of randn calls so far */
  uint32_t mt[624];       /* cpu: MT19937 state */
  int mt_index;
} sd_rng;

/* "cuda" / "cpu" -> kind; -1 with error otherwise. */
int sd_rng_kind_parse(const char *name, sd_rng_kind *out);
void sd_rng_init(sd_rng *rng, sd_rng_kind kind, uint64_t seed);
/* One torch.randn call of n elements (n >= 16 for the cpu kind, as for every latent; smaller n
 * is an error there). */
int sd_rng_randn(sd_rng *rng, float *out, size_t n);
/* cuda kind: the seed and philox offset of the next torch.randn call, then advances the stream
 * past it, for a caller that draws it elsewhere (sd_op_randn_philox on a backend); -1 with an
 * error for the cpu kind. */
int sd_rng_philox_next(sd_rng *rng, uint64_t *seed, uint64_t *offset);

/* cpu kind, torch's integer draws on torch.Generator('cpu') (for training's timesteps and data
 * order; -1 with an error for the cuda kind or a bad range):
 * torch.randint(low, high, (n,)): each value next_u32() % (high - low) + low, in order
 * (0 < high - low < 2^32). */
int sd_rng_randint(sd_rng *rng, int64_t low, int64_t high, int64_t *out, size_t n);
/* torch.randperm(n): out = 0 .. n-1, then for i in 0 .. n-2 swapped with i + next_u32() % (n - i)
 * (1 <= n < 2^32 / 20, where torch changes method). */
int sd_rng_randperm(sd_rng *rng, int64_t n, int64_t *out);

#endif
