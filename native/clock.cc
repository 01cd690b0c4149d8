// A monotonic clock for timing doorbell round trips without allocating: the time goes into a
// Float64Array the caller owns. (performance.now() allocates a heap number per call in Node 20,
// which at a few million samples means scavenges inside the window being measured.)
#include <time.h>

#include <cerrno>

#include "common.h"

namespace ivshmem {
namespace {

// monotonicNs(out: Float64Array, index): out[index] = CLOCK_MONOTONIC in ns (exact below 2^53 ns,
// 104 days of uptime; a little coarser after).
Napi::Value MonotonicNs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float64Array out = ArgFloat64Array(info, 0, "out");
  int32_t index = info.Length() > 1 ? ArgInt32(info, 1, "index") : 0;
  if (index < 0 || static_cast<size_t>(index) >= out.ElementLength()) ThrowErrno(env, EINVAL, "clock_gettime");
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  out[index] = static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
  return env.Undefined();
}

}  // namespace

void InitClock(Napi::Env env, Napi::Object exports) {
  exports.Set("monotonicNs", Napi::Function::New(env, MonotonicNs));
}

}  // namespace ivshmem
