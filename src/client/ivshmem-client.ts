// IvshmemClient: QEMU's contrib ivshmem-client as an in-process, evented object — a peer without a
// guest. It rings other peers' vectors, reports its own vectors' interrupts, and tracks who joins
// and leaves. With `reconnect`, a client whose server dies connects again (as a new peer, with a
// new id) until a server answers at the same path; a server handed over to a successor
// (server/handover.ts) is never noticed at all. Every entry point checks its arguments and the
// client's state first, so a mistake is a coded error naming it, not a failure deeper down.
import { EventEmitter } from 'node:events';
import { MAX_VECTORS } from '../core/abi.js';
import { argumentError, checkKnownKeys, describeValue, invalidValue, IvshmemError } from '../errors.js';
import { FdWatcher } from '../os/fd-watcher.js';
import type { EventFd } from '../os/eventfd.js';
import { ServerConnection } from '../protocol/connection.js';

/** QEMU's client refuses peers with more vectors than this; it is the default of `vectors`. */
export const CLIENT_MAX_VECTORS = 64;

// setTimeout's longest delay; a longer one would fire at once.
const MAX_TIMER_MS = 2 ** 31 - 1;
const OPTION_KEYS = ['vectors', 'setupTimeoutMs', 'legacy', 'requireSealedMemory', 'reconnect'];

/**
 * Whether a failed connect is worth trying again later: the server is not there (no socket,
 * connection refused, backlog full), hung up or stalled during setup, or a system call failed
 * (an errno code) — what QEMU's client retries every second. Anything else is this client
 * refusing the server (a protocol version it does not speak, more vectors than it accepts, a
 * malformed message, an fd of the wrong kind) or a mistake of the caller: the same server would
 * be refused again, and each attempt would show its other peers one more join and leave.
 */
export function isRetryableConnectError(err: unknown): boolean {
  const code = err !== null && typeof err === 'object' ? (err as { code?: unknown }).code : undefined;
  if (typeof code !== 'string') return false;
  if (code === 'ERR_IVSHMEM_PROTOCOL_EOF' || code === 'ERR_IVSHMEM_PROTOCOL_TIMEOUT') return true;
  return /^E[A-Z0-9]+$/.test(code);
}

function checkMilliseconds(name: string, value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > MAX_TIMER_MS) {
    throw invalidValue(
      'ERR_IVSHMEM_INVALID_OPTION',
      name,
      `a positive number of milliseconds (at most ${MAX_TIMER_MS})`,
      value,
    );
  }
}

function checkConnectArguments(path: unknown, o: unknown): void {
  if (typeof path !== 'string')
    throw argumentError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `path must be a string (the server's socket path), got ${describeValue(path)}`,
    );
  if (path === '')
    throw argumentError(
      TypeError,
      'ERR_INVALID_ARG_VALUE',
      "path must be the server's socket path, got an empty string",
    );
  if (o === undefined) return;
  if (o === null || typeof o !== 'object' || Array.isArray(o))
    throw invalidValue('ERR_IVSHMEM_INVALID_OPTION', 'the options', 'an object', o);
  const options = o as Record<string, unknown>;
  checkKnownKeys(options, OPTION_KEYS);
  const { vectors, setupTimeoutMs, legacy, requireSealedMemory, reconnect } = options;
  if (
    vectors !== undefined &&
    (typeof vectors !== 'number' || !Number.isInteger(vectors) || vectors < 1 || vectors > MAX_VECTORS)
  ) {
    throw invalidValue(
      'ERR_IVSHMEM_INVALID_VECTORS',
      'vectors',
      `an integer 1..${MAX_VECTORS} (the most vectors per peer to accept)`,
      vectors,
    );
  }
  checkMilliseconds('setupTimeoutMs', setupTimeoutMs);
  if (legacy !== undefined && typeof legacy !== 'boolean')
    throw invalidValue('ERR_IVSHMEM_INVALID_OPTION', 'legacy', 'a boolean', legacy);
  if (requireSealedMemory !== undefined && typeof requireSealedMemory !== 'boolean') {
    throw invalidValue('ERR_IVSHMEM_INVALID_OPTION', 'requireSealedMemory', 'a boolean', requireSealedMemory);
  }
  if (reconnect === undefined || typeof reconnect === 'boolean') return;
  if (reconnect === null || typeof reconnect !== 'object' || Array.isArray(reconnect)) {
    throw invalidValue('ERR_IVSHMEM_INVALID_OPTION', 'reconnect', 'a boolean or { intervalMs }', reconnect);
  }
  checkKnownKeys(reconnect, ['intervalMs'], 'reconnect.');
  checkMilliseconds('reconnect.intervalMs', (reconnect as { intervalMs?: unknown }).intervalMs);
}

function checkNumber(name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number')
    throw argumentError(TypeError, 'ERR_INVALID_ARG_TYPE', `${name} must be a number, got ${describeValue(value)}`);
}

export interface IvshmemClientOptions {
  vectors?: number;
  setupTimeoutMs?: number;
  legacy?: boolean;
  /** Refuse shared memory the server could still shrink (see src/protocol/received-fds.ts). */
  requireSealedMemory?: boolean;
  /** When the server goes away, connect again every intervalMs (default 1000) until one answers;
   *  the old id's fds stay usable until then. Default: no. */
  reconnect?: boolean | { intervalMs?: number };
}

export interface IvshmemClient {
  on(event: 'interrupt', listener: (vector: number, count: number) => void): this;
  on(event: 'join', listener: (peer: number) => void): this;
  on(event: 'leave', listener: (peer: number) => void): this;
  /** Without reconnect: the server hung up, or close() was called. With it: close() was called. */
  on(event: 'close', listener: (reason: string) => void): this;
  /** With reconnect: the server hung up; connecting again starts. */
  on(event: 'disconnect', listener: (reason: string) => void): this;
  /** With reconnect: connected again, as a new peer with this id. */
  on(event: 'reconnect', listener: (id: number) => void): this;
  on(event: 'protocol-error', listener: (err: IvshmemError) => void): this;
}

export class IvshmemClient extends EventEmitter {
  #connection: ServerConnection;
  #watchers: FdWatcher[] = [];
  #closed = false;
  readonly #options: IvshmemClientOptions;
  #retry: NodeJS.Timeout | undefined;
  #unref = false;

  private constructor(connection: ServerConnection, options: IvshmemClientOptions = {}) {
    super();
    this.#options = options;
    this.#connection = connection;
    this.#wire(connection);
  }

  /** The current server connection (a new one after each reconnect). */
  get connection(): ServerConnection {
    return this.#connection;
  }

  #wire(connection: ServerConnection): void {
    connection.ownVectors.forEach((e, vector) => this.#watch(vector, e.fd));
    connection.on('own-vector', (vector, e) => this.#watch(vector, e.fd));
    connection.on('peer-vector', (peer, vector) => {
      if (vector === 0) this.emit('join', peer);
    });
    connection.on('peer-left', (peer) => this.emit('leave', peer));
    connection.on('protocol-error', (err) => this.emit('protocol-error', err));
    connection.on('close', (reason) => {
      if (this.#closed || !this.#options.reconnect) this.emit('close', reason);
      else if (connection.refusal !== undefined)
        this.#close(reason); // it would refuse it again
      else if (connection === this.#connection) {
        this.emit('disconnect', reason);
        this.#scheduleReconnect();
      }
    });
  }

  #scheduleReconnect(): void {
    const r = this.#options.reconnect;
    const intervalMs = typeof r === 'object' ? (r.intervalMs ?? 1000) : 1000;
    this.#retry = setTimeout(async () => {
      this.#retry = undefined;
      let next: IvshmemClient;
      try {
        next = await IvshmemClient.connect(this.#connection.path, { ...this.#options, reconnect: false });
      } catch (err) {
        if (this.#closed) return;
        // A server this client refuses would be refused again, each time costing its other peers
        // a join and a leave: stop instead of looping.
        if (isRetryableConnectError(err)) this.#scheduleReconnect();
        else this.#close(`refused the server: ${(err as Error).message}`);
        return;
      }
      if (this.#closed) {
        next.close();
        return;
      }
      // The old id is gone for good: its fds go, and the new connection's take their place.
      // (`next` was only the way in: its connection becomes ours, its watchers and listeners go.)
      const connection = next.#connection;
      connection.removeAllListeners();
      for (const w of next.#watchers) w.close();
      for (const w of this.#watchers) w.close();
      this.#watchers = [];
      const old = this.#connection;
      this.#connection = connection;
      old.close();
      this.#wire(connection);
      if (this.#unref) this.unref();
      this.emit('reconnect', connection.id);
    }, intervalMs);
    if (this.#unref) this.#retry.unref();
  }

  static async connect(path: string, options: IvshmemClientOptions = {}): Promise<IvshmemClient> {
    checkConnectArguments(path, options);
    const connection = await ServerConnection.connect(path, {
      vectors: options.vectors ?? CLIENT_MAX_VECTORS,
      setupTimeoutMs: options.setupTimeoutMs,
      legacy: options.legacy,
      requireSealedMemory: options.requireSealedMemory,
    });
    // A refusal in the messages read together with the setup came before anyone listened.
    if (connection.refusal !== undefined) {
      connection.close();
      throw connection.refusal;
    }
    return new IvshmemClient(connection, options);
  }

  get id(): number {
    return this.connection.id;
  }

  /** Peers present (excluding ourselves), with how many vectors each announced. */
  get peers(): Map<number, number> {
    return new Map([...this.connection.peers].map(([peer, list]) => [peer, list.length]));
  }

  #watch(vector: number, fd: number): void {
    const w = FdWatcher.forSignals(fd, (err, count) => {
      if (err === null && !this.#closed) this.emit('interrupt', vector, count);
    }).started();
    this.#watchers.push(w);
  }

  // A peer's eventfds (our own id: ours); an unknown peer is the caller's mistake.
  #live(): void {
    if (this.#closed) throw new IvshmemError('ERR_IVSHMEM_CLOSED', 'the client is closed');
  }

  #vectorsOf(peer: number): EventFd[] {
    this.#live();
    checkNumber('peer', peer);
    const list = peer === this.id ? this.connection.ownVectors : this.connection.peers.get(peer);
    if (list === undefined) throw new IvshmemError('ERR_IVSHMEM_INVALID_PEER', `cannot find peer_id = ${peer}`);
    return list;
  }

  /** Rings one vector of a peer (our own id rings ourselves). */
  ring(peer: number, vector: number): void {
    checkNumber('vector', vector);
    const eventfd = this.#vectorsOf(peer)[vector];
    if (eventfd === undefined)
      throw new IvshmemError('ERR_IVSHMEM_INVALID_PEER', `peer ${peer} has no vector ${vector}`);
    eventfd.signal();
  }

  /** Rings every vector of a peer. */
  ringAll(peer: number): void {
    for (const e of this.#vectorsOf(peer)) e.signal();
  }

  /** Rings every vector of every other peer (QEMU's `int all`). */
  ringEveryone(): void {
    this.#live();
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
    this.#unref = true;
    for (const w of this.#watchers) w.unref();
    this.#retry?.unref();
  }

  close(): void {
    this.#close('closed');
  }

  #close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#retry !== undefined) clearTimeout(this.#retry);
    for (const w of this.#watchers) w.close();
    const gone = this.#connection.serverGone;
    this.#connection.close();
    if (gone && this.#options.reconnect) this.emit('close', reason);
  }
}
