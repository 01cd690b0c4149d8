// The client side of the protocol as a pure state machine: feed it each message (value and fd)
// and it returns what happened, accepting what QEMU's ivshmem-doorbell accepts, except fds of the
// wrong kind when the injected checkFd refuses them (see received-fds.ts). It owns
// every fd it is handed until it hands it on in an event; an fd it refuses is closed at once, and
// abort() closes whatever it still holds. No I/O: closing goes through the injected closeFd.
import { IvshmemError } from '../errors.js';
import { MAX_PEER_ID, PROTOCOL_VERSION, SHM_MESSAGE } from './messages.js';

export type ClientEvent =
  /** Setup finished: our id and the shared memory fd are known (the first event, always). */
  | { type: 'ready'; id: number; shmFd: number }
  /** The next vector of another peer (the eventfd to signal to ring it). */
  | { type: 'peer-vector'; peer: number; vector: number; fd: number }
  /** The next of our own vectors (the eventfd to wait on). */
  | { type: 'own-vector'; vector: number; fd: number }
  /** A peer left; its vectors' fds, handed out earlier, should be closed by their owner. */
  | { type: 'peer-left'; peer: number };

export interface ClientProtocolOptions {
  /** Vectors per peer the client accepts (QEMU: the device's `vectors`). */
  vectors: number;
  /** Speak the pre-2.5 protocol: no version message. */
  legacy?: boolean;
  closeFd: (fd: number) => void;
  /** Throws a coded error for an fd unfit for its message (see received-fds.ts); default: any fd. */
  checkFd?: (fd: number, kind: 'memory' | 'eventfd') => void;
}

type Phase = 'version' | 'id' | 'setup' | 'ready' | 'failed';

export class ClientProtocol {
  #phase: Phase;
  #id = -1;
  #shmFd = -1;
  // Setup events are held (with their fds) until the shm message completes setup.
  #held: ClientEvent[] = [];
  // Vectors seen per peer id (own id included), to number vectors and bound them.
  readonly #counts = new Map<number, number>();
  readonly #vectors: number;
  readonly #closeFd: (fd: number) => void;
  readonly #checkFd: (fd: number, kind: 'memory' | 'eventfd') => void;

  constructor(options: ClientProtocolOptions) {
    this.#vectors = options.vectors;
    this.#closeFd = options.closeFd;
    this.#checkFd = options.checkFd ?? (() => {});
    this.#phase = options.legacy ? 'id' : 'version';
  }

  /**
   * A protocol already past setup, for a connection handed over by another process: our id and
   * how many vectors each peer (ourselves included) has announced so far.
   */
  static resume(
    options: ClientProtocolOptions,
    id: number,
    counts: Iterable<readonly [number, number]>,
  ): ClientProtocol {
    const p = new ClientProtocol(options);
    p.#id = id;
    p.#phase = 'ready';
    for (const [peer, n] of counts) p.#counts.set(peer, n);
    return p;
  }

  get phase(): Phase {
    return this.#phase;
  }

  get id(): number {
    return this.#id;
  }

  /** Handles one message; returns the events it completes. Throws a coded IvshmemError on a bad one. */
  feed(value: bigint, fd: number): ClientEvent[] {
    try {
      return this.#feed(value, fd);
    } catch (err) {
      if (fd >= 0) this.#closeFd(fd);
      if (this.#phase !== 'ready') this.abort();
      throw err;
    }
  }

  #feed(value: bigint, fd: number): ClientEvent[] {
    switch (this.#phase) {
      case 'failed':
        throw protocolError('ERR_IVSHMEM_PROTOCOL', 'the connection already failed');
      case 'version':
        if (fd >= 0)
          throw protocolError('ERR_IVSHMEM_PROTOCOL_VERSION', 'server sent invalid version message (it carried an fd)');
        if (value !== PROTOCOL_VERSION) {
          throw protocolError(
            'ERR_IVSHMEM_PROTOCOL_VERSION',
            `server sent version ${value}, expecting ${PROTOCOL_VERSION}`,
          );
        }
        this.#phase = 'id';
        return [];
      case 'id':
        if (fd >= 0 || value < 0n || value > BigInt(MAX_PEER_ID)) {
          throw protocolError(
            'ERR_IVSHMEM_PROTOCOL_ID',
            `server sent invalid ID message (${value}${fd >= 0 ? ' with an fd' : ''})`,
          );
        }
        this.#id = Number(value);
        this.#phase = 'setup';
        return [];
      default:
        return this.#message(value, fd);
    }
  }

  #message(value: bigint, fd: number): ClientEvent[] {
    if (value < SHM_MESSAGE || value > BigInt(MAX_PEER_ID)) {
      throw protocolError('ERR_IVSHMEM_PROTOCOL_VALUE', `server sent invalid message ${value}`);
    }
    if (value === SHM_MESSAGE) {
      if (fd < 0)
        throw protocolError('ERR_IVSHMEM_PROTOCOL_SHM', "server didn't provide fd with shared memory message");
      if (this.#phase === 'ready' || this.#shmFd >= 0) {
        throw protocolError('ERR_IVSHMEM_PROTOCOL_SHM', 'server sent unexpected shared memory message');
      }
      this.#checkFd(fd, 'memory');
      this.#shmFd = fd;
      this.#phase = 'ready';
      const events: ClientEvent[] = [{ type: 'ready', id: this.#id, shmFd: fd }, ...this.#held];
      this.#held = [];
      return events;
    }
    const peer = Number(value);
    const event = fd >= 0 ? this.#vector(peer, fd) : this.#left(peer);
    if (this.#phase === 'ready') return [event];
    this.#held.push(event);
    return [];
  }

  #vector(peer: number, fd: number): ClientEvent {
    const vector = this.#counts.get(peer) ?? 0;
    if (vector >= this.#vectors) {
      throw protocolError(
        'ERR_IVSHMEM_TOO_MANY_VECTORS',
        `Too many eventfd received, device has ${this.#vectors} vectors (peer ${peer})`,
      );
    }
    this.#checkFd(fd, 'eventfd');
    this.#counts.set(peer, vector + 1);
    return peer === this.#id ? { type: 'own-vector', vector, fd } : { type: 'peer-vector', peer, vector, fd };
  }

  #left(peer: number): ClientEvent {
    if (peer === this.#id || !this.#counts.has(peer))
      throw protocolError('ERR_IVSHMEM_PROTOCOL_PEER', `invalid peer ${peer}`);
    this.#counts.delete(peer);
    // A setup that announced and then removed a peer hands out nothing for it.
    this.#held = this.#held.filter((e) => {
      if (e.type === 'peer-vector' && e.peer === peer) {
        this.#closeFd(e.fd);
        return false;
      }
      return true;
    });
    return { type: 'peer-left', peer };
  }

  /** The stream ended. During setup that is an error; afterwards it is how a server goes away. */
  end(): void {
    if (this.#phase === 'ready' || this.#phase === 'failed') return;
    const where = this.#phase;
    this.abort();
    throw protocolError(
      'ERR_IVSHMEM_PROTOCOL_EOF',
      `server closed the connection during setup (waiting for ${where === 'setup' ? 'the shared memory message' : `the ${where} message`})`,
    );
  }

  /** Gives up: closes every fd still held. Idempotent. */
  abort(): void {
    for (const e of this.#held) if (e.type === 'peer-vector' || e.type === 'own-vector') this.#closeFd(e.fd);
    this.#held = [];
    if (this.#phase !== 'ready' && this.#shmFd >= 0) this.#closeFd(this.#shmFd);
    this.#shmFd = -1;
    if (this.#phase !== 'ready') this.#phase = 'failed';
  }
}

function protocolError(code: ConstructorParameters<typeof IvshmemError>[0], message: string): IvshmemError {
  return new IvshmemError(code, message);
}
