/* safetensors reader (mmap, validated header) and atomic writer (see safetensors.h). */
#define _GNU_SOURCE
#include "safetensors.h"

#include "name_index.h"

#include "../../kernels/error.h"
#include "../../kernels/file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The format's own limit on the JSON header (safetensors' MAX_HEADER_SIZE). */
#define ST_MAX_HEADER_BYTES (100u * 1024u * 1024u)

struct sd_safetensors {
  char *path;
  int fd;
  unsigned char *map; /* the whole file */
  size_t file_bytes;
  sd_st_tensor *tensors; /* (count), names owned */
  size_t count;
  char **metadata_keys; /* (n_metadata) */
  char **metadata_values;
  size_t n_metadata;
  sd_name_index index; /* tensor name -> position in tensors */
};

/* Every dtype the format defines, with its element size; `supported` ones become tensors. */
typedef struct st_dtype_info {
  const char *name;
  size_t bytes;
  int supported;
  sd_dtype dtype;
} st_dtype_info;

static const st_dtype_info st_dtypes[] = {
    {"F32", 4, 1, SD_DTYPE_F32},  {"F16", 2, 1, SD_DTYPE_F16},     {"BF16", 2, 1, SD_DTYPE_BF16},
    {"I32", 4, 1, SD_DTYPE_I32},  {"F64", 8, 0, SD_DTYPE_F32},     {"I64", 8, 0, SD_DTYPE_F32},
    {"U64", 8, 0, SD_DTYPE_F32},  {"U32", 4, 0, SD_DTYPE_F32},     {"I16", 2, 0, SD_DTYPE_F32},
    {"U16", 2, 0, SD_DTYPE_F32},  {"I8", 1, 0, SD_DTYPE_F32},      {"U8", 1, 0, SD_DTYPE_F32},
    {"BOOL", 1, 0, SD_DTYPE_F32}, {"F8_E4M3", 1, 0, SD_DTYPE_F32}, {"F8_E5M2", 1, 0, SD_DTYPE_F32},
};

static const st_dtype_info *st_dtype_lookup(const char *name) {
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
    if (strcmp(st_dtypes[i].name, name) == 0)
      return &st_dtypes[i];
  return NULL;
}

/* A byte range of the data section, for the overlap check. */
typedef struct st_range {
  uint64_t begin, end;
  const char *name;
} st_range;

static int compare_ranges(const void *a, const void *b) {
  const st_range *x = a, *y = b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* A JSON number that is a non-negative integer exactly representable in a double. */
static int json_to_u64(const cJSON *item, uint64_t *out) {
  if (!cJSON_IsNumber(item))
    return -1;
  double d = item->valuedouble;
  if (!(d >= 0.0) || d > 9007199254740992.0 || floor(d) != d)
    return -1;
  *out = (uint64_t)d;
  return 0;
}

static void shape_string(const int64_t *shape, int ndim, char *buf, size_t size) {
  sd_tensor t = sd_tensor_make(SD_DTYPE_F32, ndim, shape);
  sd_tensor_shape_str(&t, buf, size);
}

/* Validates one tensor entry; fills *t (name not set) and *range. Errors name the tensor. */
static int parse_entry(const cJSON *entry, uint64_t data_bytes, const st_dtype_info **dtype_out,
                       sd_st_tensor *t, st_range *range) {
  const char *name = entry->string;
  if (!cJSON_IsObject(entry))
    return SD_ERROR("tensor '%s': entry is not a JSON object", name);
  const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
  const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
  if (!cJSON_IsString(dtype))
    return SD_ERROR("tensor '%s': \"dtype\" missing or not a string", name);
  const st_dtype_info *info = st_dtype_lookup(dtype->valuestring);
  if (!info)
    return SD_ERROR("tensor '%s': unknown dtype '%s'", name, dtype->valuestring);
  if (!cJSON_IsArray(shape))
    return SD_ERROR("tensor '%s': \"shape\" missing or not an array", name);
  int ndim = cJSON_GetArraySize(shape);
  if (ndim > SD_MAX_DIMS)
    return SD_ERROR("tensor '%s': %d dimensions, at most %d are supported", name, ndim,
                    SD_MAX_DIMS);
  if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2)
    return SD_ERROR("tensor '%s': \"data_offsets\" missing or not a [begin, end] pair", name);

  memset(t, 0, sizeof *t);
  t->ndim = ndim;
  t->dtype = info->dtype;
  uint64_t numel = 1;
  int overflow = 0;
  for (int i = 0; i < ndim; i++) {
    uint64_t dim;
    if (json_to_u64(cJSON_GetArrayItem(shape, i), &dim) != 0)
      return SD_ERROR("tensor '%s': shape entry %d is not a non-negative integer", name, i);
    t->shape[i] = (int64_t)dim;
    if (dim != 0 && numel > UINT64_MAX / dim)
      overflow = 1;
    numel *= dim;
  }
  uint64_t begin, end;
  if (json_to_u64(cJSON_GetArrayItem(offsets, 0), &begin) != 0 ||
      json_to_u64(cJSON_GetArrayItem(offsets, 1), &end) != 0)
    return SD_ERROR("tensor '%s': data_offsets are not non-negative integers", name);
  if (begin > end)
    return SD_ERROR("tensor '%s': data_offsets [%llu, %llu] end before they begin", name,
                    (unsigned long long)begin, (unsigned long long)end);
  char shape_buf[128];
  shape_string(t->shape, ndim, shape_buf, sizeof shape_buf);
  if (overflow || numel > UINT64_MAX / info->bytes || numel * info->bytes != end - begin)
    return SD_ERROR("tensor '%s': data_offsets [%llu, %llu] do not match shape %s x %s = %llu "
                    "bytes",
                    name, (unsigned long long)begin, (unsigned long long)end, shape_buf, info->name,
                    (unsigned long long)(numel * info->bytes));
  if (end > data_bytes)
    return SD_ERROR("tensor '%s': data_offsets [%llu, %llu] reach beyond the data section of "
                    "%llu bytes (file truncated?)",
                    name, (unsigned long long)begin, (unsigned long long)end,
                    (unsigned long long)data_bytes);
  t->bytes = (size_t)(end - begin);
  range->begin = begin;
  range->end = end;
  range->name = name;
  *dtype_out = info;
  return 0;
}

static int parse_metadata(sd_safetensors *file, const cJSON *meta) {
  if (file->metadata_keys)
    return SD_ERROR("\"__metadata__\" appears twice in the header");
  if (!cJSON_IsObject(meta))
    return SD_ERROR("\"__metadata__\" is not a JSON object");
  size_t n = (size_t)cJSON_GetArraySize(meta);
  file->metadata_keys = calloc(n ? n : 1, sizeof(char *));
  file->metadata_values = calloc(n ? n : 1, sizeof(char *));
  if (!file->metadata_keys || !file->metadata_values)
    return SD_ERROR("out of memory reading \"__metadata__\"");
  const cJSON *item;
  cJSON_ArrayForEach(item, meta) {
    if (!cJSON_IsString(item))
      return SD_ERROR("\"__metadata__\" entry '%s' is not a string", item->string);
    if (sd_safetensors_metadata(file, item->string))
      return SD_ERROR("\"__metadata__\" entry '%s' appears twice", item->string);
    file->metadata_keys[file->n_metadata] = strdup(item->string);
    file->metadata_values[file->n_metadata] = strdup(item->valuestring);
    if (!file->metadata_keys[file->n_metadata] || !file->metadata_values[file->n_metadata])
      return SD_ERROR("out of memory reading \"__metadata__\"");
    file->n_metadata++;
  }
  return 0;
}

/* Parses and validates the JSON header; fills the tensor list. Errors without the file name
 * (the caller adds it). */
static int parse_header(sd_safetensors *file, const char *json, size_t json_bytes,
                        uint64_t data_bytes, const unsigned char *data) {
  const char *parse_end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json, json_bytes, &parse_end, 0);
  if (!root) {
    long at = parse_end ? (long)(parse_end - json) : -1;
    return SD_ERROR("header is not valid JSON (error near byte %ld of %zu)", at, json_bytes);
  }
  int rc = -1;
  st_range *ranges = NULL;
  sd_name_index seen = {0}; /* every tensor name, loaded or not */
  for (const char *p = parse_end; p < json + json_bytes; p++) {
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '\0') {
      SD_ERROR("header has trailing bytes after the JSON object (at byte %ld)", (long)(p - json));
      goto out_free_json;
    }
  }
  if (!cJSON_IsObject(root)) {
    SD_ERROR("header is not a JSON object");
    goto out_free_json;
  }
  size_t entries = (size_t)cJSON_GetArraySize(root);
  file->tensors = calloc(entries ? entries : 1, sizeof *file->tensors);
  ranges = calloc(entries ? entries : 1, sizeof *ranges);
  if (!file->tensors || !ranges) {
    SD_ERROR("out of memory for %zu header entries", entries);
    goto out_free_json;
  }
  size_t n_ranges = 0;
  const cJSON *entry;
  cJSON_ArrayForEach(entry, root) {
    if (strcmp(entry->string, "__metadata__") == 0) {
      if (parse_metadata(file, entry) != 0)
        goto out_free_json;
      continue;
    }
    sd_st_tensor t;
    const st_dtype_info *info = NULL;
    if (parse_entry(entry, data_bytes, &info, &t, &ranges[n_ranges]) != 0)
      goto out_free_json;
    n_ranges++;
    size_t existing;
    if (sd_name_index_get(&seen, entry->string, &existing)) {
      SD_ERROR("tensor '%s' appears twice in the header", entry->string);
      goto out_free_json;
    }
    if (sd_name_index_put(&seen, entry->string, n_ranges - 1) != 0)
      goto out_free_json;
    if (!info->supported)
      continue; /* validated, but not a dtype the engine loads (e.g. I64 position_ids) */
    char *name = strdup(entry->string);
    if (!name) {
      SD_ERROR("out of memory reading the header");
      goto out_free_json;
    }
    t.name = name;
    t.data = data + ranges[n_ranges - 1].begin;
    file->tensors[file->count] = t;
    if (sd_name_index_put(&file->index, name, file->count) != 0)
      goto out_free_json;
    file->count++;
  }
  qsort(ranges, n_ranges, sizeof *ranges, compare_ranges);
  for (size_t i = 1; i < n_ranges; i++) {
    if (ranges[i].begin < ranges[i - 1].end) {
      SD_ERROR("tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", ranges[i - 1].name,
               (unsigned long long)ranges[i - 1].begin, (unsigned long long)ranges[i - 1].end,
               ranges[i].name, (unsigned long long)ranges[i].begin,
               (unsigned long long)ranges[i].end);
      goto out_free_json;
    }
  }
  rc = 0;
out_free_json:
  sd_name_index_free(&seen);
  free(ranges);
  cJSON_Delete(root);
  return rc;
}

int sd_safetensors_open(const char *path, sd_safetensors **out) {
  *out = NULL;
  sd_safetensors *file = calloc(1, sizeof *file);
  if (!file)
    return SD_ERROR("%s: out of memory", path);
  file->fd = -1;
  file->path = strdup(path);
  if (!file->path) {
    free(file);
    return SD_ERROR("%s: out of memory", path);
  }
  file->fd = sd_file_open_regular(path, SD_FILE_MAX_MODEL, &file->file_bytes);
  if (file->fd < 0)
    goto out_close;
  if (file->file_bytes < 8) {
    SD_ERROR("%s: file is %zu bytes, too short for the 8-byte header length (truncated?)", path,
             file->file_bytes);
    goto out_close;
  }
  file->map = mmap(NULL, file->file_bytes, PROT_READ, MAP_PRIVATE, file->fd, 0);
  if (file->map == MAP_FAILED) {
    file->map = NULL;
    SD_ERROR("%s: cannot mmap %zu bytes: %s", path, file->file_bytes, strerror(errno));
    goto out_close;
  }
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; i--)
    header_bytes = (header_bytes << 8) | file->map[i];
  if (header_bytes > ST_MAX_HEADER_BYTES) {
    SD_ERROR("%s: header length %llu is larger than the format's limit of %u bytes (not a "
             "safetensors file?)",
             path, (unsigned long long)header_bytes, ST_MAX_HEADER_BYTES);
    goto out_close;
  }
  if (header_bytes > file->file_bytes - 8) {
    SD_ERROR("%s: header length %llu exceeds the %zu bytes that follow it (truncated or not a "
             "safetensors file?)",
             path, (unsigned long long)header_bytes, file->file_bytes - 8);
    goto out_close;
  }
  const unsigned char *data = file->map + 8 + header_bytes;
  uint64_t data_bytes = file->file_bytes - 8 - header_bytes;
  if (parse_header(file, (const char *)file->map + 8, (size_t)header_bytes, data_bytes, data) !=
      0) {
    sd_error_context("%s", path);
    goto out_close;
  }
  *out = file;
  return 0;
out_close:
  sd_safetensors_close(file);
  return -1;
}

void sd_safetensors_close(sd_safetensors *file) {
  if (!file)
    return;
  for (size_t i = 0; i < file->count; i++)
    free((char *)file->tensors[i].name);
  free(file->tensors);
  for (size_t i = 0; i < file->n_metadata; i++) {
    free(file->metadata_keys[i]);
    free(file->metadata_values[i]);
  }
  free(file->metadata_keys);
  free(file->metadata_values);
  sd_name_index_free(&file->index);
  if (file->map)
    munmap(file->map, file->file_bytes);
  if (file->fd >= 0)
    close(file->fd);
  free(file->path);
  free(file);
}

const char *sd_safetensors_path(const sd_safetensors *file) {
  return file->path;
}

size_t sd_safetensors_count(const sd_safetensors *file) {
  return file->count;
}

const sd_st_tensor *sd_safetensors_at(const sd_safetensors *file, size_t index) {
  return index < file->count ? &file->tensors[index] : NULL;
}

const sd_st_tensor *sd_safetensors_find(const sd_safetensors *file, const char *name) {
  size_t index;
  if (!sd_name_index_get(&file->index, name, &index))
    return NULL;
  return &file->tensors[index];
}

const char *sd_safetensors_metadata(const sd_safetensors *file, const char *key) {
  for (size_t i = 0; i < file->n_metadata; i++)
    if (strcmp(file->metadata_keys[i], key) == 0)
      return file->metadata_values[i];
  return NULL;
}

/* The JSON header for tensors laid out back to back in the given order. */
static char *build_header(const sd_st_tensor *tensors, size_t count,
                          const char *const *metadata_keys, const char *const *metadata_values,
                          size_t n_metadata) {
  cJSON *root = cJSON_CreateObject();
  if (!root)
    goto out_oom;
  if (n_metadata) {
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    if (!meta)
      goto out_oom;
    for (size_t i = 0; i < n_metadata; i++)
      if (!cJSON_AddStringToObject(meta, metadata_keys[i], metadata_values[i]))
        goto out_oom;
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < count; i++) {
    const sd_st_tensor *t = &tensors[i];
    cJSON *entry = cJSON_AddObjectToObject(root, t->name);
    if (!entry || !cJSON_AddStringToObject(entry, "dtype", sd_dtype_name(t->dtype)))
      goto out_oom;
    cJSON *shape = cJSON_AddArrayToObject(entry, "shape");
    if (!shape)
      goto out_oom;
    for (int d = 0; d < t->ndim; d++) {
      cJSON *dim = cJSON_CreateNumber((double)t->shape[d]);
      if (!dim || !cJSON_AddItemToArray(shape, dim))
        goto out_oom;
    }
    cJSON *offsets = cJSON_AddArrayToObject(entry, "data_offsets");
    cJSON *begin = cJSON_CreateNumber((double)offset);
    cJSON *end = cJSON_CreateNumber((double)(offset + t->bytes));
    if (!offsets || !begin || !end || !cJSON_AddItemToArray(offsets, begin) ||
        !cJSON_AddItemToArray(offsets, end))
      goto out_oom;
    offset += t->bytes;
  }
  char *text = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!text)
    SD_ERROR("out of memory printing the header");
  return text;
out_oom:
  cJSON_Delete(root);
  SD_ERROR("out of memory building the header");
  return NULL;
}

static int check_write_args(const sd_st_tensor *tensors, size_t count) {
  sd_name_index names = {0};
  int rc = 0;
  for (size_t i = 0; i < count && rc == 0; i++) {
    const sd_st_tensor *t = &tensors[i];
    size_t seen;
    if (!t->name || strcmp(t->name, "__metadata__") == 0)
      rc = SD_ERROR("tensor %zu: missing or reserved name", i);
    else if (sd_name_index_get(&names, t->name, &seen))
      rc = SD_ERROR("tensor '%s' given twice", t->name);
    else if (t->ndim < 0 || t->ndim > SD_MAX_DIMS || sd_dtype_size(t->dtype) == 0)
      rc = SD_ERROR("tensor '%s': bad dtype or %d dimensions", t->name, t->ndim);
    else {
      sd_tensor shape = sd_tensor_make(t->dtype, t->ndim, t->shape);
      if (sd_tensor_bytes(&shape) != t->bytes)
        rc = SD_ERROR("tensor '%s': %zu bytes given, shape needs %zu", t->name, t->bytes,
                      sd_tensor_bytes(&shape));
      else if (t->bytes && !t->data)
        rc = SD_ERROR("tensor '%s': no data", t->name);
      else
        rc = sd_name_index_put(&names, t->name, i);
    }
  }
  sd_name_index_free(&names);
  return rc;
}

static int write_all(int fd, const void *buf, size_t bytes) {
  const unsigned char *p = buf;
  while (bytes) {
    ssize_t n = write(fd, p, bytes);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    p += n;
    bytes -= (size_t)n;
  }
  return 0;
}

int sd_safetensors_write(const char *path, const sd_st_tensor *tensors, size_t count,
                         const char *const *metadata_keys, const char *const *metadata_values,
                         size_t n_metadata) {
  if (check_write_args(tensors, count) != 0)
    return sd_error_context("%s", path);
  char *header = build_header(tensors, count, metadata_keys, metadata_values, n_metadata);
  if (!header)
    return sd_error_context("%s", path);
  /* pad with spaces so that the data section starts 8-byte aligned */
  size_t json_bytes = strlen(header);
  size_t header_bytes = (json_bytes + 7) / 8 * 8;
  char *padded = malloc(header_bytes);
  if (!padded) {
    free(header);
    return SD_ERROR("%s: out of memory", path);
  }
  memcpy(padded, header, json_bytes);
  memset(padded + json_bytes, ' ', header_bytes - json_bytes);
  free(header);

  int rc = -1;
  size_t tmp_len = strlen(path) + 16;
  char *tmp = malloc(tmp_len);
  if (!tmp) {
    SD_ERROR("%s: out of memory", path);
    goto out_free_padded;
  }
  snprintf(tmp, tmp_len, "%s.tmp.XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    SD_ERROR("%s: cannot create a temporary file: %s", path, strerror(errno));
    goto out_free_tmp;
  }
  unsigned char length[8];
  for (int i = 0; i < 8; i++)
    length[i] = (unsigned char)((uint64_t)header_bytes >> (8 * i));
  int failed = write_all(fd, length, sizeof length) || write_all(fd, padded, header_bytes);
  for (size_t i = 0; i < count && !failed; i++)
    failed = write_all(fd, tensors[i].data, tensors[i].bytes);
  if (failed || fsync(fd) != 0) {
    SD_ERROR("%s: cannot write: %s", tmp, strerror(errno));
    close(fd);
    goto out_unlink;
  }
  if (fchmod(fd, 0644) != 0 || close(fd) != 0) {
    SD_ERROR("%s: cannot finish writing: %s", tmp, strerror(errno));
    goto out_unlink;
  }
  if (rename(tmp, path) != 0) {
    SD_ERROR("%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    goto out_unlink;
  }
  rc = 0;
  goto out_free_tmp;
out_unlink:
  unlink(tmp);
out_free_tmp:
  free(tmp);
out_free_padded:
  free(padded);
  return rc;
}
