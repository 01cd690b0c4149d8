// An owned libuv poll watcher on a file descriptor: the one way this package waits for an fd on
// the event loop. The fd stays its owner's; the watcher must be closed before that fd is (libuv
// would otherwise poll a number that may already name another file), which is why every owner
// keeps its watcher beside the handle it watches and closes them together.
import { IvshmemError } from '../errors.js';
import { native, POLL_READABLE } from './binding.js';
import type { RawFdWatcher } from './binding.js';

export { POLL_READABLE, POLL_WRITABLE } from './binding.js';

type RawCallback = (err: Error | null, value?: number) => void;

export class FdWatcher {
  #raw: RawFdWatcher | null;

  private constructor(raw: RawFdWatcher) {
    this.#raw = raw;
  }

  // The callbacks go to the addon as they are, with no wrapper, because on the event loop's
  // doorbell path each wrapper is one more call per wake-up. The addon passes the number on
  // every success and nothing with an error, so the number means something only when err is null.

  /** Reports readiness of `fd` (readable unless start() asks for more) as or-ed POLL_* events;
   *  reads nothing. Not started. */
  static forReadiness(fd: number, onEvent: (err: Error | null, events: number) => void): FdWatcher {
    return new FdWatcher(new (native().FdWatcher)(fd, false, onEvent as RawCallback));
  }

  /** Drains the eventfd `fd` in native code whenever it is readable, and reports how many signals
   *  that read took (one call per batch, as an eventfd counts them). Not started. */
  static forSignals(fd: number, onSignals: (err: Error | null, count: number) => void): FdWatcher {
    return new FdWatcher(new (native().FdWatcher)(fd, true, onSignals as RawCallback));
  }

  get closed(): boolean {
    return this.#raw === null;
  }

  /** Starts watching (or changes the events watched); throws ERR_IVSHMEM_CLOSED after close(). */
  start(events = POLL_READABLE): void {
    this.#live().start(events);
  }

  /** Starts it, or closes it and re-throws: a watcher that could not start has nothing to do. */
  started(events = POLL_READABLE): this {
    try {
      this.start(events);
    } catch (err) {
      this.close();
      throw err;
    }
    return this;
  }

  /** Stops watching until the next start(); nothing after close(). */
  stop(): void {
    this.#raw?.stop();
  }

  /** Whether a started watcher keeps the event loop alive (it does unless unref'ed). */
  ref(): void {
    this.#raw?.ref();
  }

  unref(): void {
    this.#raw?.unref();
  }

  /** Stops and releases the watcher; later calls do nothing. */
  close(): void {
    const raw = this.#raw;
    this.#raw = null;
    raw?.close();
  }

  #live(): RawFdWatcher {
    if (this.#raw === null) throw new IvshmemError('ERR_IVSHMEM_CLOSED', 'the fd watcher is closed');
    return this.#raw;
  }
}
