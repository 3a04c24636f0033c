/* run_check: what the `sdbatch run` tests (test_run_*.sh) check in output files, through the
 * output reader (coordinator/output.h). Exit 0 when the check holds, 1 otherwise (with what
 * differs), 2 on usage errors.
 *
 *   run_check same A.h5 B.h5          every item done in both, with equal metadata, images and
 *                                     latents (byte for byte); prints the max difference
 *   run_check close A.h5 B.h5 LEVELS PERCENT
 *                                     every item done in both with equal metadata; over all
 *                                     their pixels, none differs by more than LEVELS and at
 *                                     least PERCENT % are exact (images from rank groups against
 *                                     one rank's); prints both figures and the latents' max
 *                                     difference
 *   run_check png A.h5 INDEX FILE.png item INDEX's image equals the PNG's pixels
 *   run_check counts A.h5 DONE FAILED PENDING
 *                                     the status counts are these
 *   run_check status A.h5             prints "DONE FAILED PENDING"
 *   run_check null A.h5               every done item is the null model's pattern
 *   run_check chunks A.h5             prints "DATASET ITEM FIRST LAST" (bytes of the file, LAST
 *                                     included) for every item's chunk of images and latents
 *                                     (from HDF5's chunk index: a sound file's) */
#include "coordinator/output.h"
#include "coordinator/render.h"
#include "kernels/error.h"
#include "worker/io/png_image.h"

#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *fmt, const char *a, const char *b) {
  fprintf(stderr, "run_check: ");
  fprintf(stderr, fmt, a, b);
  fprintf(stderr, "\n");
  return 1;
}

static int open_reader(const char *path, sd_output_reader **r) {
  if (sd_output_reader_open(path, r) < 0) {
    fprintf(stderr, "run_check: %s: %s\n", path, sd_error_message());
    return -1;
  }
  return 0;
}

static size_t image_bytes(const sd_output_info *info) {
  return (size_t)info->width * (size_t)info->height * 3;
}

static size_t latent_count(const sd_output_info *info) {
  return (size_t)info->latent_channels * (size_t)info->latent_h * (size_t)info->latent_w;
}

static int records_equal(const sd_output_record *x, const sd_output_record *y) {
  return x->prompt_index == y->prompt_index && x->seed == y->seed &&
         x->guidance_scale == y->guidance_scale && x->steps == y->steps &&
         strcmp(x->scheduler, y->scheduler) == 0 && x->status == y->status &&
         x->input_index == y->input_index && x->strength == y->strength &&
         x->noise_level == y->noise_level;
}

/* "input I strength S noise_level N image PATH sha256 HEX" of item index (input -1: none). */
static int print_input(const char *path, int64_t index) {
  sd_output_reader *r = NULL;
  if (open_reader(path, &r) < 0)
    return 1;
  sd_output_record rec;
  int rc = 0;
  if (sd_output_read_records(r, index, 1, &rec) < 0 || rec.problem[0]) {
    fprintf(stderr, "run_check: %s: item %" PRId64 ": %s\n", path, index,
            rec.problem[0] ? rec.problem : sd_error_message());
    rc = 1;
  } else {
    printf("input %d strength %g noise_level %d", rec.input_index, (double)rec.strength,
           rec.noise_level);
    sd_output_input in;
    if (rec.input_index >= 0 && sd_output_read_input(r, rec.input_index, &in) == 0) {
      printf(" image %s sha256 %s mask %s depth_map %s", in.files[0], in.sha256[0],
             in.files[1][0] ? in.files[1] : "-", in.files[2][0] ? in.files[2] : "-");
      sd_output_input_free(&in);
    } else if (rec.input_index >= 0) {
      fprintf(stderr, "run_check: %s: input %d: %s\n", path, rec.input_index, sd_error_message());
      rc = 1;
    }
    printf("\n");
  }
  sd_output_reader_close(r);
  return rc;
}

/* max_levels 0 and min_exact 100: byte for byte, latents too ("same"). */
static int check_same(const char *path_a, const char *path_b, int max_levels, double min_exact) {
  sd_output_reader *a = NULL, *b = NULL;
  if (open_reader(path_a, &a) < 0 || open_reader(path_b, &b) < 0)
    return 1;
  const sd_output_info *ia = sd_output_reader_info(a), *ib = sd_output_reader_info(b);
  int bad = 0;
  if (ia->n_items != ib->n_items || ia->width != ib->width || ia->height != ib->height ||
      ia->save_latents != ib->save_latents || strcmp(ia->job_hash, ib->job_hash) != 0) {
    sd_output_reader_close(a);
    sd_output_reader_close(b);
    return fail("%s and %s hold different jobs or shapes", path_a, path_b);
  }
  size_t nb = image_bytes(ia), nl = latent_count(ia);
  uint8_t *ra = malloc(nb), *rb = malloc(nb);
  float *la = malloc(nl * sizeof *la), *lb = malloc(nl * sizeof *lb);
  int max_pixel_diff = 0;
  double max_latent_diff = 0.0;
  int64_t differing = 0, exact = 0, values = 0;
  for (int64_t i = 0; i < ia->n_items && !bad; i++) {
    sd_output_record xa, xb;
    if (sd_output_read_records(a, i, 1, &xa) < 0 || sd_output_read_records(b, i, 1, &xb) < 0 ||
        sd_output_read_image(a, i, ra) < 0 || sd_output_read_image(b, i, rb) < 0 ||
        (ia->save_latents &&
         (sd_output_read_latents(a, i, la) < 0 || sd_output_read_latents(b, i, lb) < 0))) {
      fprintf(stderr, "run_check: item %" PRId64 ": %s\n", i, sd_error_message());
      bad = 1;
      break;
    }
    if (xa.status != SD_ITEM_DONE || xb.status != SD_ITEM_DONE) {
      fprintf(stderr, "run_check: item %" PRId64 ": status %d in %s, %d in %s (1 = done)\n", i,
              xa.status, path_a, xb.status, path_b);
      bad = 1;
    }
    if (!records_equal(&xa, &xb)) {
      fprintf(stderr, "run_check: item %" PRId64 ": metadata differ\n", i);
      bad = 1;
    }
    int item_diff = 0;
    for (size_t k = 0; k < nb; k++) {
      int d = abs((int)ra[k] - (int)rb[k]);
      item_diff = d > item_diff ? d : item_diff;
      exact += d == 0;
    }
    values += (int64_t)nb;
    for (size_t k = 0; ia->save_latents && k < nl; k++) {
      double d = fabs((double)la[k] - (double)lb[k]);
      max_latent_diff = d > max_latent_diff || d != d ? d : max_latent_diff;
      if (memcmp(&la[k], &lb[k], sizeof la[k]) != 0 && item_diff == 0)
        item_diff = -1;
    }
    if (item_diff != 0) {
      differing++;
      max_pixel_diff = item_diff > max_pixel_diff ? item_diff : max_pixel_diff;
      if (differing <= 5)
        fprintf(stderr, "run_check: item %" PRId64 ": images/latents differ (max pixel diff %d)\n",
                i, item_diff);
    }
  }
  double exact_share = values ? 100.0 * (double)exact / (double)values : 100.0;
  printf("run_check: %s vs %s: %" PRId64 " items, %" PRId64
         " differ; max pixel diff %d, %.4f %% of pixel values exact, max latent diff %g\n",
         path_a, path_b, ia->n_items, differing, max_pixel_diff, exact_share, max_latent_diff);
  free(ra);
  free(rb);
  free(la);
  free(lb);
  sd_output_reader_close(a);
  sd_output_reader_close(b);
  if (max_levels == 0 && min_exact >= 100.0)
    return bad || differing ? 1 : 0;
  if (max_pixel_diff > max_levels || exact_share < min_exact ||
      max_latent_diff != max_latent_diff) {
    fprintf(stderr, "run_check: beyond the tolerance: max %d levels, %.4f %% exact\n", max_levels,
            min_exact);
    bad = 1;
  }
  return bad;
}

static int check_png(const char *path, const char *index_text, const char *png) {
  sd_output_reader *r = NULL;
  if (open_reader(path, &r) < 0)
    return 1;
  const sd_output_info *info = sd_output_reader_info(r);
  int64_t index = strtoll(index_text, NULL, 10);
  uint8_t *want = NULL;
  int w = 0, h = 0;
  uint8_t *got = malloc(image_bytes(info));
  sd_output_record rec;
  int rc = 1;
  if (sd_png_read_rgb(png, &want, &w, &h, NULL, NULL) < 0 ||
      sd_output_read_records(r, index, 1, &rec) < 0 || sd_output_read_image(r, index, got) < 0) {
    fprintf(stderr, "run_check: %s\n", sd_error_message());
  } else if (w != info->width || h != info->height || rec.status != SD_ITEM_DONE) {
    fprintf(stderr, "run_check: %s is %dx%d, item %" PRId64 " is %dx%d with status %d\n", png, w, h,
            index, info->width, info->height, rec.status);
  } else {
    int max_diff = 0;
    for (size_t k = 0; k < image_bytes(info); k++) {
      int d = abs((int)got[k] - (int)want[k]);
      max_diff = d > max_diff ? d : max_diff;
    }
    printf("run_check: item %" PRId64 " of %s vs %s: max pixel diff %d\n", index, path, png,
           max_diff);
    rc = max_diff != 0;
  }
  free(want);
  free(got);
  sd_output_reader_close(r);
  return rc;
}

/* counts[status] of every item. */
static int count_statuses(const char *path, int64_t counts[3]) {
  sd_output_reader *r = NULL;
  if (open_reader(path, &r) < 0)
    return -1;
  const sd_output_info *info = sd_output_reader_info(r);
  counts[0] = counts[1] = counts[2] = 0;
  for (int64_t i = 0; i < info->n_items; i++) {
    sd_output_record rec;
    if (sd_output_read_records(r, i, 1, &rec) < 0) {
      fprintf(stderr, "run_check: %s\n", sd_error_message());
      sd_output_reader_close(r);
      return -1;
    }
    if (rec.status <= 2)
      counts[rec.status]++;
  }
  sd_output_reader_close(r);
  return 0;
}

static int print_status(const char *path) {
  int64_t counts[3];
  if (count_statuses(path, counts) < 0)
    return 1;
  printf("%" PRId64 " %" PRId64 " %" PRId64 "\n", counts[SD_ITEM_DONE], counts[SD_ITEM_FAILED],
         counts[SD_ITEM_PENDING]);
  return 0;
}

static int check_counts(const char *path, char **want_text) {
  int64_t counts[3];
  if (count_statuses(path, counts) < 0)
    return 1;
  int64_t done = strtoll(want_text[0], NULL, 10), failed = strtoll(want_text[1], NULL, 10),
          pending = strtoll(want_text[2], NULL, 10);
  printf("run_check: %s: %" PRId64 " done, %" PRId64 " failed, %" PRId64 " pending\n", path,
         counts[SD_ITEM_DONE], counts[SD_ITEM_FAILED], counts[SD_ITEM_PENDING]);
  return counts[SD_ITEM_DONE] != done || counts[SD_ITEM_FAILED] != failed ||
         counts[SD_ITEM_PENDING] != pending;
}

static int check_null(const char *path) {
  sd_output_reader *r = NULL;
  if (open_reader(path, &r) < 0)
    return 1;
  const sd_output_info *info = sd_output_reader_info(r);
  sd_render_shape shape = {info->width,    info->height,   info->latent_channels,
                           info->latent_h, info->latent_w, SD_PIPELINE_TXT2IMG};
  uint8_t *got = malloc(image_bytes(info)), *want = malloc(image_bytes(info));
  float *latents = malloc(latent_count(info) * sizeof *latents);
  int64_t checked = 0, wrong = 0;
  for (int64_t i = 0; i < info->n_items; i++) {
    sd_output_record rec;
    if (sd_output_read_records(r, i, 1, &rec) < 0 || sd_output_read_image(r, i, got) < 0) {
      fprintf(stderr, "run_check: %s\n", sd_error_message());
      wrong++;
      break;
    }
    if (rec.status != SD_ITEM_DONE)
      continue;
    checked++;
    sd_null_model_item(i, &shape, want, latents);
    if (memcmp(got, want, image_bytes(info)) != 0 && wrong++ < 5)
      fprintf(stderr, "run_check: item %" PRId64 " is not its null-model pattern\n", i);
  }
  printf("run_check: %s: %" PRId64 " done items checked against the null model, %" PRId64
         " wrong\n",
         path, checked, wrong);
  free(got);
  free(want);
  free(latents);
  sd_output_reader_close(r);
  return wrong != 0;
}

/* The byte ranges of every item's chunk of images and latents (when chunked). */
static int print_chunks(const char *path) {
  hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0)
    return fail("%s: cannot open%s", path, "");
  int rc = 0;
  const char *const names[] = {"images", "latents"};
  for (int k = 0; k < 2 && rc == 0; k++) {
    if (H5Lexists(file, names[k], H5P_DEFAULT) <= 0)
      continue;
    hid_t d = H5Dopen2(file, names[k], H5P_DEFAULT);
    hid_t dcpl = d < 0 ? -1 : H5Dget_create_plist(d);
    hid_t space = d < 0 ? -1 : H5Dget_space(d);
    hsize_t dims[4] = {0};
    if (dcpl < 0 || space < 0 || H5Sget_simple_extent_dims(space, dims, NULL) != 4)
      rc = fail("%s: %s: cannot read its layout", path, names[k]);
    else if (H5Pget_layout(dcpl) == H5D_CHUNKED)
      for (hsize_t i = 0; i < dims[0] && rc == 0; i++) {
        hsize_t offset[4] = {i, 0, 0, 0}, size = 0;
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        if (H5Dget_chunk_info_by_coord(d, offset, &mask, &addr, &size) < 0 || size == 0)
          rc = fail("%s: %s: a chunk is missing", path, names[k]);
        else
          printf("%s %llu %llu %llu\n", names[k], (unsigned long long)i, (unsigned long long)addr,
                 (unsigned long long)(addr + size - 1));
      }
    if (space >= 0)
      H5Sclose(space);
    if (dcpl >= 0)
      H5Pclose(dcpl);
    if (d >= 0)
      H5Dclose(d);
  }
  H5Fclose(file);
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "same") == 0)
    return check_same(argv[2], argv[3], 0, 100.0);
  if (argc == 6 && strcmp(argv[1], "close") == 0)
    return check_same(argv[2], argv[3], atoi(argv[4]), atof(argv[5]));
  if (argc == 5 && strcmp(argv[1], "png") == 0)
    return check_png(argv[2], argv[3], argv[4]);
  if (argc == 6 && strcmp(argv[1], "counts") == 0)
    return check_counts(argv[2], argv + 3);
  if (argc == 3 && strcmp(argv[1], "status") == 0)
    return print_status(argv[2]);
  if (argc == 3 && strcmp(argv[1], "null") == 0)
    return check_null(argv[2]);
  if (argc == 3 && strcmp(argv[1], "chunks") == 0)
    return print_chunks(argv[2]);
  if (argc == 4 && strcmp(argv[1], "input") == 0)
    return print_input(argv[2], atoll(argv[3]));
  fprintf(stderr, "usage: run_check same A.h5 B.h5 | close A.h5 B.h5 LEVELS PERCENT | png A.h5 "
                  "INDEX FILE.png | counts A.h5 DONE FAILED PENDING | status A.h5 | null A.h5 | "
                  "chunks A.h5 | input A.h5 INDEX\n");
  return 2;
}
