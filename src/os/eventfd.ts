// An eventfd owned by JavaScript: the wire a doorbell rings. A ring and a drain go through V8's
// fast API calls where the fast-call module is built (fast-binding.ts), else through the addon.
import { native } from './binding.js';
import { checkInt32, errnoError, fastBinding } from './fast-binding.js';
import { checkAdoptable } from './fd-kind.js';
import { FdHandle } from './handle.js';

export class EventFd extends FdHandle {
  private constructor(fd: number) {
    super(fd);
  }

  /** A new non-blocking, close-on-exec eventfd with counter 0. */
  static create(): EventFd {
    return new EventFd(native().eventfdCreate());
  }

  /** Takes ownership of an eventfd received from elsewhere (e.g. over SCM_RIGHTS); anything that
   *  is not an open eventfd is refused with ERR_IVSHMEM_INVALID_FD. */
  static adopt(fd: number): EventFd {
    checkAdoptable(fd, 'eventfd', 'EventFd');
    return new EventFd(fd);
  }

  /** Adds 1 to the counter: the peer waiting on it wakes. */
  signal(): void {
    signalEventfd(this.fd);
  }

  /** Reads and resets the counter; 0 if nothing was signalled. */
  drain(): number {
    return drainEventfd(this.fd);
  }
}

/** Adds 1 to the counter of an eventfd known by number. */
export function signalEventfd(fd: number): void {
  const fast = fastBinding();
  if (fast === null) {
    native().eventfdSignal(fd);
    return;
  }
  checkInt32(fd, 'fd');
  const err = fast.eventfdSignal(fd);
  if (err !== 0) throw errnoError(err, 'write');
}

/** Drains an eventfd known only by number (one a monitor was lent with its release signal). */
export function drainEventfd(fd: number): number {
  const fast = fastBinding();
  if (fast === null) return native().eventfdDrain(fd);
  checkInt32(fd, 'fd');
  const n = fast.eventfdDrain(fd);
  if (n < 0) throw errnoError(-n, 'read');
  return n;
}

/** A DoorbellSink whose route handles are eventfd numbers: a ring is one write(2). */
export const eventfdDoorbell = {
  ring(fd: number): void {
    signalEventfd(fd);
  },
};
