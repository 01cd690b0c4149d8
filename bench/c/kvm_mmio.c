// The C monitor baseline for bench/kvm.bench.ts: runs the same real-mode guest bytes as the
// TypeScript KvmMonitor and handles every doorbell MMIO exit by writing an eventfd directly.
//   kvm_mmio <image> <load_gpa> <bar0_gpa> <done_port> <rounds>
// The image is loaded at load_gpa in 512 KiB of RAM at GPA 0, the vCPU starts there in real mode.
// Phase 1 (setup) ends with OUT done_port, 1; every later OUT done_port, 2 ends one timed round.
// Port I/O other than the done port is ignored (INs read as all-ones), MMIO writes to bar0+0x0c
// of 4 bytes write the eventfd, other MMIO is ignored. Prints JSON: per round, ns and rings
// (the eventfd counter drained after the round) and exits.
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define RAM_SIZE 0x80000

static void die(const char *what) {
  fprintf(stderr, "kvm_mmio: %s: %s\n", what, strerror(errno));
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int efd;
static uint64_t bar0;
static int done_port;
static unsigned long exits;

// Runs until an OUT to the done port; returns the value written.
static int run_until_done(int vcpu, struct kvm_run *run) {
  for (;;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR) continue;
      die("KVM_RUN");
    }
    exits++;
    switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      uint8_t *data = (uint8_t *)run + run->io.data_offset;
      if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == done_port) return data[0];
      if (run->io.direction == KVM_EXIT_IO_IN) memset(data, 0xff, (size_t)run->io.size * run->io.count);
      break;
    }
    case KVM_EXIT_MMIO:
      if (run->mmio.is_write && run->mmio.len == 4 && run->mmio.phys_addr == bar0 + 0x0c) {
        uint64_t one = 1;
        if (write(efd, &one, sizeof one) != sizeof one) die("eventfd write");
      } else if (!run->mmio.is_write) {
        memset(run->mmio.data, 0xff, sizeof run->mmio.data);
      }
      break;
    case KVM_EXIT_INTR:
      break;
    default:
      fprintf(stderr, "kvm_mmio: unexpected exit %u\n", run->exit_reason);
      exit(1);
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: kvm_mmio <image> <load_gpa> <bar0_gpa> <done_port> <rounds>\n");
    return 2;
  }
  unsigned long load = strtoul(argv[2], NULL, 0);
  bar0 = strtoull(argv[3], NULL, 0);
  done_port = (int)strtol(argv[4], NULL, 0);
  int rounds = atoi(argv[5]);

  uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (ram == MAP_FAILED) die("mmap ram");
  FILE *f = fopen(argv[1], "rb");
  if (f == NULL) die(argv[1]);
  size_t n = fread(ram + load, 1, RAM_SIZE - load, f);
  fclose(f);
  if (n == 0) die("empty image");

  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("/dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0) die("KVM_SET_TSS_ADDR");
  if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP");
  struct kvm_userspace_memory_region region = {
    .slot = 0, .guest_phys_addr = 0, .memory_size = RAM_SIZE, .userspace_addr = (uint64_t)(uintptr_t)ram,
  };
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  long size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size <= 0) die("KVM_GET_VCPU_MMAP_SIZE");
  struct kvm_run *run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");
  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs;
  memset(&regs, 0, sizeof regs);
  regs.rip = load;
  regs.rflags = 0x2;
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

  efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) die("eventfd");

  int v = run_until_done(vcpu, run);
  if (v != 1) {
    fprintf(stderr, "kvm_mmio: setup phase ended with %d, not 1\n", v);
    return 1;
  }
  uint64_t drained;
  if (read(efd, &drained, sizeof drained) < 0 && errno != EAGAIN) die("eventfd read");

  printf("{\"rounds\":[");
  for (int r = 0; r < rounds; r++) {
    unsigned long before = exits;
    uint64_t t0 = now_ns();
    v = run_until_done(vcpu, run);
    uint64_t t1 = now_ns();
    if (v != 2) {
      fprintf(stderr, "kvm_mmio: round %d ended with %d, not 2\n", r, v);
      return 1;
    }
    uint64_t rings = 0;
    if (read(efd, &rings, sizeof rings) < 0) {
      if (errno != EAGAIN) die("eventfd read");
      rings = 0;
    }
    printf("%s{\"ns\":%llu,\"rings\":%llu,\"exits\":%lu}", r ? "," : "", (unsigned long long)(t1 - t0),
           (unsigned long long)rings, exits - before);
  }
  printf("]}\n");
  return 0;
}
