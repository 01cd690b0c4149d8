/*
 * What an eventfd write(2) costs a process that touches memory between its calls, as a Node
 * process does (its heap, the addon, V8's code) where a tight C loop touches almost nothing: the
 * kernel's path is evicted from the caches and TLB in between, so the same system call costs
 * more. For each count of cache lines touched per call (random lines of a 64 MiB buffer), the
 * loop is timed with and without the write; the difference is the write's cost at that pressure.
 * Every 1,024 writes one read drains the counter, as in eventfd_write.c.
 *
 * Then the same tight loop (no lines touched) through glibc's write() and through syscall(2),
 * first as this process is (one thread) and then with a second, idle thread, as a Node process
 * always has: glibc's write() is a cancellation point, and with more than one thread it switches
 * asynchronous cancellation on and off around the call, which syscall(2) does not. The addon's
 * own eventfd writes go through syscall(2) (native/eventfd-io.cc), so "syscall(2) with two threads"
 * is the floor they can reach.
 *
 * Usage: write_floor <calls per pass>   Prints one JSON object:
 *   {"lines":[0,8,...],"writeNs":[...],"loopNs":[...],
 *    "tight":{"oneThread":{"write":..,"syscall":..},"twoThreads":{"write":..,"syscall":..}}}
 *   (the best of 3 passes each)
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *idle(void *arg) {
  pause();
  return arg;
}

/* ns per write in a tight loop, one drain per 1,024 writes; the best of 3 passes. */
static double tight(int fd, int raw, long calls) {
  double best = 1e300;
  for (int pass = 0; pass < 3; pass++) {
    const uint64_t one = 1;
    uint64_t value;
    double t0 = now_ns();
    for (long i = 0; i < calls; i++) {
      long n = raw ? syscall(SYS_write, fd, &one, sizeof one) : write(fd, &one, sizeof one);
      if (n != sizeof one) exit(1);
      if ((i & 1023) == 1023 && read(fd, &value, sizeof value) != sizeof value) exit(1);
    }
    double per_call = (now_ns() - t0) / (double)calls;
    if (per_call < best) best = per_call;
  }
  return best;
}

int main(int argc, char **argv) {
  long calls = argc > 1 ? atol(argv[1]) : 200000;
  if (calls <= 0) return 2;
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return 1;
  const size_t size = (size_t)64 << 20;
  volatile unsigned char *buffer = malloc(size);
  if (buffer == NULL) return 1;
  for (size_t i = 0; i < size; i += 64) buffer[i] = 1;
  static const unsigned lines[] = {0, 8, 32, 128};
  const int count = sizeof lines / sizeof lines[0];
  double write_ns[4], loop_ns[4];
  uint32_t x = 0x9e3779b9u;
  unsigned sink = 0;
  for (int k = 0; k < count; k++) {
    double best[2] = {1e300, 1e300};
    for (int pass = 0; pass < 3; pass++) {
      for (int with_write = 0; with_write < 2; with_write++) {
        const uint64_t one = 1;
        uint64_t value;
        double t0 = now_ns();
        for (long i = 0; i < calls; i++) {
          if (with_write) {
            if (write(fd, &one, sizeof one) != sizeof one) return 1;
            if ((i & 1023) == 1023 && read(fd, &value, sizeof value) != sizeof value) return 1;
          }
          for (unsigned j = 0; j < lines[k]; j++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            sink += buffer[(size_t)(x % (size / 64)) * 64];
          }
        }
        double per_call = (now_ns() - t0) / (double)calls;
        if (per_call < best[with_write]) best[with_write] = per_call;
      }
    }
    loop_ns[k] = best[0];
    write_ns[k] = best[1] - best[0];
  }
  printf("{\"lines\":[");
  for (int k = 0; k < count; k++) printf("%s%u", k ? "," : "", lines[k]);
  printf("],\"writeNs\":[");
  for (int k = 0; k < count; k++) printf("%s%.1f", k ? "," : "", write_ns[k]);
  printf("],\"loopNs\":[");
  for (int k = 0; k < count; k++) printf("%s%.1f", k ? "," : "", loop_ns[k]);
  double one_write = tight(fd, 0, calls), one_syscall = tight(fd, 1, calls);
  pthread_t thread;
  if (pthread_create(&thread, NULL, idle, NULL) != 0) return 1;
  double two_write = tight(fd, 0, calls), two_syscall = tight(fd, 1, calls);
  printf("],\"tight\":{\"oneThread\":{\"write\":%.1f,\"syscall\":%.1f},\"twoThreads\":{\"write\":%.1f,\"syscall\":%.1f}}",
         one_write, one_syscall, two_write, two_syscall);
  printf(",\"sink\":%u}\n", sink & 1);
  return 0;
}
