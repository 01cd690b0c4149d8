// VcpuKicker: gets a vCPU thread out of KVM_RUN when one of a set of fds becomes readable, so a
// monitor whose guest sits in HLT can still deliver an interrupt that arrives on an eventfd, or
// hand its thread back to the event loop. A helper thread polls the fds while the kicker is
// armed; on readiness it disarms, sets kvm_run.immediate_exit (covers a KVM_RUN that has not
// started yet) and sends kKickSignal to the vCPU thread (interrupts one that is running, EINTR).
// The vCPU thread re-arms before each KVM_RUN; arming an armed kicker is one atomic load, so the
// exit path pays no syscall unless a kick happened.
// With the event loop joined (setLoop(true)), the kicker also watches the thread's libuv backend
// fd and its next timer, so a vCPU that runs while the loop is idle hands the thread back as soon
// as the loop has I/O or a timer due (KvmMonitor.runAsync).
#include <linux/kvm.h>
#include <poll.h>
#include <uv.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "../common.h"

namespace ivshmem {

namespace {

// A real-time signal nobody else in a Node process uses (Node: SIGUSR1 for the inspector, V8:
// SIGPROF; glibc already keeps its own below SIGRTMIN).
int KickSignal() { return SIGRTMIN + 5; }

constexpr size_t kMaxKickFds = 1024;

// The handler does nothing: the signal's only job is to make a running KVM_RUN return EINTR.
// SA_RESTART keeps it from interrupting the thread's other (restartable) system calls. Installed
// once per process, over whatever was there: nothing else in a Node process uses this signal.
void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa = {};
    sa.sa_handler = [](int) {};
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(KickSignal(), &sa, nullptr);
  });
}

class VcpuKicker : public Napi::ObjectWrap<VcpuKicker> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "VcpuKicker", {
      InstanceMethod("setFds", &VcpuKicker::SetFds),
      InstanceMethod("arm", &VcpuKicker::Arm),
      InstanceMethod("setLoop", &VcpuKicker::SetLoop),
      InstanceMethod("armedView", &VcpuKicker::ArmedView),
      InstanceMethod("close", &VcpuKicker::Close),
      InstanceAccessor("kicks", &VcpuKicker::Kicks, nullptr),
    });
  }

  // new VcpuKicker(vcpuFd): on the vCPU's own thread (the one that will call kvmRun).
  explicit VcpuKicker(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VcpuKicker>(info) {
    Napi::Env env = info.Env();
    int vcpu = ArgInt32(info, 0, "vcpuFd");
    // Our own mapping of kvm_run's first page (immediate_exit lives there): it stays valid until
    // Stop(), whatever happens to the vCPU's fd or JavaScript's mapping of it.
    void* page = mmap(nullptr, static_cast<size_t>(getpagesize()), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (page == MAP_FAILED) ThrowErrno(env, errno, "mmap");
    run_ = static_cast<struct kvm_run*>(page);
    wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_ < 0) {
      int err = errno;
      munmap(page, static_cast<size_t>(getpagesize()));
      ThrowErrno(env, err, "eventfd");
    }
    InstallKickHandler();
    if (napi_get_uv_event_loop(env, &loop_) != napi_ok) {
      close(wake_);
      munmap(page, static_cast<size_t>(getpagesize()));
      ThrowErrno(env, EINVAL, "napi_get_uv_event_loop");
    }
    vcpu_thread_ = pthread_self();
    // A blocked signal would only set immediate_exit, never interrupt a guest sitting in HLT.
    sigset_t kick;
    sigemptyset(&kick);
    sigaddset(&kick, KickSignal());
    pthread_sigmask(SIG_UNBLOCK, &kick, nullptr);
    thread_ = std::thread([this] { Loop(); });
    env_ = env;
    napi_add_env_cleanup_hook(env, CleanupHook, this);
  }

  ~VcpuKicker() override {
    napi_remove_env_cleanup_hook(env_, CleanupHook, this);
    Stop();
  }

 private:
  static void CleanupHook(void* self) { static_cast<VcpuKicker*>(self)->Stop(); }

  // Joins the helper thread and closes the wake fd; safe to call twice.
  void Stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closing_ = true;
    }
    cv_.notify_all();
    Wake();
    thread_.join();
    close(wake_);
    wake_ = -1;
    munmap(run_, static_cast<size_t>(getpagesize()));
    run_ = nullptr;
  }

  // Nothing to report if it fails: wake_ is our own eventfd, and a full counter wakes anyway.
  void Wake() { EventfdWriteOne(wake_); }

  void Loop() {
    std::vector<struct pollfd> pfds;
    for (;;) {
      int loop_fd;
      uint64_t generation;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return closing_ || armed_.load() != 0; });
        if (closing_) return;
        pfds.assign(1, {wake_, POLLIN, 0});
        for (int fd : fds_) pfds.push_back({fd, POLLIN, 0});
        loop_fd = loop_fd_;
        if (loop_fd >= 0) pfds.push_back({loop_fd, POLLIN, 0});
        generation = generation_;
      }
      int64_t deadline = loop_deadline_.load();
      int timeout = -1;
      if (loop_fd >= 0 && deadline >= 0) {
        int64_t left = deadline - NowMs();
        timeout = left <= 0 ? 0 : static_cast<int>(left > 60000 ? 60000 : left);
      }
      int r = poll(pfds.data(), pfds.size(), timeout);
      if (r < 0) continue;  // EINTR; nothing else is expected with valid fds
      bool timer_due = r == 0 && timeout >= 0 && deadline >= 0 && NowMs() >= deadline;
      if (r == 0 && !timer_due) continue;
      if (pfds[0].revents != 0) {
        uint64_t value;
        EventfdRead(wake_, &value);  // one read resets an eventfd's counter
        continue;  // the fd set changed, or we are closing: look again
      }
      bool ready = timer_due;
      std::lock_guard<std::mutex> lock(mutex_);
      for (size_t i = 1; i < pfds.size(); i++) {
        if (pfds[i].revents == POLLNVAL) {
          // Closed under us: stop watching it rather than spin on it — unless the set changed
          // since poll() began, when the same number may name a new, valid fd.
          if (generation != generation_) continue;
          for (auto it = fds_.begin(); it != fds_.end(); ++it) {
            if (*it == pfds[i].fd) {
              fds_.erase(it);
              break;
            }
          }
        } else if (pfds[i].revents != 0) {
          ready = true;
        }
      }
      if (!ready) continue;
      if (closing_ || armed_.exchange(0) == 0) continue;
      kicks_++;
      __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST);
      pthread_kill(vcpu_thread_, KickSignal());
    }
  }

  // setFds(Int32Array): the fds whose readiness kicks the vCPU (eventfds, sockets, an epoll fd).
  Napi::Value SetFds(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Int32Array fds = ArgInt32Array(info, 0, "fds");
    if (fds.ElementLength() > kMaxKickFds) ThrowErrno(env, EINVAL, "poll");
    if (!thread_.joinable()) ThrowErrno(env, EBADF, "poll");
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fds_.assign(fds.Data(), fds.Data() + fds.ElementLength());
      generation_++;
    }
    Wake();
    return env.Undefined();
  }

  // arm(): from the vCPU thread before KVM_RUN. Only a kicker that fired needs waking.
  Napi::Value Arm(const Napi::CallbackInfo& info) {
    if (loop_fd_ >= 0) {
      // The loop's next timer, as an absolute time; only a change needs the helper thread's attention.
      int t = uv_backend_timeout(loop_);
      int64_t deadline = t < 0 ? -1 : static_cast<int64_t>(uv_now(loop_)) + t;
      if (loop_deadline_.exchange(deadline) != deadline) Wake();
    }
    if (armed_.load(std::memory_order_relaxed) == 0) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        armed_.store(1);
      }
      cv_.notify_one();
    }
    return info.Env().Undefined();
  }

  // armedView(): an Int32Array over armed_ (1 while armed), valid while this object lives; the
  // caller keeps this object referenced for as long as it uses the view.
  Napi::Value ArmedView(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, reinterpret_cast<void*>(&armed_), sizeof(int32_t));
    return Napi::Int32Array::New(env, 1, buffer, 0);
  }

  // setLoop(on): also kick when this thread's event loop has I/O ready or a timer due.
  Napi::Value SetLoop(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bool on = ArgBool(info, 0, "on");
    if (!thread_.joinable()) ThrowErrno(env, EBADF, "poll");
    {
      std::lock_guard<std::mutex> lock(mutex_);
      loop_fd_ = on ? uv_backend_fd(loop_) : -1;
      loop_deadline_.store(-1);
    }
    Wake();
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }

  Napi::Value Kicks(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(kicks_.load()));
  }

  napi_env env_ = nullptr;
  uv_loop_t* loop_ = nullptr;
  // The loop's backend (epoll) fd while joined, else -1; read by the helper under mutex_.
  int loop_fd_ = -1;
  // When the loop's next timer is due (CLOCK_MONOTONIC ms, uv_now's clock), or -1 for none.
  std::atomic<int64_t> loop_deadline_{-1};
  struct kvm_run* run_ = nullptr;
  pthread_t vcpu_thread_;
  int wake_ = -1;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  // 1 while armed. JavaScript reads it through armedView() to skip arm() calls on an armed kicker.
  std::atomic<int32_t> armed_{1};
  static_assert(sizeof(std::atomic<int32_t>) == sizeof(int32_t), "armed_ is read as an Int32Array");
  bool closing_ = false;
  std::vector<int> fds_;
  uint64_t generation_ = 0;  // bumped by each setFds, under mutex_
  std::atomic<uint64_t> kicks_{0};
};

}  // namespace

void InitKvmKick(Napi::Env env, Napi::Object exports) {
  exports.Set("VcpuKicker", VcpuKicker::Define(env));
}

}  // namespace ivshmem
