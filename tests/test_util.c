/* Test helpers (see test_util.h). */
#include "test_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int checks_passed;
static int checks_failed;

int sd_test_check(int ok, const char *file, int line, const char *fmt, ...) {
  if (ok) {
    checks_passed++;
    return 1;
  }
  checks_failed++;
  fprintf(stderr, "FAIL %s:%d: ", file, line);
  va_list args;
  va_start(args, fmt);
  vfprintf(stderr, fmt, args);
  va_end(args);
  fputc('\n', stderr);
  return 0;
}

int sd_test_compare_f32(const char *what, const float *got, const float *want, size_t n, float atol,
                        float rtol) {
  size_t worst = 0, bad = 0;
  double worst_excess = -INFINITY, max_abs = 0.0;
  for (size_t i = 0; i < n; i++) {
    double diff = fabs((double)got[i] - (double)want[i]);
    double allowed = atol + rtol * fabs((double)want[i]);
    if (!isfinite(got[i]) || !isfinite(want[i]))
      diff = INFINITY;
    if (diff > max_abs)
      max_abs = diff;
    if (diff - allowed > worst_excess) {
      worst_excess = diff - allowed;
      worst = i;
    }
    if (!(diff <= allowed))
      bad++;
  }
  int ok = bad == 0;
  fprintf(stderr, "%s %s: %zu values, max abs err %.3g (atol %.3g, rtol %.3g)",
          ok ? "ok  " : "FAIL", what, n, max_abs, atol, rtol);
  if (!ok)
    fprintf(stderr, "; %zu out of tolerance, worst [%zu] got %.8g want %.8g", bad, worst,
            got[worst], want[worst]);
  fputc('\n', stderr);
  if (ok)
    checks_passed++;
  else
    checks_failed++;
  return ok;
}

int sd_test_compare_i32(const char *what, const int32_t *got, const int32_t *want, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (got[i] != want[i]) {
      fprintf(stderr, "FAIL %s: [%zu] got %d want %d\n", what, i, got[i], want[i]);
      checks_failed++;
      return 0;
    }
  }
  checks_passed++;
  return 1;
}

int sd_test_compare_pixels(const char *what, const uint8_t *got, const float *want, size_t n,
                           int max_diff, double min_exact_share) {
  size_t exact = 0;
  int worst = 0;
  for (size_t i = 0; i < n; i++) {
    int diff = abs((int)got[i] - (int)lrintf(want[i]));
    if (diff == 0)
      exact++;
    if (diff > worst)
      worst = diff;
  }
  double exact_share = n ? (double)exact / (double)n : 1.0;
  int ok = worst <= max_diff && exact_share >= min_exact_share;
  fprintf(stderr, "%s %s: %zu pixel values, %.4f exact, max diff %d\n", ok ? "ok  " : "FAIL", what,
          n, exact_share, worst);
  sd_test_check(ok, __FILE__, __LINE__, "%s: pixels differ from the reference", what);
  return ok;
}

void sd_test_fill_random(float *x, size_t n, uint32_t seed, float scale) {
  uint32_t state = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < n; i++) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    x[i] = scale * ((float)(state >> 8) / 8388608.0f - 1.0f);
  }
}

char *sd_test_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t used = 0, capacity = 1 << 16;
  char *data = malloc(capacity);
  while (data) {
    size_t got = fread(data + used, 1, capacity - 1 - used, f);
    used += got;
    if (got == 0)
      break;
    if (capacity - used < 2) {
      char *grown = realloc(data, capacity *= 2);
      if (!grown)
        free(data);
      data = grown;
    }
  }
  int failed = ferror(f);
  fclose(f);
  if (!data || failed) {
    free(data);
    return NULL;
  }
  data[used] = '\0';
  if (len)
    *len = used;
  return data;
}

int sd_test_finish(void) {
  printf("%d passed, %d failed\n", checks_passed, checks_failed);
  return checks_failed ? 1 : 0;
}
