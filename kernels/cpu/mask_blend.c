/* Per-pixel blend by a mask (4-channel inpainting): y = (1 - m) * a + m * b with m (B, 1, H, W)
 * broadcast over channels, each operation rounded to float32 as torch evaluates diffusers'
 * `(1 - init_mask) * init_latents_proper + init_mask * latents`. */
#include "cpu_internal.h"

int sd_cpu_mask_blend(sd_backend *be, const sd_tensor *a, const sd_tensor *b, const sd_tensor *m,
                      sd_tensor *y) {
  const float *pa = a->data, *pb = b->data, *pm = m->data;
  float *py = y->data;
  const int64_t batch = a->shape[0], channels = a->shape[1];
  const int64_t plane = a->shape[2] * a->shape[3];
  const int64_t n = batch * channels * plane;
  int threads = n > SD_CPU_PARALLEL_ELEMS ? sd_cpu_threads(be) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < n; i++) {
    int64_t item = i / (channels * plane), p = i % plane;
    float mask = pm[item * plane + p];
    float keep = (1.0f - mask) * pa[i];
    float take = mask * pb[i];
    py[i] = keep + take;
  }
  return 0;
}
