// Zero-downtime restart of an ivshmem server: a running server hands its listening socket, shared
// memory, every client's socket and eventfds, its id counter and its unwritten queues to a new
// server process over a UNIX control socket (SCM_RIGHTS), so connected peers see no leave, no
// join and no new id — the kernel objects they hold are the very ones the new server serves.
//
// The running server listens on the control socket (HandoverOffer); the new one connects
// (takeOver). Every message is one of ivshmem's 8-byte little-endian words, with at most one fd:
//
//   taker  → holder  HELLO
//   holder → taker   STATE · JSON byte count · fd count · JSON, 8 bytes a message · one message
//                    per fd (its index in the table the JSON refers to), fd attached
//   taker  → holder  ADOPTED    (the taker holds copies of everything and a suspended server)
//   holder → taker   COMMIT     (from here on the holder never serves again)
//               or   ABORT      (the holder serves on; written before it resumes)
//
// The holder is suspended from HELLO on: it neither accepts nor reads nor writes, so the two never
// serve at once. Until it has written COMMIT, any failure (the taker hangs up, says something
// else, or is too slow) resumes it where it stopped, after it has written ABORT; once COMMIT is
// out it closes its copies, keeping the socket path and shm name, which are the taker's now.
//
// A taker that loses the connection before it holds everything closes its copies and serves
// nothing. One that holds everything and sent ADOPTED reads on to the end (a dying holder's
// socket can report an error, or refuse ADOPTED, with COMMIT or ABORT still unread) and then:
// COMMIT → it serves; ABORT → it closes its copies. A hang-up with neither means the holder is
// dying (a live one always says which), but its sockets close while it exits, before its pid
// is seen gone; so the taker watches the pid, bounded, and serves in its place once the holder
// is dead or a zombie — nobody else can be serving then, and the taker's duplicates have kept
// every client connection open, so an old server crashing mid-hand-over costs nothing either.
// Still alive at the deadline (a holder that hung up without a word), the taker gives up.
import { EventEmitter } from 'node:events';
import { chmodSync, readFileSync } from 'node:fs';
import { IvshmemError } from '../errors.js';
import { closeFd } from '../os/handle.js';
import { FdWatcher, POLL_READABLE, POLL_WRITABLE } from '../os/fd-watcher.js';
import { UnixListener, UnixSocket } from '../os/unix-socket.js';
import type { Message } from '../os/unix-socket.js';
import type { HandoverState } from './handover-state.js';
import { IvshmemServer } from './ivshmem-server.js';

const MAGIC = 0x49565348n << 32n; // "IVSH"
const HELLO = MAGIC | 1n;
const STATE = MAGIC | 2n;
const ADOPTED = MAGIC | 3n;
const COMMIT = MAGIC | 4n;
const ABORT = MAGIC | 5n;
const FORMAT = 1;
const MAX_JSON_BYTES = 256 * 1024 * 1024;
const MAX_FDS = 1 << 27;
// How long a holder that hung up after ADOPTED may take to be seen gone.
const HOLDER_EXIT_GRACE_MS = 2000;

export interface HandoverOptions {
  /** The holder gives up (and serves on) if a hand-over is not done by then; the taker gives up
   *  if it has not received everything by then (default 10 s). */
  timeoutMs?: number;
  log?: (line: string) => void;
}

// One control connection: ordered sends that wait for room, and every message read as it comes.
// A failure (a send refused, the poll reporting an error, a receive failing) ends the connection
// only after everything already received has been read: a peer that wrote its last word and died
// leaves that word readable behind the error.
class Channel {
  readonly #socket: UnixSocket;
  readonly #watcher: FdWatcher;
  readonly #out: Message[] = [];
  #ended = false;
  #reading = false;
  /** Why the connection failed, once it has: it ends when what is readable is read. */
  #failure: string | undefined;

  constructor(
    socket: UnixSocket,
    private readonly onMessage: (m: Message) => void,
    private readonly onEnd: (reason: string) => void,
  ) {
    this.#socket = socket;
    // On a failed start the watcher closes itself; the socket stays the caller's to close.
    this.#watcher = FdWatcher.forReadiness(socket.fd, (err, events) => {
      // libuv reports POLLERR (a peer that died with our message unread) as EBADF.
      if (err !== null) this.#fail(`the control connection failed (poll: ${err.message})`);
      else {
        if ((events & POLL_WRITABLE) !== 0) this.#flush();
        if ((events & POLL_READABLE) !== 0) this.#read();
      }
    }).started();
  }

  /** Queues a message; true if everything queued so far is written. */
  send(value: bigint, fd = -1): boolean {
    if (this.#ended || this.#failure !== undefined) return false;
    this.#out.push({ value, fd });
    // Behind a full socket it waits its turn: writability flushes the queue in order.
    return this.#out.length === 1 ? this.#flush() : false;
  }

  #flush(): boolean {
    if (this.#ended || this.#failure !== undefined) return false;
    let sent = 0;
    try {
      while (sent < this.#out.length && this.#socket.send(this.#out[sent].value, this.#out[sent].fd)) sent++;
    } catch (err) {
      this.#fail(`send failed: ${(err as Error).message}`);
      return false;
    }
    this.#out.splice(0, sent);
    this.#watcher.start(this.#out.length > 0 ? POLL_READABLE | POLL_WRITABLE : POLL_READABLE);
    return this.#out.length === 0;
  }

  #read(): void {
    if (this.#reading) return; // a send failing inside onMessage: the loop below reads on
    this.#reading = true;
    try {
      while (!this.#ended) {
        let m: Message | null;
        try {
          m = this.#socket.receive();
        } catch (err) {
          this.#fail(`receive failed: ${(err as Error).message}`);
          break;
        }
        if (m === null) {
          if (this.#socket.eof) this.#fail('the other side closed the control connection');
          break;
        }
        this.onMessage(m);
      }
    } finally {
      this.#reading = false;
    }
    if (this.#failure !== undefined && !this.#ended) {
      const reason = this.#failure;
      this.close();
      this.onEnd(reason);
    }
  }

  // The first failure is the one reported; nothing more is written, what was received is read.
  #fail(reason: string): void {
    if (this.#ended) return;
    this.#failure ??= reason;
    this.#out.length = 0;
    this.#read();
  }

  close(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#watcher.close();
    this.#socket.close();
  }
}

export interface HandoverOffer {
  on(event: 'handed-over', listener: () => void): this;
  on(event: 'handover-failed', listener: (reason: string) => void): this;
}

/** A running server's control socket: the first successor that connects gets everything. */
export class HandoverOffer extends EventEmitter {
  readonly path: string;
  readonly server: IvshmemServer;
  readonly #listener: UnixListener;
  readonly #watcher: FdWatcher;
  readonly #timeoutMs: number;
  readonly #log: (line: string) => void;
  #session: { channel: Channel; timer: NodeJS.Timeout; stateSent: boolean } | undefined;
  #closed = false;

  /** Listens at `controlPath` (refusing, as the server's socket does, to replace a live one),
   *  for our own user only: whoever connects gets every fd of the server. */
  static listen(server: IvshmemServer, controlPath: string, options: HandoverOptions = {}): HandoverOffer {
    const listener = UnixListener.listen(controlPath, 4);
    try {
      chmodSync(controlPath, 0o600);
      return new HandoverOffer(server, listener, options);
    } catch (err) {
      listener.close();
      throw err;
    }
  }

  /** Listens on an already bound control socket (one handed over with the server). */
  constructor(server: IvshmemServer, listener: UnixListener, options: HandoverOptions = {}) {
    super();
    this.server = server;
    this.path = listener.path;
    this.#listener = listener;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#log = options.log ?? (() => {});
    this.#watcher = FdWatcher.forReadiness(listener.fd, () => this.#accept()).started();
  }

  #accept(): void {
    for (;;) {
      let socket: UnixSocket | null;
      try {
        socket = this.#listener.accept();
      } catch {
        return; // out of fds: the successor's connect stays in the backlog until we have one
      }
      if (socket === null) return;
      // One successor at a time, and none for a server that is no longer ours to give.
      if (this.#session !== undefined || this.server.suspended) socket.close();
      else this.#begin(socket);
    }
  }

  #begin(socket: UnixSocket): void {
    let channel: Channel;
    try {
      channel = new Channel(
        socket,
        (m) => this.#message(m),
        (reason) => this.#abort(reason),
      );
    } catch {
      socket.close();
      return;
    }
    const timer = setTimeout(
      () => this.#abort(`the successor did not finish within ${this.#timeoutMs} ms`),
      this.#timeoutMs,
    );
    this.#session = { channel, timer, stateSent: false };
  }

  #message(m: Message): void {
    const session = this.#session!;
    if (m.fd >= 0) closeFd(m.fd);
    if (!session.stateSent && m.value === HELLO) {
      session.stateSent = true;
      this.#sendState(session.channel);
    } else if (session.stateSent && m.value === ADOPTED) {
      // The commit point: once COMMIT is written the successor serves, so we never may again.
      if (!session.channel.send(COMMIT)) {
        this.#abort('could not confirm the hand-over');
        return;
      }
      clearTimeout(session.timer);
      session.channel.close();
      this.#session = undefined;
      this.server.handoverRelease();
      this.#closed = true;
      this.#watcher.close();
      closeFd(this.#listener.release()); // the path stays: the successor listens on it now
      this.#log(`handed over to a successor on ${this.path}`);
      this.emit('handed-over');
    } else this.#abort(`unexpected message ${m.value} from the successor`);
  }

  #sendState(channel: Channel): void {
    let state: HandoverState;
    try {
      state = this.server.handoverSuspend();
    } catch (err) {
      this.#abort(`cannot suspend the server: ${(err as Error).message}`);
      return;
    }
    const fds: number[] = [];
    const index = new Map<number, number>();
    const ref = (fd: number): number => {
      if (!index.has(fd)) {
        index.set(fd, fds.length);
        fds.push(fd);
      }
      return index.get(fd)!;
    };
    const known = (fd: number): number => {
      const i = index.get(fd);
      if (i === undefined)
        throw new IvshmemError(
          'ERR_IVSHMEM_HANDOVER',
          `a queued message carries fd ${fd}, which the server does not own`,
        );
      return i;
    };
    let bytes: Uint8Array;
    try {
      const description = {
        format: FORMAT,
        pid: process.pid,
        ...state,
        listener: ref(state.listener),
        memory: ref(state.memory),
        // The flock lives on the open description: a copy keeps the name ours across the move.
        memoryLock: state.memoryLock !== undefined && state.memoryLock >= 0 ? ref(state.memoryLock) : -1,
        control: ref(this.#listener.fd),
        controlPath: this.path,
        peers: state.peers.map((p) => ({
          ...p,
          socket: ref(p.socket),
          vectors: p.vectors.map(ref),
          queue: [] as [string, number][],
          queueLimit: Number.isFinite(p.queueLimit) ? p.queueLimit : null,
        })),
      };
      // Queued messages carry only the shm fd or live peers' eventfds, all in the table by now.
      state.peers.forEach((p, i) => {
        description.peers[i].queue = p.queue.map((m) => [m.value.toString(), m.fd < 0 ? -1 : known(m.fd)]);
      });
      bytes = new TextEncoder().encode(JSON.stringify(description));
    } catch (err) {
      this.#abort((err as Error).message);
      return;
    }
    const padded = new Uint8Array(Math.ceil(bytes.length / 8) * 8);
    padded.set(bytes);
    const view = new DataView(padded.buffer);
    channel.send(STATE);
    channel.send(BigInt(bytes.length));
    channel.send(BigInt(fds.length));
    for (let at = 0; at < padded.length; at += 8) channel.send(view.getBigInt64(at, true));
    fds.forEach((fd, i) => channel.send(BigInt(i), fd));
    this.#log(`handing over ${state.peers.length} peers and ${fds.length} fds on ${this.path}`);
  }

  // Before COMMIT nothing is lost: the successor's copies die with it, and we serve on. ABORT goes
  // out before we resume, so a successor that reads it knows we serve, and one that finds the
  // connection gone without it knows we are dying. It always fits when the successor can be
  // holding everything: it has read all we wrote. (When it cannot be, it fails on the hang-up.)
  #abort(reason: string): void {
    const session = this.#session;
    if (session === undefined) return;
    this.#session = undefined;
    clearTimeout(session.timer);
    session.channel.send(ABORT);
    session.channel.close();
    this.server.handoverResume();
    this.#log(`hand-over failed: ${reason}`);
    this.emit('handover-failed', reason);
  }

  /** Stops offering (a hand-over under way is abandoned and the server serves on) and removes the
   *  control socket path. Idempotent; does nothing once handed over. */
  close(): void {
    if (this.#closed) return;
    this.#abort('the offer was closed');
    this.#closed = true;
    this.#watcher.close();
    this.#listener.close();
  }
}

// The holder as the taker last saw it alive: its pid and its start time (field 22 of
// /proc/PID/stat), so that a new process given the same pid is not taken for it.
interface Holder {
  pid: number;
  startTime: string | undefined;
}

// /proc/PID/stat's fields after the command (which may itself hold spaces and parentheses).
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function holderOf(pid: number): Holder {
  return { pid, startTime: statFields(pid)?.[19] };
}

// Dead, a zombie nobody has reaped yet, or its pid now someone else's: it serves no one.
function holderGone(holder: Holder): boolean {
  try {
    process.kill(holder.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return true;
  }
  const fields = statFields(holder.pid);
  if (fields === undefined) return true; // gone between the two looks
  return fields[0] === 'Z' || fields[0] === 'X' || (holder.startTime !== undefined && fields[19] !== holder.startTime);
}

/** What a successful takeOver() returns: the server, serving, and its own offer to a successor
 *  on the same control path. */
export interface TakenOver {
  server: IvshmemServer;
  offer: HandoverOffer;
}

/** Takes over the server offering a hand-over at `controlPath` (see HandoverOffer). */
export async function takeOver(controlPath: string, options: HandoverOptions = {}): Promise<TakenOver> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  // A holder whose backlog stays full past the deadline: its EAGAIN (code, errno, syscall) is ours.
  const socket = await UnixSocket.connectRetrying(controlPath, deadline);
  return new Promise<TakenOver>((resolve, reject) => {
    const received: number[] = []; // raw fds, ours to close until a server owns them
    let phase: 'state' | 'json-bytes' | 'fd-count' | 'json' | 'fds' | 'commit' | 'done' = 'state';
    let jsonBytes = 0;
    let fdCount = 0;
    let json = new Uint8Array(0);
    let jsonAt = 0;
    let server: IvshmemServer | undefined;
    let control: UnixListener | undefined;
    let holder: Holder | undefined; // undefined: a holder that is this process, or did not say

    const commit = (): void => {
      phase = 'done';
      clearTimeout(timer);
      channel.close();
      server!.handoverResume();
      resolve({ server: server!, offer: new HandoverOffer(server!, control!, options) });
    };

    // A hang-up after ADOPTED with neither COMMIT nor ABORT: the holder is dying. Its sockets
    // close before its pid is seen gone, so one look is not enough: watch it, bounded.
    const lost = (reason: string): void => {
      if (phase !== 'commit' || holder === undefined) {
        fail(reason);
        return;
      }
      const watchUntil = Date.now() + HOLDER_EXIT_GRACE_MS;
      const look = (): void => {
        if (phase !== 'commit') return;
        if (holderGone(holder!)) {
          options.log?.(
            `the old server (pid ${holder!.pid}) died before confirming the hand-over: serving in its place`,
          );
          commit();
        } else if (Date.now() >= watchUntil) {
          fail(`${reason}, and the old server (pid ${holder!.pid}) is still running ${HOLDER_EXIT_GRACE_MS} ms later`);
        } else setTimeout(look, 5);
      };
      look();
    };

    const fail = (reason: string): void => {
      if (phase === 'done') return;
      phase = 'done';
      clearTimeout(timer);
      channel.close();
      if (server !== undefined) {
        server.handoverRelease(); // our copies only: the holder still serves
        if (control !== undefined) closeFd(control.release());
      } else for (const fd of received) if (fd >= 0) closeFd(fd);
      reject(new IvshmemError('ERR_IVSHMEM_HANDOVER', `cannot take over from ${controlPath}: ${reason}`));
    };

    const adopt = (): void => {
      let d;
      try {
        d = JSON.parse(new TextDecoder().decode(json.subarray(0, jsonBytes)));
      } catch (err) {
        fail(`the state is not JSON: ${(err as Error).message}`);
        return;
      }
      try {
        if (d.format !== FORMAT) throw new Error(`state format ${d.format}, not ${FORMAT}`);
        if (Number.isSafeInteger(d.pid) && d.pid > 0 && d.pid !== process.pid) holder = holderOf(d.pid);
        // Every fd is referred to once, except that queued messages repeat the shm and eventfds.
        const used = new Set<number>();
        const take = (i: unknown): number => {
          if (!Number.isInteger(i) || (i as number) < 0 || (i as number) >= fdCount || used.has(i as number))
            throw new Error(`bad fd index ${i}`);
          used.add(i as number);
          return received[i as number];
        };
        const state: HandoverState = {
          socketPath: String(d.socketPath),
          listener: take(d.listener),
          memory: take(d.memory),
          memorySource: d.memorySource,
          vectors: d.vectors,
          nextId: d.nextId,
          legacy: d.legacy === true,
          stallTimeoutMs: d.stallTimeoutMs,
          maxQueuedMessages: d.maxQueuedMessages,
          counters: d.counters ?? {},
          refusals: d.refusals ?? {},
          peers: [],
          memoryLock: d.memoryLock === undefined || d.memoryLock === -1 ? -1 : take(d.memoryLock),
          memoryCreated: d.memoryCreated !== false,
          stateTable:
            d.stateTable === undefined
              ? undefined
              : { offset: Number(d.stateTable.offset), slots: Number(d.stateTable.slots) },
        };
        const controlFd = take(d.control);
        const queueRefs = new Set([d.memory]);
        for (const p of d.peers) {
          const vectors = (p.vectors as unknown[]).map((i) => {
            queueRefs.add(i as number);
            return take(i);
          });
          state.peers.push({
            id: p.id,
            socket: take(p.socket),
            vectors,
            queue: [],
            queueLimit: p.queueLimit ?? Infinity,
            announced: p.announced === true,
            joined: p.joined === true,
          });
        }
        d.peers.forEach((p: { queue: [string, number][] }, n: number) => {
          state.peers[n].queue = p.queue.map(([value, i]) => {
            if (i === -1) return { value: BigInt(value), fd: -1 };
            // Every index in queueRefs went through take(), so it names a received fd.
            if (!queueRefs.has(i))
              throw new Error(`a queued message refers to fd index ${i}, which is not the shm or an eventfd`);
            return { value: BigInt(value), fd: received[i] };
          });
        });
        if (used.size !== fdCount) throw new Error(`${fdCount - used.size} of the fds received are not described`);
        server = IvshmemServer.adopt(state, { log: options.log });
        try {
          control = UnixListener.adopt(controlFd, controlPath);
        } catch (err) {
          closeFd(controlFd);
          throw err;
        }
      } catch (err) {
        fail((err as Error).message);
        return;
      }
      phase = 'commit';
      clearTimeout(timer); // from here the holder decides: COMMIT, or it hangs up and serves on
      channel.send(ADOPTED);
    };

    const onMessage = (m: Message): void => {
      if (phase === 'fds') {
        if (m.fd < 0 || m.value !== BigInt(received.length)) {
          if (m.fd >= 0) closeFd(m.fd);
          fail(`expected fd ${received.length}, got message ${m.value}${m.fd < 0 ? ' without an fd' : ''}`);
          return;
        }
        received.push(m.fd);
        if (received.length === fdCount) adopt();
        return;
      }
      if (m.fd >= 0) {
        closeFd(m.fd);
        fail(`an fd came with message ${m.value} in phase ${phase}`);
        return;
      }
      switch (phase) {
        case 'state':
          if (m.value !== STATE) fail(`expected the state, got ${m.value}`);
          else phase = 'json-bytes';
          return;
        case 'json-bytes':
          if (m.value <= 0n || m.value > BigInt(MAX_JSON_BYTES)) fail(`bad state size ${m.value}`);
          else {
            jsonBytes = Number(m.value);
            json = new Uint8Array(Math.ceil(jsonBytes / 8) * 8);
            phase = 'fd-count';
          }
          return;
        case 'fd-count':
          if (m.value < 2n || m.value > BigInt(MAX_FDS)) fail(`bad fd count ${m.value}`);
          else {
            fdCount = Number(m.value);
            phase = 'json';
          }
          return;
        case 'json':
          new DataView(json.buffer).setBigInt64(jsonAt, m.value, true);
          jsonAt += 8;
          if (jsonAt === json.length) phase = 'fds';
          return;
        case 'commit':
          if (m.value === COMMIT) commit();
          else if (m.value === ABORT) fail('the old server gave up the hand-over and serves on');
          else fail(`expected the commit, got ${m.value}`);
          return;
        default:
          fail(`unexpected message ${m.value}`);
      }
    };

    let channel: Channel;
    try {
      channel = new Channel(socket, onMessage, lost);
    } catch (err) {
      socket.close();
      throw err; // the executor's throw rejects the promise
    }
    const timer = setTimeout(() => fail(`nothing complete within ${timeoutMs} ms`), Math.max(1, deadline - Date.now()));
    channel.send(HELLO);
  });
}
