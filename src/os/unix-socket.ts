// UNIX stream sockets carrying ivshmem's records (framing.ts: 8-byte little-endian int64s, each
// with zero or one fd): the socket reads and sends, the framer decides where a record ends and
// which fds it keeps; any fd beyond the first for one record is closed at once and counted.
import { lstatSync, statSync, unlinkSync } from 'node:fs';
import { IvshmemError } from '../errors.js';
import { native } from './binding.js';
import { FdHandle } from './handle.js';
import { MESSAGE_BYTES, MessageFramer, encodeMessage } from './framing.js';
import type { Message } from './framing.js';

export type { Message } from './framing.js';

export class UnixSocket extends FdHandle {
  readonly #framer = new MessageFramer();
  #eof = false;
  // Fds beyond a record's first are closed at once; the framer hands them here.
  readonly #refuse = (fd: number): void => {
    native().close(fd);
    this.extraFdsClosed++;
  };
  /** Fds that arrived beyond one per message and were closed. */
  extraFdsClosed = 0;

  private constructor(fd: number) {
    super(fd);
  }

  static connect(path: string): UnixSocket {
    return new UnixSocket(native().connect(path));
  }

  /** Connects, trying again every 5 ms while the listener's backlog is full (EAGAIN: it is busy
   *  accepting) until `deadline` (a Date.now() time); then, or on any other failure, throws the
   *  connect error, for the caller to word as its own timeout. */
  static async connectRetrying(path: string, deadline: number): Promise<UnixSocket> {
    for (;;) {
      try {
        return UnixSocket.connect(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  }

  /** Both ends of a connected pair, for tests and in-process peers. */
  static pair(): [UnixSocket, UnixSocket] {
    const [a, b] = native().socketPair();
    return [new UnixSocket(a), new UnixSocket(b)];
  }

  static adopt(fd: number): UnixSocket {
    return new UnixSocket(fd);
  }

  /** A socket that is already closed: a connection handed over after its server went away. */
  static adoptClosed(): UnixSocket {
    return new UnixSocket(-1);
  }

  /** True once the peer closed its end and every complete message was read. */
  get eof(): boolean {
    return this.#eof;
  }

  /** Bytes of an incomplete message received so far. */
  get partialBytes(): number {
    return this.#framer.have;
  }

  /**
   * Sends one message, with `fd` attached when it is >= 0. Returns false when the socket's buffer
   * is full (nothing was sent); throws on a broken connection (EPIPE, ECONNRESET).
   */
  send(value: bigint | number, fd = -1): boolean {
    const n = native().send(this.fd, encodeMessage(value), fd >= 0 ? [fd] : []);
    if (n === MESSAGE_BYTES) return true;
    if (n < 0) return false;
    // A partial write of 8 bytes on a UNIX socket would need a full buffer mid-message.
    throw new IvshmemError('ERR_IVSHMEM_SHORT_WRITE', `sent ${n} of ${MESSAGE_BYTES} bytes`);
  }

  /** Sends raw bytes with any fds: for tests that speak the protocol badly on purpose. */
  sendRaw(bytes: Uint8Array, fds: number[] = []): number {
    return native().send(this.fd, bytes, fds);
  }

  /** The next complete message, or null when none is complete yet (or at end of stream). */
  receive(): Message | null {
    const n = native();
    const framer = this.#framer;
    while (!this.#eof) {
      const r = n.recv(this.fd, framer.buffer, framer.have, framer.room);
      const message = framer.took(Math.max(r.bytes, 0), r.fds, this.#refuse);
      if (message !== null) return message;
      if (r.bytes < 0) return null;
      if (r.bytes === 0) this.#eof = true;
    }
    return null;
  }

  protected override beforeClose(): void {
    // An fd that arrived with an incomplete message belongs to nobody else.
    const fd = this.#framer.drop();
    if (fd >= 0) native().close(fd);
  }
}

export class UnixListener extends FdHandle {
  readonly path: string;
  readonly #inode: number;

  private constructor(fd: number, path: string) {
    super(fd);
    this.path = path;
    this.#inode = statSync(path).ino;
  }

  /**
   * Listens at `path`. Refuses (EEXIST) to replace anything that is not a socket and
   * (EADDRINUSE) a socket someone is listening on; removes a stale socket.
   */
  static listen(path: string, backlog = 64): UnixListener {
    const fd = native().listen(path, backlog);
    try {
      return new UnixListener(fd, path);
    } catch (err) {
      native().close(fd); // the path vanished under us: the fresh socket has no other owner
      throw err;
    }
  }

  /** Takes ownership of a listening socket's fd that is bound at `path` (received from a server
   *  handing over); closing it removes `path` only while that is still this socket. */
  static adopt(fd: number, path: string): UnixListener {
    return new UnixListener(fd, path);
  }

  /** The next waiting connection, or null. */
  accept(): UnixSocket | null {
    const fd = native().accept(this.fd);
    return fd < 0 ? null : UnixSocket.adopt(fd);
  }

  /** Stops listening and removes the socket path, unless someone has replaced our socket. */
  protected override beforeClose(): void {
    try {
      const st = lstatSync(this.path);
      if (st.isSocket() && st.ino === this.#inode) unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}
