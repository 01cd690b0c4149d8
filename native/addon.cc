// Entry point of the ivshmem native addon: eventfds, shared memory, fd-passing UNIX sockets and
// the three ways of waiting for an fd. Loaded once per thread (main or worker); the cleanup hooks
// registered here close whatever that thread left open when it exits.
#include "common.h"

namespace ivshmem {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitRegistry(env);
  InitEventfd(env, exports);
  InitMemory(env, exports);
  InitSocket(env, exports);
  InitPoller(env, exports);
  InitWait(env, exports);
  InitClock(env, exports);
  InitKvm(env, exports);
  InitKvmKick(env, exports);
  return exports;
}

}  // namespace ivshmem

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  return ivshmem::Init(env, exports);
}

NODE_API_MODULE(ivshmem_native, InitAddon)
