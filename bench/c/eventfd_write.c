/*
 * The baseline for bench/native.bench.ts: the cost of the doorbell's syscall with nothing around
 * it. Times batches of `batch` write(2)s of the integer 1 to a non-blocking eventfd (the counter
 * drained by one read(2) per batch, inside the timing, as the JavaScript tasks do), with
 * clock_gettime(CLOCK_MONOTONIC) around each batch, for `time_ms` after `warmup_ms` of the same.
 * Prints one JSON object; every figure is ns per write (batch time / batch).
 *
 * Usage: eventfd_write [batch=1024] [time_ms=1500] [warmup_ms=250]
 * Built at bench time by bench/native.bench.ts with the system compiler (cc -O2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "eventfd_write: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* One batch: `batch` signals, then the drain. Returns its duration in ns. */
static double run_batch(int fd, long batch) {
  const uint64_t one = 1;
  uint64_t value;
  double start = now_ns();
  for (long i = 0; i < batch; i++) {
    ssize_t n;
    do n = write(fd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof one) die("write");
  }
  if (read(fd, &value, sizeof value) != (ssize_t)sizeof value || value != (uint64_t)batch) die("read");
  return now_ns() - start;
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  long batch = argc > 1 ? atol(argv[1]) : 1024;
  double time_ms = argc > 2 ? atof(argv[2]) : 1500;
  double warmup_ms = argc > 3 ? atof(argv[3]) : 250;
  if (batch < 1 || time_ms <= 0 || warmup_ms < 0) {
    fprintf(stderr, "usage: eventfd_write [batch] [time_ms] [warmup_ms]\n");
    return 2;
  }
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) die("eventfd");

  double end = now_ns() + warmup_ms * 1e6;
  while (now_ns() < end) run_batch(fd, batch);

  size_t capacity = 1 << 16, count = 0;
  double *samples = malloc(capacity * sizeof *samples);
  if (samples == NULL) die("malloc");
  end = now_ns() + time_ms * 1e6;
  while (now_ns() < end) {
    if (count == capacity) {
      capacity *= 2;
      samples = realloc(samples, capacity * sizeof *samples);
      if (samples == NULL) die("realloc");
    }
    samples[count++] = run_batch(fd, batch);
  }
  close(fd);

  double total = 0;
  for (size_t i = 0; i < count; i++) total += samples[i];
  qsort(samples, count, sizeof *samples, compare);
  double per = (double)batch;
#define AT(q) (samples[(size_t)((q) * (double)(count - 1))] / per)
  printf("{\"batch\":%ld,\"batches\":%zu,\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"mean\":%.3f,\"min\":%.3f,\"max\":%.3f}\n",
         batch, count, AT(0.5), AT(0.99), AT(0.999), total / (double)count / per, samples[0] / per, samples[count - 1] / per);
  free(samples);
  return 0;
}
