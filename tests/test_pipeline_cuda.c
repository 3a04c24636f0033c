/* CUDA pipeline parity, for the tiny SD 1.x and SD 2.x fixture models, in fp32, fp16 and bf16:
 *  - stages: one text-encoder call, two UNet calls and two VAE decodes on the CUDA backend against
 *    diffusers' / transformers' float32 outputs (tests/fixtures/stages-*.safetensors);
 *  - txt2img: three renders (a batch of two with CFG and a negative prompt on DDIM; euler_a
 *    without guidance, non-square; DPM++ 2M Karras) on the CUDA engine against the same renders
 *    on the CPU engine, the oracle (test_txt2img holds the CPU to diffusers); and the batch's
 *    items rendered alone, which must be bit for bit what the batch gave (ops.h's batch
 *    invariance).
 * Exits 77 (ctest: skipped) when sd_backend_cuda_create fails, i.e. no GPU or no CUDA build.
 * `test_pipeline_cuda cpu` runs the CPU backend in place of CUDA: a check of the test itself on a
 * machine without a GPU (every comparison then passes at zero difference).
 *
 * Tolerances. Stages: max |got - want| <= tol * max |want|, tol = 1e-4 (fp32: the CPU backend is
 * within 1e-5; summation order and the fused attention kernel differ), 2e-2 (fp16), 1e-1 (bf16).
 * Pipeline, per item: fp32 latents within 1e-3 absolute + 1e-3 relative and pixels within 1 level
 * with at least 99.9% exact (test_txt2img's tolerances against diffusers); fp16 max latent
 * difference <= 2e-2 * max |latents| and mean absolute pixel difference < 1 level; bf16 1e-1 and
 * 4 levels. For scale, diffusers itself in fp16 / bf16 (on the CPU) against its float32 results
 * on these models and cases reaches 6e-3 / 4e-2 (stages), 3.4e-3 / 3.6e-2 (latents) and 0.15 / 1.4
 * levels mean (tests/reference/reduced_precision_error.py). */
#include "test_util.h"

#include "kernels/error.h"
#include "worker/io/model_files.h"
#include "worker/io/safetensors.h"
#include "worker/io/weights.h"
#include "worker/model/clip_text.h"
#include "worker/model/unet.h"
#include "worker/model/vae.h"
#include "worker/pipeline/engine.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct precision_case {
  sd_dtype dtype;
  float stage_tol;         /* share of max |want| */
  float latent_tol;        /* share of max |cpu latents| (fp16, bf16) */
  double pixel_mean_limit; /* mean |cuda - cpu| in levels (fp16, bf16) */
} precision_case;

static const precision_case precisions[3] = {
    {SD_DTYPE_F32, 1e-4f, 0.0f, 0.0},
    {SD_DTYPE_F16, 2e-2f, 2e-2f, 1.0},
    {SD_DTYPE_BF16, 1e-1f, 1e-1f, 4.0},
};

/* The backend under test: CUDA, or the CPU when the test checks itself. */
static bool subject_is_cpu;

static sd_backend *subject_backend(sd_dtype dtype) {
  return subject_is_cpu ? sd_backend_cpu_create(0) : sd_backend_cuda_create(0, dtype);
}

/* ---- stages against the diffusers fixtures ---- */

/* A stage tensor as host float32 (malloc'd) with its shape; NULL (with a failed check) when it is
 * missing or does not have ndim dims. */
static float *stage_f32(const sd_safetensors *file, const char *name, int ndim, int64_t *shape,
                        size_t *count) {
  const sd_st_tensor *t = sd_safetensors_find(file, name);
  CHECK(t && t->ndim == ndim, "%s: tensor %s missing or not %dD", sd_safetensors_path(file), name,
        ndim);
  if (!t || t->ndim != ndim)
    return NULL;
  size_t n = 1;
  for (int i = 0; i < ndim; i++) {
    shape[i] = t->shape[i];
    n *= (size_t)t->shape[i];
  }
  float *out = malloc(n * sizeof *out);
  CHECK(out != NULL, "out of memory");
  if (!out)
    return NULL;
  if (t->dtype == SD_DTYPE_I32) {
    for (size_t i = 0; i < n; i++) {
      int32_t v;
      memcpy(&v, (const char *)t->data + i * sizeof v, sizeof v);
      out[i] = (float)v;
    }
  } else {
    sd_convert_to_f32(t->dtype, t->data, out, n);
  }
  *count = n;
  return out;
}

/* max |got - want| <= tol * max |want|. */
static void compare_scaled(const char *what, const float *got, const float *want, size_t n,
                           float tol) {
  float max_want = 0.0f;
  for (size_t i = 0; i < n; i++)
    max_want = fmaxf(max_want, fabsf(want[i]));
  sd_test_compare_f32(what, got, want, n, tol * max_want, 0.0f);
}

typedef struct stage_models {
  sd_backend *be;
  sd_weights *clip_weights, *unet_weights, *vae_weights;
  sd_clip_text *clip;
  sd_unet *unet;
  sd_vae *vae;
} stage_models;

static void stage_models_free(stage_models *m) {
  sd_vae_free(m->vae);
  sd_unet_free(m->unet);
  sd_clip_text_free(m->clip);
  sd_weights_free(m->vae_weights);
  sd_weights_free(m->unet_weights);
  sd_weights_free(m->clip_weights);
  sd_backend_destroy(m->be);
}

static void check_text(const char *what, stage_models *m, const sd_safetensors *stages, float tol) {
  int64_t ids_shape[2], hidden_shape[3];
  size_t n_ids = 0, n = 0;
  float *ids_f = stage_f32(stages, "text.ids", 2, ids_shape, &n_ids);
  float *want = stage_f32(stages, "text.hidden", 3, hidden_shape, &n);
  int32_t *ids = malloc(n_ids * sizeof *ids);
  float *got = malloc(n * sizeof *got);
  sd_tensor hidden =
      sd_tensor_3d(m->be->ops->act_dtype, hidden_shape[0], hidden_shape[1], hidden_shape[2]);
  if (!ids_f || !want || !ids || !got)
    goto out;
  for (size_t i = 0; i < n_ids; i++)
    ids[i] = (int32_t)ids_f[i];
  int ok = sd_tensor_alloc_persistent(m->be, &hidden) == 0 &&
           sd_clip_text_forward(m->clip, ids, (int)ids_shape[0], &hidden) == 0 &&
           sd_tensor_download_f32(m->be, &hidden, got) == 0;
  CHECK(ok, "%s text encoder: %s (%s)", what, sd_error_message(), sd_error_location());
  if (ok) {
    char label[128];
    snprintf(label, sizeof label, "%s text.hidden", what);
    compare_scaled(label, got, want, n, tol);
  }
out:
  sd_tensor_free(m->be, &hidden);
  free(ids_f);
  free(want);
  free(ids);
  free(got);
}

/* <prefix>.sample/timestep/context -> <prefix>.out */
static void check_unet(const char *what, stage_models *m, const sd_safetensors *stages,
                       const char *prefix, float tol) {
  char name[64];
  int64_t sshape[4], cshape[3], oshape[4], tshape[1];
  size_t ns = 0, nc = 0, nt = 0, n = 0;
  snprintf(name, sizeof name, "%s.sample", prefix);
  float *sample_host = stage_f32(stages, name, 4, sshape, &ns);
  snprintf(name, sizeof name, "%s.context", prefix);
  float *context_host = stage_f32(stages, name, 3, cshape, &nc);
  snprintf(name, sizeof name, "%s.timestep", prefix);
  float *timestep = stage_f32(stages, name, 1, tshape, &nt);
  snprintf(name, sizeof name, "%s.out", prefix);
  float *want = stage_f32(stages, name, 4, oshape, &n);
  float *got = malloc(n * sizeof *got);
  sd_dtype dt = m->be->ops->act_dtype;
  sd_tensor sample = sd_tensor_4d(dt, sshape[0], sshape[1], sshape[2], sshape[3]);
  sd_tensor context = sd_tensor_3d(dt, cshape[0], cshape[1], cshape[2]);
  sd_tensor out = sd_tensor_4d(dt, oshape[0], oshape[1], oshape[2], oshape[3]);
  if (!sample_host || !context_host || !timestep || !want || !got)
    goto done;
  int ok = sd_tensor_alloc_persistent(m->be, &sample) == 0 &&
           sd_tensor_upload_f32(m->be, &sample, sample_host) == 0 &&
           sd_tensor_alloc_persistent(m->be, &context) == 0 &&
           sd_tensor_upload_f32(m->be, &context, context_host) == 0 &&
           sd_tensor_alloc_persistent(m->be, &out) == 0 &&
           sd_unet_forward(m->unet, &sample, timestep[0], &context, &out) == 0 &&
           sd_tensor_download_f32(m->be, &out, got) == 0;
  CHECK(ok, "%s %s: %s (%s)", what, prefix, sd_error_message(), sd_error_location());
  if (ok) {
    char label[128];
    snprintf(label, sizeof label, "%s %s.out", what, prefix);
    compare_scaled(label, got, want, n, tol);
    CHECK(m->be->arena.used_bytes == 0, "%s %s: %zu arena bytes still in use", what, prefix,
          m->be->arena.used_bytes);
  }
done:
  sd_tensor_free(m->be, &sample);
  sd_tensor_free(m->be, &context);
  sd_tensor_free(m->be, &out);
  free(sample_host);
  free(context_host);
  free(timestep);
  free(want);
  free(got);
}

/* <prefix>.latent -> <prefix>.image */
static void check_vae(const char *what, stage_models *m, const sd_safetensors *stages,
                      const char *prefix, float tol) {
  char name[64];
  int64_t zshape[4], ishape[4];
  size_t nz = 0, n = 0;
  snprintf(name, sizeof name, "%s.latent", prefix);
  float *latent = stage_f32(stages, name, 4, zshape, &nz);
  snprintf(name, sizeof name, "%s.image", prefix);
  float *want = stage_f32(stages, name, 4, ishape, &n);
  float *got = malloc(n * sizeof *got);
  sd_dtype dt = m->be->ops->act_dtype;
  sd_tensor z = sd_tensor_4d(dt, zshape[0], zshape[1], zshape[2], zshape[3]);
  sd_tensor image = sd_tensor_4d(dt, ishape[0], ishape[1], ishape[2], ishape[3]);
  if (!latent || !want || !got)
    goto out;
  int ok =
      sd_tensor_alloc_persistent(m->be, &z) == 0 && sd_tensor_upload_f32(m->be, &z, latent) == 0 &&
      sd_tensor_alloc_persistent(m->be, &image) == 0 && sd_vae_decode(m->vae, &z, &image) == 0 &&
      sd_tensor_download_f32(m->be, &image, got) == 0;
  CHECK(ok, "%s %s: %s (%s)", what, prefix, sd_error_message(), sd_error_location());
  if (ok) {
    char label[128];
    snprintf(label, sizeof label, "%s %s.image", what, prefix);
    compare_scaled(label, got, want, n, tol);
    CHECK(m->be->arena.used_bytes == 0, "%s %s: %zu arena bytes still in use", what, prefix,
          m->be->arena.used_bytes);
  }
out:
  sd_tensor_free(m->be, &z);
  sd_tensor_free(m->be, &image);
  free(latent);
  free(want);
  free(got);
}

static void test_stages(const char *family, const precision_case *p) {
  char folder[512], stages_path[512], what[64];
  snprintf(folder, sizeof folder, "%s/tiny-%s", SD_TEST_FIXTURES, family);
  snprintf(stages_path, sizeof stages_path, "%s/stages-%s.safetensors", SD_TEST_FIXTURES, family);
  snprintf(what, sizeof what, "%s %s", family, sd_precision_name(p->dtype));
  sd_model_files *files = NULL;
  sd_safetensors *stages = NULL;
  stage_models m = {0};
  m.be = subject_backend(p->dtype);
  int ok = m.be && sd_model_files_open(folder, NULL, NULL, &files) == 0 &&
           sd_safetensors_open(stages_path, &stages) == 0 &&
           sd_weights_upload(m.be, files->clip_tensors, "text_encoder", &m.clip_weights) == 0 &&
           sd_weights_upload(m.be, files->unet_tensors, "unet", &m.unet_weights) == 0 &&
           sd_weights_upload(m.be, files->vae_tensors, "vae", &m.vae_weights) == 0 &&
           sd_clip_text_create(m.be, &files->clip, m.clip_weights, &m.clip) == 0 &&
           sd_unet_create(m.be, &files->unet, m.unet_weights, &m.unet) == 0 &&
           sd_vae_create(m.be, &files->vae, m.vae_weights, &m.vae) == 0;
  CHECK(ok, "%s stages: setup: %s (%s)", what, sd_error_message(), sd_error_location());
  if (ok) {
    check_text(what, &m, stages, p->stage_tol);
    check_unet(what, &m, stages, "unet", p->stage_tol);
    check_unet(what, &m, stages, "unet2", p->stage_tol);
    check_vae(what, &m, stages, "vae", p->stage_tol);
    check_vae(what, &m, stages, "vae2", p->stage_tol);
  }
  stage_models_free(&m);
  sd_safetensors_close(stages);
  sd_model_files_close(files);
}

/* ---- txt2img against the CPU engine ---- */

typedef struct render_case {
  const char *name;
  sd_txt2img_batch batch;
  int n;
  sd_txt2img_item items[2];
} render_case;

static const render_case render_cases[3] = {
    {"ddim batch 2",
     {128, 128, 10, SD_SCHED_DDIM, false, SD_RNG_CPU},
     2,
     {{"a photo of an astronaut riding a horse", "", 0, 7.5f},
      {"a red cube on a table", "blurry", 5, 4.0f}}},
    {"euler_a no guidance 128x96",
     {128, 96, 10, SD_SCHED_EULER_A, false, SD_RNG_CPU},
     1,
     {{"an oil painting of a lighthouse", "", 7, 1.0f}}},
    {"dpmpp_2m karras 96x128",
     {96, 128, 10, SD_SCHED_DPMPP_2M, true, SD_RNG_CPU},
     1,
     {{"a bowl of fruit", "", 3, 5.0f}}},
};
#define RENDER_CASES (int)(sizeof render_cases / sizeof render_cases[0])

static void compare_render(const char *what, const precision_case *p, const sd_txt2img_batch *b,
                           const sd_txt2img_result *got, const sd_txt2img_result *want,
                           size_t latents) {
  char label[192];
  CHECK(got->finite, "%s: NaN or Inf in the latents or image", what);
  size_t pixels = (size_t)b->width * b->height * 3, exact = 0;
  double sum = 0.0;
  int worst = 0;
  for (size_t i = 0; i < pixels; i++) {
    int diff = abs((int)got->rgb[i] - (int)want->rgb[i]);
    exact += diff == 0;
    sum += diff;
    worst = diff > worst ? diff : worst;
  }
  double mean = sum / (double)pixels, exact_share = (double)exact / (double)pixels;
  snprintf(label, sizeof label, "%s latents", what);
  if (p->dtype == SD_DTYPE_F32) {
    sd_test_compare_f32(label, got->latents, want->latents, latents, 1e-3f, 1e-3f);
    bool ok = worst <= 1 && exact_share >= 0.999;
    fprintf(stderr, "%s %s image: %.4f exact, max diff %d\n", ok ? "ok  " : "FAIL", what,
            exact_share, worst);
    CHECK(ok, "%s: pixels differ from the CPU's", what);
  } else {
    compare_scaled(label, got->latents, want->latents, latents, p->latent_tol);
    bool ok = mean < p->pixel_mean_limit;
    fprintf(stderr, "%s %s image: mean abs diff %.3f levels (limit %.1f), max %d, %.4f exact\n",
            ok ? "ok  " : "FAIL", what, mean, p->pixel_mean_limit, worst, exact_share);
    CHECK(ok, "%s: pixels differ from the CPU's", what);
  }
}

/* The batch invariance of ops.h: an item rendered alone is bit for bit the item rendered in a
 * batch. */
static void check_alone(sd_engine *engine, const char *what, const sd_txt2img_batch *b,
                        const sd_txt2img_item *item, const sd_txt2img_result *in_batch,
                        size_t latents) {
  sd_txt2img_result alone;
  int rc = sd_txt2img(engine, b, item, 1, NULL, NULL, &alone);
  CHECK(rc == 0, "%s alone: %s", what, sd_error_message());
  if (rc < 0)
    return;
  size_t pixels = (size_t)b->width * b->height * 3;
  bool same = memcmp(alone.rgb, in_batch->rgb, pixels) == 0 &&
              memcmp(alone.latents, in_batch->latents, latents * sizeof(float)) == 0;
  fprintf(stderr, "%s %s: alone and in its batch bit for bit\n", same ? "ok  " : "FAIL", what);
  CHECK(same, "%s: the image depends on the rest of its batch", what);
  sd_txt2img_result_free(&alone);
}

static sd_engine *open_engine(const char *family, const char *device, sd_dtype precision) {
  char model_path[512];
  snprintf(model_path, sizeof model_path, "%s/tiny-%s", SD_TEST_FIXTURES, family);
  sd_engine_params params;
  sd_engine_params_init(&params);
  params.model_path = model_path;
  params.device = device;
  params.precision = precision;
  sd_engine *engine = NULL;
  CHECK(sd_engine_open(&params, &engine) == 0, "open %s on %s (%s): %s", model_path, device,
        sd_precision_name(precision), sd_error_message());
  return engine;
}

static void test_renders(const char *family) {
  sd_txt2img_result want[RENDER_CASES][2];
  memset(want, 0, sizeof want);
  sd_engine *cpu = open_engine(family, "cpu", SD_DTYPE_F32);
  bool have_want = cpu != NULL;
  for (int c = 0; c < RENDER_CASES && cpu; c++) {
    const render_case *rc = &render_cases[c];
    int rc_status = sd_txt2img(cpu, &rc->batch, rc->items, rc->n, NULL, NULL, want[c]);
    CHECK(rc_status == 0, "%s %s on the CPU: %s", family, rc->name, sd_error_message());
    have_want = have_want && rc_status == 0;
  }
  sd_engine_close(cpu);
  for (int k = 0; k < 3 && have_want; k++) {
    const precision_case *p = &precisions[k];
    sd_engine *engine = open_engine(family, subject_is_cpu ? "cpu" : "cuda", p->dtype);
    for (int c = 0; c < RENDER_CASES && engine; c++) {
      const render_case *rc = &render_cases[c];
      sd_txt2img_result got[2];
      int rc_status = sd_txt2img(engine, &rc->batch, rc->items, rc->n, NULL, NULL, got);
      CHECK(rc_status == 0, "%s %s %s: %s", family, sd_precision_name(p->dtype), rc->name,
            sd_error_message());
      if (rc_status < 0)
        continue;
      size_t latents = (size_t)4 * (rc->batch.width / 8) * (rc->batch.height / 8);
      for (int i = 0; i < rc->n; i++) {
        char what[160];
        snprintf(what, sizeof what, "%s %s %s item %d", family, sd_precision_name(p->dtype),
                 rc->name, i);
        compare_render(what, p, &rc->batch, &got[i], &want[c][i], latents);
        if (rc->n > 1)
          check_alone(engine, what, &rc->batch, &rc->items[i], &got[i], latents);
        sd_txt2img_result_free(&got[i]);
      }
    }
    sd_engine_close(engine);
  }
  for (int c = 0; c < RENDER_CASES; c++)
    for (int i = 0; i < 2; i++)
      sd_txt2img_result_free(&want[c][i]);
}

int main(int argc, char **argv) {
  if (argc > 2 || (argc == 2 && strcmp(argv[1], "cpu") != 0)) {
    fprintf(stderr, "usage: test_pipeline_cuda [cpu]\n");
    return 2;
  }
  subject_is_cpu = argc == 2;
  sd_backend *probe = subject_backend(SD_DTYPE_F32);
  if (!probe) {
    fprintf(stderr, "skipped: no CUDA backend: %s\n", sd_error_message());
    return 77;
  }
  fprintf(stderr, "backend under test: %s (%s)\n", probe->ops->name, probe->device_name);
  sd_backend_destroy(probe);
  static const char *const families[2] = {"sd1", "sd2"};
  for (int f = 0; f < 2; f++) {
    for (int k = 0; k < 3; k++)
      test_stages(families[f], &precisions[k]);
    test_renders(families[f]);
  }
  return sd_test_finish();
}
