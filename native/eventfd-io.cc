// The eventfd system calls behind every ring and drain (eventfd-io.h).
#include "eventfd-io.h"

#include <unistd.h>

#include <cerrno>

namespace ivshmem {

int EventfdRead(int fd, uint64_t* value) {
  *value = 0;
  ssize_t n;
  do {
    n = read(fd, value, sizeof *value);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) return errno;
  return 0;
}

int EventfdAdd(int fd, uint64_t value) {
  ssize_t n;
  do {
    n = write(fd, &value, sizeof value);
  } while (n < 0 && errno == EINTR);
  return n < 0 ? errno : 0;
}

int EventfdWriteOne(int fd) {
  // EAGAIN: only a hostile peer gets the counter to its maximum; the doorbell is not lost and
  // must not block or throw.
  int err = EventfdAdd(fd, 1);
  return err == EAGAIN ? 0 : err;
}

}  // namespace ivshmem
