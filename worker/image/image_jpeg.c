/* JPEG decoding through libjpeg(-turbo) into RGB as PIL's Image.open(...).convert("RGB") gives
 * it: PIL's JPEG decoder keeps libjpeg's defaults (islow IDCT, fancy upsampling), asks for RGB
 * or grayscale output, and convert("RGB") replicates gray. CMYK / YCCK files are refused. A file
 * that ends before its image does is an error, as PIL's "image file is truncated"; libjpeg's
 * other warnings (e.g. extraneous bytes before a marker) are tolerated, as PIL tolerates them. */
#include "image_internal.h"

#include "../../kernels/error.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

typedef struct jpeg_failure {
  struct jpeg_error_mgr mgr; /* first: libjpeg hands back a pointer to it */
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated; /* libjpeg warned that the data ended early */
} jpeg_failure;

static void on_jpeg_error(j_common_ptr cinfo) {
  jpeg_failure *failure = (jpeg_failure *)cinfo->err;
  cinfo->err->format_message(cinfo, failure->message);
  longjmp(failure->jump, 1);
}

static void on_jpeg_message(j_common_ptr cinfo, int level) {
  jpeg_failure *failure = (jpeg_failure *)cinfo->err;
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF)
    failure->truncated = true;
}

typedef struct jpeg_job {
  const char *path;
  struct jpeg_decompress_struct cinfo;
  jpeg_failure failure;
  uint8_t *row; /* one output row */
} jpeg_job;

static int decode(jpeg_job *job, const uint8_t *data, size_t len, sd_image *out) {
  struct jpeg_decompress_struct *cinfo = &job->cinfo;
  if (setjmp(job->failure.jump))
    return SD_ERROR("%s: %s JPEG: %s", job->path, job->failure.truncated ? "truncated" : "corrupt",
                    job->failure.message);
  jpeg_create_decompress(cinfo);
  jpeg_mem_src(cinfo, data, (unsigned long)len);
  jpeg_read_header(cinfo, TRUE);
  if (sd_image_check_size(job->path, cinfo->image_width, cinfo->image_height) < 0)
    return -1;
  switch (cinfo->jpeg_color_space) {
  case JCS_GRAYSCALE:
    cinfo->out_color_space = JCS_GRAYSCALE;
    break;
  case JCS_YCbCr:
  case JCS_RGB:
    cinfo->out_color_space = JCS_RGB;
    break;
  default:
    return SD_ERROR("%s: unsupported JPEG colour space (CMYK or YCCK, %d components)", job->path,
                    cinfo->num_components);
  }
  jpeg_start_decompress(cinfo);
  int width = (int)cinfo->output_width, height = (int)cinfo->output_height;
  int components = cinfo->output_components;
  if (sd_image_alloc(out, width, height, 3) < 0)
    return sd_error_context("%s", job->path);
  job->row = malloc((size_t)width * components);
  if (!job->row)
    return SD_ERROR("%s: out of memory for a row", job->path);
  while (cinfo->output_scanline < cinfo->output_height) {
    int y = (int)cinfo->output_scanline;
    JSAMPROW rows[1] = {job->row};
    jpeg_read_scanlines(cinfo, rows, 1);
    if (job->failure.truncated)
      return SD_ERROR("%s: truncated JPEG (the data ends at row %d of %d)", job->path, y, height);
    uint8_t *d = out->data + (size_t)y * width * 3;
    for (int x = 0; x < width; x++)
      if (components == 1)
        d[3 * x] = d[3 * x + 1] = d[3 * x + 2] = job->row[x];
      else
        memcpy(d + 3 * x, job->row + 3 * x, 3);
  }
  jpeg_finish_decompress(cinfo);
  if (job->failure.truncated)
    return SD_ERROR("%s: truncated JPEG (no end-of-image marker)", job->path);
  return 0;
}

int sd_image_decode_jpeg(const char *path, const uint8_t *data, size_t len, sd_image *out) {
  jpeg_job *job = calloc(1, sizeof *job);
  if (!job)
    return SD_ERROR("%s: out of memory for libjpeg", path);
  job->path = path;
  job->cinfo.err = jpeg_std_error(&job->failure.mgr);
  job->failure.mgr.error_exit = on_jpeg_error;
  job->failure.mgr.emit_message = on_jpeg_message;
  int rc = decode(job, data, len, out);
  jpeg_destroy_decompress(&job->cinfo);
  free(job->row);
  free(job);
  return rc;
}
