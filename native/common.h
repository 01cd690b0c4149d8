// Shared declarations of the ivshmem native addon: errors shaped like Node's own system errors,
// the registry that lets the env cleanup hook close what JavaScript left open, and small argument
// helpers. Raw functions trust their TypeScript wrappers for meaning but never crash on bad types.
#pragma once

#include <napi.h>

#include "eventfd-io.h"

#include <cstdint>
#include <string>

namespace ivshmem {

// Throws an Error with code ('EAGAIN'), errno (negative, as in Node), syscall and optional path.
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const char* syscall, const char* path = nullptr);
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const char* path = nullptr);
[[noreturn]] void ThrowType(Napi::Env env, const std::string& message);

// Every fd and mapping the addon creates is recorded with the env (main thread or worker) that
// created it; closing through the addon forgets it; the env's cleanup hook closes the rest.
void RegisterFd(Napi::Env env, int fd);
void ForgetFd(int fd);
bool IsRegisteredFd(int fd);
void InitRegistry(Napi::Env env);

int32_t ArgInt32(const Napi::CallbackInfo& info, size_t i, const char* name);
// A list of fds arrives as an Int32Array; anything else is a TypeError naming the argument.
Napi::Int32Array ArgInt32Array(const Napi::CallbackInfo& info, size_t i, const char* name);
// Where a result lands without allocating: a Float64Array of at least one element.
Napi::Float64Array ArgFloat64Array(const Napi::CallbackInfo& info, size_t i, const char* name);
int64_t ArgInt64(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name);
bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name);

// CLOCK_MONOTONIC in milliseconds: the clock libuv's uv_now() reads, so deadlines compare with it.
int64_t NowMs();


// 1 when a listening UNIX socket is bound to `path` (found in the kernel's socket table, without
// connecting), 0 when none is (or nothing is at the path), -1 when the table cannot be read or the
// path is not a socket.
int ListenerAt(const char* path);

void InitEventfd(Napi::Env env, Napi::Object exports);
void InitClock(Napi::Env env, Napi::Object exports);
void InitMemory(Napi::Env env, Napi::Object exports);
void InitSocket(Napi::Env env, Napi::Object exports);
void InitPoller(Napi::Env env, Napi::Object exports);
void InitWait(Napi::Env env, Napi::Object exports);
void InitKvm(Napi::Env env, Napi::Object exports);
void InitKvmKick(Napi::Env env, Napi::Object exports);

// Hands a fresh mmap'ed range to JavaScript as an external ArrayBuffer that munmap() detaches and
// unmaps, the GC finalizer unmaps if nobody did, and the env's cleanup hook unmaps at exit.
Napi::ArrayBuffer MappedBuffer(Napi::Env env, void* addr, size_t length);

}  // namespace ivshmem
