// The two ways to wait for eventfds without the event loop: blocking in poll(2) on a thread of
// its own (a worker: the "vCPU thread" pattern), and spinning on non-blocking reads. Both drain
// the eventfd that fired before returning, and return its index in the list.
#include <poll.h>

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
  double* out = nullptr;
  if (info.Length() > 2 && info[2].IsTypedArray()) {
    Napi::TypedArray t = info[2].As<Napi::TypedArray>();
    if (t.TypedArrayType() != napi_float64_array || t.ElementLength() < 1) ThrowType(env, "argument out must be a Float64Array");
    out = info[2].As<Napi::Float64Array>().Data();
  }
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

}  // namespace

void InitWait(Napi::Env env, Napi::Object exports) {
  exports.Set("waitReadable", Napi::Function::New(env, WaitReadable));
  exports.Set("spinReadable", Napi::Function::New(env, SpinReadable));
}

}  // namespace ivshmem
