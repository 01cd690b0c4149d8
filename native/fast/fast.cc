// The per-doorbell calls as V8 fast API calls: eventfdSignal, eventfdDrain and a busy poll's
// spinRead, called by optimised JavaScript straight into C with no N-API crossing (src/os/fast-binding.ts loads this module and
// falls back to the N-API addon without it). Each entry has two bodies doing the same system
// call: the fast one V8 calls from optimised code, which must not allocate, throw or call into
// JavaScript, and the ordinary callback V8 falls back to from unoptimised code. Both return the
// errno instead of throwing; TypeScript turns it into an error shaped like Node's own. A separate
// module, not part of the N-API addon: it uses V8's own API, so it only loads in the Node it was
// built for, and a failure to load it must never cost the addon.
#include <node.h>

#include <atomic>
#include <cerrno>

#include "../eventfd-io.h"
#include "v8-fast-calls.h"

namespace ivshmem {
namespace {

// How often each body ran, for the tests that prove which path was taken. A relaxed load and
// store, not an atomic add: the count may lose an increment between threads, the ring costs no
// locked instruction.
std::atomic<double> fast_calls{0};
std::atomic<double> slow_calls{0};
void Count(std::atomic<double>& counter) {
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

// An fd that is not an int32 cannot be one: EBADF, as the kernel would say of a bad number.
int32_t FdArg(const v8::FunctionCallbackInfo<v8::Value>& info) {
  return info.Length() > 0 && info[0]->IsInt32() ? info[0].As<v8::Int32>()->Value() : -1;
}

double Drain(int32_t fd) {
  uint64_t value;
  int err = EventfdRead(fd, &value);
  return err != 0 ? -err : static_cast<double>(value);
}

int32_t FastSignal(v8::Local<v8::Value> receiver, int32_t fd) {
  Count(fast_calls);
  return EventfdWriteOne(fd);
}

void SlowSignal(const v8::FunctionCallbackInfo<v8::Value>& info) {
  Count(slow_calls);
  int32_t fd = FdArg(info);
  info.GetReturnValue().Set(fd < 0 ? EBADF : EventfdWriteOne(fd));
}

double FastDrain(v8::Local<v8::Value> receiver, int32_t fd) {
  Count(fast_calls);
  return Drain(fd);
}

void SlowDrain(const v8::FunctionCallbackInfo<v8::Value>& info) {
  Count(slow_calls);
  int32_t fd = FdArg(info);
  info.GetReturnValue().Set(fd < 0 ? -EBADF : Drain(fd));
}

// A busy poll's wait on one eventfd: up to `rounds` non-blocking reads, returning the count as
// soon as one finds doorbells, 0 when the rounds run out, or minus the errno of a failed read.
double SpinRead(int32_t fd, int32_t rounds) {
  for (int32_t round = 0; round < rounds; round++) {
    uint64_t value;
    int err = EventfdRead(fd, &value);
    if (err != 0) return -err;
    if (value != 0) return static_cast<double>(value);
  }
  return 0;
}

double FastSpinRead(v8::Local<v8::Value> receiver, int32_t fd, int32_t rounds) {
  Count(fast_calls);
  return SpinRead(fd, rounds);
}

void SlowSpinRead(const v8::FunctionCallbackInfo<v8::Value>& info) {
  Count(slow_calls);
  int32_t fd = FdArg(info);
  int32_t rounds = info.Length() > 1 && info[1]->IsInt32() ? info[1].As<v8::Int32>()->Value() : 0;
  info.GetReturnValue().Set(fd < 0 ? -EBADF : SpinRead(fd, rounds));
}

// No system call: what a fast call itself costs, for the benchmark beside the N-API crossing's.
int32_t FastNop(v8::Local<v8::Value> receiver, int32_t fd) {
  Count(fast_calls);
  return 0;
}

void SlowNop(const v8::FunctionCallbackInfo<v8::Value>& info) {
  Count(slow_calls);
  info.GetReturnValue().Set(0);
}

void Calls(const v8::FunctionCallbackInfo<v8::Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  v8::Local<v8::Context> context = isolate->GetCurrentContext();
  v8::Local<v8::Object> out = v8::Object::New(isolate);
  out->Set(context, v8::String::NewFromUtf8Literal(isolate, "fast"),
           v8::Number::New(isolate, fast_calls.load(std::memory_order_relaxed)))
      .Check();
  out->Set(context, v8::String::NewFromUtf8Literal(isolate, "slow"),
           v8::Number::New(isolate, slow_calls.load(std::memory_order_relaxed)))
      .Check();
  info.GetReturnValue().Set(out);
}

void Export(v8::Local<v8::Context> context, v8::Local<v8::Object> exports, const char* name,
            v8::Local<v8::FunctionTemplate> t) {
  v8::Isolate* isolate = context->GetIsolate();
  exports
      ->Set(context, v8::String::NewFromUtf8(isolate, name).ToLocalChecked(),
            t->GetFunction(context).ToLocalChecked())
      .Check();
}

// A fast call is only made when the function cannot be a constructor (kThrow), and its C
// signature counts the receiver first. V8 keeps the CFunctionInfo's address, so these live for
// the process; every isolate (main thread, workers) builds its templates around them.
v8::Local<v8::FunctionTemplate> Template(v8::Isolate* isolate, v8::FunctionCallback slow,
                                         const v8::CFunction* fast) {
  return v8::FunctionTemplate::New(isolate, slow, v8::Local<v8::Value>(), v8::Local<v8::Signature>(), 1,
                                   v8::ConstructorBehavior::kThrow, v8::SideEffectType::kHasSideEffect, fast);
}

}  // namespace
}  // namespace ivshmem

NODE_MODULE_INIT() {
  using ivshmem::Export;
  using ivshmem::Template;
  v8::Isolate* isolate = context->GetIsolate();
#if IVSHMEM_FAST_CALLS
  using Type = v8::CTypeInfo::Type;
  static const v8::CTypeInfo args[] = {v8::CTypeInfo(Type::kV8Value), v8::CTypeInfo(Type::kInt32)};
  static const v8::CFunctionInfo signal_info(v8::CTypeInfo(Type::kInt32), 2, args);
  static const v8::CFunctionInfo drain_info(v8::CTypeInfo(Type::kFloat64), 2, args);
  static const v8::CTypeInfo spin_args[] = {v8::CTypeInfo(Type::kV8Value), v8::CTypeInfo(Type::kInt32),
                                            v8::CTypeInfo(Type::kInt32)};
  static const v8::CFunctionInfo spin_info(v8::CTypeInfo(Type::kFloat64), 3, spin_args);
  static const v8::CFunction signal(reinterpret_cast<const void*>(&ivshmem::FastSignal), &signal_info);
  static const v8::CFunction drain(reinterpret_cast<const void*>(&ivshmem::FastDrain), &drain_info);
  static const v8::CFunction nop(reinterpret_cast<const void*>(&ivshmem::FastNop), &signal_info);
  static const v8::CFunction spin(reinterpret_cast<const void*>(&ivshmem::FastSpinRead), &spin_info);
  const v8::CFunction* fast_signal = &signal;
  const v8::CFunction* fast_drain = &drain;
  const v8::CFunction* fast_nop = &nop;
  const v8::CFunction* fast_spin = &spin;
#else
  const v8::CFunction* fast_signal = nullptr;
  const v8::CFunction* fast_drain = nullptr;
  const v8::CFunction* fast_nop = nullptr;
  const v8::CFunction* fast_spin = nullptr;
#endif
  Export(context, exports, "eventfdSignal", Template(isolate, ivshmem::SlowSignal, fast_signal));
  Export(context, exports, "eventfdDrain", Template(isolate, ivshmem::SlowDrain, fast_drain));
  Export(context, exports, "spinRead", Template(isolate, ivshmem::SlowSpinRead, fast_spin));
  Export(context, exports, "nop", Template(isolate, ivshmem::SlowNop, fast_nop));
  Export(context, exports, "calls", v8::FunctionTemplate::New(isolate, ivshmem::Calls));
  exports
      ->Set(context, v8::String::NewFromUtf8Literal(isolate, "fastCalls"),
            v8::Boolean::New(isolate, IVSHMEM_FAST_CALLS == 1))
      .Check();
}
