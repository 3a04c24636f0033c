/* Progress lines and the run summary (progress.h). */
#include "progress.h"

#include "../kernels/error.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* A log file gets a line this often; a terminal's line is redrawn at most this often. */
#define LOG_INTERVAL_S 5.0
#define TTY_INTERVAL_S 0.1
/* Failure reasons printed one by one before they are only counted. */
#define FAILURES_SHOWN 10
/* Ranks listed one by one in a progress line; more are summarised as min/max. */
#define RANKS_LISTED 16

double sd_progress_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int sd_progress_init(sd_progress *p, FILE *out, int n_ranks, int64_t n_items, int64_t skipped) {
  memset(p, 0, sizeof *p);
  p->per_rank = calloc((size_t)n_ranks, sizeof *p->per_rank);
  if (!p->per_rank)
    return SD_ERROR("out of memory for the progress counts of %d ranks", n_ranks);
  p->out = out;
  p->tty = out && isatty(fileno(out));
  p->n_ranks = n_ranks;
  p->n_items = n_items;
  p->skipped = skipped;
  p->to_render = n_items - skipped;
  p->start = sd_progress_now();
  p->last_print = p->start;
  return 0;
}

void sd_progress_free(sd_progress *p) {
  free(p->per_rank);
  p->per_rank = NULL;
}

static void format_duration(double seconds, char *buf, size_t size) {
  long s = (long)(seconds + 0.5);
  if (s >= 3600)
    snprintf(buf, size, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else if (s >= 60)
    snprintf(buf, size, "%ldm%02lds", s / 60, s % 60);
  else
    snprintf(buf, size, "%lds", s);
}

/* "1:40 2:41" for the ranks that render (rank 0 only when it renders itself). */
static void format_ranks(const sd_progress *p, char *buf, size_t size) {
  int first = p->n_ranks > 1 ? 1 : 0;
  size_t used = 0;
  buf[0] = '\0';
  if (p->n_ranks - first > RANKS_LISTED) {
    int64_t lo = INT64_MAX, hi = 0;
    for (int r = first; r < p->n_ranks; r++) {
      lo = p->per_rank[r] < lo ? p->per_rank[r] : lo;
      hi = p->per_rank[r] > hi ? p->per_rank[r] : hi;
    }
    snprintf(buf, size, "%d ranks, %" PRId64 " to %" PRId64 " items each", p->n_ranks - first, lo,
             hi);
    return;
  }
  for (int r = first; r < p->n_ranks && used + 1 < size; r++) {
    int n =
        snprintf(buf + used, size - used, "%s%d:%" PRId64, r > first ? " " : "", r, p->per_rank[r]);
    if (n < 0)
      break;
    used += (size_t)n;
  }
}

static double rate(const sd_progress *p, double now) {
  int64_t returned = p->rendered + p->failed;
  /* from the first result on: startup (loading the model) is not rendering */
  if (returned < 2 || now - p->first_result <= 0.0)
    return 0.0;
  return (double)(returned - 1) / (now - p->first_result);
}

static void print_line(sd_progress *p, double now) {
  int64_t returned = p->rendered + p->failed;
  double r = rate(p, now);
  char eta[32] = "?";
  if (r > 0.0)
    format_duration((double)(p->to_render - returned) / r, eta, sizeof eta);
  char ranks[512];
  format_ranks(p, ranks, sizeof ranks);
  double pct = p->to_render ? 100.0 * (double)returned / (double)p->to_render : 100.0;
  fprintf(p->out,
          "%ssdbatch run: %" PRId64 "/%" PRId64 " (%.1f%%), %" PRId64
          " failed, %.2f images/s, ETA %s | ranks %s%s",
          p->tty ? "\r" : "", returned, p->to_render, pct, p->failed, r, eta, ranks,
          p->tty ? "\033[K" : "\n");
  fflush(p->out);
  p->last_print = now;
}

void sd_progress_tick(sd_progress *p) {
  if (!p->out)
    return;
  double now = sd_progress_now();
  if (now - p->last_print >= (p->tty ? TTY_INTERVAL_S : LOG_INTERVAL_S))
    print_line(p, now);
}

void sd_progress_note(sd_progress *p, const char *fmt, ...) {
  if (!p->out)
    return;
  if (p->tty)
    fputs("\r\033[K", p->out);
  fputs("sdbatch run: ", p->out);
  va_list args;
  va_start(args, fmt);
  vfprintf(p->out, fmt, args);
  va_end(args);
  fputc('\n', p->out);
  fflush(p->out);
}

void sd_progress_retried(sd_progress *p) {
  if (p->failed > 0)
    p->failed--;
}

void sd_progress_item(sd_progress *p, int rank, int64_t index, bool done, const char *reason) {
  double now = sd_progress_now();
  if (p->rendered + p->failed == 0)
    p->first_result = now;
  if (done)
    p->rendered++;
  else
    p->failed++;
  if (rank >= 0 && rank < p->n_ranks)
    p->per_rank[rank]++;
  if (!p->out)
    return;
  if (!done && p->failures_shown < FAILURES_SHOWN) {
    p->failures_shown++;
    sd_progress_note(p, "item %" PRId64 " failed (rank %d): %s%s", index, rank, reason,
                     p->failures_shown == FAILURES_SHOWN ? " (further failures are counted only)"
                                                         : "");
  }
  bool last = p->rendered + p->failed == p->to_render;
  if (p->tty && (last || now - p->last_print >= TTY_INTERVAL_S))
    print_line(p, now);
  else
    sd_progress_tick(p);
}

static const char *signal_name(int sig) {
  switch (sig) {
  case SIGINT:
    return "SIGINT";
  case SIGTERM:
    return "SIGTERM";
  default:
    return "a signal";
  }
}

void sd_progress_summary(sd_progress *p, int interrupted_by) {
  if (!p->out)
    return;
  double now = sd_progress_now();
  if (p->tty && p->rendered + p->failed > 0)
    print_line(p, now);
  if (p->tty)
    fputc('\n', p->out);
  double wall = now - p->start;
  double per_s = wall > 0.0 ? (double)(p->rendered + p->failed) / wall : 0.0;
  char ranks[512];
  format_ranks(p, ranks, sizeof ranks);
  struct rusage usage;
  long peak_kib = getrusage(RUSAGE_SELF, &usage) == 0 ? usage.ru_maxrss : 0;
  int64_t pending = p->n_items - p->skipped - p->rendered - p->failed;
  if (interrupted_by)
    fprintf(p->out,
            "sdbatch run: interrupted by %s; %" PRId64
            " items left pending (run the same command again to resume them)\n",
            signal_name(interrupted_by), pending);
  fprintf(p->out,
          "sdbatch run: summary: %" PRId64 " rendered, %" PRId64 " failed, %" PRId64
          " skipped (already done), %" PRId64 " of %" PRId64 " items pending; %.1f s wall, %.2f "
          "images/s\n",
          p->rendered, p->failed, p->skipped, pending, p->n_items, wall, per_s);
  fprintf(p->out, "sdbatch run: per rank: %s; rank 0 peak memory %.1f MiB\n", ranks,
          (double)peak_kib / 1024.0);
  fflush(p->out);
}
