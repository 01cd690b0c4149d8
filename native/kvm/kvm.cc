// Minimal KVM: enough of a VMM to run a few instructions of a real-mode guest against the device.
// /dev/kvm, a VM with guest RAM taken from an existing mapping, one vCPU in real mode, KVM_RUN
// with the mmap'ed kvm_run handed to JavaScript (it decodes exits and completes MMIO reads by
// writing kvm_run.mmio.data), plus ioeventfd, the in-kernel irqchip, irq lines and irqfd. Every
// fd is registered, so the env's cleanup hook closes what JavaScript left open.
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../common.h"

namespace ivshmem {
namespace {

// The layout the TypeScript wrapper reads through its view of kvm_run (src/monitors/kvm/kvm.ts).
static_assert(offsetof(struct kvm_run, exit_reason) == 8, "kvm_run.exit_reason");
static_assert(offsetof(struct kvm_run, mmio) == 32, "kvm_run.mmio");
static_assert(offsetof(struct kvm_run, mmio.phys_addr) == 32, "kvm_run.mmio.phys_addr");
static_assert(offsetof(struct kvm_run, mmio.data) == 40, "kvm_run.mmio.data");
static_assert(offsetof(struct kvm_run, mmio.len) == 48, "kvm_run.mmio.len");
static_assert(offsetof(struct kvm_run, mmio.is_write) == 52, "kvm_run.mmio.is_write");
static_assert(offsetof(struct kvm_run, io.direction) == 32, "kvm_run.io.direction");
static_assert(offsetof(struct kvm_run, io.size) == 33, "kvm_run.io.size");
static_assert(offsetof(struct kvm_run, io.port) == 34, "kvm_run.io.port");
static_assert(offsetof(struct kvm_run, io.count) == 36, "kvm_run.io.count");
static_assert(offsetof(struct kvm_run, io.data_offset) == 40, "kvm_run.io.data_offset");

// Where KVM_SET_TSS_ADDR puts the three TSS pages: QEMU's choice, just below the BIOS.
constexpr unsigned long kTssAddr = 0xfffbd000;
// struct kvm_irq_routing is an 8-byte header (nr, flags) followed by the entries. C++ sees the
// header's flexible array through an empty struct that moves it to offset 16, so this file lays
// the table out by hand and spells the request (which encodes the header size) out too.
constexpr size_t kRoutingHeader = 2 * sizeof(__u32);
constexpr unsigned long kSetGsiRouting = _IOC(_IOC_WRITE, KVMIO, 0x6a, kRoutingHeader);

// What kvmRun returns when a signal interrupted KVM_RUN (EINTR); exit reasons are all >= 0.
constexpr int kRunInterrupted = -1;

std::atomic<long> vcpu_mmap_size{0};

// ioctl, retried on EINTR (none of the ones retried here has side effects when interrupted).
long Ioctl(int fd, unsigned long request, unsigned long arg) {
  long r;
  do {
    r = ioctl(fd, request, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

template <typename T>
long IoctlPtr(int fd, unsigned long request, T* arg) {
  return Ioctl(fd, request, reinterpret_cast<unsigned long>(arg));
}

// An fd an ioctl created (KVM opens them O_CLOEXEC), registered, or a coded error.
Napi::Value NewFd(Napi::Env env, long fd) {
  if (fd < 0) ThrowErrno(env, errno, "ioctl");
  int f = static_cast<int>(fd);
  RegisterFd(env, f);
  return Napi::Number::New(env, f);
}

Napi::Value KvmOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  do {
    fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) ThrowErrno(env, errno, "open", "/dev/kvm");
  long version = ioctl(fd, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    int err = version < 0 ? errno : ENOTSUP;
    close(fd);
    ThrowErrno(env, err, "ioctl", "/dev/kvm");
  }
  long size = ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "ioctl", "/dev/kvm");
  }
  vcpu_mmap_size.store(size);
  RegisterFd(env, fd);
  return Napi::Number::New(env, fd);
}

// KVM_CHECK_EXTENSION on /dev/kvm or a VM: 0 when absent, else a capability-specific value.
Napi::Value KvmCheckExtension(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  int cap = ArgInt32(info, 1, "cap");
  long r = Ioctl(fd, KVM_CHECK_EXTENSION, static_cast<unsigned long>(cap));
  if (r < 0) ThrowErrno(info.Env(), errno, "ioctl");
  return Napi::Number::New(info.Env(), static_cast<double>(r));
}

// A VM, with its TSS placed (needed for real mode on Intel without unrestricted guest).
Napi::Value KvmCreateVm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int kvm = ArgInt32(info, 0, "kvmFd");
  long fd = Ioctl(kvm, KVM_CREATE_VM, 0);
  if (fd < 0) ThrowErrno(env, errno, "ioctl");
  if (Ioctl(static_cast<int>(fd), KVM_SET_TSS_ADDR, kTssAddr) < 0) {
    int err = errno;
    close(static_cast<int>(fd));
    ThrowErrno(env, err, "ioctl");
  }
  return NewFd(env, fd);
}

// Anonymous MAP_SHARED memory for guest RAM, as an external ArrayBuffer munmap() can release.
Napi::Value KvmAllocMemory(const Napi::CallbackInfo& info) {
  int64_t size = ArgInt64(info, 0, "size");
  if (size <= 0 || size % getpagesize() != 0) ThrowErrno(info.Env(), EINVAL, "mmap");
  void* addr = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (addr == MAP_FAILED) ThrowErrno(info.Env(), errno, "mmap");
  return MappedBuffer(info.Env(), addr, static_cast<size_t>(size));
}

// Maps an ArrayBuffer's bytes into the guest at guestPhys (KVM_SET_USER_MEMORY_REGION). The
// buffer must be page-aligned and a whole number of pages (mmap'ed memory is); null or an empty
// buffer deletes the slot. The caller keeps the buffer mapped while the slot exists.
Napi::Value KvmSetMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int vm = ArgInt32(info, 0, "vmFd");
  int32_t slot = ArgInt32(info, 1, "slot");
  int64_t gpa = ArgInt64(info, 2, "guestPhys");
  struct kvm_userspace_memory_region region = {};
  region.slot = static_cast<uint32_t>(slot);
  region.guest_phys_addr = static_cast<uint64_t>(gpa);
  if (info.Length() > 3 && info[3].IsArrayBuffer()) {
    Napi::ArrayBuffer buffer = info[3].As<Napi::ArrayBuffer>();
    uintptr_t addr = reinterpret_cast<uintptr_t>(buffer.Data());
    size_t page = static_cast<size_t>(getpagesize());
    if (addr == 0 || addr % page != 0 || buffer.ByteLength() % page != 0) ThrowErrno(env, EINVAL, "ioctl");
    region.userspace_addr = addr;
    region.memory_size = buffer.ByteLength();
  } else if (!(info.Length() > 3 && info[3].IsNull())) {
    ThrowType(env, "argument memory must be an ArrayBuffer or null");
  }
  if (IoctlPtr(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) ThrowErrno(env, errno, "ioctl");
  return env.Undefined();
}

Napi::Value KvmCreateVcpu(const Napi::CallbackInfo& info) {
  int vm = ArgInt32(info, 0, "vmFd");
  int32_t id = info.Length() > 1 && !info[1].IsUndefined() ? ArgInt32(info, 1, "id") : 0;
  return NewFd(info.Env(), Ioctl(vm, KVM_CREATE_VCPU, static_cast<unsigned long>(id)));
}

// The vCPU's kvm_run, mmap'ed: exit details are read, and MMIO read data written, through it.
Napi::Value KvmRunBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int vcpu = ArgInt32(info, 0, "vcpuFd");
  // Set by kvmOpen, which any vCPU fd of this process comes after; the size is process-wide.
  long size = vcpu_mmap_size.load();
  if (size <= 0) ThrowErrno(env, EBADF, "mmap");
  void* addr = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (addr == MAP_FAILED) ThrowErrno(env, errno, "mmap");
  return MappedBuffer(env, addr, static_cast<size_t>(size));
}

// 16-bit real mode at CS:IP = 0:rip with RFLAGS 0x2 (the reset state has CS base 0xffff0000).
// x86 only: the other architectures' vCPUs have no real mode (the arm64 prebuild gets ENOSYS).
Napi::Value KvmSetRealMode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int vcpu = ArgInt32(info, 0, "vcpuFd");
  int64_t rip = ArgInt64(info, 1, "rip");
  if (rip < 0 || rip > 0xffff) ThrowErrno(env, EINVAL, "ioctl");
#if !defined(__x86_64__) && !defined(__i386__)
  (void)vcpu;
  ThrowErrno(env, ENOSYS, "ioctl");
#else
  struct kvm_sregs sregs;
  if (IoctlPtr(vcpu, KVM_GET_SREGS, &sregs) < 0) ThrowErrno(env, errno, "ioctl");
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  if (IoctlPtr(vcpu, KVM_SET_SREGS, &sregs) < 0) ThrowErrno(env, errno, "ioctl");
  struct kvm_regs regs = {};
  regs.rip = static_cast<uint64_t>(rip);
  regs.rflags = 0x2;
  if (IoctlPtr(vcpu, KVM_SET_REGS, &regs) < 0) ThrowErrno(env, errno, "ioctl");
  return env.Undefined();
#endif
}

// KVM_RUN until the next exit. Returns kvm_run.exit_reason read from `run` (the vCPU's
// kvmRunBuffer, kept alive by being an argument), or -1 when a signal interrupted the run.
Napi::Value KvmRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int vcpu = ArgInt32(info, 0, "vcpuFd");
  if (info.Length() < 2 || !info[1].IsArrayBuffer()) ThrowType(env, "argument run must be an ArrayBuffer");
  Napi::ArrayBuffer run = info[1].As<Napi::ArrayBuffer>();
  if (run.Data() == nullptr || run.ByteLength() < sizeof(struct kvm_run)) ThrowErrno(env, EINVAL, "ioctl");
  struct kvm_run* kvm_run = static_cast<struct kvm_run*>(run.Data());
  int r = ioctl(vcpu, KVM_RUN, 0);
  int err = errno;
  // A kick is served by this return. After an INTR exit the monitor looks at its fds; after any
  // other exit a kick cleared here is not lost either: the kicker polls level-triggered fds again
  // once re-armed, finds them still readable, and kicks the next KVM_RUN.
  __atomic_store_n(&kvm_run->immediate_exit, 0, __ATOMIC_SEQ_CST);
  if (r < 0) {
    if (err == EINTR) return Napi::Number::New(env, kRunInterrupted);
    ThrowErrno(env, err, "ioctl");
  }
  return Napi::Number::New(env, kvm_run->exit_reason);
}

// An eventfd the kernel signals on a guest write of `len` bytes at MMIO address `addr` (no exit
// to userspace); datamatch < 0 matches any value. deassign removes the same registration.
Napi::Value KvmIoeventfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int vm = ArgInt32(info, 0, "vmFd");
  int64_t addr = ArgInt64(info, 1, "addr");
  int32_t len = ArgInt32(info, 2, "len");
  int64_t datamatch = ArgInt64(info, 3, "datamatch");
  int32_t fd = ArgInt32(info, 4, "eventfd");
  bool deassign = info.Length() > 5 && !info[5].IsUndefined() ? ArgBool(info, 5, "deassign") : false;
  struct kvm_ioeventfd io = {};
  io.addr = static_cast<uint64_t>(addr);
  io.len = static_cast<uint32_t>(len);
  io.fd = fd;
  if (datamatch >= 0) {
    io.datamatch = static_cast<uint64_t>(datamatch);
    io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
  }
  if (deassign) io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  if (IoctlPtr(vm, KVM_IOEVENTFD, &io) < 0) ThrowErrno(env, errno, "ioctl");
  return env.Undefined();
}

Napi::Value KvmCreateIrqchip(const Napi::CallbackInfo& info) {
  int vm = ArgInt32(info, 0, "vmFd");
  if (Ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) ThrowErrno(info.Env(), errno, "ioctl");
  return info.Env().Undefined();
}

Napi::Value KvmIrqLine(const Napi::CallbackInfo& info) {
  int vm = ArgInt32(info, 0, "vmFd");
  struct kvm_irq_level level = {};
  level.irq = static_cast<uint32_t>(ArgInt32(info, 1, "irq"));
  level.level = static_cast<uint32_t>(ArgInt32(info, 2, "level"));
  if (IoctlPtr(vm, KVM_IRQ_LINE, &level) < 0) ThrowErrno(info.Env(), errno, "ioctl");
  return info.Env().Undefined();
}

// An eventfd whose signal raises GSI `gsi` in the in-kernel irqchip (edge: assert + deassert).
Napi::Value KvmIrqfd(const Napi::CallbackInfo& info) {
  int vm = ArgInt32(info, 0, "vmFd");
  struct kvm_irqfd irqfd = {};
  irqfd.gsi = static_cast<uint32_t>(ArgInt32(info, 1, "gsi"));
  irqfd.fd = static_cast<uint32_t>(ArgInt32(info, 2, "eventfd"));
  if (info.Length() > 3 && !info[3].IsUndefined() && ArgBool(info, 3, "deassign")) irqfd.flags |= KVM_IRQFD_FLAG_DEASSIGN;
  if (IoctlPtr(vm, KVM_IRQFD, &irqfd) < 0) ThrowErrno(info.Env(), errno, "ioctl");
  return info.Env().Undefined();
}

// KVM_SIGNAL_MSI: one MSI message written by the device. Returns how many vCPUs took it: 0 (or
// KVM's EPERM, "nobody matched") when the guest blocked it, e.g. with its LAPIC software-disabled.
Napi::Value KvmSignalMsi(const Napi::CallbackInfo& info) {
  int vm = ArgInt32(info, 0, "vmFd");
  int64_t address = ArgInt64(info, 1, "address");
  struct kvm_msi msi = {};
  msi.address_lo = static_cast<uint32_t>(address);
  msi.address_hi = static_cast<uint32_t>(static_cast<uint64_t>(address) >> 32);
  msi.data = static_cast<uint32_t>(ArgInt64(info, 2, "data"));
  long r = IoctlPtr(vm, KVM_SIGNAL_MSI, &msi);
  if (r < 0 && errno == EPERM) r = 0;
  if (r < 0) ThrowErrno(info.Env(), errno, "ioctl");
  return Napi::Number::New(info.Env(), static_cast<double>(r));
}

// KVM_SET_GSI_ROUTING: replaces the VM's whole GSI table. Entries come as a Float64Array of
// 5-number records: [gsi, 1 (irqchip), chip, pin, 0] or [gsi, 2 (msi), address, 0, data].
Napi::Value KvmSetGsiRouting(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int vm = ArgInt32(info, 0, "vmFd");
  if (info.Length() < 2 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    ThrowType(env, "argument entries must be a Float64Array");
  }
  Napi::Float64Array records = info[1].As<Napi::Float64Array>();
  size_t count = records.ElementLength() / 5;
  if (records.ElementLength() % 5 != 0 || count > 4096 /* the kernel's KVM_MAX_IRQ_ROUTES */) ThrowErrno(env, EINVAL, "ioctl");
  // uint64_t storage keeps the entries (which hold u64 fields) 8-byte aligned.
  std::vector<uint64_t> storage((kRoutingHeader + count * sizeof(struct kvm_irq_routing_entry)) / sizeof(uint64_t), 0);
  auto* header = reinterpret_cast<__u32*>(storage.data());
  header[0] = static_cast<__u32>(count);  // nr; header[1], flags, stays 0
  auto* entries = reinterpret_cast<struct kvm_irq_routing_entry*>(reinterpret_cast<uint8_t*>(storage.data()) + kRoutingHeader);
  for (size_t i = 0; i < count; i++) {
    const double* r = records.Data() + i * 5;
    struct kvm_irq_routing_entry& e = entries[i];
    e.gsi = static_cast<uint32_t>(r[0]);
    if (r[1] == 1) {
      e.type = KVM_IRQ_ROUTING_IRQCHIP;
      e.u.irqchip.irqchip = static_cast<uint32_t>(r[2]);
      e.u.irqchip.pin = static_cast<uint32_t>(r[3]);
    } else if (r[1] == 2) {
      e.type = KVM_IRQ_ROUTING_MSI;
      uint64_t address = static_cast<uint64_t>(r[2]);
      e.u.msi.address_lo = static_cast<uint32_t>(address);
      e.u.msi.address_hi = static_cast<uint32_t>(address >> 32);
      e.u.msi.data = static_cast<uint32_t>(r[4]);
    } else {
      ThrowErrno(env, EINVAL, "ioctl");
    }
  }
  if (IoctlPtr(vm, kSetGsiRouting, storage.data()) < 0) ThrowErrno(env, errno, "ioctl");
  return env.Undefined();
}

}  // namespace

void InitKvm(Napi::Env env, Napi::Object exports) {
  exports.Set("kvmOpen", Napi::Function::New(env, KvmOpen));
  exports.Set("kvmCheckExtension", Napi::Function::New(env, KvmCheckExtension));
  exports.Set("kvmCreateVm", Napi::Function::New(env, KvmCreateVm));
  exports.Set("kvmAllocMemory", Napi::Function::New(env, KvmAllocMemory));
  exports.Set("kvmSetMemory", Napi::Function::New(env, KvmSetMemory));
  exports.Set("kvmCreateVcpu", Napi::Function::New(env, KvmCreateVcpu));
  exports.Set("kvmRunBuffer", Napi::Function::New(env, KvmRunBuffer));
  exports.Set("kvmSetRealMode", Napi::Function::New(env, KvmSetRealMode));
  exports.Set("kvmRun", Napi::Function::New(env, KvmRun));
  exports.Set("kvmIoeventfd", Napi::Function::New(env, KvmIoeventfd));
  exports.Set("kvmCreateIrqchip", Napi::Function::New(env, KvmCreateIrqchip));
  exports.Set("kvmIrqLine", Napi::Function::New(env, KvmIrqLine));
  exports.Set("kvmIrqfd", Napi::Function::New(env, KvmIrqfd));
  exports.Set("kvmSignalMsi", Napi::Function::New(env, KvmSignalMsi));
  exports.Set("kvmSetGsiRouting", Napi::Function::New(env, KvmSetGsiRouting));
}

}  // namespace ivshmem
