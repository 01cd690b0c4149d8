// One client's outbox in the server: messages go straight to its socket while it keeps up; what a
// full socket cannot take waits here in order, flushed when the socket becomes writable again. The
// queue is bounded (a client over its limit is to be dropped) and keeps a stall clock (the time of
// its last progress), so a client that stops reading costs bounded memory and never blocks the
// server. The outbox decides nothing about the client: it says why it should go, and the server drops it.
import type { UnixSocket } from '../os/unix-socket.js';

/** A message waiting for the socket: its 8-byte value and the fd to pass with it (-1: none). */
export interface QueuedMessage {
  value: bigint;
  fd: number;
}

/** The server-wide counters every outbox adds to. */
export interface OutboxCounters {
  messagesSent: number;
  messagesQueued: number;
  peakQueue: number;
  slowReaderDrops: number;
}

export class Outbox {
  readonly #socket: UnixSocket;
  readonly #counters: OutboxCounters;
  /** Asks the socket's watcher to report writability too (true), or readability only. */
  readonly #watchWritable: (on: boolean) => void;
  #queue: QueuedMessage[];
  /** Queue length that drops the client (see openLimit). */
  #limit: number;
  #stalledSince = 0;
  #wantsWrite = false;

  constructor(
    socket: UnixSocket,
    counters: OutboxCounters,
    watchWritable: (on: boolean) => void,
    queue: QueuedMessage[] = [],
    limit = Infinity,
  ) {
    this.#socket = socket;
    this.#counters = counters;
    this.#watchWritable = watchWritable;
    this.#queue = queue;
    this.#limit = limit;
  }

  get length(): number {
    return this.#queue.length;
  }

  get limit(): number {
    return this.#limit;
  }

  /** The queue as it stands (for a hand-over to another server). */
  snapshot(): QueuedMessage[] {
    return this.#queue.map((m) => ({ ...m }));
  }

  /**
   * The client's setup is out of our hands: from now on it may have at most `max` messages
   * waiting beyond what of its setup still waits (unbounded before: the peer table bounds that).
   */
  openLimit(max: number): void {
    this.#limit = max + this.#queue.length;
  }

  /** Sends in order, or queues. Returns why the client must be dropped, or null. */
  send(value: bigint, fd: number, maxQueued: number): string | null {
    if (this.#queue.length === 0) {
      try {
        if (this.#socket.send(value, fd)) {
          this.#counters.messagesSent++;
          return null;
        }
      } catch (err) {
        return `send failed: ${(err as Error).message}`;
      }
      this.#stalledSince = Date.now();
    }
    if (this.#queue.length >= this.#limit) {
      this.#counters.slowReaderDrops++;
      return `the client stopped reading: more than ${maxQueued} messages queued`;
    }
    // A queued fd is the server's own (the shm object, or a live peer's eventfd): the server
    // takes a leaving peer's fds out of every outbox (forget) before closing them.
    this.#queue.push({ value, fd });
    this.#counters.messagesQueued++;
    if (this.#queue.length > this.#counters.peakQueue) this.#counters.peakQueue = this.#queue.length;
    if (!this.#wantsWrite) {
      this.#wantsWrite = true;
      this.#watchWritable(true);
    }
    return null;
  }

  /** The socket has room again: sends what fits. Returns why the client must be dropped, or null. */
  flush(maxQueued: number, joined: boolean): string | null {
    let sent = 0;
    while (sent < this.#queue.length) {
      const { value, fd } = this.#queue[sent];
      let ok: boolean;
      try {
        ok = this.#socket.send(value, fd);
      } catch (err) {
        return `send failed: ${(err as Error).message}`;
      }
      if (!ok) break;
      sent++;
    }
    if (sent > 0) {
      this.#queue.splice(0, sent);
      this.#counters.messagesQueued -= sent;
      this.#counters.messagesSent += sent;
      this.#stalledSince = Date.now();
    }
    // Once what is left of its setup is out, a client's limit is the plain one again.
    if (this.#queue.length < maxQueued && joined) this.#limit = maxQueued;
    if (this.#queue.length === 0 && this.#wantsWrite) {
      this.#wantsWrite = false;
      this.#watchWritable(false);
    }
    return null;
  }

  /** Milliseconds until a queue that makes no progress has stalled for `stallMs` (≤ 0: it has). */
  stallLeft(now: number, stallMs: number): number {
    return this.#stalledSince + stallMs - now;
  }

  /** Takes the messages `unwanted` picks out of the queue; returns how many went. */
  forget(unwanted: (m: QueuedMessage) => boolean): number {
    const before = this.#queue.length;
    this.#queue = this.#queue.filter((m) => !unwanted(m));
    this.#counters.messagesQueued -= before - this.#queue.length;
    return before - this.#queue.length;
  }

  /** Empties the queue (the client is gone). */
  clear(): void {
    this.#counters.messagesQueued -= this.#queue.length;
    this.#queue = [];
  }

  /**
   * After a pause (a hand-over that failed or was adopted): the stall clock restarts, and the watcher learns what we
   * wait for.
   */
  resume(): void {
    this.#wantsWrite = this.#queue.length > 0;
    this.#stalledSince = Date.now();
    this.#watchWritable(this.#wantsWrite);
  }
}
