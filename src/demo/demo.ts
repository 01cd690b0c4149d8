// `ivshmem demo` (npm start): an ivshmem server in this process, N peer devices in processes of
// their own, messages passed around a ring through shared memory and announced by doorbells, a
// live progress line, and a summary. A signal at any moment (Ctrl-C, kill, a closed terminal)
// leaves no socket, shm object, folder or process behind; a SIGKILL, which cannot be handled,
// leaves peers that leave by themselves and files that the next run removes.
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IvshmemError } from '../errors.js';
import { checkBar2Size } from '../device/options.js';
import { IvshmemServer } from '../server/ivshmem-server.js';
import { MIN_SERVER_SIZE } from '../os/server-memory.js';
import { removeStaleLeftovers, shmObjectName, tempFolderPrefix } from './leftovers.js';
import { MAILBOX_BYTES } from './mailbox.js';
import { summarize } from './summary.js';
import type { DemoSummary, PeerStats } from './summary.js';

export interface DemoOptions {
  peers: number;
  vectors: number;
  /** Bytes of shared memory: a power of two, at least a page and a mailbox per peer. */
  size: number;
  durationMs: number;
  /** The script a peer runs: this CLI, with the hidden `__demo-peer` command. */
  cliPath: string;
  onProgress?: (line: string) => void;
  /** Told what this run removed of earlier runs that died without cleaning up. */
  onStaleRemoved?: (paths: string[]) => void;
}

type FromPeer = ({ type: 'progress' | 'done' } & PeerStats) | { type: 'ready'; id: number } | { type: 'ring-ready' };

interface Peer {
  index: number;
  child: ChildProcess;
  id?: number;
  ringReady: boolean;
  latest?: PeerStats;
  done?: PeerStats;
  /** The IPC channel closed: every message the peer sent has arrived. */
  disconnected: boolean;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
}

// Ctrl-C, kill and a closed terminal: each ends the demo the same way, by cleaning up.
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
/** Bounds, not expectations: starting a Node process on a loaded machine can take seconds. */
const PEER_START_MS = 30_000;
const PEER_EXIT_MS = 10_000;
const POLL_MS = 10;

const interrupted = (signal: string) =>
  new IvshmemError(
    'ERR_IVSHMEM_INTERRUPTED',
    `interrupted by ${signal}: peers stopped, server closed, socket and shared memory removed`,
  );

// The shm object and folder are named after this process, so one process runs one demo at a time.
let active = false;

export async function runDemo(o: DemoOptions): Promise<DemoSummary> {
  if (!Number.isInteger(o.peers) || o.peers < 2 || o.peers > 64)
    throw new IvshmemError('ERR_IVSHMEM_INVALID_OPTION', 'peers must be 2..64');
  if (!Number.isInteger(o.vectors) || o.vectors < 2 || o.vectors > 64) {
    throw new IvshmemError(
      'ERR_IVSHMEM_INVALID_VECTORS',
      'the demo needs 2..64 vectors: one for messages, one for acknowledgements',
    );
  }
  if (!(o.durationMs > 0 && o.durationMs <= 60_000))
    throw new IvshmemError('ERR_IVSHMEM_INVALID_OPTION', 'duration must be within 1 ms..60 s');
  checkDemoSize(o.size, o.peers);
  if (active) throw new IvshmemError('ERR_IVSHMEM_INVALID_OPTION', 'a demo is already running in this process');
  active = true;

  // Handlers first: from here on a signal ends the demo through the cleanup below, whatever it is
  // doing. (Before this, nothing exists that would need removing.)
  let signalled: string | undefined;
  const onSignal = (signal: string) => {
    signalled ??= signal;
  };
  for (const s of STOP_SIGNALS) process.on(s, onSignal);

  const peers: Peer[] = [];
  let dir: string | undefined;
  let server: IvshmemServer | undefined;
  let ticker: NodeJS.Timeout | undefined;
  let startFailure: IvshmemError | undefined;

  /** Why the demo cannot go on, if it cannot: a signal, or a peer that left before it finished. */
  const failure = (): IvshmemError | undefined => {
    if (signalled) return interrupted(signalled);
    if (startFailure) return startFailure;
    for (const p of peers) {
      if (p.done || !p.disconnected || !p.exit) continue; // judged once its exit status is known
      const { code, signal } = p.exit;
      // Ctrl-C can reach a peer that has not yet set itself to ignore it.
      if (signal && (STOP_SIGNALS as readonly string[]).includes(signal)) return interrupted(signal);
      return new IvshmemError(
        'ERR_IVSHMEM_PROTOCOL',
        `peer ${p.index} exited (${signal ?? `code ${code}`}) before it finished`,
      );
    }
    return undefined;
  };
  const until = async (holds: () => boolean, what: string, ms: number) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const f = failure();
      if (f) throw f;
      if (holds()) return;
      if (Date.now() > deadline)
        throw new IvshmemError('ERR_IVSHMEM_PROTOCOL_TIMEOUT', `${what} within ${ms / 1000} s`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  };
  // A peer can go at any moment; its going is noticed through 'disconnect' and 'exit', never
  // through a send failing (without the callback that would be an uncaught 'error' event).
  const send = (p: Peer, message: unknown) => {
    if (p.child.connected) p.child.send(message as object, () => {});
  };

  try {
    const stale = removeStaleLeftovers();
    if (stale.length > 0) o.onStaleRemoved?.(stale);
    dir = mkdtempSync(join(tmpdir(), tempFolderPrefix(process.pid)));
    const socketPath = join(dir, 'server.sock');
    server = IvshmemServer.start({
      socketPath,
      memory: { shm: shmObjectName(process.pid) },
      size: o.size,
      vectors: o.vectors,
    });
    const srv = server;

    // Peers join one at a time, so ids (and the ring) follow start order.
    for (let i = 0; i < o.peers; i++) {
      const child = fork(o.cliPath, ['__demo-peer', socketPath, String(o.vectors)], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      const p: Peer = { index: i, child, ringReady: false, disconnected: false };
      peers.push(p);
      child.on('message', (m: FromPeer) => {
        if (m.type === 'ready') p.id = m.id;
        else if (m.type === 'ring-ready') p.ringReady = true;
        else if (m.type === 'progress') p.latest = m;
        else if (m.type === 'done') p.done = m;
      });
      child.on('disconnect', () => (p.disconnected = true));
      // 'exit' can come before the last messages are read; the channel's end cannot.
      child.on('exit', (code, signal) => (p.exit = { code, signal }));
      child.on('error', (err) => {
        startFailure ??= new IvshmemError('ERR_IVSHMEM_PROTOCOL', `peer ${i} could not be started: ${err.message}`, {
          cause: err,
        });
      });
      await until(() => p.id !== undefined, `peer ${i} did not join`, PEER_START_MS);
    }
    // Every peer must know every other before the first message.
    await until(() => srv.peerIds.length >= o.peers, 'the server did not announce every peer', PEER_START_MS);

    // Every peer learns the ring (its mailbox, successor and predecessor) before any starts.
    const ids = peers.map((p) => p.id!);
    for (const p of peers) send(p, { type: 'ring', ring: ids });
    await until(() => peers.every((p) => p.ringReady), 'a peer did not take the ring', PEER_START_MS);

    const started = Date.now();
    for (const p of peers) send(p, { type: 'start', durationMs: o.durationMs });
    ticker = setInterval(() => {
      const sum = (f: (s: PeerStats) => number) => peers.reduce((a, p) => a + (p.latest ? f(p.latest) : 0), 0);
      const elapsed = ((Date.now() - started) / 1000).toFixed(1);
      o.onProgress?.(
        `${elapsed}s  ${o.peers} peers  ${sum((s) => s.sent)} messages  ${sum((s) => s.doorbellsSent)} doorbells  ${sum((s) => s.interrupts)} interrupts`,
      );
    }, 250);
    await until(() => peers.every((p) => p.done), 'not every peer reported', o.durationMs + PEER_START_MS);
    return summarize(
      peers.map((p) => p.done!).sort((a, b) => a.id - b.id),
      {
        peers: o.peers,
        vectors: o.vectors,
        sizeBytes: srv.memory.size,
        durationMs: o.durationMs,
      },
    );
  } finally {
    clearInterval(ticker);
    // What is on the file system goes first and synchronously, so even a SIGKILL arriving while we
    // wait for the peers below leaves nothing but what the next run sweeps. Handlers stay on
    // until the end, so a second Ctrl-C cannot cut the cleanup short.
    for (const p of peers) if (!p.exit) p.child.kill('SIGKILL');
    server?.close(); // removes the socket and the shm object
    if (dir) rmSync(dir, { recursive: true, force: true });
    const deadline = Date.now() + PEER_EXIT_MS;
    while (peers.some((p) => !p.exit) && Date.now() < deadline) await new Promise((r) => setTimeout(r, POLL_MS));
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
    active = false;
  }
}

/** The demo's shared memory must be a BAR2 (a power of two) of whole pages with a mailbox per peer
 *  (64 peers fill exactly one page). Checked before anything starts, so a refusal leaves nothing. */
export function checkDemoSize(size: number, peers: number): void {
  const least = Math.max(MIN_SERVER_SIZE, peers * MAILBOX_BYTES);
  if (!Number.isSafeInteger(size) || size < least) {
    throw new IvshmemError(
      'ERR_IVSHMEM_INVALID_SIZE',
      `size ${size} is too small: the demo needs at least ${formatBytes(least)} (peers map the memory in whole pages, and ${peers} peers need ${peers} × ${MAILBOX_BYTES}-byte mailboxes)`,
    );
  }
  checkBar2Size(size, Infinity); // and what every peer's device needs of its BAR2
}

/** Bytes in the largest binary unit that holds them exactly: 256 B, 64 KiB, 1 MiB. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (u < units.length - 1 && n >= 1024 && n % 1024 === 0) {
    n /= 1024;
    u++;
  }
  return `${n} ${units[u]}`;
}

/** The summary as a person reads it. */
export function formatSummary(s: DemoSummary): string {
  const lat = (p: DemoSummary['latencyUs']['oneWay']) =>
    `p50 ${p.p50} µs   p99 ${p.p99} µs   p99.9 ${p.p999} µs   max ${p.max} µs`;
  const peak = Math.max(1, ...s.histogram.map((b) => b.count));
  // Columns as wide as their widest entry, so every row's bar starts and its count ends in line.
  const width = (f: (b: DemoSummary['histogram'][number]) => number) =>
    Math.max(1, ...s.histogram.map((b) => String(f(b)).length));
  const [fromW, toW, countW] = [width((b) => b.fromUs), width((b) => b.toUs), width((b) => b.count)];
  const bars = s.histogram.map((b) => {
    const range = `${String(b.fromUs).padStart(fromW)}–${String(b.toUs).padEnd(toW)} µs`;
    return `    ${range} ${'█'.repeat(Math.round((30 * b.count) / peak)).padEnd(30)} ${String(b.count).padStart(countW)}`;
  });
  return [
    '',
    `ivshmem demo: ${s.peers} peers on one server, ${s.vectors} vectors each, ${formatBytes(s.sizeBytes)} shared, ${s.durationMs / 1000} s`,
    `  messages     ${s.messages.sent} sent, ${s.messages.received} received intact, ${s.messages.acknowledged} acknowledged, ${s.messages.corrupt} corrupt`,
    `  doorbells    ${s.doorbells.sent} rung, ${s.doorbells.dropped} dropped;  interrupts delivered ${s.interrupts}`,
    `  one-way      ${lat(s.latencyUs.oneWay)}`,
    `  round trip   ${lat(s.latencyUs.roundTrip)}`,
    '  one-way latency:',
    ...bars,
    '',
  ].join('\n');
}
