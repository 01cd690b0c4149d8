// The one rule every OS handle follows here: a single owner, an idempotent close(), and a coded
// error for any use after close.
import { IvshmemError } from '../errors.js';
import { native } from './binding.js';

export abstract class FdHandle {
  #fd: number;

  protected constructor(fd: number) {
    this.#fd = fd;
  }

  /** The file descriptor, while open. */
  get fd(): number {
    this.checkOpen();
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Throws ERR_IVSHMEM_CLOSED once closed: for methods that must not act on a closed handle. */
  protected checkOpen(): void {
    if (this.#fd < 0) throw new IvshmemError('ERR_IVSHMEM_CLOSED', `${this.constructor.name} is closed`);
  }

  /** Closes the fd; later calls do nothing. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    this.beforeClose();
    native().close(fd);
  }

  /** Gives up ownership without closing: the caller owns the returned fd from now on (a server
   *  handing its fds to another process). Later calls throw, as after close(). */
  release(): number {
    const fd = this.fd;
    this.#fd = -1;
    return fd;
  }

  protected beforeClose(): void {}
}

/** Closes an fd number nobody owns (one received and refused, or released by its handle). */
export function closeFd(fd: number): void {
  native().close(fd);
}

/** Makes a received fd non-blocking before anything reads it. */
export function setNonBlocking(fd: number): void {
  native().setNonBlocking(fd);
}
