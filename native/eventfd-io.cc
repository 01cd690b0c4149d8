// The eventfd system calls behind every ring and drain (eventfd-io.h). They go through
// syscall(2), not glibc's read() and write(): those are cancellation points, and in a process with
// more than one thread (Node always has several) glibc brackets each call with switching
// asynchronous cancellation on and off. That costs about 25 ns per call here, a fifth of the
// write itself. Nothing in this addon cancels threads.
#include "eventfd-io.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace ivshmem {

int EventfdRead(int fd, uint64_t* value) {
  *value = 0;
  ssize_t n;
  do {
    n = syscall(SYS_read, fd, value, sizeof *value);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) return errno;
  return 0;
}

int EventfdAdd(int fd, uint64_t value) {
  ssize_t n;
  do {
    n = syscall(SYS_write, fd, &value, sizeof value);
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
