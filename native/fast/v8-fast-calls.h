// What this addon needs of V8's fast API calls: CTypeInfo, CFunctionInfo and CFunction. Where the
// Node headers ship v8-fast-api-calls.h, that is used. Node 20's headers do not, though its V8
// (11.3) supports fast calls; for V8 11.1 to 11.4 this file declares the three classes itself, with
// the members in the order that V8 version lays them out. The two constructors that fill them in
// are V8's own, exported by the node binary (CFunctionInfo(const CTypeInfo&, unsigned, const
// CTypeInfo*) and CFunction(const void*, const CFunctionInfo*)); nothing here writes V8's fields
// except CTypeInfo's three bytes. V8 11.5 added a field to CFunctionInfo, so any other version
// without the real header gets no fast calls (IVSHMEM_FAST_CALLS 0) rather than a guess.
#pragma once

#include <v8.h>

#include <cstdint>

#if __has_include(<v8-fast-api-calls.h>)
#include <v8-fast-api-calls.h>
#define IVSHMEM_FAST_CALLS 1
#elif V8_MAJOR_VERSION == 11 && V8_MINOR_VERSION >= 1 && V8_MINOR_VERSION <= 4
#define IVSHMEM_FAST_CALLS 1

namespace v8 {

class CTypeInfo {
 public:
  // The numbering is V8's: kInt32 is 3, kFloat64 8, kV8Value (the receiver) 10.
  enum class Type : uint8_t {
    kVoid,
    kBool,
    kUint8,
    kInt32,
    kUint32,
    kInt64,
    kUint64,
    kFloat32,
    kFloat64,
    kPointer,
    kV8Value,
  };
  enum class SequenceType : uint8_t { kScalar };
  enum class Flags : uint8_t { kNone };

  explicit constexpr CTypeInfo(Type type) : type_(type), sequence_type_(SequenceType::kScalar), flags_(Flags::kNone) {}

 private:
  Type type_;
  SequenceType sequence_type_;
  Flags flags_;
};

class V8_EXPORT CFunctionInfo {
 public:
  CFunctionInfo(const CTypeInfo& return_info, unsigned int arg_count, const CTypeInfo* arg_info);

 private:
  const CTypeInfo return_info_;
  const unsigned int arg_count_;
  const CTypeInfo* arg_info_;
};

class V8_EXPORT CFunction {
 public:
  CFunction(const void* address, const CFunctionInfo* type_info);

 private:
  const void* address_;
  const CFunctionInfo* type_info_;
};

}  // namespace v8

#else
#define IVSHMEM_FAST_CALLS 0
#endif
