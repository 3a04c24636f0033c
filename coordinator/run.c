/* `sdbatch run` on rank 0 and in a one-rank world: checking the job, the model's configs and the
 * output file before any work; the plan broadcast; rendering alone when the world is one rank;
 * writing results and flushing (run.h). */
#include "run_internal.h"
#include "model_identity.h"
#include "output_size.h"
#include "stop_signal.h"

#include "../jobs/sha256.h"
#include "../kernels/error.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *job_device_name(sd_job_device device) {
  switch (device) {
  case SD_JOB_DEVICE_CUDA:
    return "cuda";
  case SD_JOB_DEVICE_CPU:
    return "cpu";
  default:
    return "auto";
  }
}

void sd_run_engine_params(const sd_run_options *opts, const sd_cluster *cluster,
                          const sd_job_info *info, sd_engine_params *params) {
  sd_engine_params_init(params);
  params->model_path = info->model;
  params->model_yaml = info->model_config;
  params->depth_estimator_path = info->depth_estimator;
  params->dpt_backend = info->dpt_preprocess == SD_JOB_DPT_PREPROCESS_TORCHVISION
                            ? SD_DPT_BACKEND_TORCHVISION
                            : SD_DPT_BACKEND_PIL;
  params->threads = opts->threads > 0 ? opts->threads : sd_cluster_default_threads(cluster);
  const char *device = opts->device ? opts->device : job_device_name(info->device);
  if (strcmp(device, "cpu") == 0) {
    params->device = "cpu";
    return;
  }
  int gpus = sd_cluster_gpu_count();
  if (gpus == 0 && strcmp(device, "auto") == 0) {
    params->device = "cpu";
    return;
  }
  /* cuda, or auto with GPUs: the engine falls back to the CPU for auto when the CUDA backend
   * cannot start; for cuda it reports why */
  params->device = device;
  params->device_index = gpus > 0 ? sd_cluster_gpu_for_rank(cluster, gpus) : 0;
}

void sd_run_job_hash(const sd_job_info *info, bool null_model, char hex[65]) {
  if (!null_model) {
    memcpy(hex, info->hash, 65);
    return;
  }
  sd_sha256 h;
  sd_sha256_init(&h);
  static const char tag[] = "sdbatch run --null-model\n";
  sd_sha256_update(&h, tag, sizeof tag - 1);
  sd_sha256_update(&h, info->hash, 64);
  sd_sha256_final_hex(&h, hex);
}

int sd_run_flush(sd_run_ctx *ctx, bool force) {
  if (!ctx->unflushed)
    return 0;
  double now = sd_progress_now();
  if (!force && now - ctx->last_flush < SD_RUN_FLUSH_INTERVAL_S)
    return 0;
  if (sd_output_flush(ctx->output) < 0)
    return sd_error_context("flushing %s", ctx->info->output);
  ctx->last_flush = now;
  ctx->unflushed = false;
  return 0;
}

/* An item's metadata as the output file stores it (seeds above 2^63 - 1 keep their bits). */
static int item_meta(void *run_ctx, int64_t index, sd_output_item_meta *meta) {
  sd_run_ctx *ctx = run_ctx;
  sd_job_item item;
  SD_TRY(sd_job_item_get(ctx->job, index, &item));
  meta->prompt_index = (int32_t)item.prompt_index;
  meta->seed = (int64_t)item.seed;
  meta->guidance_scale = (float)item.guidance_scale;
  meta->steps = item.steps;
  meta->scheduler = ctx->scheduler_names[item.scheduler_index];
  meta->has_input = item.image_index >= 0;
  if (meta->has_input) {
    sd_pipeline_kind kind = (sd_pipeline_kind)ctx->plan.shape.pipeline;
    meta->input_index = (int32_t)item.image_index;
    meta->strength = sd_render_item_strength(kind, item.strength);
    meta->noise_level = sd_render_item_noise_level(kind, item.noise_level);
  }
  return 0;
}

int sd_run_write_result(sd_run_ctx *ctx, int rank, const sd_item_result *result) {
  sd_output_item_meta meta;
  SD_TRY(item_meta(ctx, result->index, &meta));
  int rc;
  if (result->done)
    rc = sd_output_write_done(ctx->output, result->index, &meta, result->rgb,
                              ctx->info->save_latents ? result->latents : NULL);
  else
    rc = sd_output_write_failed(ctx->output, result->index, &meta, result->reason);
  if (rc < 0)
    return sd_error_context("writing item %" PRId64 " to %s", result->index, ctx->info->output);
  ctx->unflushed = true;
  sd_progress_item(&ctx->progress, rank, result->index, result->done, result->reason);
  return sd_run_flush(ctx, false);
}

/* Sizes and scheduler names from the model's configs, and every (scheduler, steps) of the job
 * checked against the model, so that a job the model cannot render stops here, before the
 * output file exists. */
static int check_against_model(sd_run_ctx *ctx, const sd_model_files *model) {
  const sd_job_info *info = ctx->info;
  int factor = 1 << (model->vae.num_levels - 1);
  sd_render_shape *shape = &ctx->plan.shape;
  shape->width = info->width ? info->width : model->unet.sample_size * factor;
  shape->height = info->height ? info->height : model->unet.sample_size * factor;
  shape->latent_channels = model->vae.latent_channels;
  shape->latent_h = shape->height / factor;
  shape->latent_w = shape->width / factor;

  sd_scheduler_kind default_kind;
  if (sd_scheduler_kind_from_config(&model->scheduler, &default_kind) < 0)
    return sd_error_context("%s: the model's scheduler config", info->model);
  ctx->scheduler_names = calloc((size_t)info->n_schedulers, sizeof *ctx->scheduler_names);
  if (!ctx->scheduler_names)
    return SD_ERROR("out of memory");
  for (int s = 0; s < info->n_schedulers; s++) {
    sd_scheduler_kind kind = info->schedulers[s] == SD_JOB_SCHEDULER_DEFAULT
                                 ? default_kind
                                 : (sd_scheduler_kind)info->schedulers[s];
    ctx->scheduler_names[s] = sd_scheduler_kind_name(kind);
    for (int t = 0; t < info->n_steps; t++) {
      sd_txt2img_batch batch = {shape->width, shape->height, info->steps[t],
                                kind,         info->karras,  info->rng};
      if (sd_render_check_model(model, &batch, info->n_images > 0) < 0)
        return sd_error_context(
            "%s: scheduler %s%s, %d steps, with the model %s", info->path, ctx->scheduler_names[s],
            info->schedulers[s] == SD_JOB_SCHEDULER_DEFAULT ? " (the model's default)" : "",
            info->steps[t], info->model);
    }
  }
  return 0;
}

/* The job's adapters as the output file records them: JSON {"loras": [{"file", "sha256",
 * "scales"}], "embeddings": [{"file", "sha256", "token"}]} with the files as written in the job;
 * "" when there are none. The SHA-256 values make a resume refuse a changed file. */
static int adapters_json(const sd_job_info *info, char **out) {
  *out = NULL;
  if (info->n_loras == 0 && info->n_embeddings == 0) {
    *out = strdup("");
    return *out ? 0 : SD_ERROR("out of memory");
  }
  cJSON *root = cJSON_CreateObject();
  cJSON *loras = cJSON_AddArrayToObject(root, "loras");
  cJSON *embeddings = cJSON_AddArrayToObject(root, "embeddings");
  char hex[65];
  int rc = root && loras && embeddings ? 0 : SD_ERROR("out of memory");
  for (int i = 0; i < info->n_loras && rc == 0; i++) {
    cJSON *l = cJSON_CreateObject();
    cJSON_AddItemToArray(loras, l);
    if ((rc = sd_sha256_file(info->loras[i].file, hex)) < 0)
      break;
    cJSON_AddStringToObject(l, "file", info->loras[i].file_written);
    cJSON_AddStringToObject(l, "sha256", hex);
    cJSON_AddItemToObject(l, "scales",
                          cJSON_CreateDoubleArray(info->loras[i].scales, info->loras[i].n_scales));
  }
  for (int i = 0; i < info->n_embeddings && rc == 0; i++) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddItemToArray(embeddings, e);
    if ((rc = sd_sha256_file(info->embeddings[i].file, hex)) < 0)
      break;
    cJSON_AddStringToObject(e, "file", info->embeddings[i].file_written);
    cJSON_AddStringToObject(e, "sha256", hex);
    if (info->embeddings[i].token)
      cJSON_AddStringToObject(e, "token", info->embeddings[i].token);
  }
  if (rc == 0 && !(*out = cJSON_PrintUnformatted(root)))
    rc = SD_ERROR("out of memory");
  cJSON_Delete(root);
  return rc;
}

/* The job's adapters checked against the model (keys, shapes, embedding widths) before the
 * output exists, with every scale of each LoRA's sweep at its first value. Consumes model's
 * tensor maps (sd_adapters_check). */
static int check_adapters(const sd_job_info *info, sd_model_files *model) {
  if (info->n_loras > SD_RENDER_MAX_ADAPTERS || info->n_embeddings > SD_RENDER_MAX_ADAPTERS)
    return SD_ERROR("%s: at most %d LoRAs and %d embeddings", info->path, SD_RENDER_MAX_ADAPTERS,
                    SD_RENDER_MAX_ADAPTERS);
  sd_lora_spec loras[SD_RENDER_MAX_ADAPTERS];
  sd_embedding_spec embeddings[SD_RENDER_MAX_ADAPTERS];
  for (int i = 0; i < info->n_loras; i++)
    loras[i] = (sd_lora_spec){info->loras[i].file, (float)info->loras[i].scales[0]};
  for (int i = 0; i < info->n_embeddings; i++)
    embeddings[i] = (sd_embedding_spec){info->embeddings[i].file, info->embeddings[i].token};
  if (sd_adapters_check(model, loras, info->n_loras, embeddings, info->n_embeddings) < 0)
    return sd_error_context("%s: adapters", info->path);
  return 0;
}

static int open_output(sd_run_ctx *ctx, const char *model_identity) {
  const sd_job_info *info = ctx->info;
  const char **prompts = malloc((size_t)info->n_prompts * sizeof *prompts);
  if (!prompts)
    return SD_ERROR("out of memory for %" PRId64 " prompts", info->n_prompts);
  for (int64_t i = 0; i < info->n_prompts; i++)
    prompts[i] = sd_job_prompt(ctx->job, i);
  const sd_render_shape *shape = &ctx->plan.shape;
  sd_output_spec spec = {
      .path = info->output,
      .n_items = info->n_items,
      .width = shape->width,
      .height = shape->height,
      .latent_channels = shape->latent_channels,
      .latent_h = shape->latent_h,
      .latent_w = shape->latent_w,
      .save_latents = info->save_latents,
      .job_yaml = sd_job_yaml_text(ctx->job, NULL),
      .job_hash = ctx->plan.job_hash,
      .model_path = info->model,
      .model_identity = model_identity,
      .adapters = ctx->adapters,
      .n_prompts = info->n_prompts,
      .prompts = prompts,
      .job_path = info->path,
      .item_meta = item_meta,
      .item_meta_ctx = ctx,
      .schema_version = ctx->opts->output_schema,
      .n_inputs = ctx->inputs.n,
      .input_files = ctx->inputs.files,
      .input_sha256 = ctx->inputs.sha256_ptrs,
  };
  struct stat st;
  if (ctx->opts->log && stat(info->output, &st) != 0) {
    /* a new file: schema 2 and later write every image chunk now, which takes a while for big
     * jobs */
    int version = spec.schema_version ? spec.schema_version : SD_OUTPUT_SCHEMA_VERSION;
    char size[32];
    sd_output_format_bytes(sd_output_estimated_bytes(&spec, version), size, sizeof size);
    fprintf(ctx->opts->log, "sdbatch run: creating %s (schema %d, %" PRId64 " items, about %s%s)\n",
            info->output, version, info->n_items, size,
            version >= 2 ? ", written in full now" : ", reserved and filled as items finish");
    fflush(ctx->opts->log);
  }
  int rc = sd_output_open(&spec, &ctx->output);
  free(prompts);
  return rc;
}

/* Everything rank 0 checks before any rank starts work. */
static int prepare(sd_run_ctx *ctx) {
  const sd_run_options *opts = ctx->opts;
  /* rank 0 of a larger world polls and acts on every signal itself; alone, it learns of one only
   * between batches, so a second one ends it at once */
  bool alone = ctx->cluster->size == 1;
  SD_TRY(sd_stop_signals_install(
      alone, alone && opts->log
                 ? "sdbatch run: stopping after the current batch (signal again to stop at once)\n"
                 : NULL));
  SD_TRY(sd_job_load(opts->job_path, &ctx->job));
  ctx->info = sd_job_get_info(ctx->job);
  const sd_job_info *info = ctx->info;
  SD_TRY(sd_job_check_paths(ctx->job));
  int workers = ctx->cluster->size - 1;
  if (info->ranks_per_image > 1 && workers < info->ranks_per_image)
    return SD_ERROR("%s: ranks_per_image: %d needs at least %d worker ranks besides rank 0 "
                    "(mpirun -n %d or more); this run has %d",
                    info->path, info->ranks_per_image, info->ranks_per_image,
                    info->ranks_per_image + 1, workers);
  ctx->plan.ranks_per_image = info->ranks_per_image;
  ctx->plan.cfg_parallel = info->cfg_parallel;
  ctx->plan.batch_size = info->batch_size;
  if (info->n_prompts > INT32_MAX)
    return SD_ERROR("%s: %" PRId64 " prompts: the output file indexes at most %d", info->path,
                    info->n_prompts, INT32_MAX);
  sd_model_files *model = NULL;
  if (sd_model_files_open(info->model, info->model_config, NULL, &model) < 0)
    return sd_error_context("%s: model", info->path);
  char identity[65];
  int rc = check_against_model(ctx, model);
  if (rc == 0)
    rc = sd_run_inputs_shape(ctx->job, model, &ctx->plan.shape);
  if (rc == 0)
    rc = sd_model_identity(model, identity);
  if (rc == 0 && !opts->null_model)
    rc = check_adapters(info, model);
  sd_model_files_close(model);
  SD_TRY(rc);
  SD_TRY(adapters_json(info, &ctx->adapters));
  SD_TRY(sd_run_inputs_hash(ctx->job, opts->log, &ctx->inputs));
  sd_run_job_hash(info, opts->null_model, ctx->plan.job_hash);
  SD_TRY(open_output(ctx, opts->null_model ? "null model (sdbatch run --null-model)" : identity));
  int64_t done = sd_output_count(ctx->output, SD_ITEM_DONE);
  SD_TRY(sd_progress_init(&ctx->progress, opts->log, ctx->cluster->size, info->n_items, done));
  int64_t damaged = sd_output_damaged_items(ctx->output);
  if (damaged > 0)
    sd_progress_note(&ctx->progress,
                     "%s: %" PRId64 " done or failed items are damaged (a row that fails its "
                     "checks or an image or latents chunk that fails its checksum; `sdbatch "
                     "inspect --verify` lists them): rendering them again",
                     info->output, damaged);
  sd_dispatch_init(&ctx->dispatch, ctx->job, ctx->output, info->batch_size);
  ctx->last_flush = sd_progress_now();
  ctx->plan.action = done < info->n_items ? SD_PLAN_RUN : SD_PLAN_NOTHING;
  return 0;
}

static int write_to_output(void *ctx, const sd_item_result *result) {
  return sd_run_write_result(ctx, 0, result);
}

/* One rank: rank 0 renders every batch itself. */
static int run_alone(sd_run_ctx *ctx) {
  const sd_job_info *info = ctx->info;
  sd_engine_params params;
  sd_run_engine_params(ctx->opts, ctx->cluster, info, &params);
  sd_renderer *renderer = NULL;
  SD_TRY(sd_renderer_open(ctx->job, &ctx->plan.shape, ctx->opts->null_model ? NULL : &params, NULL,
                          info->batch_size, &renderer));
  sd_progress_note(&ctx->progress, "rank 0 on %s: %s; %" PRId64 " items to render",
                   ctx->cluster->host, sd_renderer_describe(renderer), ctx->progress.to_render);
  int64_t *indices = malloc((size_t)info->batch_size * sizeof *indices);
  int rc = indices ? 0 : SD_ERROR("out of memory");
  while (rc == 0 && !sd_stop_signal()) {
    int n = 0;
    rc = sd_dispatch_next(&ctx->dispatch, indices, &n);
    if (rc < 0 || n == 0)
      break;
    double start = sd_progress_now();
    rc = sd_renderer_render(renderer, indices, n, write_to_output, ctx);
    /* the next results are a whole batch away: a slow batch's results are flushed now */
    if (rc == 0)
      rc = sd_run_flush(ctx, sd_progress_now() - start >= SD_RUN_FLUSH_INTERVAL_S / 2);
  }
  free(indices);
  sd_renderer_close(renderer);
  return rc;
}

static int run_rank0(const sd_run_options *opts, const sd_cluster *cluster, sd_run_report *report,
                     bool *in_run) {
  sd_run_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.opts = opts;
  ctx.cluster = cluster;
  int rc = prepare(&ctx);
  if (rc < 0)
    ctx.plan.action = SD_PLAN_STOP;
  if (cluster->size > 1 && sd_cluster_bcast(&ctx.plan, sizeof ctx.plan) < 0) {
    report->abort_world = true;
    rc = -1;
  }
  if (rc == 0 && ctx.plan.action == SD_PLAN_NOTHING)
    sd_progress_note(&ctx.progress, "all %" PRId64 " items of %s are done already",
                     ctx.info->n_items, ctx.info->output);
  *in_run = rc == 0 && ctx.plan.action == SD_PLAN_RUN;
  if (*in_run && cluster->size > 1 &&
      sd_run_groups_form(0, cluster->size, ctx.plan.ranks_per_image, ctx.plan.cfg_parallel,
                         opts->group_timeout_s, &ctx.groups, &ctx.comms) < 0) {
    /* the workers wait in the same collectives: they cannot be told to stop */
    report->abort_world = true;
    rc = -1;
  }
  if (*in_run && rc == 0)
    rc = cluster->size == 1 ? run_alone(&ctx) : sd_run_coordinate(&ctx, report);

  char error[2048] = "";
  if (rc < 0)
    snprintf(error, sizeof error, "%s", sd_error_message());
  if (ctx.output) {
    int64_t failed = sd_output_count(ctx.output, SD_ITEM_FAILED);
    int flushed = sd_run_flush(&ctx, true);
    if (sd_output_close(ctx.output) < 0 || flushed < 0) {
      if (rc == 0)
        snprintf(error, sizeof error, "%s", sd_error_message());
      rc = -1;
    }
    if (!report->signal)
      report->signal = sd_stop_signal();
    if (ctx.progress.per_rank)
      sd_progress_summary(&ctx.progress, report->signal);
    if (rc == 0 && report->signal)
      report->outcome = SD_RUN_INTERRUPTED;
    else if (rc == 0 && failed > 0)
      report->outcome = SD_RUN_ITEMS_FAILED;
  }
  sd_progress_free(&ctx.progress);
  sd_run_group_comms_free(&ctx.comms);
  sd_run_groups_free(&ctx.groups);
  free(ctx.scheduler_names);
  free(ctx.adapters);
  sd_run_inputs_free(&ctx.inputs);
  sd_job_free(ctx.job);
  if (rc < 0 && strcmp(sd_error_message(), error) != 0)
    sd_error_set(__FILE__, __LINE__, "%s", error);
  return rc;
}

static int exit_status(int rc, const sd_run_report *report) {
  if (rc < 0)
    return 1;
  switch (report->outcome) {
  case SD_RUN_COMPLETE:
    return 0;
  case SD_RUN_ITEMS_FAILED:
    return 3;
  case SD_RUN_INTERRUPTED:
    return 128 + report->signal;
  }
  return 1;
}

int sd_run(const sd_run_options *opts, const sd_cluster *cluster, sd_run_report *report) {
  memset(report, 0, sizeof *report);
  bool in_run = false;
  int rc = cluster->rank == 0 ? run_rank0(opts, cluster, report, &in_run)
                              : sd_run_worker(opts, cluster, report, &in_run);
  report->exit_status = exit_status(rc, report);
  if (cluster->size > 1 && in_run && !report->abort_world) {
    /* every rank ends with rank 0's status, so the launcher reports the run's */
    char error[2048];
    snprintf(error, sizeof error, "%s", sd_error_message());
    int32_t status = report->exit_status;
    if (sd_cluster_bcast(&status, sizeof status) < 0) {
      report->abort_world = true;
      report->exit_status = 1;
      return -1;
    }
    report->exit_status = status;
    if (rc < 0)
      sd_error_set(__FILE__, __LINE__, "%s", error);
  }
  return rc;
}
