// The in-process server against hostile clients while two real peers stay connected: ten thousand
// connect/close cycles, clients SIGKILLed mid-setup, clients that write, a client that never reads,
// and the 16-bit id counter wrapping. The server must keep serving, the two peers must hear of
// exactly the peers that joined (one join and one leave each), and fds and memory must not grow.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IvshmemClient } from '../../src/client/ivshmem-client.js';
import { POLL_READABLE, POLL_WRITABLE, native } from '../../src/os/binding.js';
import { UnixSocket } from '../../src/os/unix-socket.js';
import { IvshmemServer } from '../../src/server/ivshmem-server.js';
import type { IvshmemServerOptions } from '../../src/server/ivshmem-server.js';
import { runNewestFirst } from '../support/cleanups.js';
import { expectNoFdLeak, openFdCount } from '../support/fd-leaks.js';
import { until } from '../support/until.js';

const tick = (ms = 1) => new Promise((r) => setTimeout(r, ms));
let dir: string;
let n = 0;
const cleanups: Array<() => unknown> = [];
const failures: string[] = [];
const shmPrefix = `ivshmem-test-hostile-${process.pid}-`;

function startServer(extra: Partial<IvshmemServerOptions> = {}): { server: IvshmemServer; log: string[] } {
  const log: string[] = [];
  const server = IvshmemServer.start({
    socketPath: join(dir, `s${n++}.sock`),
    memory: { shm: `${shmPrefix}${n++}` },
    size: 1 << 16,
    vectors: 1,
    log: (l) => log.push(l),
    ...extra,
  });
  cleanups.push(() => server.close());
  return { server, log };
}

/** A real peer that counts, per peer id, the joins and leaves the server announced to it. */
interface Watcher {
  client: IvshmemClient;
  joins: Map<number, number>;
  leaves: Map<number, number>;
}
async function watcher(server: IvshmemServer): Promise<Watcher> {
  const client = await IvshmemClient.connect(server.socketPath);
  cleanups.push(() => client.close());
  const w: Watcher = { client, joins: new Map(), leaves: new Map() };
  client.on('join', (id) => w.joins.set(id, (w.joins.get(id) ?? 0) + 1));
  client.on('leave', (id) => w.leaves.set(id, (w.leaves.get(id) ?? 0) + 1));
  return w;
}

/** Every id the watcher heard of, except `others`, joined once and left once: the set of them. */
function pairedIds(w: Watcher, others: number[]): Set<number> {
  const ids = new Set<number>();
  for (const [id, count] of w.joins) {
    if (others.includes(id)) continue;
    if (count !== 1 || w.leaves.get(id) !== 1)
      throw new Error(`peer ${id}: ${count} join(s), ${w.leaves.get(id) ?? 0} leave(s)`);
    ids.add(id);
  }
  for (const id of w.leaves.keys()) if (!w.joins.has(id)) throw new Error(`peer ${id} left without joining`);
  return ids;
}

/** The ids the server reported joined (its 'join' events), kept from now on. */
function joinedIds(server: IvshmemServer): Set<number> {
  const ids = new Set<number>();
  server.on('join', (id) => ids.add(id));
  return ids;
}

async function connect(path: string): Promise<UnixSocket> {
  for (;;) {
    try {
      return UnixSocket.connect(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      await tick(); // backlog full until the server, on this thread, accepts
    }
  }
}

/** Reads what has arrived (closing any fds), up to `max` messages; true at end of stream (or
 *  reset, which is how a socket closed by the server with our data unread ends). */
function drain(socket: UnixSocket, got: bigint[], max = Infinity): boolean {
  try {
    while (got.length < max) {
      const m = socket.receive();
      if (m === null) return socket.eof;
      got.push(m.value);
      if (m.fd >= 0) native().close(m.fd);
    }
    return false;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ECONNRESET') return true;
    throw err;
  }
}

/** Reads until `count` messages came, or the stream ended: the values read. */
async function read(socket: UnixSocket, count: number, ms = 5000): Promise<bigint[]> {
  const got: bigint[] = [];
  await until(() => drain(socket, got, count) || got.length >= count, `${count} messages from the server`, ms, 1);
  return got;
}

/** Reads everything until the server ends the stream. */
async function readToEnd(socket: UnixSocket, ms = 5000): Promise<bigint[]> {
  const got: bigint[] = [];
  await until(() => drain(socket, got), 'the server to end the stream', ms, 1);
  return got;
}

// Both peers keep hearing of joins and leaves: a ring from one reaches the other.
async function stillServing(a: Watcher, b: Watcher): Promise<void> {
  let rung = 0;
  const onRing = () => rung++;
  b.client.on('interrupt', onRing);
  a.client.ring(b.client.id, 0);
  await until(() => rung > 0, 'a ring from one watcher to the other');
  b.client.off('interrupt', onRing);
}

const running: ChildProcess[] = [];
const exited = (c: ChildProcess) =>
  c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r));

// A client in another process: connects, reads `bytes` bytes (fds that came with them are closed
// by the kernel), says so, then waits to be killed.
function partialReader(path: string, bytes: number): { child: ChildProcess; ready: Promise<void> } {
  const script = [
    'import socket, sys, time',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
    's.connect(sys.argv[1])',
    'got = 0',
    'while got < int(sys.argv[2]):',
    '    got += len(s.recv(int(sys.argv[2]) - got))',
    'print("ready", flush=True)',
    'time.sleep(60)',
  ].join('\n');
  const child = spawn('python3', ['-c', script, path, String(bytes)], { stdio: ['ignore', 'pipe', 'inherit'] });
  running.push(child);
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.once('exit', (code, signal) => reject(new Error(`partial reader exited early (${code ?? signal})`)));
  });
  return { child, ready };
}

describe('ivshmem server against hostile clients', () => {
  expectNoFdLeak(async () => {
    const c = spawn('true');
    await exited(c);
  });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ivshmem-hostile-'));
  });
  afterEach(async () => {
    for (const c of running.splice(0)) {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      await exited(c);
    }
    await runNewestFirst(cleanups, failures);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    expect(readdirSync('/dev/shm').filter((f) => f.startsWith(shmPrefix))).toEqual([]);
    expect(failures).toEqual([]);
  });

  it('serves two peers through 10,000 connect/close cycles, announcing exactly the joined ones, without growing fds or memory', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const { server } = startServer();
    const a = await watcher(server);
    const b = await watcher(server);
    await until(() => a.joins.has(b.client.id), 'the first watcher hears of the second');
    const joined = joinedIds(server);
    const CYCLES = 10_000;
    const BATCH = 50;
    const samples: { fds: number; heap: number; rss: number }[] = [];
    const sample = () => {
      gc();
      samples.push({ fds: openFdCount(), heap: process.memoryUsage().heapUsed, rss: process.memoryUsage().rss });
    };
    for (let done = 0; done < CYCLES; done += BATCH) {
      if (done % 1000 === 0) {
        await until(
          () => server.peerIds.length === 2 && server.stats().messagesQueued === 0,
          'the server settles between batches',
        );
        sample();
      }
      const batch: UnixSocket[] = [];
      for (let i = 0; i < BATCH; i++) batch.push(await connect(server.socketPath));
      // Every other batch: each client reads its version and id (setup done) before closing;
      // in the others, clients close at once, often before the server has accepted them.
      if ((done / BATCH) % 2 === 0) for (const s of batch) expect((await read(s, 2)).length).toBe(2);
      for (const s of batch) s.close();
      await tick(0);
    }
    await until(() => server.peerIds.length === 2, 'every cycle gone');
    await until(() => pairedIdsSafe(a, b) === joined.size, 'both watchers heard every leave', 10_000);
    sample();

    // Each watcher heard of exactly the peers the server admitted, each once in and once out.
    expect(pairedIds(a, [b.client.id])).toEqual(joined);
    expect(pairedIds(b, [a.client.id])).toEqual(joined);
    const stats = server.stats();
    expect(stats.joins - 2).toBe(joined.size);
    expect(stats.joins + stats.setupFailures).toBe(CYCLES + 2); // every connection accounted for
    expect(joined.size).toBeGreaterThanOrEqual(CYCLES / 2); // at least the batches that read their setup
    expect(stats.leaves).toBe(joined.size);
    expect(stats.refusals).toEqual({});
    expect(stats.peers).toBe(2);
    await stillServing(a, b);

    // After warm-up (the first sample), fds return exactly to where they were; memory stays
    // within a generous bound and does not keep climbing.
    const warm = samples[1];
    const last = samples.at(-1)!;
    expect(last.fds).toBe(warm.fds);
    const MiB = 1 << 20;
    expect((last.heap - warm.heap) / MiB).toBeLessThan(16);
    expect((last.rss - warm.rss) / MiB).toBeLessThan(96);
    console.log(
      `10k cycles: ${joined.size} joined, ${stats.setupFailures} left during setup; heap ${(warm.heap / MiB).toFixed(1)} → ${(last.heap / MiB).toFixed(1)} MiB, rss ${(warm.rss / MiB).toFixed(1)} → ${(last.rss / MiB).toFixed(1)} MiB, fds ${warm.fds} → ${last.fds}`,
    );
  }, 120_000);

  it('drops clients SIGKILLed mid-setup, telling the peers once of each that had joined', async () => {
    const { server } = startServer({ vectors: 2 });
    const a = await watcher(server);
    const b = await watcher(server);
    const joined = joinedIds(server);
    // Killed after 0 bytes, half a message, the version, and version + id + part of the shm message.
    const readers = [0, 4, 8, 20, 0, 4, 8, 20].map((bytes) => partialReader(server.socketPath, bytes));
    await Promise.all(readers.map((r) => r.ready));
    await until(() => joined.size === readers.length, 'every killed-to-be client admitted', 10_000);
    for (const r of readers) r.child.kill('SIGKILL');
    await Promise.all(readers.map((r) => exited(r.child)));
    await until(() => server.peerIds.length === 2, 'the killed clients dropped', 10_000);
    await until(() => pairedIdsSafe(a, b) === joined.size, 'both watchers heard every leave');
    expect(pairedIds(a, [b.client.id])).toEqual(joined);
    expect(pairedIds(b, [a.client.id])).toEqual(joined);
    expect(server.stats()).toMatchObject({ peers: 2, joins: 2 + readers.length, leaves: readers.length, refusals: {} });
    await stillServing(a, b);
  });

  it('drops clients that write, whatever and whenever they write, and keeps serving', async () => {
    const { server, log } = startServer();
    const a = await watcher(server);
    const b = await watcher(server);
    const joined = joinedIds(server);
    const eventfd = native().eventfdCreate();
    cleanups.push(() => native().close(eventfd));
    const writes: [string, (s: UnixSocket) => void][] = [
      ['one byte', (s) => s.sendRaw(new Uint8Array([7]))],
      ['a whole message', (s) => s.send(42n)],
      ['a message with an fd', (s) => s.send(-1n, eventfd)],
      ['64 KiB', (s) => s.sendRaw(new Uint8Array(65536).fill(0xff))],
      ['a half-close', (s) => native().shutdown(s.fd)],
    ];
    const clients: UnixSocket[] = [];
    for (const [, write] of writes) {
      // Once before reading anything, once after reading the whole setup.
      const early = await connect(server.socketPath);
      write(early);
      const late = await connect(server.socketPath);
      cleanups.push(
        () => early.close(),
        () => late.close(),
      );
      await read(late, 3 + 3); // version, id, shm, the two watchers' vectors, its own
      write(late);
      clients.push(early, late);
    }
    await until(() => server.peerIds.length === 2, 'every writer dropped');
    await until(() => pairedIdsSafe(a, b) === joined.size, 'both watchers heard every leave');
    expect(pairedIds(a, [b.client.id])).toEqual(joined);
    expect(joined.size).toBeGreaterThanOrEqual(writes.length); // at least the late ones had joined
    // A writer's socket is closed by the server: each sees the end of its stream.
    for (const c of clients) await readToEnd(c);
    // Each left for its own write: data, or a shutdown the server met as EPIPE while sending.
    const left = log.filter((l) => / left: /.test(l));
    expect(left.length).toBe(joined.size + server.stats().setupFailures);
    for (const line of left) expect(line).toMatch(/the client sent data or hung up|send failed: EPIPE/);
    await stillServing(a, b);
  });

  it('bounds the queue of a client that never reads, drops it with a log line, and never blocks the others', async () => {
    const LIMIT = 64;
    const VECTORS = 16;
    const { server, log } = startServer({ vectors: VECTORS, maxQueuedMessages: LIMIT, stallTimeoutMs: 60_000 });
    const a = await watcher(server);
    const b = await watcher(server);
    const joined = joinedIds(server);
    const silent = await connect(server.socketPath);
    cleanups.push(() => silent.close());
    await until(() => joined.size === 1, 'the silent client admitted');
    const silentId = [...joined][0];
    // Each newcomer that stays is announced to the silent client with one message per vector,
    // until its socket and then its queue are full. (A join and leave while the join is still
    // queued cost nothing: the server forgets both.) Everyone else reads all along.
    const held: UnixSocket[] = [];
    while (server.peerIds.includes(silentId)) {
      if (held.length > 500) throw new Error('the silent client was never dropped');
      const s = await connect(server.socketPath);
      cleanups.push(() => s.close());
      held.push(s);
      await tick(0);
      for (const h of held) expect(drain(h, [])).toBe(false);
    }
    // No queue ever held more than the limit, or a newcomer's own setup (version, id, shm, and
    // every peer's vectors, its own included: the server's table bounds it).
    const setup = 3 + VECTORS * (held.length + 4);
    const stats = server.stats();
    for (const h of held) h.close();
    expect(stats.slowReaderDrops).toBe(1);
    expect(stats.peakQueue).toBeLessThanOrEqual(Math.max(LIMIT, setup));
    expect(log).toContain(`peer ${silentId} left: the client stopped reading: more than ${LIMIT} messages queued`);
    await until(
      () => server.peerIds.length === 2 && server.stats().messagesQueued === 0,
      'only the watchers left, nothing queued',
    );
    await until(() => pairedIdsSafe(a, b) === joined.size, "both watchers heard every leave, the silent client's too");
    expect(pairedIds(a, [b.client.id])).toEqual(joined);
    expect(pairedIds(b, [a.client.id])).toEqual(joined);
    await stillServing(a, b);
    // What the silent client was sent before its queue overflowed is still readable, then EOF.
    const backlog = await readToEnd(silent);
    expect(backlog.slice(0, 3)).toEqual([0n, BigInt(silentId), -1n]);
    console.log(
      `a silent client took ${backlog.length} messages into its socket, ${LIMIT} more into its queue, then was dropped (${held.length} peers of ${VECTORS} vectors joined meanwhile)`,
    );
  });

  it('hears of writability from the native poller only when asked, and only once there is room', async () => {
    const [full, reader] = UnixSocket.pair();
    cleanups.push(
      () => full.close(),
      () => reader.close(),
    );
    let sent = 0;
    while (full.send(BigInt(sent))) sent++;
    const events: number[] = [];
    const w = new (native().FdWatcher)(full.fd, false, (err, ev) => events.push(err ? -1 : ev!));
    cleanups.push(() => w.close());
    w.start(POLL_READABLE | POLL_WRITABLE);
    await tick(50);
    expect(events).toEqual([]); // full: neither readable nor writable
    const got = await read(reader, sent);
    expect(got.length).toBe(sent);
    await until(() => events.includes(POLL_WRITABLE), 'writability once the reader made room');
    w.start(POLL_READABLE); // back to readable only: quiet again
    const seen = events.length;
    await tick(50);
    expect(events.length).toBe(seen);
    reader.send(1n);
    await until(() => events.at(-1) === POLL_READABLE, 'readability');
    // An eventfd watcher drains on read and cannot wait for writability.
    const efd = native().eventfdCreate();
    cleanups.push(() => native().close(efd));
    const ew = new (native().FdWatcher)(efd, true, () => {});
    cleanups.push(() => ew.close());
    expect(() => ew.start(POLL_WRITABLE)).toThrow(TypeError);
    expect(() => w.start(4)).toThrow(TypeError);
  });

  it('wraps ids at 65,536, skipping ids in use and going on round-robin (end to end)', async () => {
    const { server } = startServer({ firstId: 65534 });
    const a = await watcher(server);
    const b = await watcher(server);
    expect([a.client.id, b.client.id]).toEqual([65534, 65535]);
    const c = await connect(server.socketPath);
    cleanups.push(() => c.close());
    expect((await read(c, 2))[1]).toBe(0n); // wrapped
    await until(() => a.joins.has(0) && b.joins.has(0), 'both watchers hear of peer 0');
    c.close();
    await until(() => a.leaves.has(0), 'peer 0 leaves');
    const d = await connect(server.socketPath);
    cleanups.push(() => d.close());
    expect((await read(d, 2))[1]).toBe(1n); // round-robin: not 0 again
    d.close();
    await until(() => server.peerIds.length === 2, 'd gone');
    b.client.close();
    await until(() => server.peerIds.length === 1, 'b gone');
    // The counter goes on from 2; the ids freed at the top come back only after the next wrap.
    const ids: bigint[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await connect(server.socketPath);
      ids.push((await read(s, 2))[1]);
      s.close();
    }
    expect(ids).toEqual([2n, 3n, 4n]);
    expect(() =>
      IvshmemServer.start({
        socketPath: join(dir, 'never.sock'),
        memory: { shm: `${shmPrefix}never` },
        firstId: 65536,
      }),
    ).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_INVALID_OPTION' }));
  });
});

function pairedIdsSafe(a: Watcher, b: Watcher): number {
  try {
    return Math.min(pairedIds(a, [b.client.id]).size, pairedIds(b, [a.client.id]).size);
  } catch {
    return -1;
  }
}
