// eventfd: the doorbell's wire. Created non-blocking and close-on-exec; signal adds 1 to the
// counter, drain reads and resets it. Also the addon's one close(), for every fd it hands out.
#include <sys/eventfd.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "common.h"

namespace ivshmem {

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

namespace {

Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) ThrowErrno(info.Env(), errno, "eventfd");
  RegisterFd(info.Env(), fd);
  return Napi::Number::New(info.Env(), fd);
}

// The hot path of a doorbell: one write(2) of the integer 1.
Napi::Value EventfdSignal(const Napi::CallbackInfo& info) {
  int err = EventfdWriteOne(ArgInt32(info, 0, "fd"));
  if (err != 0) ThrowErrno(info.Env(), err, "write");
  return info.Env().Undefined();
}

// Makes an fd received from someone else non-blocking (its open file description is shared with
// the sender, who may have made it blocking), so a write to it can never stall the event loop.
Napi::Value SetNonBlocking(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || ((flags & O_NONBLOCK) == 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)) {
    ThrowErrno(info.Env(), errno, "fcntl");
  }
  return info.Env().Undefined();
}

// Returns the counter (how many signals arrived since the last drain), or 0 if none did.
Napi::Value EventfdDrain(const Napi::CallbackInfo& info) {
  uint64_t value;
  int err = EventfdRead(ArgInt32(info, 0, "fd"), &value);
  if (err != 0) ThrowErrno(info.Env(), err, "read");
  return Napi::Number::New(info.Env(), static_cast<double>(value));
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  ForgetFd(fd);
  // Linux releases the fd even when close reports EINTR; retrying could close a reused number.
  if (close(fd) < 0 && errno != EINTR) ThrowErrno(info.Env(), errno, "close");
  return info.Env().Undefined();
}


}  // namespace

void InitEventfd(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfdCreate", Napi::Function::New(env, EventfdCreate));
  exports.Set("eventfdSignal", Napi::Function::New(env, EventfdSignal));
  exports.Set("eventfdDrain", Napi::Function::New(env, EventfdDrain));
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("setNonBlocking", Napi::Function::New(env, SetNonBlocking));
  exports.Set("isOwnedFd", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), IsRegisteredFd(ArgInt32(info, 0, "fd")));
  }));
}

}  // namespace ivshmem
