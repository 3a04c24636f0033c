/* Runs every file of the given corpus folders (or files) through a harness's
 * LLVMFuzzerTestOneInput once: the committed corpus as an ordinary test in every build, with
 * the normal compiler (see fuzz.h). A crash fails the test; under the sanitizer build
 * (scripts/test.sh --sanitize) so does every memory error the corpus reaches. Prints how many
 * inputs ran. */
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "%s: cannot open\n", path);
    return -1;
  }
  size_t size = 0, capacity = 4096;
  uint8_t *data = malloc(capacity);
  size_t got;
  while (data && (got = fread(data + size, 1, capacity - size, f)) > 0) {
    size += got;
    if (size == capacity) {
      uint8_t *grown = realloc(data, capacity * 2);
      if (!grown) {
        free(data);
        data = NULL;
        break;
      }
      data = grown;
      capacity *= 2;
    }
  }
  int failed = ferror(f) || !data;
  fclose(f);
  if (failed) {
    free(data);
    fprintf(stderr, "%s: cannot read\n", path);
    return -1;
  }
  /* an exact-size copy, so that a read past the end is caught by the sanitizers */
  uint8_t *exact = malloc(size ? size : 1);
  if (!exact) {
    free(data);
    return -1;
  }
  memcpy(exact, data, size);
  free(data);
  LLVMFuzzerTestOneInput(exact, size);
  free(exact);
  return 0;
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs the files of a folder in name order; returns how many ran, -1 on an error. */
static long run_folder(const char *dir_path) {
  DIR *dir = opendir(dir_path);
  if (!dir) {
    fprintf(stderr, "%s: cannot open the folder\n", dir_path);
    return -1;
  }
  char **names = NULL;
  size_t n = 0;
  struct dirent *entry;
  while ((entry = readdir(dir))) {
    if (entry->d_name[0] == '.')
      continue;
    char **grown = realloc(names, (n + 1) * sizeof *names);
    if (!grown)
      break;
    names = grown;
    names[n++] = strdup(entry->d_name);
  }
  closedir(dir);
  qsort(names, n, sizeof *names, compare_names);
  long ran = 0;
  for (size_t i = 0; i < n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir_path, names[i]);
    struct stat st;
    if (names[i] && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
      if (run_file(path) != 0)
        ran = -1;
      else if (ran >= 0)
        ran++;
    }
    free(names[i]);
  }
  free(names);
  return ran;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
    return 2;
  }
  long total = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    long ran = stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode) ? run_folder(argv[i])
                                                              : (run_file(argv[i]) == 0 ? 1 : -1);
    if (ran < 0)
      return 1;
    total += ran;
  }
  if (total == 0) {
    fprintf(stderr, "no inputs found\n");
    return 1;
  }
  printf("%ld inputs ran without a crash\n", total);
  return 0;
}
