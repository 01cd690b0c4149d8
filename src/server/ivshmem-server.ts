// IvshmemServer: QEMU's ivshmem-server as an in-process, evented object. It owns the listening
// socket, the shared memory object and every peer's eventfds, and speaks protocol version 0 in
// QEMU's exact message order. One client can never stop it: a client that sends anything, hangs
// up, or stops reading is dropped and the others are told; EMFILE and id exhaustion refuse only
// the connection that hit them. What a full socket cannot take waits in that client's outbox
// (outbox.ts: bounded, with a stall clock); a client whose outbox is over its limit, or makes no
// progress for the stall timeout, is dropped, so a non-reader costs bounded memory and never blocks.
import { EventEmitter } from 'node:events';
import { MAX_VECTORS } from '../core/abi.js';
import { IvshmemError } from '../errors.js';
import { closeFd } from '../os/handle.js';
import { FdWatcher, POLL_READABLE, POLL_WRITABLE } from '../os/fd-watcher.js';
import { EventFd } from '../os/eventfd.js';
import type { SharedMemory } from '../os/shared-memory.js';
import { UnixListener, UnixSocket } from '../os/unix-socket.js';
import { PROTOCOL_VERSION, SHM_MESSAGE } from '../protocol/messages.js';
import type { HandoverPeer, HandoverState } from './handover-state.js';
import { IdAllocator } from './id-allocator.js';
import { Outbox } from './outbox.js';
import type { QueuedMessage } from './outbox.js';
import { ServerMemory } from '../os/server-memory.js';
import { checkServerOptions } from './server-options.js';
import type { ServerMemorySource } from '../os/server-memory.js';
import { publishJoin, publishLeave, publishRefuse } from './server-events.js';
import type { IvshmemServerStats } from './server-events.js';
import { StateKeeper } from './state-keeper.js';
import type { StateTableOption } from './state-keeper.js';

export type { IvshmemServerStats } from './server-events.js';

export interface IvshmemServerOptions {
  /** Path of the listening UNIX socket (QEMU's -S). */
  socketPath: string;
  /** POSIX shm name (-M, default "ivshmem") or a directory such as a hugetlbfs mount (-m). A
   *  name is created; one that exists is used only if it has exactly the (rounded) size and no
   *  running server holds it, and is then never resized or removed by this server. */
  memory?: ServerMemorySource;
  /** Bytes of shared memory, rounded up to a power of two as QEMU does (-l, default 4 MiB):
   *  4 KiB up to 64 TiB. */
  size?: number;
  /** Vectors (eventfds) per peer (-n, default 1). */
  vectors?: number;
  /** A client whose socket stays full this long is dropped (default 5 s). */
  stallTimeoutMs?: number;
  /** A client with more messages than this waiting for its full socket (beyond what of its own
   *  setup is still waiting) is dropped (default 65,536). */
  maxQueuedMessages?: number;
  /** Where the id counter starts (default 0, as QEMU's): for tests of the 16-bit wrap. */
  firstId?: number;
  /** Speak the pre-2.5 protocol (no version message), for old clients. */
  legacy?: boolean;
  /** Log lines (QEMU's verbose output); default: none. */
  log?: (line: string) => void;
  /**
   * Keep a peer state table in the shared memory (docs/peer-state-table.md): true for 64 slots in
   * the memory's last page, or { slots, offset }. Off by default: the memory is then never touched.
   */
  stateTable?: StateTableOption;
}

/** Vectors per peer this server hands out: as many as the device can take. */
export const MAX_SERVER_VECTORS = MAX_VECTORS;

interface Peer {
  id: number;
  socket: UnixSocket;
  vectors: EventFd[];
  watcher: FdWatcher;
  /** What its full socket could not take yet, with the queue's limit and stall clock. */
  outbox: Outbox;
  /** The other peers were told of this one (so they must be told when it goes). */
  announced: boolean;
  joined: boolean;
  /** Why its socket failed while another peer's setup was being sent: it is dropped once that
   *  setup is complete, so no leave lands in the middle of a newcomer's setup stream. */
  failed?: string;
}

export interface IvshmemServer {
  on(event: 'join', listener: (id: number) => void): this;
  on(event: 'leave', listener: (id: number, reason: string) => void): this;
  on(event: 'refused', listener: (reason: string) => void): this;
}

export class IvshmemServer extends EventEmitter {
  readonly socketPath: string;
  readonly vectors: number;
  readonly #memory: ServerMemory;
  readonly #listener: UnixListener;
  readonly #listenWatcher: FdWatcher;
  readonly #peers = new Map<number, Peer>(); // in connection order
  readonly #ids: IdAllocator;
  readonly #log: (line: string) => void;
  readonly #stallMs: number;
  readonly #maxQueue: number;
  readonly #legacy: boolean;
  readonly #stateKeeper: StateKeeper | undefined;
  #stallTimer: NodeJS.Timeout | undefined;
  readonly #stats = {
    joins: 0,
    leaves: 0,
    setupFailures: 0,
    messagesSent: 0,
    slowReaderDrops: 0,
    messagesQueued: 0,
    peakQueue: 0,
  };
  readonly #refusals = new Map<string, number>();
  #reserve: EventFd | undefined;
  #closed = false;
  /** A hand-over to another server is under way (or, adopted, not yet committed): hands off. */
  #suspended = false;
  /** A newcomer's setup stream is being sent: failures of other peers wait until it is whole. */
  #admitting = false;

  /** Opens (or creates) the memory and starts listening. */
  static start(options: IvshmemServerOptions): IvshmemServer {
    return new IvshmemServer(options);
  }

  /** A server for what another one handed over (handover.ts), suspended until handoverResume().
   *  The fds in `state` become its own only if this returns; on a throw they are still the caller's. */
  static adopt(state: HandoverState, options: { log?: (line: string) => void } = {}): IvshmemServer {
    const {
      socketPath,
      memorySource: memory,
      vectors,
      stallTimeoutMs,
      maxQueuedMessages,
      nextId: firstId,
      legacy,
      log,
    } = { ...state, ...options };
    return new IvshmemServer(
      { socketPath, memory, vectors, stallTimeoutMs, maxQueuedMessages, firstId, legacy, log },
      state,
    );
  }

  private constructor(o: IvshmemServerOptions, adopted?: HandoverState) {
    super();
    checkServerOptions(o);
    const vectors = o.vectors ?? 1;
    const requested = o.size ?? 4 * 1024 * 1024;
    if (!adopted) ServerMemory.sizeFor(requested); // refuse a size before anything is made
    this.socketPath = o.socketPath;
    this.vectors = vectors;
    this.#log = o.log ?? (() => {});
    this.#stallMs = o.stallTimeoutMs ?? 5000;
    this.#maxQueue = o.maxQueuedMessages ?? 65536;
    this.#ids = new IdAllocator(o.firstId ?? 0); // checks the range, before anything is opened
    this.#legacy = o.legacy === true;
    const memory = o.memory ?? { shm: 'ivshmem' };
    if (adopted) {
      this.#memory = ServerMemory.adopt(
        adopted.memory,
        memory,
        adopted.memoryLock ?? -1,
        adopted.memoryCreated ?? true,
      );
      try {
        this.#listener = UnixListener.adopt(adopted.listener, o.socketPath);
      } catch (err) {
        this.#memory.release();
        throw err;
      }
    } else {
      // The socket path first: it is the cheapest thing to find in use, and until it is ours no
      // shared memory is created, opened or sized. Whatever a later step fails on, the steps
      // before it are undone, so a failed start leaves nothing behind.
      this.#listener = UnixListener.listen(o.socketPath, 128);
      try {
        this.#memory = ServerMemory.open(memory, requested);
      } catch (err) {
        this.#listener.close();
        throw err;
      }
    }
    try {
      const place = adopted ? adopted.stateTable : StateKeeper.place(o.stateTable, this.#memory.memory.size);
      this.#stateKeeper =
        place === undefined
          ? undefined
          : new StateKeeper(
              this.#memory.memory,
              place,
              (id, vector) => this.#peers.get(id)?.vectors[vector]?.signal(),
              adopted?.peers.map((p) => p.id),
            );
      this.#reserve = EventFd.create();
      this.#listenWatcher = FdWatcher.forReadiness(this.#listener.fd, () => this.#acceptAll());
    } catch (err) {
      this.#reserve?.close();
      if (adopted) {
        this.#listener.release();
        this.#memory.release();
      } else {
        this.#listener.close();
        this.#memory.close();
      }
      throw err;
    }
    if (adopted) {
      this.#adoptPeers(adopted);
      return;
    }
    this.#listenWatcher.start();
    this.#log(`listening on ${o.socketPath}, ${this.memory.size} bytes of shared memory, ${vectors} vectors per peer`);
  }

  /** The shared memory every peer is given. */
  get memory(): SharedMemory {
    return this.#memory.memory;
  }

  /** Ids of the peers connected now, in connection order. */
  get peerIds(): number[] {
    return [...this.#peers.values()].filter((p) => p.joined).map((p) => p.id);
  }

  /** Counters since start, and the queues now. */
  stats(): IvshmemServerStats {
    const s = this.#stats;
    return {
      peers: s.joins - s.leaves,
      joins: s.joins,
      leaves: s.leaves,
      setupFailures: s.setupFailures,
      refusals: Object.fromEntries(this.#refusals),
      messagesSent: s.messagesSent,
      slowReaderDrops: s.slowReaderDrops,
      messagesQueued: s.messagesQueued,
      bytesQueued: s.messagesQueued * 8,
      peakQueue: s.peakQueue,
      ...(this.#stateKeeper && {
        stateTable: { ...this.#stateKeeper.place, joinsWithoutEntry: this.#stateKeeper.joinsWithoutEntry },
      }),
    };
  }

  #refused(reason: string): void {
    this.#refusals.set(reason, (this.#refusals.get(reason) ?? 0) + 1);
    publishRefuse({ socketPath: this.socketPath, reason });
    this.emit('refused', reason);
  }

  #acceptAll(): void {
    for (;;) {
      let socket: UnixSocket | null;
      try {
        socket = this.#listener.accept();
      } catch (err) {
        this.#refuseOnError(err as NodeJS.ErrnoException);
        return;
      }
      if (socket === null) return;
      this.#admit(socket);
    }
  }

  // Out of fds (EMFILE/ENFILE), a waiting connection cannot even be accepted, and would make the
  // listener readable for ever. A reserved fd is given up for a moment to accept it and refuse it.
  #refuseOnError(err: NodeJS.ErrnoException): void {
    this.#log(`cannot accept a connection: ${err.message}`);
    this.#refused(err.code ?? 'accept failed');
    if (err.code !== 'EMFILE' && err.code !== 'ENFILE') return;
    this.#reserve?.close();
    this.#reserve = undefined;
    try {
      this.#listener.accept()?.close();
    } catch {
      // still nothing to accept it with: the pause below keeps us from spinning
    }
    try {
      this.#reserve = EventFd.create();
    } catch {
      this.#listenWatcher.stop();
      setTimeout(() => {
        if (this.#closed || this.#suspended) return;
        try {
          this.#reserve ??= EventFd.create();
        } catch {
          // try again on the next refusal
        }
        this.#listenWatcher.start();
      }, 100).unref();
    }
  }

  #admit(socket: UnixSocket): void {
    const id = this.#ids.allocate((candidate) => this.#peers.has(candidate));
    if (id < 0) {
      this.#log('cannot allocate new client id: all 65536 are in use');
      this.#refused('no free id');
      socket.close();
      return;
    }
    const vectors: EventFd[] = [];
    try {
      for (let i = 0; i < this.vectors; i++) vectors.push(EventFd.create());
    } catch (err) {
      for (const v of vectors) v.close();
      socket.close();
      this.#log(`cannot create eventfds for a new client: ${(err as Error).message}`);
      this.#refused((err as NodeJS.ErrnoException).code ?? 'eventfd failed');
      return;
    }
    let peer: Peer;
    try {
      peer = this.#watchPeer({ id, socket, vectors, announced: false, joined: false });
      try {
        peer.watcher.start(POLL_READABLE);
      } catch (err) {
        peer.watcher.close();
        throw err;
      }
    } catch (err) {
      for (const v of vectors) v.close();
      socket.close();
      this.#refused((err as NodeJS.ErrnoException).code ?? 'poll failed');
      return;
    }
    // QEMU's order: version, id, shm; the new id to everyone; everyone to the newcomer; its own.
    // The newcomer is in the table from the start, so a failure once it was announced is
    // announced as a leave; one before that (it hung up at once) is told to nobody.
    const existing = [...this.#peers.values()];
    this.#peers.set(id, peer);
    this.#stateKeeper?.claim(id); // present in the table before it learns its id
    this.#admitting = true;
    try {
      this.#sendSetup(peer, existing);
    } finally {
      this.#admitting = false;
    }
    // Peers whose sockets failed meanwhile go now: the newcomer was told of them in full, so it
    // is told of their leave like everyone else.
    for (const other of existing) if (other.failed !== undefined) this.#drop(other, other.failed);
    if (peer.failed !== undefined) this.#drop(peer, peer.failed);
    if (peer.socket.closed) return; // dropped while sending
    peer.outbox.openLimit(this.#maxQueue);
    peer.joined = true;
    this.#stateKeeper?.joined(id);
    this.#stats.joins++;
    this.#log(`new peer id = ${id}`);
    publishJoin({ socketPath: this.socketPath, id, peers: this.#stats.joins - this.#stats.leaves });
    this.emit('join', id);
  }

  // The newcomer's setup stream and its announcement to the others, in QEMU's order. Nobody is
  // dropped in the middle of it (#drop defers to #admit while #admitting), so the newcomer's
  // stream has nothing interleaved and every peer it is told of is told of whole.
  #sendSetup(peer: Peer, existing: Peer[]): void {
    const { id, vectors } = peer;
    if (!this.#legacy) this.#send(peer, PROTOCOL_VERSION);
    this.#send(peer, BigInt(id));
    this.#send(peer, SHM_MESSAGE, this.memory.fd);
    // A newcomer that failed already is told to nobody; from here on it is known to all.
    if (peer.failed !== undefined) return;
    peer.announced = true;
    for (const other of existing) {
      for (const v of vectors) this.#send(other, BigInt(id), v.fd);
    }
    for (const other of existing) {
      for (const v of other.vectors) this.#send(peer, BigInt(other.id), v.fd);
    }
    for (const v of vectors) this.#send(peer, BigInt(id), v.fd);
  }

  // Gives a peer its socket's watcher (not started) and its outbox: anything a client sends, and
  // its hang-up, end it; writability flushes the outbox. The watcher is added to `fields` itself,
  // so a caller that tracks that object for clean-up sees it.
  #watchPeer(fields: Omit<Peer, 'watcher' | 'outbox'>, queued?: { queue: QueuedMessage[]; limit: number }): Peer {
    const watcher = FdWatcher.forReadiness(fields.socket.fd, (err, events) => {
      if (err !== null || (events & POLL_READABLE) !== 0) this.#drop(peer, 'the client sent data or hung up');
      else if ((events & POLL_WRITABLE) !== 0) this.#flush(peer);
    });
    const outbox = new Outbox(
      fields.socket,
      this.#stats,
      (on) => watcher.start(on ? POLL_READABLE | POLL_WRITABLE : POLL_READABLE),
      queued?.queue,
      queued?.limit,
    );
    const peer: Peer = Object.assign(fields, { watcher, outbox });
    return peer;
  }

  // Sends in order; what the socket cannot take now waits in the peer's outbox.
  #send(peer: Peer, value: bigint, fd = -1): void {
    if (peer.socket.closed || peer.failed !== undefined) return;
    const queued = peer.outbox.length;
    const failure = peer.outbox.send(value, fd, this.#maxQueue);
    if (failure !== null) this.#drop(peer, failure);
    else if (peer.outbox.length > queued) this.#armStallCheck();
  }

  // The socket has room again: send what fits.
  #flush(peer: Peer): void {
    if (peer.socket.closed) return;
    const failure = peer.outbox.flush(this.#maxQueue, peer.joined);
    if (failure !== null) this.#drop(peer, failure);
  }

  // One timer for all queues: a client whose queue made no progress for the stall timeout goes.
  #armStallCheck(delay = this.#stallMs): void {
    if (this.#stallTimer !== undefined || this.#closed || this.#suspended) return;
    this.#stallTimer = setTimeout(
      () => {
        this.#stallTimer = undefined;
        const now = Date.now();
        let next = Infinity;
        for (const peer of [...this.#peers.values()]) {
          if (peer.outbox.length === 0 || peer.socket.closed) continue;
          // Our own event loop may have been too busy to hear of writability: look for ourselves.
          this.#flush(peer);
          if (peer.outbox.length === 0 || peer.socket.closed) continue;
          const left = peer.outbox.stallLeft(now, this.#stallMs);
          if (left <= 0) {
            this.#stats.slowReaderDrops++;
            this.#drop(peer, 'the client stopped reading');
          } else next = Math.min(next, left);
        }
        if (next !== Infinity) this.#armStallCheck(next);
      },
      Math.max(1, delay),
    );
    this.#stallTimer.unref();
  }

  #drop(peer: Peer, reason: string): void {
    if (peer.socket.closed) return;
    if (this.#admitting) {
      peer.failed ??= reason;
      return;
    }
    peer.watcher.close();
    peer.socket.close();
    peer.outbox.clear();
    const known = this.#peers.delete(peer.id);
    if (known && peer.announced && this.#closed) {
      // Shutting down: every other peer goes next, with its queue. Tell those that keep up, now,
      // and queue nothing (sifting thousands of slow readers' queues per leave took minutes).
      for (const other of this.#peers.values()) {
        if (other.outbox.length > 0 || other.socket.closed) continue;
        try {
          if (other.socket.send(BigInt(peer.id))) this.#stats.messagesSent++;
        } catch {
          // it is going anyway
        }
      }
    } else if (known && peer.announced) {
      const mine = new Set(peer.vectors.map((v) => v.fd));
      for (const other of this.#peers.values()) {
        // Announcements of this peer still queued for a slow client must not go out with fds we
        // are about to close; if none of them went out, that client never knew it and needs no notice.
        const unsent = other.outbox.forget((m) => m.value === BigInt(peer.id) && mine.has(m.fd));
        if (unsent === peer.vectors.length) continue;
        this.#send(other, BigInt(peer.id));
      }
    }
    if (known) this.#stateKeeper?.left(peer.id); // its entry says gone before its fds close
    if (known) {
      this.#log(`peer ${peer.id} left: ${reason}`);
      if (peer.joined) {
        this.#stats.leaves++;
        publishLeave({
          socketPath: this.socketPath,
          id: peer.id,
          reason,
          peers: this.#stats.joins - this.#stats.leaves,
        });
        this.emit('leave', peer.id, reason);
      } else this.#stats.setupFailures++;
    }
    // Peers that got these eventfds keep their own duplicates; ours go now.
    for (const v of peer.vectors) v.close();
  }

  // ---- hand-over to another server process (the protocol is in handover.ts) ----

  // The peers another server handed over, watched only once the hand-over commits. On a throw the
  // fds go back to the caller (released, not closed) with nothing else of ours left open.
  #adoptPeers(state: HandoverState): void {
    const made: (Omit<Peer, 'watcher' | 'outbox'> & { watcher?: FdWatcher })[] = [];
    try {
      for (const p of state.peers) {
        const socket = UnixSocket.adopt(p.socket);
        const vectors = p.vectors.map((fd) => EventFd.adopt(fd));
        const fields = { id: p.id, socket, vectors, announced: p.announced, joined: p.joined };
        made.push(fields);
        const peer = this.#watchPeer(fields, { queue: p.queue.map((m) => ({ ...m })), limit: p.queueLimit });
        this.#peers.set(peer.id, peer);
      }
    } catch (err) {
      for (const peer of made) {
        peer.watcher?.close();
        peer.socket.release();
        for (const v of peer.vectors) v.release();
      }
      this.#peers.clear();
      this.#listenWatcher.close();
      this.#reserve?.close();
      this.#listener.release();
      this.#memory.release();
      throw err;
    }
    const stats: Record<string, number> = this.#stats;
    for (const [k, v] of Object.entries(state.counters)) if (k in stats && Number.isSafeInteger(v)) stats[k] = v;
    this.#stats.messagesQueued = state.peers.reduce((n, p) => n + p.queue.length, 0);
    for (const [k, v] of Object.entries(state.refusals)) this.#refusals.set(k, v);
    this.#suspended = true;
  }

  /** True while a hand-over is under way: the server neither accepts, reads nor writes. */
  get suspended(): boolean {
    return this.#suspended;
  }

  /** For handover.ts: stops accepting, reading and timing out clients, writes what the sockets
   *  take now, and describes everything by fd number. The fds stay this server's. */
  handoverSuspend(): HandoverState {
    if (this.#closed) throw new IvshmemError('ERR_IVSHMEM_CLOSED', 'the server is closed');
    if (this.#suspended) throw new IvshmemError('ERR_IVSHMEM_HANDOVER', 'a hand-over is already under way');
    for (const peer of [...this.#peers.values()]) if (peer.outbox.length > 0) this.#flush(peer);
    this.#suspended = true;
    if (this.#stallTimer !== undefined) clearTimeout(this.#stallTimer);
    this.#stallTimer = undefined;
    this.#listenWatcher.stop();
    const peers: HandoverPeer[] = [];
    for (const p of this.#peers.values()) {
      p.watcher.stop();
      peers.push({
        id: p.id,
        socket: p.socket.fd,
        vectors: p.vectors.map((v) => v.fd),
        queue: p.outbox.snapshot(),
        queueLimit: p.outbox.limit,
        announced: p.announced,
        joined: p.joined,
      });
    }
    const { messagesQueued: _, ...counters } = this.#stats;
    return {
      socketPath: this.socketPath,
      listener: this.#listener.fd,
      memory: this.memory.fd,
      memorySource: this.#memory.source,
      memoryLock: this.#memory.lockFd,
      memoryCreated: this.#memory.createdName,
      vectors: this.vectors,
      nextId: this.#ids.next,
      legacy: this.#legacy,
      stallTimeoutMs: this.#stallMs,
      maxQueuedMessages: this.#maxQueue,
      counters,
      refusals: Object.fromEntries(this.#refusals),
      peers,
      stateTable: this.#stateKeeper?.place,
    };
  }

  /** For handover.ts: the hand-over failed (or, adopted, committed): serve from where it stopped. */
  handoverResume(): void {
    if (!this.#suspended || this.#closed) return;
    this.#suspended = false;
    this.#listenWatcher.start();
    for (const peer of this.#peers.values()) peer.outbox.resume();
    if (this.#stats.messagesQueued > 0) this.#armStallCheck();
    this.#log(`serving ${this.#peers.size} peers on ${this.socketPath}`);
  }

  /** For handover.ts, once another server holds copies of every fd: closes ours without telling
   *  any peer and without removing the socket path or the shm name, which are the other's now. */
  handoverRelease(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#suspended = false;
    if (this.#stallTimer !== undefined) clearTimeout(this.#stallTimer);
    this.#listenWatcher.close();
    for (const peer of this.#peers.values()) {
      peer.watcher.close();
      peer.socket.close(); // our duplicate only: the connection lives on in the other server
      for (const v of peer.vectors) v.close();
    }
    this.#peers.clear();
    closeFd(this.#listener.release());
    this.#reserve?.close();
    this.#memory.closeKeepingName();
    // Said the same after a hand-over and after a takeover that failed: in both the other
    // server is the one left serving.
    this.#log('closed this copy of the server: the other server serves the socket and memory');
  }

  /** Drops every peer (the others are told as each goes), stops listening, removes the socket
   *  path and, for POSIX shm, the shm name. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#stallTimer !== undefined) clearTimeout(this.#stallTimer);
    this.#listenWatcher.close();
    for (const peer of [...this.#peers.values()]) this.#drop(peer, 'the server is shutting down');
    this.#listener.close();
    this.#reserve?.close();
    this.#memory.close();
    this.#log('server disconnected');
  }
}
