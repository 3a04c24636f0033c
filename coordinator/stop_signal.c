/* Recording SIGTERM / SIGINT (stop_signal.h). */
#include "stop_signal.h"

#include "../kernels/error.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t first_signal;
static volatile sig_atomic_t signal_count;
static volatile sig_atomic_t exit_on_second_signal;
static const char *first_signal_note;

static void write_stderr(const char *text) {
  size_t left = strlen(text);
  while (left > 0) {
    ssize_t n = write(STDERR_FILENO, text, left);
    if (n <= 0)
      return;
    text += n;
    left -= (size_t)n;
  }
}

static void on_stop_signal(int sig) {
  int saved_errno = errno;
  if (!first_signal)
    first_signal = sig;
  if (signal_count < 1000)
    signal_count++;
  if (signal_count == 1 && first_signal_note)
    write_stderr(first_signal_note);
  if (signal_count >= 2 && exit_on_second_signal) {
    write_stderr("sdbatch run: second signal: stopping now; the output file keeps what was "
                 "flushed, the rest stays pending\n");
    _exit(128 + sig);
  }
  errno = saved_errno;
}

int sd_stop_signals_install(bool exit_on_second, const char *first_note) {
  exit_on_second_signal = exit_on_second;
  first_signal_note = first_note;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
    return SD_ERROR("sigaction(SIGTERM/SIGINT): %s", strerror(errno));
  return 0;
}

int sd_stop_signal(void) {
  return first_signal;
}

int sd_stop_signal_count(void) {
  return signal_count;
}
