/* SIGTERM and SIGINT during a run (Slurm sends SIGTERM on preemption and at the time limit, a
 * terminal sends SIGINT). The handler only records the signal; the run loops look at it between
 * messages or batches, flush the output file and stop cleanly, leaving the items not rendered
 * pending for a resume.
 *
 * A rank busy rendering notices the first signal only when its batch ends. With
 * exit_on_second, a second signal ends the process at once (_exit(128 + signal)): the output
 * file is then as of its last flush, which a resume accepts (a flush is what makes items
 * durable, see output.h). */
#ifndef SD_RUN_STOP_SIGNAL_H
#define SD_RUN_STOP_SIGNAL_H

#include <stdbool.h>

/* first_note: written to stderr when the first signal arrives (NULL: nothing). */
int sd_stop_signals_install(bool exit_on_second, const char *first_note);
/* The first signal received (0: none yet). */
int sd_stop_signal(void);
/* How many have been received. */
int sd_stop_signal_count(void);

#endif
