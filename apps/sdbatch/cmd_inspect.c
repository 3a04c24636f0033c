/* sdbatch inspect: a summary of a job's output file (schema, job, model, size, progress, the
 * sweep's axes, the first failures). Reads the file only; works while a run is writing it. */
#include "cli.h"

#include "coordinator/contact_sheet.h"
#include "coordinator/output.h"
#include "kernels/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Axis values listed before "..." */
#define LISTED_VALUES 12
/* Failure reasons shown */
#define SHOWN_FAILURES 5
/* Damaged items listed by --verify (all are counted) */
#define SHOWN_DAMAGED 1000
/* Records read per block by --verify */
#define VERIFY_BLOCK 4096

static const char *const inspect_usage =
    "Usage: sdbatch inspect OUT.h5 [--verify]\n"
    "\n"
    "Prints a summary of a job's output file: schema version, the job file and its hash, the\n"
    "model, the image size, how many items are done, failed and pending, the values each sweep\n"
    "axis takes (prompt, seed, guidance_scale, steps, scheduler) and the first failure reasons.\n"
    "The file is only read; it may be inspected while `sdbatch run` writes it (the counts are as\n"
    "of the run's last flush). Exit status 0, or 1 with an error naming the file (or, with\n"
    "--verify, when any item is damaged).\n";

static void print_axis(const sd_sweep *sweep, sd_axis axis) {
  int n = sd_sweep_axis_count(sweep, axis);
  bool truncated = sd_sweep_axis_truncated(sweep, axis);
  printf("  %-15s %s%d value%s:", sd_axis_name(axis), truncated ? "more than " : "", n,
         n == 1 && !truncated ? "" : "s");
  for (int i = 0; i < n && i < LISTED_VALUES; i++) {
    char value[64];
    sd_sweep_axis_value_text(sweep, axis, i, value, sizeof value);
    printf("%s %s", i ? "," : "", value);
  }
  if (n > LISTED_VALUES || truncated)
    printf(", ...");
  printf("\n");
}

static int print_summary(const char *path, sd_output_reader *reader, const sd_sweep *sweep) {
  const sd_output_info *info = sd_output_reader_info(reader);
  int64_t done = sd_sweep_status_count(sweep, SD_ITEM_DONE);
  int64_t failed = sd_sweep_status_count(sweep, SD_ITEM_FAILED);
  int64_t pending = sd_sweep_status_count(sweep, SD_ITEM_PENDING);
  printf("file            %s\n", path);
  printf("schema          version %d (written by sdbatch %s)\n", info->schema_version,
         info->sdbatch_version);
  printf("job             %s\n", info->job_path[0] ? info->job_path : "(path not recorded)");
  printf("job hash        %s\n", info->job_hash);
  printf("model           %s\n", info->model_path);
  printf("model identity  %s\n", info->model_identity);
  if (info->adapters[0])
    printf("adapters        %s\n", info->adapters);
  printf("created         %s\n", info->created);
  printf("updated         %s\n", info->updated[0] ? info->updated : "(no item flushed yet)");
  if (info->save_latents)
    printf("size            %dx%d pixels, latents %dx%dx%d\n", info->width, info->height,
           info->latent_channels, info->latent_h, info->latent_w);
  else
    printf("size            %dx%d pixels, latents not saved\n", info->width, info->height);
  printf("items           %lld total: %lld done, %lld failed, %lld pending (%.1f%% done)\n",
         (long long)info->n_items, (long long)done, (long long)failed, (long long)pending,
         100.0 * (double)done / (double)info->n_items);
  int64_t damaged = sd_sweep_status_count(sweep, SD_SWEEP_DAMAGED);
  if (damaged > 0) {
    const int64_t *indices = NULL;
    int kept = sd_sweep_first_damaged(sweep, &indices);
    printf("damaged         %lld items whose rows fail the checks (left out of the counts "
           "above; first %d):\n",
           (long long)damaged, kept);
    for (int k = 0; k < kept; k++) {
      sd_output_record rec;
      SD_TRY(sd_output_read_records(reader, indices[k], 1, &rec));
      printf("  item %lld: %s\n", (long long)indices[k], rec.problem);
    }
  }
  printf("prompts         %lld\n", (long long)info->n_prompts);
  if (info->n_inputs > 0) {
    sd_output_input first;
    SD_TRY(sd_output_read_input(reader, 0, &first));
    printf("inputs          %lld (input images with their SHA-256; the first: %s)\n",
           (long long)info->n_inputs, first.files[SD_OUTPUT_INPUT_IMAGE]);
    sd_output_input_free(&first);
  }
  if (info->metadata_complete)
    printf("sweep           (all %lld items' metadata, written at creation)\n",
           (long long)info->n_items);
  else
    printf("sweep           (the %lld done or failed items; pending items' metadata is written "
           "with their results)\n",
           (long long)sd_sweep_known_items(sweep));
  if (sd_sweep_known_items(sweep) > 0) {
    const sd_axis order[] = {SD_AXIS_PROMPT,   SD_AXIS_SEED,       SD_AXIS_GUIDANCE,
                             SD_AXIS_STEPS,    SD_AXIS_SCHEDULER,  SD_AXIS_INPUT,
                             SD_AXIS_STRENGTH, SD_AXIS_NOISE_LEVEL};
    /* input, strength and noise level only for a file with inputs */
    int shown = info->n_inputs > 0 ? SD_AXIS_COUNT : SD_AXIS_COUNT - 3;
    for (int k = 0; k < shown; k++)
      print_axis(sweep, order[k]);
  }
  if (failed > 0) {
    const int64_t *indices = NULL;
    int kept = sd_sweep_first_failures(sweep, &indices);
    int shown = kept < SHOWN_FAILURES ? kept : SHOWN_FAILURES;
    printf("failures        first %d of %lld:\n", shown, (long long)failed);
    for (int k = 0; k < shown; k++) {
      char reason[SD_OUTPUT_FAILURE_LEN];
      if (sd_output_read_failure(reader, indices[k], reason) < 0)
        printf("  item %lld: (damaged reason: %s)\n", (long long)indices[k], sd_error_message());
      else
        printf("  item %lld: %s\n", (long long)indices[k], reason);
    }
  }
  return 0;
}

/* --verify: every item read back (its row and its image and latents chunks), and every prompt;
 * damaged items and prompts listed by index. Returns how many are damaged, or -1 on an error. */
static int64_t verify_items(sd_output_reader *reader) {
  const sd_output_info *info = sd_output_reader_info(reader);
  printf("verify          reading every item back (%s)\n",
         info->schema_version >= 2
             ? "schema 2 and later: each image and latents chunk is checked against its "
               "Fletcher32 checksum, each done row against its CRC-32"
             : "schema 1 has no checksums: only rows that fail the range checks and chunks that "
               "cannot be read at all are found");
  if (sd_output_verify_chunk_index(reader) < 0)
    return -1;
  sd_output_record *records = malloc(VERIFY_BLOCK * sizeof *records);
  if (!records)
    return SD_ERROR("out of memory");
  static const char *const status_names[] = {"pending", "done", "failed"};
  int64_t damaged = 0;
  int rc = 0;
  for (int64_t start = 0; rc == 0 && start < info->n_items; start += VERIFY_BLOCK) {
    int64_t count = info->n_items - start < VERIFY_BLOCK ? info->n_items - start : VERIFY_BLOCK;
    rc = sd_output_read_records(reader, start, count, records);
    for (int64_t i = 0; rc == 0 && i < count; i++) {
      char problem[SD_OUTPUT_PROBLEM_LEN];
      int got = sd_output_verify_item(reader, start + i, &records[i], problem);
      if (got < 0) {
        rc = -1;
      } else if (got == 1 && damaged++ < SHOWN_DAMAGED) {
        const char *status =
            records[i].status <= SD_ITEM_FAILED ? status_names[records[i].status] : "status ?";
        printf("  item %lld (%s): %s\n", (long long)(start + i), status, problem);
      }
    }
  }
  free(records);
  if (rc < 0)
    return -1;
  /* the prompts (schema 2: chunks with a checksum), which export needs for every item */
  int64_t damaged_prompts = 0;
  for (int64_t k = 0; k < info->n_prompts; k++) {
    char *prompt = NULL;
    if (sd_output_read_prompt(reader, k, &prompt) < 0 && damaged_prompts++ < SHOWN_DAMAGED)
      printf("  prompt %lld: %s\n", (long long)k, sd_error_message());
    free(prompt);
  }
  if (damaged > SHOWN_DAMAGED)
    printf("  ... (%lld more)\n", (long long)(damaged - SHOWN_DAMAGED));
  printf("verified        %lld items: %lld damaged", (long long)info->n_items, (long long)damaged);
  if (damaged_prompts > 0)
    printf("; %lld of %lld prompts damaged (export skips the items that use them; a resume "
           "cannot rewrite them)",
           (long long)damaged_prompts, (long long)info->n_prompts);
  printf("%s\n", damaged ? " (a resume renders damaged done and failed items again; export skips "
                           "them)"
                         : "");
  return damaged + damaged_prompts;
}

int cmd_inspect(int argc, char **argv) {
  const char *cmd = "inspect";
  const char *path = NULL;
  bool verify = false;
  const cli_option options[] = {
      CLI_OPTION("verify", NULL, CLI_FLAG, &verify,
                 "read every item (row, image and latents chunks) and prompt back and\n"
                 "list the damaged ones by index; exit status 1 when any is (schema 2\n"
                 "files carry checksums; schema 1 files only show unreadable chunks and\n"
                 "bad rows)"),
      {0},
  };
  const cli_command command = {.name = cmd,
                               .usage = inspect_usage,
                               .options = options,
                               .min_operands = 1,
                               .max_operands = 1,
                               .operand_name = "the output file (OUT.h5)",
                               .operands = &path};
  int parsed = cli_parse(&command, argc, argv, true);
  if (parsed != CLI_PARSED)
    return cli_parse_exit_status(parsed);

  sd_output_reader *reader = NULL;
  sd_sweep *sweep = NULL;
  int status = 0;
  if (sd_output_reader_open(path, &reader) < 0)
    status = cli_report_error(cmd);
  else if (sd_sweep_scan(reader, &sweep) < 0 || print_summary(path, reader, sweep) < 0)
    status = (sd_error_context("%s", path), cli_report_error(cmd));
  if (status == 0 && verify) {
    fflush(stdout);
    int64_t damaged = verify_items(reader);
    if (damaged < 0)
      status = (sd_error_context("%s", path), cli_report_error(cmd));
    else if (damaged > 0)
      status = 1;
  }
  sd_sweep_free(sweep);
  sd_output_reader_close(reader);
  return status;
}
