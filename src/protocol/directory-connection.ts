// A peer's connection to a peer directory (server/directory.ts) over a MessagePort: what
// ServerConnection is to an ivshmem server, with signal buffers in place of eventfds. connect()
// resolves once the setup stream is whole (version, id, memory, every peer, our own signals);
// later joins and leaves come as events. A message of the wrong shape is a coded 'protocol-error'
// and changes nothing; a port that closes ends the connection ('close'), as a server's hang-up does.
import { EventEmitter } from 'node:events';
import { IvshmemError } from '../errors.js';
import { Signals } from '../os/signals.js';
import { DIRECTORY_VERSION, parseDirectoryMessage } from './directory-messages.js';
import type { DirectoryMessage, PortLike } from './directory-messages.js';

export interface DirectoryConnectOptions {
  /** The device's vectors: a directory that gives peers more is refused, as QEMU refuses such a server. */
  vectors: number;
  /** Give up if setup has not finished by then (default 5 s). */
  setupTimeoutMs?: number;
}

export interface DirectoryConnection {
  on(event: 'peer', listener: (peer: number, signals: Signals) => void): this;
  /** The peer's signals stop being rung by us right after the listeners return. */
  on(event: 'peer-left', listener: (peer: number) => void): this;
  on(event: 'protocol-error', listener: (err: IvshmemError) => void): this;
  /** The directory went away (its port closed), or close() was called. */
  on(event: 'close', listener: (reason: string) => void): this;
  on(event: 'releasing', listener: (why: 'close' | 'handover') => void): this;
}

export class DirectoryConnection extends EventEmitter {
  readonly id: number;
  readonly memory: SharedArrayBuffer;
  /** Our own vectors: peers ring these. */
  readonly own: Signals;
  /** Every other peer's signals, in the order they were announced. */
  readonly peers = new Map<number, Signals>();
  readonly #port: PortLike;
  readonly #vectors: number;
  #closed = false;
  #directoryGone = false;

  private constructor(port: PortLike, id: number, memory: SharedArrayBuffer, own: Signals, vectors: number) {
    super();
    this.#port = port;
    this.id = id;
    this.memory = memory;
    this.own = own;
    this.#vectors = vectors;
  }

  /** Joins the directory on the other end of `port`. */
  static connect(port: PortLike, options: DirectoryConnectOptions): Promise<DirectoryConnection> {
    const timeoutMs = options.setupTimeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      let id = -1;
      let memory: SharedArrayBuffer | undefined;
      let versionSeen = false;
      const peers: [number, Signals][] = [];
      const fail = (err: IvshmemError) => {
        cleanUp();
        port.close();
        reject(err);
      };
      const onClose = () =>
        fail(new IvshmemError('ERR_IVSHMEM_PROTOCOL_EOF', 'the directory closed the port during setup'));
      const onMessage = (event: { data: unknown }) => {
        let m: DirectoryMessage;
        try {
          m = parseDirectoryMessage(event.data);
          if (!versionSeen) {
            if (m.type !== 'version')
              throw new IvshmemError('ERR_IVSHMEM_PROTOCOL', `expected the version, got ${m.type}`);
            if (m.version !== DIRECTORY_VERSION) {
              throw new IvshmemError(
                'ERR_IVSHMEM_PROTOCOL_VERSION',
                `the directory speaks version ${m.version}, not ${DIRECTORY_VERSION}`,
              );
            }
            versionSeen = true;
            return;
          }
          if (id < 0) {
            if (m.type !== 'id') throw new IvshmemError('ERR_IVSHMEM_PROTOCOL', `expected our id, got ${m.type}`);
            id = m.id;
            return;
          }
          if (memory === undefined) {
            if (m.type !== 'memory')
              throw new IvshmemError('ERR_IVSHMEM_PROTOCOL', `expected the memory, got ${m.type}`);
            memory = m.memory;
            return;
          }
          if (m.type !== 'peer')
            throw new IvshmemError('ERR_IVSHMEM_PROTOCOL', `expected a peer during setup, got ${m.type}`);
          const signals = checkSignals(m.signals, options.vectors, m.id);
          if (m.id !== id) {
            peers.push([m.id, signals]);
            return;
          }
          // Our own signals end the setup stream.
          cleanUp();
          const conn = new DirectoryConnection(port, id, memory, signals, options.vectors);
          for (const [peer, s] of peers) conn.peers.set(peer, s);
          conn.#listen();
          resolve(conn);
        } catch (err) {
          fail(err as IvshmemError);
        }
      };
      const timer = setTimeout(
        () =>
          fail(
            new IvshmemError('ERR_IVSHMEM_PROTOCOL_TIMEOUT', `directory setup did not finish within ${timeoutMs} ms`),
          ),
        timeoutMs,
      );
      const cleanUp = () => {
        clearTimeout(timer);
        port.removeEventListener('message', onMessage);
        port.removeEventListener('close', onClose);
      };
      port.addEventListener('message', onMessage);
      port.addEventListener('close', onClose);
      port.start();
    });
  }

  #listen(): void {
    this.#port.addEventListener('message', (event) => {
      if (this.#closed) return;
      try {
        this.#apply(parseDirectoryMessage(event.data));
      } catch (err) {
        this.emit('protocol-error', err);
      }
    });
    this.#port.addEventListener('close', () => {
      if (this.#closed) return;
      this.#directoryGone = true;
      this.emit('close', 'the directory went away');
    });
  }

  #apply(m: DirectoryMessage): void {
    if (m.type === 'peer') {
      if (m.id === this.id || this.peers.has(m.id)) {
        throw new IvshmemError('ERR_IVSHMEM_PROTOCOL_PEER', `the directory announced peer ${m.id} twice`);
      }
      const signals = checkSignals(m.signals, this.#vectors, m.id);
      this.peers.set(m.id, signals);
      this.emit('peer', m.id, signals);
    } else if (m.type === 'left') {
      if (!this.peers.has(m.id)) return; // a peer we never heard of: nothing to forget
      this.emit('peer-left', m.id);
      this.peers.delete(m.id);
    } else {
      throw new IvshmemError('ERR_IVSHMEM_PROTOCOL', `the directory sent ${m.type} after setup`);
    }
  }

  /** True once the directory's end of the port closed (our memory and signals stay usable). */
  get directoryGone(): boolean {
    return this.#directoryGone;
  }

  /** Stops listening and closes the port. Idempotent. */
  close(reason = 'closed'): void {
    if (this.#closed) return;
    this.emit('releasing', 'close');
    this.#closed = true;
    this.#port.close();
    if (!this.#directoryGone) this.emit('close', reason);
  }
}

function checkSignals(buffer: SharedArrayBuffer, vectors: number, peer: number): Signals {
  const signals = new Signals(buffer);
  if (signals.vectors > vectors) {
    throw new IvshmemError(
      'ERR_IVSHMEM_TOO_MANY_VECTORS',
      `the directory gives peer ${peer} ${signals.vectors} vectors; this device has ${vectors}`,
    );
  }
  return signals;
}
