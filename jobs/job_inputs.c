/* A job's input files (`images`, `masks`, `depth_maps`; docs/jobs.md, "Inputs"): lists of
 * paths, folders of images and list files expanded at load into path lists. The images
 * themselves are read only when their items render. */
#include "job_internal.h"

#include "error.h"
#include "file.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static const char *const kind_keys[SD_JOB_INPUT_KINDS] = {"images", "masks", "depth_maps"};

/* folder + '/' + name into a new string ("name" alone when folder is ""). */
static char *join_path(const char *folder, const char *name, size_t name_len) {
  size_t folder_len = strlen(folder);
  bool slash = folder_len > 0 && folder[folder_len - 1] != '/';
  char *path = malloc(folder_len + slash + name_len + 1);
  if (!path) {
    SD_ERROR("out of memory");
    return NULL;
  }
  memcpy(path, folder, folder_len);
  if (slash)
    path[folder_len] = '/';
  memcpy(path + folder_len + slash, name, name_len);
  path[folder_len + slash + name_len] = '\0';
  return path;
}

static int add_one(sd_job *job, sd_job_input_kind kind, const char *key, const char *written,
                   const char *resolved) {
  if (job->input_files[kind].n >= SD_JOB_MAX_INPUTS)
    return sd_job_error_at(job->path, job->input_pos[kind], "%s: more than %d files", key,
                           SD_JOB_MAX_INPUTS);
  SD_TRY(sd_strlist_add(&job->input_written[kind], written, strlen(written)));
  return sd_strlist_add(&job->input_files[kind], resolved, strlen(resolved));
}

static bool has_image_extension(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The folder's image files, sorted by name (bytes). */
static int add_folder(sd_job *job, sd_job_input_kind kind, const char *key, const char *written,
                      const char *resolved, sd_job_pos pos) {
  DIR *dir = opendir(resolved);
  if (!dir)
    return sd_job_error_at(job->path, pos, "%s: cannot list the folder '%s': %s", key, resolved,
                           strerror(errno));
  char **names = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  struct dirent *entry;
  while (rc == 0 && (entry = readdir(dir)) != NULL) {
    if (entry->d_name[0] == '.' || !has_image_extension(entry->d_name))
      continue;
    if (n >= SD_JOB_MAX_INPUTS) {
      rc = sd_job_error_at(job->path, pos, "%s: the folder '%s' has more than %d images", key,
                           resolved, SD_JOB_MAX_INPUTS);
      break;
    }
    if (n == cap) {
      size_t new_cap = cap ? 2 * cap : 64;
      char **grown = realloc(names, new_cap * sizeof *grown);
      if (!grown) {
        rc = SD_ERROR("out of memory listing '%s'", resolved);
        break;
      }
      names = grown;
      cap = new_cap;
    }
    if (!(names[n] = strdup(entry->d_name)))
      rc = SD_ERROR("out of memory listing '%s'", resolved);
    else
      n++;
  }
  closedir(dir);
  if (rc == 0 && n == 0)
    rc = sd_job_error_at(job->path, pos, "%s: the folder '%s' has no .png, .jpg or .jpeg files",
                         key, resolved);
  if (rc == 0)
    qsort(names, n, sizeof *names, compare_names);
  for (size_t i = 0; i < n && rc == 0; i++) {
    char *w = join_path(written, names[i], strlen(names[i]));
    char *r = w ? join_path(resolved, names[i], strlen(names[i])) : NULL;
    rc = w && r ? add_one(job, kind, key, w, r) : -1;
    free(w);
    free(r);
  }
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return rc;
}

/* A list file: one path a line, relative to its own folder; blank lines skipped. */
static int add_list_file(sd_job *job, sd_job_input_kind kind, const char *key, const char *written,
                         const char *resolved, sd_job_pos pos) {
  char *text;
  size_t len;
  if (sd_file_read(resolved, SD_FILE_MAX_PROMPTS, &text, &len) != 0) {
    char cause[256];
    snprintf(cause, sizeof cause, "%s", sd_file_error_cause(resolved));
    return sd_job_error_at(job->path, pos, "%s: cannot read the list file '%s': %s", key, resolved,
                           cause);
  }
  char written_dir[4096], resolved_dir[4096];
  int rc = 0;
  if (sd_file_parent_folder(written, written_dir, sizeof written_dir) < 0 ||
      sd_file_parent_folder(resolved, resolved_dir, sizeof resolved_dir) < 0)
    rc = sd_job_error_at(job->path, pos, "%s: the path '%s' is too long", key, resolved);
  size_t at_byte = 0, line_len;
  const char *line;
  int line_no = 0;
  int64_t added = 0;
  while (rc == 0 && sd_text_next_line(text, len, &at_byte, &line, &line_len)) {
    line_no++;
    size_t first = strspn(line, " \t");
    if (first >= line_len)
      continue; /* blank */
    size_t valid = sd_utf8_valid_prefix(line, line_len);
    const char *nul = memchr(line, '\0', valid);
    if (nul || valid < line_len) {
      size_t at = nul ? (size_t)(nul - line) : valid;
      rc = sd_job_error_at(resolved, (sd_job_pos){line_no, (int)at + 1},
                           "a NUL character or invalid UTF-8 in the path");
      break;
    }
    bool absolute = line[0] == '/';
    char *w = absolute ? strndup(line, line_len)
                       : join_path(strcmp(written_dir, ".") ? written_dir : "", line, line_len);
    char *r = absolute ? strndup(line, line_len)
                       : join_path(strcmp(resolved_dir, ".") ? resolved_dir : "", line, line_len);
    rc = w && r ? add_one(job, kind, key, w, r) : SD_ERROR("out of memory");
    free(w);
    free(r);
    added++;
  }
  free(text);
  if (rc == 0 && added == 0)
    rc = sd_job_error_at(job->path, pos, "%s: the list file '%s' names no files", key, resolved);
  return rc;
}

int sd_job_inputs_add(sd_job *job, sd_job_input_kind kind, const char *key, const char *written,
                      const char *resolved, sd_job_pos pos, bool expand) {
  if (job->input_pos[kind].line == 0)
    job->input_pos[kind] = pos;
  struct stat st;
  if (expand && stat(resolved, &st) == 0 && S_ISDIR(st.st_mode))
    return add_folder(job, kind, key, written, resolved, pos);
  size_t len = strlen(written);
  if (expand && len > 4 && !strcasecmp(written + len - 4, ".txt"))
    return add_list_file(job, kind, key, written, resolved, pos);
  return add_one(job, kind, key, written, resolved);
}

int sd_job_inputs_check(sd_job *job) {
  sd_job_info *info = &job->info;
  int64_t n_images = job->input_files[SD_JOB_INPUT_IMAGES].n;
  for (int k = SD_JOB_INPUT_MASKS; k < SD_JOB_INPUT_KINDS; k++) {
    int64_t n = job->input_files[k].n;
    if (n > 0 && n_images == 0)
      return sd_job_error_at(job->path, job->input_pos[k], "%s: needs images (the init images)",
                             kind_keys[k]);
    if (n > 1 && n != n_images)
      return sd_job_error_at(job->path, job->input_pos[k],
                             "%s: %" PRId64 " files for %" PRId64
                             " images (give one for all, or one per image in the images' order)",
                             kind_keys[k], n, n_images);
  }
  if (job->input_files[SD_JOB_INPUT_MASKS].n > 0 && job->input_files[SD_JOB_INPUT_DEPTH_MAPS].n > 0)
    return sd_job_error_at(job->path, job->input_pos[SD_JOB_INPUT_DEPTH_MAPS],
                           "depth_maps: a job gives masks (inpainting) or depth maps "
                           "(depth-to-image), not both");
  if (n_images == 0 && job->strengths)
    return sd_job_error_at(job->path, job->strength_pos, "strength: needs images");
  if (n_images == 0 && job->noise_levels)
    return sd_job_error_at(job->path, job->noise_level_pos, "noise_level: needs images");
  info->n_images = n_images;
  info->n_masks = job->input_files[SD_JOB_INPUT_MASKS].n;
  info->n_depth_maps = job->input_files[SD_JOB_INPUT_DEPTH_MAPS].n;
  return 0;
}

int sd_job_input_get(const sd_job *job, int64_t i, sd_job_input *out) {
  memset(out, 0, sizeof *out);
  if (i < 0 || i >= job->info.n_images)
    return SD_ERROR("%s: input %" PRId64 " out of range [0, %" PRId64 ")", job->path, i,
                    job->info.n_images);
  out->image = sd_strlist_get(&job->input_files[SD_JOB_INPUT_IMAGES], i);
  out->image_written = sd_strlist_get(&job->input_written[SD_JOB_INPUT_IMAGES], i);
  if (job->info.n_masks > 0) {
    int64_t m = job->info.n_masks == 1 ? 0 : i;
    out->mask = sd_strlist_get(&job->input_files[SD_JOB_INPUT_MASKS], m);
    out->mask_written = sd_strlist_get(&job->input_written[SD_JOB_INPUT_MASKS], m);
  }
  if (job->info.n_depth_maps > 0) {
    int64_t d = job->info.n_depth_maps == 1 ? 0 : i;
    out->depth_map = sd_strlist_get(&job->input_files[SD_JOB_INPUT_DEPTH_MAPS], d);
    out->depth_map_written = sd_strlist_get(&job->input_written[SD_JOB_INPUT_DEPTH_MAPS], d);
  }
  return 0;
}
