// PeerDirectory: the ivshmem server's job where there are no kernel objects. It owns the shared
// memory (a SharedArrayBuffer) and every peer's signal buffer, hands out ids as QEMU's server does
// (round-robin, 16 bits), and tells each peer of the others over a MessagePort in the server's
// order (directory-messages.ts). A peer whose port closes (its worker ended, or it closed the
// port) is announced as gone; one that sends anything is dropped, as the server drops a client
// that writes. Nothing here needs the native addon or anything of Node's beyond EventEmitter.
import { EventEmitter } from 'node:events';
import { MAX_VECTORS } from '../core/abi.js';
import { IvshmemError, invalidValue } from '../errors.js';
import { Signals } from '../os/signals.js';
import { DIRECTORY_VERSION } from '../protocol/directory-messages.js';
import type { PortLike } from '../protocol/directory-messages.js';
import { IdAllocator } from './id-allocator.js';

export interface PeerDirectoryOptions {
  /** Bytes of shared memory, a power of two from 16 bytes (default 4 MiB); ignored with `memory`. */
  size?: number;
  /** The shared memory to hand out, when it exists already (its length must be a power of two). */
  memory?: SharedArrayBuffer;
  /** Vectors per peer (default 1). */
  vectors?: number;
}

interface Peer {
  id: number;
  port: PortLike;
  signals: Signals;
  onClose: () => void;
  onMessage: () => void;
}

export interface PeerDirectory {
  on(event: 'join', listener: (id: number) => void): this;
  on(event: 'leave', listener: (id: number, reason: string) => void): this;
}

export class PeerDirectory extends EventEmitter {
  readonly memory: SharedArrayBuffer;
  readonly vectors: number;
  readonly #peers = new Map<number, Peer>(); // in joining order
  readonly #ids = new IdAllocator();
  #closed = false;

  constructor(options: PeerDirectoryOptions = {}) {
    super();
    const vectors = options.vectors ?? 1;
    if (!Number.isInteger(vectors) || vectors < 1 || vectors > MAX_VECTORS) {
      throw invalidValue('ERR_IVSHMEM_INVALID_VECTORS', 'vectors', `an integer 1..${MAX_VECTORS}`, vectors);
    }
    if (options.memory !== undefined && !(options.memory instanceof SharedArrayBuffer)) {
      throw invalidValue('ERR_IVSHMEM_INVALID_OPTION', 'memory', 'a SharedArrayBuffer', options.memory);
    }
    if (typeof SharedArrayBuffer === 'undefined') {
      // A browser hides SharedArrayBuffer from pages that are not cross-origin isolated.
      throw new IvshmemError(
        'ERR_IVSHMEM_NOT_ISOLATED',
        'SharedArrayBuffer is not available here: a page must be served with the headers ' +
          'Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp',
      );
    }
    const size = options.memory?.byteLength ?? options.size ?? 4 * 1024 * 1024;
    if (!Number.isSafeInteger(size) || size < 16 || 2 ** Math.round(Math.log2(size)) !== size) {
      throw invalidValue(
        'ERR_IVSHMEM_INVALID_SIZE',
        'the shared memory size',
        'a power of two, at least 16 bytes',
        size,
      );
    }
    this.vectors = vectors;
    this.memory = options.memory ?? new SharedArrayBuffer(size);
  }

  /** Ids of the peers present, in joining order. */
  get peerIds(): number[] {
    return [...this.#peers.keys()];
  }

  /**
   * Admits a new peer and returns the port for it to connect with (DirectoryConnection.connect,
   * or IvshmemDevice.create({ directory })): transfer it to the peer's worker. Its setup stream
   * waits in the port until the peer listens.
   */
  connect(): PortLike {
    if (this.#closed) throw new IvshmemError('ERR_IVSHMEM_CLOSED', 'the directory is closed');
    const { port1, port2 } = new MessageChannel();
    this.accept(port1 as unknown as PortLike);
    return port2 as unknown as PortLike;
  }

  /** Admits a peer on the other end of `port` (connect() does this with a channel of its own). */
  accept(port: PortLike): number {
    if (this.#closed) throw new IvshmemError('ERR_IVSHMEM_CLOSED', 'the directory is closed');
    const id = this.#ids.allocate((candidate) => this.#peers.has(candidate));
    if (id < 0) {
      port.close();
      throw new IvshmemError('ERR_IVSHMEM_PROTOCOL_ID', 'all 65536 peer ids are in use');
    }
    const peer: Peer = {
      id,
      port,
      signals: Signals.create(this.vectors),
      onClose: () => this.#drop(peer, 'its port closed'),
      onMessage: () => this.#drop(peer, 'the peer sent a message'),
    };
    // QEMU's order: version, id, memory; the newcomer to everyone; everyone to the newcomer; itself.
    port.postMessage({ type: 'version', version: DIRECTORY_VERSION });
    port.postMessage({ type: 'id', id });
    port.postMessage({ type: 'memory', memory: this.memory });
    for (const other of this.#peers.values())
      other.port.postMessage({ type: 'peer', id, signals: peer.signals.buffer });
    for (const other of this.#peers.values())
      port.postMessage({ type: 'peer', id: other.id, signals: other.signals.buffer });
    port.postMessage({ type: 'peer', id, signals: peer.signals.buffer });
    this.#peers.set(id, peer);
    port.addEventListener('close', peer.onClose);
    port.addEventListener('message', peer.onMessage);
    port.start();
    this.emit('join', id);
    return id;
  }

  /** Announces `id` as gone and closes its port (a browser page that terminated the peer's worker says so here). */
  remove(id: number, reason = 'removed'): void {
    const peer = this.#peers.get(id);
    if (peer !== undefined) this.#drop(peer, reason);
  }

  #drop(peer: Peer, reason: string): void {
    if (this.#peers.get(peer.id) !== peer) return;
    this.#peers.delete(peer.id);
    peer.port.removeEventListener('close', peer.onClose);
    peer.port.removeEventListener('message', peer.onMessage);
    peer.port.close();
    for (const other of this.#peers.values()) other.port.postMessage({ type: 'left', id: peer.id });
    this.emit('leave', peer.id, reason);
  }

  /** Drops every peer (their connections see the port close) and admits no more. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const peer of [...this.#peers.values()]) this.#drop(peer, 'the directory is closing');
  }
}
