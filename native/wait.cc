// The ways to wait for eventfds without the event loop: blocking in poll(2) on a thread of its
// own (a worker: the "vCPU thread" pattern), blocking in read(2) itself when there is one fd (one
// system call per wake-up, as a C vCPU thread has it), and spinning on non-blocking reads. Each
// drains the eventfd that fired before returning.
#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <vector>

#include "common.h"

namespace ivshmem {
namespace {

constexpr size_t kMaxFds = 4096;

struct Args {
  int32_t* fds;
  size_t count;
  double* out;  // out[0] receives the drained counter; may be null
};

Args ReadArgs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Int32Array fds = ArgInt32Array(info, 0, "fds");
  if (fds.ElementLength() == 0 || fds.ElementLength() > kMaxFds) ThrowErrno(env, EINVAL, "poll");
  double* out = info.Length() > 2 && info[2].IsTypedArray() ? ArgFloat64Array(info, 2, "out").Data() : nullptr;
  return {fds.Data(), fds.ElementLength(), out};
}

// waitReadable(fds: Int32Array, timeoutMs, out?: Float64Array) → index of the eventfd drained,
// or -1 when the timeout passed (timeoutMs < 0 waits for ever).
Napi::Value WaitReadable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a = ReadArgs(info);
  int32_t timeout = ArgInt32(info, 1, "timeoutMs");
  std::vector<pollfd> polls(a.count);
  for (size_t i = 0; i < a.count; i++) polls[i] = {a.fds[i], POLLIN, 0};
  const int64_t deadline = timeout < 0 ? -1 : NowMs() + timeout;
  for (;;) {
    int left = deadline < 0 ? -1 : static_cast<int>(std::max<int64_t>(0, deadline - NowMs()));
    int r = poll(polls.data(), polls.size(), left);
    if (r < 0) {
      if (errno == EINTR) continue;
      ThrowErrno(env, errno, "poll");
    }
    if (r == 0) return Napi::Number::New(env, -1);
    for (size_t i = 0; i < a.count; i++) {
      if (polls[i].revents & (POLLERR | POLLNVAL)) ThrowErrno(env, polls[i].revents & POLLNVAL ? EBADF : EIO, "poll");
      if ((polls[i].revents & POLLIN) == 0) continue;
      uint64_t value;
      int err = EventfdRead(a.fds[i], &value);
      if (err != 0) ThrowErrno(env, err, "read");
      if (value == 0) continue;  // drained by someone else meanwhile
      if (a.out != nullptr) a.out[0] = static_cast<double>(value);
      return Napi::Number::New(env, static_cast<double>(i));
    }
  }
}

// spinReadable(fds: Int32Array, maxRounds, out?: Float64Array) → index of the eventfd drained,
// or -1 after maxRounds rounds of non-blocking reads over all fds.
Napi::Value SpinReadable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a = ReadArgs(info);
  int32_t rounds = ArgInt32(info, 1, "maxRounds");
  for (int32_t round = 0; round < rounds; round++) {
    for (size_t i = 0; i < a.count; i++) {
      uint64_t value;
      int err = EventfdRead(a.fds[i], &value);
      if (err != 0) ThrowErrno(env, err, "read");
      if (value == 0) continue;
      if (a.out != nullptr) a.out[0] = static_cast<double>(value);
      return Napi::Number::New(env, static_cast<double>(i));
    }
  }
  return Napi::Number::New(env, -1);
}

// A single-fd blocking waiter is stopped through its own eventfd: the stopper adds this mark to
// the counter, far above any count of doorbells, so one read returns both (count + mark).
constexpr uint64_t kStopMark = uint64_t{1} << 62;

// readBlocking(fd, out: Float64Array, timeoutMs = -1) → 0 with out[0] = the count, 1 when the
// stop mark came (out[0] = the doorbells that came with it, maybe 0), or -1 when timeoutMs passed
// first. Without a timeout the read is the wait: the fd's description is meant to be blocking
// (setBlocking); if someone made it non-blocking again, poll(2) stands in. With one, poll(2)
// waits and the read follows.
Napi::Value ReadBlocking(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt32(info, 0, "fd");
  double* out = ArgFloat64Array(info, 1, "out").Data();
  int32_t timeout = info.Length() > 2 ? ArgInt32(info, 2, "timeoutMs") : -1;
  if (timeout >= 0) {
    const int64_t deadline = NowMs() + timeout;
    pollfd p = {fd, POLLIN, 0};
    for (;;) {
      int r = poll(&p, 1, static_cast<int>(std::max<int64_t>(0, deadline - NowMs())));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) ThrowErrno(env, errno, "poll");
      if (p.revents & POLLNVAL) ThrowErrno(env, EBADF, "poll");
      if (r == 0) return Napi::Number::New(env, -1);
      break;
    }
  }
  uint64_t value = 0;
  for (;;) {
    // Through syscall(2), as every eventfd read and write here (eventfd-io.cc says why).
    ssize_t n = syscall(SYS_read, fd, &value, sizeof value);
    if (n == static_cast<ssize_t>(sizeof value)) break;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p = {fd, POLLIN, 0};
      if (poll(&p, 1, -1) < 0 && errno != EINTR) ThrowErrno(env, errno, "poll");
      if (p.revents & POLLNVAL) ThrowErrno(env, EBADF, "poll");
      continue;
    }
    ThrowErrno(env, n < 0 ? errno : EIO, "read");
  }
  out[0] = static_cast<double>(value % kStopMark);
  return Napi::Number::New(env, value >= kStopMark ? 1 : 0);
}

// addStopMark(fd): what stops a readBlocking() on fd, from any thread.
Napi::Value AddStopMark(const Napi::CallbackInfo& info) {
  int err = EventfdAdd(ArgInt32(info, 0, "fd"), kStopMark);
  if (err != 0) ThrowErrno(info.Env(), err, "write");
  return info.Env().Undefined();
}

// setBlocking(fd, blocking): sets or clears O_NONBLOCK on the fd's open file description.
Napi::Value SetBlocking(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  bool blocking = info.Length() > 1 && info[1].ToBoolean().Value();
  int flags = fcntl(fd, F_GETFL);
  int wanted = blocking ? (flags & ~O_NONBLOCK) : (flags | O_NONBLOCK);
  if (flags < 0 || (wanted != flags && fcntl(fd, F_SETFL, wanted) < 0)) ThrowErrno(info.Env(), errno, "fcntl");
  return info.Env().Undefined();
}

}  // namespace

void InitWait(Napi::Env env, Napi::Object exports) {
  exports.Set("readBlocking", Napi::Function::New(env, ReadBlocking));
  exports.Set("addStopMark", Napi::Function::New(env, AddStopMark));
  exports.Set("setBlocking", Napi::Function::New(env, SetBlocking));
  exports.Set("waitReadable", Napi::Function::New(env, WaitReadable));
  exports.Set("spinReadable", Napi::Function::New(env, SpinReadable));
}

}  // namespace ivshmem
