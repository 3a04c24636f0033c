/* SD_MPI_CHECK: every MPI call of sdbatch goes through it. On failure it records the call, the
 * source location, the rank and MPI's own message (error.h) and returns -1 from the enclosing
 * function. The world communicator returns errors (MPI_ERRORS_RETURN) so that they reach it. */
#ifndef SD_MPI_CHECK_H
#define SD_MPI_CHECK_H

#include <mpi.h>

int sd_mpi_error(const char *call, int code, const char *src_file, int src_line);

#define SD_MPI_CHECK(call)                                                                         \
  do {                                                                                             \
    int sd_mpi_rc_ = (call);                                                                       \
    if (sd_mpi_rc_ != MPI_SUCCESS)                                                                 \
      return sd_mpi_error(#call, sd_mpi_rc_, __FILE__, __LINE__);                                  \
  } while (0)

#endif
