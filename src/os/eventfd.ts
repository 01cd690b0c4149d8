// An eventfd owned by JavaScript: the wire a doorbell rings.
import { native } from './binding.js';
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
    native().eventfdSignal(this.fd);
  }

  /** Reads and resets the counter; 0 if nothing was signalled. */
  drain(): number {
    return native().eventfdDrain(this.fd);
  }
}

/** Drains an eventfd known only by number (one a monitor was lent with its release signal). */
export function drainEventfd(fd: number): number {
  return native().eventfdDrain(fd);
}

/** A DoorbellSink whose route handles are eventfd numbers: a ring is one write(2). */
export const eventfdDoorbell = {
  ring(fd: number): void {
    native().eventfdSignal(fd);
  },
};
