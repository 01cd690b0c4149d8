// Shared memory: the objects QEMU and other peers map (POSIX shm by name, a file, a memfd, an
// unlinked file inside a directory such as a hugetlbfs mount), their size, optional sealing, and
// MAP_SHARED mappings handed to JavaScript as external ArrayBuffers. An explicit unmap detaches
// the ArrayBuffer first, so no JavaScript can touch the range afterwards; the GC finalizer only
// unmaps what nobody unmapped.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <v8-typed-array.h>

#include "common.h"

namespace ivshmem {
namespace {

struct Mapping {
  void* addr;
  size_t length;
  napi_env env;
  bool unmapped;
};

std::mutex mappings_mutex;
std::unordered_map<void*, Mapping*>& Mappings() {
  static auto* mappings = new std::unordered_map<void*, Mapping*>();  // used at exit: never destroyed
  return *mappings;
}

int OpenFlags(bool create, bool exclusive) {
  return O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0) | (exclusive ? O_EXCL : 0);
}

Napi::Value ShmOpen(const Napi::CallbackInfo& info) {
  std::string name = ArgString(info, 0, "name");
  bool create = ArgBool(info, 1, "create");
  bool exclusive = ArgBool(info, 2, "exclusive");
  int mode = ArgInt32(info, 3, "mode");
  int fd = shm_open(name.c_str(), OpenFlags(create, exclusive), mode);
  if (fd < 0) ThrowErrno(info.Env(), errno, "shm_open", name.c_str());
  RegisterFd(info.Env(), fd);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value ShmUnlink(const Napi::CallbackInfo& info) {
  std::string name = ArgString(info, 0, "name");
  if (shm_unlink(name.c_str()) < 0) ThrowErrno(info.Env(), errno, "shm_unlink", name.c_str());
  return info.Env().Undefined();
}

Napi::Value OpenFile(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0, "path");
  bool create = ArgBool(info, 1, "create");
  bool exclusive = ArgBool(info, 2, "exclusive");
  int mode = ArgInt32(info, 3, "mode");
  int fd;
  do {
    fd = open(path.c_str(), OpenFlags(create, exclusive), mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) ThrowErrno(info.Env(), errno, "open", path.c_str());
  RegisterFd(info.Env(), fd);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  std::string name = ArgString(info, 0, "name");
  bool sealable = ArgBool(info, 1, "sealable");
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | (sealable ? MFD_ALLOW_SEALING : 0));
  if (fd < 0) ThrowErrno(info.Env(), errno, "memfd_create", name.c_str());
  RegisterFd(info.Env(), fd);
  return Napi::Number::New(info.Env(), fd);
}

// A file nobody else can open by name: created in `dir` and unlinked at once (QEMU's server -m).
Napi::Value TempFileIn(const Napi::CallbackInfo& info) {
  std::string dir = ArgString(info, 0, "dir");
  std::vector<char> path(dir.begin(), dir.end());
  const char suffix[] = "/ivshmem.XXXXXX";
  path.insert(path.end(), suffix, suffix + sizeof suffix);  // includes the terminating NUL
  int fd = mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) ThrowErrno(info.Env(), errno, "mkostemp", dir.c_str());
  if (unlink(path.data()) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(info.Env(), err, "unlink", path.data());
  }
  RegisterFd(info.Env(), fd);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value Ftruncate(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  int64_t size = ArgInt64(info, 1, "size");
  int r;
  do {
    r = ftruncate(fd, size);
  } while (r < 0 && errno == EINTR);
  if (r < 0) ThrowErrno(info.Env(), errno, "ftruncate");
  return info.Env().Undefined();
}

// Size, kind and identity of the object behind an fd: { size, isFile, ino, dev }. The identity
// tells whether a name still refers to the object we hold before we remove the name.
Napi::Value Fstat(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  struct stat st;
  if (fstat(fd, &st) < 0) ThrowErrno(info.Env(), errno, "fstat");
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("size", Napi::Number::New(info.Env(), static_cast<double>(st.st_size)));
  out.Set("isFile", Napi::Boolean::New(info.Env(), S_ISREG(st.st_mode)));
  out.Set("ino", Napi::Number::New(info.Env(), static_cast<double>(st.st_ino)));
  out.Set("dev", Napi::Number::New(info.Env(), static_cast<double>(st.st_dev)));
  return out;
}

// tryLock(fd): an exclusive flock(2) on the open file description, without waiting. Returns false
// when another description of the same object holds it. The lock lives exactly as long as the
// description, so it dies with its process however that process ends.
Napi::Value TryLock(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  int r;
  do {
    r = flock(fd, LOCK_EX | LOCK_NB);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
    ThrowErrno(info.Env(), errno, "flock");
  }
  return Napi::Boolean::New(info.Env(), true);
}

// Forbids shrinking the object, which would turn accesses past the new end into SIGBUS.
Napi::Value SealShrink(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) ThrowErrno(info.Env(), errno, "fcntl");
  return info.Env().Undefined();
}

// The seals on an object received from someone else, or -1 when it cannot carry seals at all
// (a POSIX shm object or a file: EINVAL); a memfd created without MFD_ALLOW_SEALING reports
// F_SEAL_SEAL.
Napi::Value FileSeals(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    if (errno == EINVAL) return Napi::Number::New(info.Env(), -1);
    ThrowErrno(info.Env(), errno, "fcntl");
  }
  return Napi::Number::New(info.Env(), seals);
}

void FinalizeMapping(Napi::Env, void*, Mapping* mapping) {
  std::lock_guard<std::mutex> lock(mappings_mutex);
  if (!mapping->unmapped) munmap(mapping->addr, mapping->length);
  // After an explicit unmap the kernel may hand the same address to a newer mapping: its entry
  // is not ours to remove.
  auto it = Mappings().find(mapping->addr);
  if (it != Mappings().end() && it->second == mapping) Mappings().erase(it);
  delete mapping;
}

Napi::Value Mmap(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  int64_t length = ArgInt64(info, 1, "length");
  if (length <= 0) ThrowErrno(info.Env(), EINVAL, "mmap");
  void* addr = mmap(nullptr, static_cast<size_t>(length), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) ThrowErrno(info.Env(), errno, "mmap");
  return MappedBuffer(info.Env(), addr, static_cast<size_t>(length));
}

// Returns true if it unmapped, false if the buffer was not (or no longer) one of our mappings.
Napi::Value Munmap(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) ThrowType(info.Env(), "argument buffer must be an ArrayBuffer");
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  void* addr = buffer.Data();
  std::lock_guard<std::mutex> lock(mappings_mutex);
  auto it = Mappings().find(addr);
  if (addr == nullptr || it == Mappings().end() || it->second->unmapped) return Napi::Boolean::New(info.Env(), false);
  buffer.Detach();
  munmap(it->second->addr, it->second->length);
  it->second->unmapped = true;
  return Napi::Boolean::New(info.Env(), true);
}

void UnmapLeftovers(void* arg) {
  napi_env env = static_cast<napi_env>(arg);
  std::lock_guard<std::mutex> lock(mappings_mutex);
  for (auto& entry : Mappings()) {
    Mapping* m = entry.second;
    if (m->env == env && !m->unmapped) {
      munmap(m->addr, m->length);
      m->unmapped = true;
    }
  }
}

}  // namespace

Napi::ArrayBuffer MappedBuffer(Napi::Env env, void* addr, size_t length) {
  // Node refuses an external ArrayBuffer beyond V8's typed-array limit (its Buffer::kMaxLength,
  // 4 GiB on Node 20), and on that path frees the finalizer's data twice: refuse it here, as an
  // error a caller can handle.
  if (length > v8::TypedArray::kMaxLength) {
    munmap(addr, length);
    ThrowErrno(env, EOVERFLOW, "mmap");
  }
  auto* mapping = new Mapping{addr, length, env, false};
  {
    std::lock_guard<std::mutex> lock(mappings_mutex);
    Mappings()[addr] = mapping;
  }
  return Napi::ArrayBuffer::New(env, addr, length, FinalizeMapping, mapping);
}

void InitMemory(Napi::Env env, Napi::Object exports) {
  napi_add_env_cleanup_hook(env, UnmapLeftovers, static_cast<napi_env>(env));
  exports.Set("shmOpen", Napi::Function::New(env, ShmOpen));
  exports.Set("shmUnlink", Napi::Function::New(env, ShmUnlink));
  exports.Set("openFile", Napi::Function::New(env, OpenFile));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate));
  exports.Set("tempFileIn", Napi::Function::New(env, TempFileIn));
  exports.Set("ftruncate", Napi::Function::New(env, Ftruncate));
  exports.Set("fstat", Napi::Function::New(env, Fstat));
  exports.Set("tryLock", Napi::Function::New(env, TryLock));
  exports.Set("sealShrink", Napi::Function::New(env, SealShrink));
  exports.Set("fileSeals", Napi::Function::New(env, FileSeals));
  exports.Set("mmap", Napi::Function::New(env, Mmap));
  exports.Set("munmap", Napi::Function::New(env, Munmap));
}

}  // namespace ivshmem
