// Errors with the fields Node gives its own system errors (code, errno, syscall, path), so callers
// can branch on err.code exactly as they do for fs and net errors.
#include <uv.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace ivshmem {

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const char* path) {
  // libuv names errors by their negated errno on Unix: uv_err_name(-EAGAIN) is "EAGAIN".
  const char* code = uv_err_name(-err);
  std::string message = std::string(code) + ": " + uv_strerror(-err) + ", " + syscall;
  if (path != nullptr) message += std::string(" '") + path + "'";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("syscall", Napi::String::New(env, syscall));
  if (path != nullptr) error.Set("path", Napi::String::New(env, path));
  return error;
}

void ThrowErrno(Napi::Env env, int err, const char* syscall, const char* path) {
  throw ErrnoError(env, err, syscall, path);
}

void ThrowType(Napi::Env env, const std::string& message) {
  Napi::TypeError error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw error;
}

namespace {

// A number that is not an integer in range (NaN, 1.5, 2^40 as an fd) is refused rather than
// truncated: NaN would otherwise become fd 0.
[[noreturn]] void ThrowRange(Napi::Env env, const std::string& message) {
  Napi::RangeError error = Napi::RangeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  throw error;
}

}  // namespace

int32_t ArgInt32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowType(info.Env(), std::string("argument ") + name + " must be a number");
  double value = info[i].As<Napi::Number>().DoubleValue();
  if (!(value >= INT32_MIN && value <= INT32_MAX) || value != std::trunc(value)) {
    ThrowRange(info.Env(), std::string("argument ") + name + " must be a 32-bit integer");
  }
  return static_cast<int32_t>(value);
}

Napi::Int32Array ArgInt32Array(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    ThrowType(info.Env(), std::string("argument ") + name + " must be an Int32Array");
  }
  return info[i].As<Napi::Int32Array>();
}

Napi::Float64Array ArgFloat64Array(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[i].As<Napi::TypedArray>().ElementLength() < 1) {
    ThrowType(info.Env(), std::string("argument ") + name + " must be a Float64Array");
  }
  return info[i].As<Napi::Float64Array>();
}

int64_t ArgInt64(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() > i && info[i].IsBigInt()) {
    bool lossless = false;
    int64_t value = info[i].As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) ThrowType(info.Env(), std::string("argument ") + name + " does not fit 64 bits");
    return value;
  }
  if (info.Length() <= i || !info[i].IsNumber()) ThrowType(info.Env(), std::string("argument ") + name + " must be a number or bigint");
  double value = info[i].As<Napi::Number>().DoubleValue();
  if (!(std::fabs(value) <= 9007199254740991.0) || value != std::trunc(value)) {
    ThrowRange(info.Env(), std::string("argument ") + name + " must be a safe integer");
  }
  return static_cast<int64_t>(value);
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) ThrowType(info.Env(), std::string("argument ") + name + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsBoolean()) ThrowType(info.Env(), std::string("argument ") + name + " must be a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

}  // namespace ivshmem
