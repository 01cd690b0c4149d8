// FdWatcher: waits for an fd on the event loop of the thread that created it (a libuv poll
// handle, so it works in worker threads too). For an eventfd it drains the counter in native code
// before calling back, so one signal never produces two callbacks; for a socket it reports
// readability and, when start() asks for it, writability (the events, as UV_READABLE=1 and
// UV_WRITABLE=2, are the callback's second argument). The handle is freed in uv_close's
// callback, never before.
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <mutex>
#include <unordered_set>

#include "common.h"

namespace ivshmem {
namespace {

class FdWatcher;
std::mutex watchers_mutex;
std::unordered_set<FdWatcher*>& Watchers() {
  static auto* watchers = new std::unordered_set<FdWatcher*>();
  return *watchers;
}

class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatcher", {
      InstanceMethod("start", &FdWatcher::Start),
      InstanceMethod("stop", &FdWatcher::Stop),
      InstanceMethod("ref", &FdWatcher::RefLoop),
      InstanceMethod("unref", &FdWatcher::UnrefLoop),
      InstanceMethod("close", &FdWatcher::Close),
    });
  }

  // new FdWatcher(fd, drainEventfd, callback)
  explicit FdWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatcher>(info) {
    Napi::Env env = info.Env();
    fd_ = ArgInt32(info, 0, "fd");
    drain_ = ArgBool(info, 1, "drainEventfd");
    if (info.Length() < 3 || !info[2].IsFunction()) ThrowType(env, "argument callback must be a function");
    callback_ = Napi::Persistent(info[2].As<Napi::Function>());
    env_ = env;
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) ThrowErrno(env, EINVAL, "napi_get_uv_event_loop");
    handle_ = new uv_poll_t;
    int r = uv_poll_init(loop, handle_, fd_);
    if (r != 0) {
      delete handle_;
      handle_ = nullptr;
      ThrowErrno(env, -r, "uv_poll_init");
    }
    handle_->data = this;
    std::lock_guard<std::mutex> lock(watchers_mutex);
    Watchers().insert(this);
  }

  ~FdWatcher() override {
    CloseHandle();
    std::lock_guard<std::mutex> lock(watchers_mutex);
    Watchers().erase(this);
  }

  // Called by the env cleanup hook for watchers JavaScript left open.
  void CloseHandle() {
    if (handle_ == nullptr) return;
    uv_poll_stop(handle_);
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
    // The strong self-reference taken by start() stays for close() to release (Release()); at
    // env teardown the whole heap goes away, so no release is needed there.
  }

  napi_env env() const { return env_; }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (handle_ == nullptr) ThrowErrno(info.Env(), EBADF, "uv_poll_start");
    // start(events?): UV_READABLE by default; a draining (eventfd) watcher only ever reads.
    int events = UV_READABLE;
    if (info.Length() > 0 && !info[0].IsUndefined()) {
      events = ArgInt32(info, 0, "events");
      if (events == 0 || (events & ~(UV_READABLE | UV_WRITABLE)) != 0 || (drain_ && events != UV_READABLE)) {
        ThrowType(info.Env(), "argument events must be 1 (readable), 2 (writable) or 3, and 1 for an eventfd");
      }
    }
    // uv_poll_start on an active handle replaces its events: one handle per fd, as libuv requires.
    int r = uv_poll_start(handle_, events, OnPoll);
    if (r != 0) ThrowErrno(info.Env(), -r, "uv_poll_start");
    if (!held_) {
      Ref();  // an active watcher must not be collected while it may still call back
      held_ = true;
    }
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_poll_stop(handle_);
    Release();
    return info.Env().Undefined();
  }

  Napi::Value RefLoop(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  Napi::Value UnrefLoop(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseHandle();
    // The callback is a strong reference: one whose closure reaches this watcher would keep it
    // (and its handle) alive for ever. A closed watcher never calls back: let it go.
    callback_.Reset();
    Release();
    return info.Env().Undefined();
  }

  void Release() {
    if (held_) {
      held_ = false;
      Unref();
    }
  }

  // Called back through N-API's C interface with every status checked. While a worker is being
  // terminated JavaScript cannot run, so each call into it fails; node-addon-api answers such a
  // failure by making an Error object, which fails too and ends the whole process (a worker with
  // a watcher terminated mid-doorbell did exactly that). Here a report that cannot be made is
  // dropped: the environment it was for is going away.
  static void OnPoll(uv_poll_t* handle, int status, int events) {
    auto* self = static_cast<FdWatcher*>(handle->data);
    if (self == nullptr || self->callback_.IsEmpty()) return;
    napi_env env = self->env_;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value none = nullptr;
    napi_get_null(env, &none);
    if (status < 0) {
      self->Deliver(RawErrno(env, -status, "uv_poll"), nullptr);
    } else if (!self->drain_) {
      int reported = events & (UV_READABLE | UV_WRITABLE);
      if (reported != 0) self->Deliver(none, RawNumber(env, reported));
    } else if ((events & UV_READABLE) != 0) {
      uint64_t count;
      int err = EventfdRead(self->fd_, &count);
      if (err != 0) {
        self->Deliver(RawErrno(env, err, "read"), nullptr);
      } else if (count != 0) {  // 0: someone else drained it, nothing to report
        self->Deliver(none, RawNumber(env, static_cast<double>(count)));
      }
    }
    napi_close_handle_scope(env, scope);
  }

  void Deliver(napi_value first, napi_value second) {
    napi_value fn;
    napi_value global;
    napi_value result;
    if (first == nullptr || napi_get_reference_value(env_, callback_, &fn) != napi_ok || fn == nullptr) return;
    if (napi_get_global(env_, &global) != napi_ok) return;
    napi_value argv[2] = {first, second};
    size_t argc = second == nullptr ? 1 : 2;
    if (napi_make_callback(env_, nullptr, global, fn, argc, argv, &result) != napi_pending_exception) return;
    // The callback threw: report it as Node reports any uncaught exception.
    napi_value exception;
    if (napi_get_and_clear_last_exception(env_, &exception) == napi_ok) napi_fatal_exception(env_, exception);
  }

  static napi_value RawNumber(napi_env env, double value) {
    napi_value out;
    return napi_create_double(env, value, &out) == napi_ok ? out : nullptr;
  }

  // The same error ErrnoError makes (code, errno, syscall), built with checked C calls.
  static napi_value RawErrno(napi_env env, int err, const char* syscall) {
    const char* code = uv_err_name(-err);
    std::string text = std::string(code) + ": " + uv_strerror(-err) + ", " + syscall;
    napi_value code_value, message, error, errno_value, syscall_value;
    if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value) != napi_ok ||
        napi_create_string_utf8(env, text.c_str(), NAPI_AUTO_LENGTH, &message) != napi_ok ||
        napi_create_error(env, code_value, message, &error) != napi_ok ||
        napi_create_int32(env, -err, &errno_value) != napi_ok ||
        napi_set_named_property(env, error, "errno", errno_value) != napi_ok ||
        napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value) != napi_ok ||
        napi_set_named_property(env, error, "syscall", syscall_value) != napi_ok) {
      return nullptr;
    }
    return error;
  }

  uv_poll_t* handle_ = nullptr;
  int fd_ = -1;
  bool drain_ = false;
  bool held_ = false;
  napi_env env_ = nullptr;
  Napi::FunctionReference callback_;
};

void CloseWatchers(void* arg) {
  napi_env env = static_cast<napi_env>(arg);
  std::lock_guard<std::mutex> lock(watchers_mutex);
  for (FdWatcher* w : Watchers()) {
    if (w->env() == env) w->CloseHandle();
  }
}

}  // namespace

void InitPoller(Napi::Env env, Napi::Object exports) {
  napi_add_env_cleanup_hook(env, CloseWatchers, static_cast<napi_env>(env));
  exports.Set("FdWatcher", FdWatcher::Define(env));
}

}  // namespace ivshmem
