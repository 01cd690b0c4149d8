/*
 * The C baselines for bench/latency.bench.ts: a doorbell round trip between two processes with
 * nothing but the kernel in between. One program, four modes, two roles; the orchestrator starts
 * the two roles as separate processes (each pinned with taskset, as the Node peers are) and hands
 * both the same objects as inherited descriptors:
 *   fd 3  the ping side's eventfd (the pong side writes it)
 *   fd 4  the pong side's eventfd (the ping side writes it)
 *   fd 5  a memfd of at least 4096 bytes (spin mode)
 *
 * Modes:
 *   blocking  write the peer's eventfd, then block in read(2) on our own
 *   epoll     the same, waiting in epoll_wait(2) on our own non-blocking eventfd, then read(2)
 *   spinread  the same eventfds, the waiting side spinning on non-blocking read(2)s until the
 *             counter is non-zero: the fair baseline of a busy-polling doorbell (two system calls
 *             per ring, as the Node busy-poll path makes)
 *   spin      shared memory: each side publishes a sequence number in its own cache line with a
 *             release store and spins (acquire loads + pause) until the other echoes it
 *
 * The ping side times every round trip with clock_gettime(CLOCK_MONOTONIC), stops after `total`
 * round trips or once `deadline_ms` have passed, tells the pong side to stop, writes every sample
 * (uint64 ns, in order, warm-up included) to `samples_path` and prints one JSON object:
 *   {"mode", "done", "warmup", "p50", "p99", "p999", "min", "max"}   (ns, warm-up excluded)
 * The warm-up is the first `warmup` round trips, or a tenth of them if the deadline came first
 * (the orchestrator applies the same rule to the Node peers).
 * The pong side prints {"answered": n, "answerP50": ns} (its median time from waking to having rung
 * back, over every 16th answer after the warm-up; 0 for the shared-memory spin). Both give up (SIGALRM) after deadline_ms + 30 s.
 *
 * Usage: pingpong blocking|epoll|spinread|spin ping|pong <total> <warmup> <deadline_ms> [samples_path]
 * Built at bench time by bench/latency.bench.ts with the system compiler (cc -O2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PING_FD 3
#define PONG_FD 4
#define MEM_FD 5
/* An eventfd value no ping-pong reaches (the counter is 0 or 1 otherwise): stop. */
#define STOP_VALUE ((uint64_t)1 << 20)
#define STOP_SEQ UINT64_MAX

enum mode { BLOCKING, EPOLL, SPINREAD, SPIN };

static void die(const char *what) {
  fprintf(stderr, "pingpong: %s: %s\n", what, strerror(errno));
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#endif
}

static void signal_fd(int fd, uint64_t value) {
  ssize_t n;
  do n = write(fd, &value, sizeof value);
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t)sizeof value) die("write");
}

/* Blocking read of our own eventfd (its O_NONBLOCK was cleared). */
static uint64_t wait_blocking(int fd) {
  uint64_t value;
  ssize_t n;
  do n = read(fd, &value, sizeof value);
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t)sizeof value) die("read");
  return value;
}

static uint64_t wait_epoll(int ep, int fd) {
  for (;;) {
    struct epoll_event ev;
    int r = epoll_wait(ep, &ev, 1, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    uint64_t value;
    ssize_t n = read(fd, &value, sizeof value);
    if (n == (ssize_t)sizeof value) return value;
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    die("read");
  }
}

/* Non-blocking reads of our own eventfd until one returns a count. */
static uint64_t wait_spinread(int fd) {
  for (;;) {
    uint64_t value;
    ssize_t n = read(fd, &value, sizeof value);
    if (n == (ssize_t)sizeof value) return value;
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      cpu_relax();
      continue;
    }
    die("read");
  }
}

static uint64_t wait_event(enum mode mode, int ep, int fd) {
  return mode == BLOCKING ? wait_blocking(fd) : mode == SPINREAD ? wait_spinread(fd) : wait_epoll(ep, fd);
}

static void set_blocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) die("fcntl");
}

static int compare_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples. */
static uint64_t percentile(const uint64_t *sorted, long n, double p) {
  long rank = (long)((p / 100.0) * (double)n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: pingpong blocking|epoll|spinread|spin ping|pong <total> <warmup> <deadline_ms> [samples_path]\n");
    return 2;
  }
  enum mode mode;
  if (strcmp(argv[1], "blocking") == 0) mode = BLOCKING;
  else if (strcmp(argv[1], "epoll") == 0) mode = EPOLL;
  else if (strcmp(argv[1], "spinread") == 0) mode = SPINREAD;
  else if (strcmp(argv[1], "spin") == 0) mode = SPIN;
  else {
    fprintf(stderr, "pingpong: unknown mode %s\n", argv[1]);
    return 2;
  }
  int ping = strcmp(argv[2], "ping") == 0;
  if (!ping && strcmp(argv[2], "pong") != 0) {
    fprintf(stderr, "pingpong: unknown role %s\n", argv[2]);
    return 2;
  }
  long total = atol(argv[3]);
  long planned_warmup = atol(argv[4]);
  long deadline_ms = atol(argv[5]);
  const char *samples_path = argc > 6 ? argv[6] : NULL;
  if (total <= 0 || planned_warmup < 0 || planned_warmup >= total || deadline_ms <= 0 || (ping && samples_path == NULL)) {
    fprintf(stderr, "pingpong: bad arguments\n");
    return 2;
  }
  alarm((unsigned)(deadline_ms / 1000 + 30)); /* never outlive a lost peer */

  int own = ping ? PING_FD : PONG_FD;
  int other = ping ? PONG_FD : PING_FD;
  int ep = -1;
  volatile uint64_t *mine = NULL, *theirs = NULL;
  if (mode == BLOCKING) set_blocking(own);
  if (mode == EPOLL) {
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data = {.fd = own}};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, own, &ev) < 0) die("epoll_ctl");
  }
  if (mode == SPIN) {
    /* Two cache lines apart (adjacent-line prefetch), ping's first. */
    char *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, MEM_FD, 0);
    if (mem == MAP_FAILED) die("mmap");
    mine = (volatile uint64_t *)(mem + (ping ? 0 : 128));
    theirs = (volatile uint64_t *)(mem + (ping ? 128 : 0));
  }

  if (!ping) {
    long answered = 0;
    uint64_t last = 0;
    /* Every 16th answer is timed, from the wait's return to the write's (the Node pong times the
     * same span): what one side spends between waking and ringing back. */
    uint64_t *answers = malloc((size_t)(total / 16 + 1) * sizeof *answers);
    long timed = 0;
    if (answers == NULL) die("malloc");
    for (;;) {
      if (mode == SPIN) {
        uint64_t v;
        while ((v = __atomic_load_n(theirs, __ATOMIC_ACQUIRE)) == last) cpu_relax();
        if (v == STOP_SEQ) break;
        __atomic_store_n(mine, v, __ATOMIC_RELEASE);
        last = v;
      } else {
        uint64_t v = wait_event(mode, ep, own);
        if (v >= STOP_VALUE) break;
        int sampled = (answered & 15) == 0 && answered >= planned_warmup && timed <= total / 16;
        uint64_t t0 = sampled ? now_ns() : 0;
        signal_fd(other, 1);
        if (sampled) answers[timed++] = now_ns() - t0;
      }
      answered++;
    }
    uint64_t answer_p50 = 0;
    if (timed > 0) {
      qsort(answers, (size_t)timed, sizeof *answers, compare_u64);
      answer_p50 = percentile(answers, timed, 50);
    }
    printf("{\"answered\":%ld,\"answerP50\":%llu}\n", answered, (unsigned long long)answer_p50);
    return 0;
  }

  uint64_t *samples = malloc((size_t)total * sizeof *samples);
  if (samples == NULL) die("malloc");
  const uint64_t deadline = now_ns() + (uint64_t)deadline_ms * 1000000u;
  long done = 0;
  for (uint64_t seq = 1; done < total; seq++) {
    uint64_t t0 = now_ns();
    if (mode == SPIN) {
      __atomic_store_n(mine, seq, __ATOMIC_RELEASE);
      while (__atomic_load_n(theirs, __ATOMIC_ACQUIRE) != seq) cpu_relax();
    } else {
      signal_fd(other, 1);
      uint64_t v = wait_event(mode, ep, own);
      if (v != 1) {
        fprintf(stderr, "pingpong: eventfd counter %llu, expected 1\n", (unsigned long long)v);
        return 1;
      }
    }
    uint64_t t1 = now_ns();
    samples[done++] = t1 - t0;
    if (t1 > deadline) break;
  }
  if (mode == SPIN) __atomic_store_n(mine, STOP_SEQ, __ATOMIC_RELEASE);
  else signal_fd(other, STOP_VALUE);

  FILE *out = fopen(samples_path, "wb");
  if (out == NULL || fwrite(samples, sizeof *samples, (size_t)done, out) != (size_t)done || fclose(out) != 0) die("samples file");

  long warmup = done >= total ? planned_warmup : (done / 10 < planned_warmup ? done / 10 : planned_warmup);
  long n = done - warmup;
  if (n <= 0) {
    fprintf(stderr, "pingpong: no samples\n");
    return 1;
  }
  qsort(samples + warmup, (size_t)n, sizeof *samples, compare_u64);
  const uint64_t *s = samples + warmup;
  printf("{\"mode\":\"%s\",\"done\":%ld,\"warmup\":%ld,\"p50\":%llu,\"p99\":%llu,\"p999\":%llu,\"min\":%llu,\"max\":%llu}\n",
         argv[1], done, warmup, (unsigned long long)percentile(s, n, 50), (unsigned long long)percentile(s, n, 99),
         (unsigned long long)percentile(s, n, 99.9), (unsigned long long)s[0], (unsigned long long)s[n - 1]);
  free(samples);
  return 0;
}
