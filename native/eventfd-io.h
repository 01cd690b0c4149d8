// The eventfd system calls themselves, with no JavaScript in sight: both addons (the N-API one
// and the fast-call one, native/fast/) ring and drain through these, so the two paths cannot
// differ in what they do to the fd.
#pragma once

#include <cstdint>

namespace ivshmem {

// One read(2) of an eventfd's counter, which resets it; EINTR is retried. Returns 0 with the count
// in *value (0 when nothing had arrived: EAGAIN), or the errno of a failed read.
int EventfdRead(int fd, uint64_t* value);
// One write(2) of 1 to an eventfd, EINTR retried. Returns 0, or the errno of a failed write.
// EAGAIN counts as success: the counter is at its maximum, so a wake-up is pending already.
int EventfdWriteOne(int fd);
// One write(2) of `value`, EINTR retried. Returns 0, or the errno of a failed write (EAGAIN too).
int EventfdAdd(int fd, uint64_t value);

}  // namespace ivshmem
