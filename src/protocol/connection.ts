// A client's connection to an ivshmem server: the socket, the protocol state machine, and every
// fd the server hands over (shared memory, our vectors' eventfds, each peer's eventfds), owned
// here until the connection closes. Setup is bounded by a timeout, as QEMU's is not.
import { EventEmitter } from 'node:events';
import { MAX_VECTORS } from '../core/abi.js';
import { IvshmemError } from '../errors.js';
import { closeFd } from '../os/handle.js';
import { FdWatcher } from '../os/fd-watcher.js';
import { EventFd } from '../os/eventfd.js';
import { SharedMemory } from '../os/shared-memory.js';
import { UnixSocket } from '../os/unix-socket.js';
import { ClientProtocol } from './client-protocol.js';
import type { ClientEvent } from './client-protocol.js';
import { MAX_PEER_ID } from './messages.js';
import { checkReceivedFd } from './received-fds.js';
import type { ConnectionHandover } from './connection-handover.js';

// One wake-up reads at most this many messages, so a server that writes as fast as we read
// cannot starve the event loop (the poll handle reports the socket again on the next turn).
const MESSAGES_PER_WAKEUP = 256;
// After setup a bad message is reported and skipped, as QEMU logs it; this many mean the
// server is broken or hostile, and the connection is dropped (fds received so far stay).
export const MAX_BAD_MESSAGES = 64;

/** Closes fds that were handed to us and that we refuse (ignoring any that are not open). */
export function closeReceivedFds(fds: unknown): void {
  if (!Array.isArray(fds)) return;
  for (const fd of fds) {
    if (!Number.isInteger(fd) || fd < 0) continue;
    try {
      closeFd(fd);
    } catch {
      // not open: nothing to give back
    }
  }
}

export interface ConnectOptions {
  /** Vectors per peer to accept (QEMU: the device's `vectors`). */
  vectors: number;
  /** Speak the pre-2.5 protocol. */
  legacy?: boolean;
  /** Give up if setup has not finished by then (default 5 s). */
  setupTimeoutMs?: number;
  /** Refuse shared memory that cannot be sealed against shrinking (see received-fds.ts). */
  requireSealedMemory?: boolean;
}

export type { ConnectionHandover } from './connection-handover.js';

export interface ServerConnection {
  on(event: 'peer-vector', listener: (peer: number, vector: number, eventfd: EventFd) => void): this;
  on(event: 'own-vector', listener: (vector: number, eventfd: EventFd) => void): this;
  /** The peer's eventfds are closed right after the listeners return. */
  on(event: 'peer-left', listener: (peer: number) => void): this;
  /**
   * A bad message after setup (QEMU only logs these; the connection stays up). After
   * MAX_BAD_MESSAGES of them comes one with code ERR_IVSHMEM_PROTOCOL_FLOOD, then 'close'.
   */
  on(event: 'protocol-error', listener: (err: IvshmemError) => void): this;
  /** The server hung up (received fds stay usable) or the connection was closed. */
  on(event: 'close', listener: (reason: string) => void): this;
  /**
   * This process is about to give up every fd received: close() is closing them, or handOver()
   * is passing them on. Whoever registered them elsewhere (KVM irqfds, ioeventfds, pollers)
   * unregisters them now, while the numbers still name these objects. Emitted once.
   */
  on(event: 'releasing', listener: (why: 'close' | 'handover') => void): this;
}

export class ServerConnection extends EventEmitter {
  readonly path: string;
  id = -1;
  memory: SharedMemory | undefined;
  readonly ownVectors: EventFd[] = [];
  readonly peers = new Map<number, EventFd[]>();
  readonly #socket: UnixSocket;
  #protocol: ClientProtocol;
  readonly #vectors: number;
  readonly #requireSealed: boolean | undefined;
  #watcher: FdWatcher | undefined;
  #closed = false;
  #badMessages = 0;
  #refusal: IvshmemError | undefined;

  private constructor(path: string, socket: UnixSocket, options: ConnectOptions) {
    super();
    this.path = path;
    this.#socket = socket;
    this.#vectors = options.vectors;
    this.#requireSealed = options.requireSealedMemory;
    this.#protocol = new ClientProtocol({ ...this.#protocolOptions(), legacy: options.legacy });
  }

  #protocolOptions() {
    return {
      vectors: this.#vectors,
      closeFd: closeFd,
      checkFd: (fd: number, kind: 'memory' | 'eventfd') =>
        checkReceivedFd(fd, kind, { requireSealedMemory: this.#requireSealed }),
    };
  }

  /** Connects and resolves once our id and the shared memory are known. */
  static async connect(path: string, options: ConnectOptions): Promise<ServerConnection> {
    const timeoutMs = options.setupTimeoutMs ?? 5000;
    const deadline = Date.now() + timeoutMs;
    let socket: UnixSocket;
    try {
      socket = await UnixSocket.connectRetrying(path, deadline);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      throw new IvshmemError(
        'ERR_IVSHMEM_PROTOCOL_TIMEOUT',
        `the server at ${path} did not accept within ${timeoutMs} ms (its backlog stayed full)`,
        {
          cause: err,
        },
      );
    }
    return ServerConnection.#setup(path, socket, options, Math.max(1, deadline - Date.now()));
  }

  static #setup(
    path: string,
    socket: UnixSocket,
    options: ConnectOptions,
    timeoutMs: number,
  ): Promise<ServerConnection> {
    const conn = new ServerConnection(path, socket, options);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        conn.#fail(
          new IvshmemError(
            'ERR_IVSHMEM_PROTOCOL_TIMEOUT',
            `the server at ${path} did not finish setup within ${options.setupTimeoutMs ?? 5000} ms`,
          ),
          reject,
        );
      }, timeoutMs);
      const settle = (err: Error | null) => {
        clearTimeout(timer);
        if (err) conn.#fail(err, reject);
        else resolve(conn);
      };
      conn.#watcher = FdWatcher.forReadiness(socket.fd, () => conn.#readable(settle)).started();
    });
  }

  #fail(err: Error, reject: (err: Error) => void): void {
    this.#protocol.abort();
    this.close('setup failed');
    reject(err);
  }

  // Reads every complete message; `settle` is called once, when setup completes or fails.
  #readable(settle: (err: Error | null) => void): void {
    for (let i = 0; i < MESSAGES_PER_WAKEUP; i++) {
      if (this.#closed) return;
      let message;
      try {
        message = this.#socket.receive();
      } catch (err) {
        if (this.#protocol.phase !== 'ready') settle(err as Error);
        else this.#hangUp(`read failed: ${(err as Error).message}`);
        return;
      }
      if (message === null) {
        if (this.#socket.eof) {
          if (this.#protocol.phase !== 'ready') {
            try {
              this.#protocol.end();
            } catch (err) {
              settle(err as Error);
              return;
            }
          }
          this.#hangUp('the server closed the connection');
        }
        return;
      }
      let events: ClientEvent[];
      try {
        events = this.#protocol.feed(message.value, message.fd);
      } catch (err) {
        if (this.#protocol.phase !== 'ready') {
          settle(err as Error);
          return;
        }
        this.emit('protocol-error', err);
        // QEMU's client hangs up on a server that sends more vectors than it has, and so do we.
        if ((err as IvshmemError).code === 'ERR_IVSHMEM_TOO_MANY_VECTORS') {
          this.#refusal = err as IvshmemError;
          this.#hangUp(`refused the server: ${(err as Error).message}`);
          return;
        }
        if (++this.#badMessages >= MAX_BAD_MESSAGES) {
          this.emit(
            'protocol-error',
            new IvshmemError(
              'ERR_IVSHMEM_PROTOCOL_FLOOD',
              `the server at ${this.path} sent ${this.#badMessages} bad messages: dropping the connection`,
            ),
          );
          this.#hangUp('the server sent too many bad messages');
          return;
        }
        continue;
      }
      for (const e of events) this.#apply(e, settle);
    }
  }

  #apply(e: ClientEvent, settle: (err: Error | null) => void): void {
    switch (e.type) {
      case 'ready':
        this.id = e.id;
        try {
          this.memory = SharedMemory.adopt(e.shmFd);
        } catch (err) {
          closeFd(e.shmFd);
          settle(err as Error);
          return;
        }
        settle(null);
        return;
      case 'own-vector': {
        const eventfd = EventFd.adopt(e.fd);
        this.ownVectors.push(eventfd);
        this.emit('own-vector', e.vector, eventfd);
        return;
      }
      case 'peer-vector': {
        const eventfd = EventFd.adopt(e.fd);
        const list = this.peers.get(e.peer) ?? [];
        list.push(eventfd);
        this.peers.set(e.peer, list);
        this.emit('peer-vector', e.peer, e.vector, eventfd);
        return;
      }
      case 'peer-left': {
        this.emit('peer-left', e.peer);
        for (const eventfd of this.peers.get(e.peer) ?? []) eventfd.close();
        this.peers.delete(e.peer);
      }
    }
  }

  /**
   * Stops reading the server and describes the connection for a new owner in another process,
   * with the fds it needs (still owned here: send them, e.g. with SCM_RIGHTS or as inherited
   * stdio, then close() this connection). The server sees nothing: the socket is the same one.
   * Refused (ERR_IVSHMEM_HANDOVER) mid-message or after close.
   */
  handOver(): { description: ConnectionHandover; fds: number[] } {
    if (this.#closed) throw new IvshmemError('ERR_IVSHMEM_HANDOVER', 'the connection is closed');
    if (this.#protocol.phase !== 'ready')
      throw new IvshmemError('ERR_IVSHMEM_HANDOVER', 'the connection is still in setup');
    const serverGone = this.#socket.closed;
    if (!serverGone && this.#socket.partialBytes > 0) {
      throw new IvshmemError('ERR_IVSHMEM_HANDOVER', 'a message from the server is half read: try again');
    }
    this.#watcher?.close(); // from here on the new owner reads the socket
    this.#watcher = undefined;
    this.#release('handover');
    const fds = [...(serverGone ? [] : [this.#socket.fd]), this.memory!.fd, ...this.ownVectors.map((e) => e.fd)];
    const peers: [number, number][] = [];
    for (const [peer, list] of this.peers) {
      peers.push([peer, list.length]);
      fds.push(...list.map((e) => e.fd));
    }
    const description: ConnectionHandover = {
      format: 1,
      path: this.path,
      id: this.id,
      vectors: this.#vectors,
      serverGone,
      own: this.ownVectors.length,
      peers,
    };
    return { description, fds };
  }

  /**
   * Takes over a connection another process handed off (`fds` now owned here, in handOver's
   * order). Each fd is checked as if the server had just sent it; on any refusal every fd is
   * closed and the error thrown.
   */
  static adopt(
    description: ConnectionHandover,
    fds: readonly number[],
    options: Omit<ConnectOptions, 'vectors' | 'legacy'> = {},
  ): ServerConnection {
    const closeAll = () => closeReceivedFds(fds);
    const d = description;
    if (!ServerConnection.#validHandover(d, fds)) {
      closeAll();
      throw new IvshmemError(
        'ERR_IVSHMEM_HANDOVER',
        `not a connection hand-over this library can take (${Array.isArray(fds) ? fds.length : 'no'} fds)`,
      );
    }
    const check = (fd: number, kind: 'memory' | 'eventfd') =>
      checkReceivedFd(fd, kind, { requireSealedMemory: options.requireSealedMemory });
    let at = 0;
    const socketFd = d.serverGone ? -1 : fds[at++];
    const memoryFd = fds[at++];
    const own = fds.slice(at, (at += d.own));
    const peerFds = d.peers.map(([, n]) => fds.slice(at, (at += n)));
    let conn: ServerConnection;
    try {
      check(memoryFd, 'memory');
      for (const fd of [...own, ...peerFds.flat()]) check(fd, 'eventfd');
      // Nothing below can refuse: from here every fd has exactly one owner.
      const socket = socketFd >= 0 ? UnixSocket.adopt(socketFd) : UnixSocket.adoptClosed();
      conn = new ServerConnection(d.path, socket, {
        vectors: d.vectors,
        requireSealedMemory: options.requireSealedMemory,
      });
    } catch (err) {
      closeAll();
      throw err;
    }
    conn.#protocol = ClientProtocol.resume(conn.#protocolOptions(), d.id, [[d.id, d.own], ...d.peers]);
    conn.id = d.id;
    conn.ownVectors.push(...own.map((fd) => EventFd.adopt(fd)));
    d.peers.forEach(([peer], i) =>
      conn.peers.set(
        peer,
        peerFds[i].map((fd) => EventFd.adopt(fd)),
      ),
    );
    try {
      conn.memory = SharedMemory.adopt(memoryFd);
    } catch (err) {
      closeFd(memoryFd);
      conn.close('hand-over refused');
      throw err;
    }
    if (socketFd >= 0) {
      const settle = (err: Error | null) => {
        if (err) conn.#hangUp(err.message);
      };
      conn.#watcher = FdWatcher.forReadiness(socketFd, () => conn.#readable(settle)).started();
    }
    return conn;
  }

  // A description this library wrote, and the fds that go with it: integers in range, distinct
  // peers other than ourselves, at most `vectors` each, and exactly as many fds as it names.
  static #validHandover(d: ConnectionHandover, fds: readonly number[]): boolean {
    const int = (n: unknown, lo: number, hi: number) =>
      Number.isInteger(n) && (n as number) >= lo && (n as number) <= hi;
    if (d === null || typeof d !== 'object' || d.format !== 1 || typeof d.path !== 'string' || !Array.isArray(fds))
      return false;
    if (
      !int(d.id, 0, MAX_PEER_ID) ||
      !int(d.vectors, 1, MAX_VECTORS) ||
      !int(d.own, 0, d.vectors) ||
      !Array.isArray(d.peers)
    )
      return false;
    const seen = new Set<number>();
    let count = (d.serverGone ? 0 : 1) + 1 + d.own;
    for (const entry of d.peers) {
      if (!Array.isArray(entry) || entry.length !== 2) return false;
      const [peer, n] = entry;
      if (!int(peer, 0, MAX_PEER_ID) || peer === d.id || seen.has(peer) || !int(n, 1, d.vectors)) return false;
      seen.add(peer);
      count += n;
    }
    return fds.length === count && fds.every((fd) => int(fd, 0, 0x7fffffff));
  }

  #released = false;

  #release(why: 'close' | 'handover'): void {
    if (this.#released) return;
    this.#released = true;
    this.emit('releasing', why);
  }

  /** True once the server went away (the fds received stay usable until close()). */
  /** Why this client hung up on a server it cannot work with (more vectors per peer than it
   *  accepts), if it did: connecting again would be refused the same way. */
  get refusal(): IvshmemError | undefined {
    return this.#refusal;
  }

  get serverGone(): boolean {
    return this.#socket.closed;
  }

  // QEMU's behaviour when the server goes away: peers keep the fds they have and keep working.
  #hangUp(reason: string): void {
    if (this.#socket.closed) return;
    this.#watcher?.close();
    this.#socket.close();
    this.emit('close', reason);
  }

  /** Closes the socket and every fd received. Idempotent. */
  close(reason = 'closed'): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#release('close');
    const wasOpen = !this.#socket.closed;
    this.#watcher?.close();
    this.#socket.close();
    for (const list of this.peers.values()) for (const eventfd of list) eventfd.close();
    this.peers.clear();
    for (const eventfd of this.ownVectors) eventfd.close();
    this.ownVectors.length = 0;
    this.memory?.close();
    if (wasOpen) this.emit('close', reason);
  }
}
