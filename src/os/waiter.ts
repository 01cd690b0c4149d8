// Three ways to wait for a set of eventfds behind one interface. Each drains the eventfd that
// fired in native code before reporting it, so one signal is reported once.
//   loop     — libuv poll handles on the calling thread's event loop (main thread or worker);
//   blocking — poll(2) on a thread of its own (a worker), the "vCPU thread" pattern;
//   spin     — non-blocking reads in a loop: lowest latency, one core busy;
//   adaptive — spins for a budget of rounds, then blocks in poll(2): near-spin latency while
//              doorbells come close together, an idle core when they stop (spin-then-park, as
//              a VMM's halt polling does). Meant for peers on different CPUs: on a shared CPU,
//              the peer that would ring cannot run while this one spins.
// run() on a blocking or spin waiter occupies its thread until stop(), which may come from any
// thread: stopWaiter(stopFd, stopValue). A blocking waiter on one fd (a vCPU thread waiting for
// its vector) blocks in read(2) itself, one system call per wake-up as in C: it makes the fd's
// description blocking until close(), so it must be the fd's only reader, and it is stopped
// through that same fd (a mark added to the counter, far above any doorbell count). With several
// fds, or spinning, the wait includes a stop eventfd of the waiter's own (stopValue 'one').
import { native } from './binding.js';
import { FdWatcher } from './fd-watcher.js';
import { EventFd } from './eventfd.js';
import { checkInt32, errnoError, fastBinding } from './fast-binding.js';
import type { FastBinding } from './fast-binding.js';
import { IvshmemError, argumentError } from '../errors.js';

export type WaitKind = 'loop' | 'blocking' | 'spin' | 'adaptive';

/** Called with the index (in the fds given) of the eventfd that fired and its drained counter. */
export type OnReady = (index: number, count: number) => void;

export interface EventfdWaiter {
  readonly kind: WaitKind;
  /** loop: starts watching and returns. blocking/spin: reports readiness until stop(). */
  run(onReady: OnReady): void;
  /** One bounded wait: the index that fired (its count in `lastCount`), or -1 (timeout, or stop). */
  waitOnce(budget?: number): number;
  /** Counter drained by the last waitOnce. */
  readonly lastCount: number;
  /** Ends run(): from this thread, or from another one by signalling stopFd. */
  stop(): void;
  /** The eventfd that stop() writes stopValue to, for stopping from another thread (blocking
   *  and spin): use stopWaiter(stopFd, stopValue). */
  readonly stopFd: number;
  readonly stopValue: 'one' | 'mark';
  /** Keeps (ref) or stops keeping (unref) the event loop alive: loop waiters only. */
  ref(): void;
  unref(): void;
  close(): void;
}

export interface WaiterOptions {
  /** spin: rounds of reads over all fds per native call (default 10,000). adaptive: rounds
   *  before it blocks (default 200: about 50-100 µs where a read(2) costs 250-500 ns). */
  spinRounds?: number;
  /** loop: called if waiting fails (e.g. an fd was closed underneath). Default: throw. */
  onError?: (err: Error) => void;
}

/** Stops a blocking or spin waiter's run() or waitOnce() from any thread. */
export function stopWaiter(stopFd: number, stopValue: EventfdWaiter['stopValue']): void {
  if (stopValue === 'mark') native().addStopMark(stopFd);
  else native().eventfdSignal(stopFd);
}

export function createWaiter(kind: WaitKind, fds: readonly number[], options: WaiterOptions = {}): EventfdWaiter {
  if (!Array.isArray(fds) || fds.length === 0 || !fds.every((fd) => Number.isInteger(fd) && fd >= 0)) {
    throw argumentError(TypeError, 'ERR_INVALID_ARG_VALUE', 'fds must be a non-empty array of file descriptors');
  }
  if (kind === 'loop') return new LoopWaiter(fds, options);
  if (kind === 'blocking' && fds.length === 1) return new ReadWaiter(fds[0]);
  if (kind === 'blocking' || kind === 'spin' || kind === 'adaptive') return new ThreadWaiter(kind, fds, options);
  throw argumentError(
    TypeError,
    'ERR_INVALID_ARG_VALUE',
    `unknown wait kind ${JSON.stringify(kind)}: use loop, blocking, spin or adaptive`,
  );
}

class LoopWaiter implements EventfdWaiter {
  readonly kind = 'loop' as const;
  readonly stopFd = -1;
  readonly stopValue = 'one' as const;
  lastCount = 0;
  readonly #fds: readonly number[];
  readonly #onError: (err: Error) => void;
  #watchers: FdWatcher[] = [];
  #unref = false;
  #closed = false;

  constructor(fds: readonly number[], options: WaiterOptions) {
    this.#fds = fds;
    this.#onError =
      options.onError ??
      ((err) => {
        throw err;
      });
  }

  run(onReady: OnReady): void {
    if (this.#closed) throw new IvshmemError('ERR_IVSHMEM_CLOSED', 'the waiter is closed');
    this.stop();
    try {
      for (const [index, fd] of this.#fds.entries()) {
        const w = FdWatcher.forSignals(fd, (err, count) => {
          if (err) this.#onError(err);
          else onReady(index, count);
        });
        this.#watchers.push(w);
        w.start();
        if (this.#unref) w.unref();
      }
    } catch (err) {
      this.stop(); // none half-started
      throw err;
    }
  }

  waitOnce(): number {
    throw argumentError(
      TypeError,
      'ERR_INVALID_ARG_VALUE',
      'a loop waiter reports through run(); use a blocking or spin waiter to wait in place',
    );
  }

  stop(): void {
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
  }

  ref(): void {
    this.#unref = false;
    for (const w of this.#watchers) w.ref();
  }

  unref(): void {
    this.#unref = true;
    for (const w of this.#watchers) w.unref();
  }

  close(): void {
    this.stop();
    this.#closed = true;
  }
}

type ThreadKind = 'blocking' | 'spin' | 'adaptive';

class ThreadWaiter implements EventfdWaiter {
  readonly kind: ThreadKind;
  readonly stopValue = 'one' as const;
  readonly #all: Int32Array; // the fds, then our stop eventfd
  readonly #fds: Int32Array; // the fds alone: what a spin reads round after round
  readonly #stop: EventFd;
  readonly #out = new Float64Array(1);
  readonly #rounds: number;
  // One fd, the common case, spins in a V8 fast call where the fast-call module is built.
  readonly #fastSpin: FastBinding | null;

  constructor(kind: ThreadKind, fds: readonly number[], options: WaiterOptions) {
    const rounds = options.spinRounds ?? (kind === 'adaptive' ? 200 : 10_000);
    if (!Number.isInteger(rounds) || rounds < 0 || rounds > 0x7fffffff) {
      throw argumentError(
        RangeError,
        'ERR_OUT_OF_RANGE',
        `spinRounds must be an integer from 0 to 2^31-1, got ${String(rounds)}`,
      );
    }
    this.kind = kind;
    this.#rounds = rounds;
    this.#stop = EventFd.create();
    this.#all = Int32Array.from([...fds, this.#stop.fd]);
    this.#fds = Int32Array.from(fds);
    this.#fastSpin = fds.length === 1 && kind !== 'blocking' ? fastBinding() : null;
  }

  get stopFd(): number {
    return this.#stop.fd;
  }

  get lastCount(): number {
    return this.#out[0];
  }

  // A spin's budget is rounds of reads; the others block for ever (milliseconds < 0).
  #defaultBudget(): number {
    return this.kind === 'spin' ? this.#rounds : -1;
  }

  // budget: milliseconds of blocking (blocking, adaptive; < 0: for ever), rounds (spin).
  #waitIndex(budget: number): number {
    // ERR_IVSHMEM_CLOSED once closed: #all would name fds that are no longer ours
    if (this.#stop.closed) throw new IvshmemError('ERR_IVSHMEM_CLOSED', 'the waiter is closed');
    if (this.kind === 'blocking') return native().waitReadable(this.#all, budget, this.#out);
    if (this.kind === 'adaptive') {
      // The stop eventfd is left to the blocking part: a stop is seen within one spin budget.
      const i = this.#rounds > 0 ? this.#spin(this.#rounds) : -1;
      return i >= 0 ? i : native().waitReadable(this.#all, budget, this.#out);
    }
    // A spin reads only the fds, so each round costs one read per fd, as a C spinner's does; the
    // stop eventfd is looked at when a budget runs out (a stop is seen within one budget).
    const i = this.#spin(budget);
    if (i >= 0) return i;
    return this.#stop.drain() > 0 ? this.#all.length - 1 : -1;
  }

  // The index of the fd that had doorbells (their count in #out), or -1 when the rounds ran out.
  #spin(rounds: number): number {
    const fast = this.#fastSpin;
    if (fast === null) return native().spinReadable(this.#fds, rounds, this.#out);
    checkInt32(rounds, 'maxRounds');
    const n = fast.spinRead(this.#fds[0], rounds);
    if (n === 0) return -1;
    if (n < 0) throw errnoError(-n, 'read');
    this.#out[0] = n;
    return 0;
  }

  run(onReady: OnReady): void {
    const stopIndex = this.#all.length - 1;
    for (;;) {
      const i = this.#waitIndex(this.#defaultBudget());
      if (i === stopIndex) return;
      if (i >= 0) onReady(i, this.#out[0]);
    }
  }

  /** budget: milliseconds for blocking and for adaptive's blocking part (default: for ever),
   *  rounds for spin (default spinRounds). */
  waitOnce(budget?: number): number {
    const i = this.#waitIndex(budget ?? this.#defaultBudget());
    return i === this.#all.length - 1 ? -1 : i;
  }

  stop(): void {
    this.#stop.signal();
  }

  ref(): void {}

  unref(): void {}

  close(): void {
    this.#stop.close();
  }
}

// One fd, blocking: read(2) is the wait. A timed wait (waitOnce with a budget) polls that one fd
// first. A stop that arrives with doorbells reports them first and stops on the next wait.
class ReadWaiter implements EventfdWaiter {
  readonly kind = 'blocking' as const;
  readonly stopValue = 'mark' as const;
  readonly #fd: number;
  readonly #out = new Float64Array(1);
  #stopPending = false;
  #closed = false;

  constructor(fd: number) {
    this.#fd = fd;
    native().setBlocking(fd, true);
  }

  get stopFd(): number {
    this.#live();
    return this.#fd;
  }

  get lastCount(): number {
    return this.#out[0];
  }

  #live(): void {
    if (this.#closed) throw new IvshmemError('ERR_IVSHMEM_CLOSED', 'the waiter is closed');
  }

  // 0 with lastCount, or -1 when stopped (or the budget passed).
  #wait(budget: number): number {
    this.#live();
    if (this.#stopPending) {
      this.#stopPending = false;
      this.#out[0] = 0;
      return -1;
    }
    const r = native().readBlocking(this.#fd, this.#out, budget);
    if (r <= 0) return r;
    if (this.#out[0] === 0) return -1;
    this.#stopPending = true; // the doorbells that came with the stop are reported first
    return 0;
  }

  run(onReady: OnReady): void {
    for (;;) {
      const i = this.#wait(-1);
      if (i < 0) return;
      onReady(0, this.#out[0]);
    }
  }

  /** budget: milliseconds (default: forever, one read(2) per wake-up). */
  waitOnce(budget?: number): number {
    return this.#wait(budget ?? -1);
  }

  stop(): void {
    native().addStopMark(this.stopFd);
  }

  ref(): void {}

  unref(): void {}

  /** Gives the fd back non-blocking, as it was (it belongs to whoever handed it to us). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      native().setBlocking(this.#fd, false);
    } catch {
      // closed underneath by its owner: nothing to give back
    }
  }
}
