// IvshmemClient: QEMU's contrib ivshmem-client as an in-process, evented object — a peer without a
// guest. It rings other peers' vectors, reports its own vectors' interrupts, and tracks who joins
// and leaves.
import { EventEmitter } from 'node:events';
import { IvshmemError } from '../errors.js';
import { native } from '../native/binding.js';
import type { RawFdWatcher } from '../native/binding.js';
import { ServerConnection } from '../protocol/connection.js';

/** QEMU's client refuses peers with more vectors than this. */
export const CLIENT_MAX_VECTORS = 64;

export interface IvshmemClientOptions {
  vectors?: number;
  setupTimeoutMs?: number;
  legacy?: boolean;
  /** Refuse shared memory the server could still shrink (see src/protocol/received-fds.ts). */
  requireSealedMemory?: boolean;
}

export interface IvshmemClient {
  on(event: 'interrupt', listener: (vector: number, count: number) => void): this;
  on(event: 'join', listener: (peer: number) => void): this;
  on(event: 'leave', listener: (peer: number) => void): this;
  on(event: 'close', listener: (reason: string) => void): this;
  on(event: 'protocol-error', listener: (err: IvshmemError) => void): this;
}

export class IvshmemClient extends EventEmitter {
  readonly connection: ServerConnection;
  readonly #watchers: RawFdWatcher[] = [];
  #closed = false;

  private constructor(connection: ServerConnection) {
    super();
    this.connection = connection;
    connection.ownVectors.forEach((e, vector) => this.#watch(vector, e.fd));
    connection.on('own-vector', (vector, e) => this.#watch(vector, e.fd));
    connection.on('peer-vector', (peer, vector) => {
      if (vector === 0) this.emit('join', peer);
    });
    connection.on('peer-left', (peer) => this.emit('leave', peer));
    connection.on('protocol-error', (err) => this.emit('protocol-error', err));
    connection.on('close', (reason) => this.emit('close', reason));
  }

  static async connect(path: string, options: IvshmemClientOptions = {}): Promise<IvshmemClient> {
    const connection = await ServerConnection.connect(path, {
      vectors: options.vectors ?? CLIENT_MAX_VECTORS,
      setupTimeoutMs: options.setupTimeoutMs,
      legacy: options.legacy,
      requireSealedMemory: options.requireSealedMemory,
    });
    return new IvshmemClient(connection);
  }

  get id(): number {
    return this.connection.id;
  }

  /** Peers present (excluding ourselves), with how many vectors each announced. */
  get peers(): Map<number, number> {
    return new Map([...this.connection.peers].map(([peer, list]) => [peer, list.length]));
  }

  #watch(vector: number, fd: number): void {
    const w = new (native().FdWatcher)(fd, true, (err, count) => {
      if (err === null && !this.#closed) this.emit('interrupt', vector, count);
    });
    w.start();
    this.#watchers.push(w);
  }

  /** Rings one vector of a peer (our own id rings ourselves). */
  ring(peer: number, vector: number): void {
    const list = peer === this.id ? this.connection.ownVectors : this.connection.peers.get(peer);
    if (list === undefined) throw new IvshmemError('ERR_IVSHMEM_INVALID_PEER', `cannot find peer_id = ${peer}`);
    const eventfd = list[vector];
    if (eventfd === undefined) throw new IvshmemError('ERR_IVSHMEM_INVALID_PEER', `peer ${peer} has no vector ${vector}`);
    eventfd.signal();
  }

  /** Rings every vector of a peer. */
  ringAll(peer: number): void {
    const list = peer === this.id ? this.connection.ownVectors : this.connection.peers.get(peer);
    if (list === undefined) throw new IvshmemError('ERR_IVSHMEM_INVALID_PEER', `cannot find peer_id = ${peer}`);
    for (const e of list) e.signal();
  }

  /** Rings every vector of every other peer (QEMU's `int all`). */
  ringEveryone(): void {
    for (const list of this.connection.peers.values()) for (const e of list) e.signal();
  }

  /** QEMU's `dump`: our vectors, then each peer's. */
  dump(): string {
    const lines = [`our_id = ${this.id}`];
    this.connection.ownVectors.forEach((e, v) => lines.push(`  vector ${v} is enabled (fd=${e.fd})`));
    for (const [peer, list] of this.connection.peers) {
      lines.push(`peer_id = ${peer}`);
      list.forEach((e, v) => lines.push(`  vector ${v} is enabled (fd=${e.fd})`));
    }
    return lines.join('\n');
  }

  /** Keeps (ref) or stops keeping (unref) the process alive while connected. */
  unref(): void {
    for (const w of this.#watchers) w.unref();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#watchers) w.close();
    this.connection.close();
  }
}
