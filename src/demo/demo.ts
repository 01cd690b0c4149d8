// `ivshmem demo` (npm start): an ivshmem server in this process, N peer devices in processes of
// their own, messages passed around a ring through shared memory and announced by doorbells, a
// live progress line, and a summary. Ctrl-C leaves no socket, shm object or process behind.
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IvshmemError } from '../errors.js';
import { IvshmemServer } from '../server/ivshmem-server.js';
import type { PeerStats } from './peer.js';
import { summarize } from './summary.js';
import type { DemoSummary } from './summary.js';

export interface DemoOptions {
  peers: number;
  vectors: number;
  size: number;
  durationMs: number;
  /** The script a peer runs: this CLI, with the hidden `__demo-peer` command. */
  cliPath: string;
  onProgress?: (line: string) => void;
}

type FromPeer = ({ type: 'progress' | 'done' } & PeerStats) | { type: 'ready'; id: number } | { type: 'ring-ready' };

export async function runDemo(o: DemoOptions): Promise<DemoSummary> {
  if (!Number.isInteger(o.peers) || o.peers < 2 || o.peers > 64) throw new IvshmemError('ERR_IVSHMEM_INVALID_OPTION', 'peers must be 2..64');
  if (!Number.isInteger(o.vectors) || o.vectors < 2 || o.vectors > 64) {
    throw new IvshmemError('ERR_IVSHMEM_INVALID_VECTORS', 'the demo needs 2..64 vectors: one for messages, one for acknowledgements');
  }
  if (!(o.durationMs > 0 && o.durationMs <= 60_000)) throw new IvshmemError('ERR_IVSHMEM_INVALID_OPTION', 'duration must be within 1 ms..60 s');
  const dir = mkdtempSync(join(tmpdir(), 'ivshmem-demo-'));
  const socketPath = join(dir, 'server.sock');
  const server = IvshmemServer.start({ socketPath, memory: { shm: `ivshmem-demo-${process.pid}` }, size: o.size, vectors: o.vectors });
  const children: ChildProcess[] = [];
  const latest = new Map<number, PeerStats>();
  const done = new Map<number, PeerStats>();
  let interrupted = false;

  const cleanup = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    server.close(); // removes the socket and the shm object
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = () => {
    interrupted = true;
    for (const c of children) c.connected && c.send({ type: 'stop' });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    // Peers join one at a time, so ids (and the ring) follow start order.
    const ids: number[] = [];
    for (let i = 0; i < o.peers; i++) {
      const child = fork(o.cliPath, ['__demo-peer', socketPath, String(o.vectors)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.push(child);
      child.on('message', (m: FromPeer) => {
        if (m.type === 'progress') latest.set(m.id, m);
        if (m.type === 'done') done.set(m.id, m);
      });
      ids.push(await new Promise<number>((resolve, reject) => {
        // Generous: on a loaded machine starting a Node process can take seconds.
        const timer = setTimeout(() => reject(new IvshmemError('ERR_IVSHMEM_PROTOCOL_TIMEOUT', `peer ${i} did not start within 30 s`)), 30_000).unref();
        child.once('exit', (code) => reject(new IvshmemError('ERR_IVSHMEM_PROTOCOL', `peer ${i} exited (code ${code}) before joining`)));
        const ready = (m: FromPeer) => {
          if (m.type !== 'ready') return;
          clearTimeout(timer);
          child.off('message', ready);
          resolve(m.id);
        };
        child.on('message', ready);
      }));
    }
    // Every peer must know every other before the first message.
    const deadline = Date.now() + 5000;
    while (server.peerIds.length < o.peers && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));

    // Every peer learns the ring (its mailbox, successor and predecessor) before any starts.
    await Promise.all(children.map((c) => new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new IvshmemError('ERR_IVSHMEM_PROTOCOL_TIMEOUT', 'a peer did not take the ring within 30 s')), 30_000).unref();
      const ready = (m: FromPeer) => {
        if (m.type !== 'ring-ready') return;
        clearTimeout(timer);
        c.off('message', ready);
        resolve();
      };
      c.on('message', ready);
      c.send({ type: 'ring', ring: ids });
    })));
    const started = Date.now();
    for (const c of children) c.send({ type: 'start', durationMs: o.durationMs });
    const ticker = setInterval(() => {
      const sum = (f: (s: PeerStats) => number) => [...latest.values()].reduce((a, s) => a + f(s), 0);
      const elapsed = ((Date.now() - started) / 1000).toFixed(1);
      o.onProgress?.(`${elapsed}s  ${o.peers} peers  ${sum((s) => s.sent)} messages  ${sum((s) => s.doorbellsSent)} doorbells  ${sum((s) => s.interrupts)} interrupts`);
    }, 250);
    const end = Date.now() + o.durationMs + 30_000;
    while (done.size < o.peers && Date.now() < end && !interrupted) await new Promise((r) => setTimeout(r, 20));
    clearInterval(ticker);
    if (interrupted) throw new IvshmemError('ERR_IVSHMEM_INTERRUPTED', 'interrupted: peers stopped, server closed, socket and shared memory removed');
    if (done.size < o.peers) throw new IvshmemError('ERR_IVSHMEM_PROTOCOL_TIMEOUT', `only ${done.size} of ${o.peers} peers reported`);
    return summarize([...done.values()].sort((a, b) => a.id - b.id), {
      peers: o.peers, vectors: o.vectors, sizeBytes: server.memory.size, durationMs: o.durationMs,
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    cleanup();
  }
}

/** The summary as a person reads it. */
export function formatSummary(s: DemoSummary): string {
  const lat = (p: DemoSummary['latencyUs']['oneWay']) => `p50 ${p.p50} µs   p99 ${p.p99} µs   p99.9 ${p.p999} µs   max ${p.max} µs`;
  const peak = Math.max(1, ...s.histogram.map((b) => b.count));
  const bars = s.histogram.map((b) => {
    const label = b.fromUs === 0 ? '      < 1 µs' : `${String(b.fromUs).padStart(6)}–${String(b.toUs).padEnd(5)}µs`.padStart(12);
    return `  ${label} ${'█'.repeat(Math.round((30 * b.count) / peak)).padEnd(30)} ${b.count}`;
  });
  return [
    '',
    `ivshmem demo: ${s.peers} peers on one server, ${s.vectors} vectors each, ${s.sizeBytes / 1024} KiB shared, ${s.durationMs / 1000} s`,
    `  messages     ${s.messages.sent} sent, ${s.messages.received} received intact, ${s.messages.acknowledged} acknowledged, ${s.messages.corrupt} corrupt`,
    `  doorbells    ${s.doorbells.sent} rung, ${s.doorbells.dropped} dropped;  interrupts delivered ${s.interrupts}`,
    `  one-way      ${lat(s.latencyUs.oneWay)}`,
    `  round trip   ${lat(s.latencyUs.roundTrip)}`,
    '  one-way latency:',
    ...bars,
    '',
  ].join('\n');
}
