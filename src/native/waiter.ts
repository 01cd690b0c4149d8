// Three ways to wait for a set of eventfds behind one interface. Each drains the eventfd that
// fired in native code before reporting it, so one signal is reported once.
//   loop     — libuv poll handles on the calling thread's event loop (main thread or worker);
//   blocking — poll(2) on a thread of its own (a worker), the "vCPU thread" pattern;
//   spin     — non-blocking reads in a loop: lowest latency, one core busy.
// run() on a blocking or spin waiter occupies its thread until stop(), which may come from any
// thread: it signals the waiter's own stop eventfd (stopFd), which the wait includes.
import { native } from './binding.js';
import type { RawFdWatcher } from './binding.js';
import { EventFd } from './eventfd.js';
import { IvshmemError, argumentError } from '../errors.js';

export type WaitKind = 'loop' | 'blocking' | 'spin';

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
  /** The eventfd that stop() signals, for stopping from another thread (blocking and spin). */
  readonly stopFd: number;
  /** Keeps (ref) or stops keeping (unref) the event loop alive: loop waiters only. */
  ref(): void;
  unref(): void;
  close(): void;
}

export interface WaiterOptions {
  /** spin: rounds of reads over all fds per native call (default 10,000). */
  spinRounds?: number;
  /** loop: called if waiting fails (e.g. an fd was closed underneath). Default: throw. */
  onError?: (err: Error) => void;
}

export function createWaiter(kind: WaitKind, fds: readonly number[], options: WaiterOptions = {}): EventfdWaiter {
  if (!Array.isArray(fds) || fds.length === 0 || !fds.every((fd) => Number.isInteger(fd) && fd >= 0)) {
    throw argumentError(TypeError, 'ERR_INVALID_ARG_VALUE', 'fds must be a non-empty array of file descriptors');
  }
  if (kind === 'loop') return new LoopWaiter(fds, options);
  if (kind === 'blocking' || kind === 'spin') return new ThreadWaiter(kind, fds, options);
  throw argumentError(TypeError, 'ERR_INVALID_ARG_VALUE', `unknown wait kind ${JSON.stringify(kind)}: use loop, blocking or spin`);
}

class LoopWaiter implements EventfdWaiter {
  readonly kind = 'loop' as const;
  readonly stopFd = -1;
  lastCount = 0;
  readonly #fds: readonly number[];
  readonly #onError: (err: Error) => void;
  #watchers: RawFdWatcher[] = [];
  #unref = false;
  #closed = false;

  constructor(fds: readonly number[], options: WaiterOptions) {
    this.#fds = fds;
    this.#onError = options.onError ?? ((err) => {
      throw err;
    });
  }

  run(onReady: OnReady): void {
    if (this.#closed) throw new IvshmemError('ERR_IVSHMEM_CLOSED', 'the waiter is closed');
    this.stop();
    const n = native();
    try {
      for (const [index, fd] of this.#fds.entries()) {
        const w = new n.FdWatcher(fd, true, (err, count) => {
          if (err) this.#onError(err);
          else onReady(index, count!);
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
    throw argumentError(TypeError, 'ERR_INVALID_ARG_VALUE', 'a loop waiter reports through run(); use a blocking or spin waiter to wait in place');
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

class ThreadWaiter implements EventfdWaiter {
  readonly kind: 'blocking' | 'spin';
  readonly #all: Int32Array; // the fds, then our stop eventfd
  readonly #stop: EventFd;
  readonly #out = new Float64Array(1);
  readonly #rounds: number;

  constructor(kind: 'blocking' | 'spin', fds: readonly number[], options: WaiterOptions) {
    this.kind = kind;
    this.#stop = EventFd.create();
    this.#all = Int32Array.from([...fds, this.#stop.fd]);
    this.#rounds = options.spinRounds ?? 10_000;
  }

  get stopFd(): number {
    return this.#stop.fd;
  }

  get lastCount(): number {
    return this.#out[0];
  }

  #waitIndex(budget: number): number {
    this.#stop.fd; // ERR_IVSHMEM_CLOSED once closed: #all would name fds that are no longer ours
    return this.kind === 'blocking'
      ? native().waitReadable(this.#all, budget, this.#out)
      : native().spinReadable(this.#all, budget, this.#out);
  }

  run(onReady: OnReady): void {
    const stopIndex = this.#all.length - 1;
    for (;;) {
      const i = this.#waitIndex(this.kind === 'blocking' ? -1 : this.#rounds);
      if (i === stopIndex) return;
      if (i >= 0) onReady(i, this.#out[0]);
    }
  }

  /** budget: milliseconds for blocking (default: forever), rounds for spin (default spinRounds). */
  waitOnce(budget?: number): number {
    const i = this.#waitIndex(budget ?? (this.kind === 'blocking' ? -1 : this.#rounds));
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
