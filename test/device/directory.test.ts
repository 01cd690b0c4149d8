// VMs in worker threads of one process share memory and ring each other with no eventfd, no
// socket and no native addon: each worker's IvshmemDevice joins a PeerDirectory, writes numbered
// messages into the next peer's mailbox in BAR2 and rings it; the receiver's interrupt (MSI-X in
// doorbell mode, the INTx line in intx mode) reads the message back. The workers run with
// IVSHMEM_NATIVE_ADDON naming a missing file, so loading the addon anywhere would fail them.
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { PeerDirectory } from '../../src/server/directory.js';
import { bundleModule } from '../support/bundle.js';
import { until } from '../support/until.js';

const WORKER = fileURLToPath(new URL('../support/directory-peer-worker.mjs', import.meta.url));
const NO_ADDON = '/nonexistent/ivshmem_native.node';

interface Peer {
  worker: Worker;
  id: number;
  inbox: Record<string, unknown>[];
  errors: Error[];
}

const workers: Worker[] = [];
const directories: PeerDirectory[] = [];
afterEach(async () => {
  for (const d of directories.splice(0)) d.close();
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
});

function bundle(): string {
  return bundleModule('directory-device', [
    "export { IvshmemDevice } from './src/device/device.ts';",
    "export { EventFd } from './src/os/eventfd.ts';",
  ]);
}

async function startPeer(
  directory: PeerDirectory,
  mode: 'doorbell' | 'intx',
  vectors: number,
  vectorWait: 'loop' | 'manual' = 'loop',
): Promise<Peer> {
  const port = directory.connect();
  const worker = new Worker(WORKER, {
    workerData: { bundle: bundle(), port, mode, vectors, vectorWait },
    transferList: [port as never],
    env: { ...process.env, IVSHMEM_NATIVE_ADDON: NO_ADDON },
  });
  workers.push(worker);
  const peer: Peer = { worker, id: -1, inbox: [], errors: [] };
  worker.on('message', (m) => peer.inbox.push(m));
  worker.on('error', (err) => peer.errors.push(err));
  await until(() => peer.errors.length > 0 || peer.inbox.some((m) => m.type === 'ready'), 'the peer is ready', 10_000);
  expect(peer.errors).toEqual([]);
  peer.id = peer.inbox.find((m) => m.type === 'ready')!.id as number;
  return peer;
}

/** The next message of `type` the peer sends (taken out of its inbox). */
async function next(peer: Peer, type: string): Promise<Record<string, unknown>> {
  await until(() => peer.inbox.some((m) => m.type === type), `${type} from peer ${peer.id}`, 5000, 1);
  const i = peer.inbox.findIndex((m) => m.type === type);
  return peer.inbox.splice(i, 1)[0];
}

async function stats(peer: Peer, about?: number) {
  peer.worker.postMessage({ type: 'stats', peer: about });
  return (await next(peer, 'stats')) as {
    counters: { doorbellsSent: number; interruptsDelivered: number; doorbellsDropped: { noPeer: number } };
    vectors: { fired: number; delivered: number }[];
    peers: number[];
    peerVectors: number;
  };
}

describe('devices in worker threads on a peer directory (no eventfds, no addon)', () => {
  it('three doorbell-mode VMs pass 60 numbered messages round a ring; every doorbell is one MSI-X interrupt', async () => {
    const directory = new PeerDirectory({ size: 4096, vectors: 2 });
    directories.push(directory);
    const peers: Peer[] = [];
    for (let i = 0; i < 3; i++) peers.push(await startPeer(directory, 'doorbell', 2));
    expect(peers.map((p) => p.id)).toEqual([0, 1, 2]);
    await until(async () => (await stats(peers[0])).peers.length === 2, 'the first peer hears of both others');

    for (let i = 0; i < 60; i++) {
      const from = peers[i % 3];
      const to = peers[(i + 1) % 3];
      const vector = i % 2;
      from.worker.postMessage({ type: 'send', peer: to.id, vector, value: 1000 + i });
      const got = await next(to, 'interrupt');
      expect(got, `message ${i}`).toEqual({ type: 'interrupt', vector, value: 1000 + i });
    }
    for (const p of peers) {
      const s = await stats(p);
      expect(s.counters.doorbellsSent).toBe(20);
      expect(s.counters.interruptsDelivered).toBe(20);
      expect(s.vectors.map((v) => v.fired)).toEqual([10, 10]);
    }
    // None of that touched the addon, which these threads cannot load:
    peers[0].worker.postMessage({ type: 'probe-addon' });
    expect(await next(peers[0], 'probed')).toEqual({ type: 'probed', code: 'ERR_IVSHMEM_NATIVE' });
  }, 30_000);

  it('intx mode: a ring raises the INTx line of the peer, and its read of IntrStatus lowers it', async () => {
    const directory = new PeerDirectory({ size: 4096, vectors: 1 });
    directories.push(directory);
    const a = await startPeer(directory, 'intx', 1);
    const b = await startPeer(directory, 'intx', 1);
    a.worker.postMessage({ type: 'send', peer: b.id, vector: 0, value: 7 });
    expect(await next(b, 'irq')).toEqual({ type: 'irq', level: 1 });
    expect(await next(b, 'interrupt')).toEqual({ type: 'interrupt', vector: 0, value: 7 });
    b.worker.postMessage({ type: 'ack' });
    expect(await next(b, 'acked')).toEqual({ type: 'acked', status: 1 });
    expect(await next(b, 'irq')).toEqual({ type: 'irq', level: 0 });
  }, 30_000);

  it("vectorWait 'manual': a worker blocked in Atomics.wait on its own signals wakes on the ring, as a vCPU thread does", async () => {
    const directory = new PeerDirectory({ size: 4096, vectors: 1 });
    directories.push(directory);
    const a = await startPeer(directory, 'doorbell', 1);
    const b = await startPeer(directory, 'doorbell', 1, 'manual');
    await until(async () => (await stats(a, b.id)).peerVectors === 1, 'a knows b');
    b.worker.postMessage({ type: 'block', timeoutMs: 50 });
    expect(await next(b, 'woke'), 'nobody rang: the wait times out').toEqual({ type: 'woke', reported: 0 });
    b.worker.postMessage({ type: 'block', timeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 20)); // b is asleep now
    a.worker.postMessage({ type: 'send', peer: b.id, vector: 0, value: 99 });
    expect(await next(b, 'interrupt')).toEqual({ type: 'interrupt', vector: 0, value: 99 });
    expect(await next(b, 'woke')).toEqual({ type: 'woke', reported: 1 });
  }, 30_000);

  it('a terminated worker is announced as gone: its routes go, and a ring to it is counted as dropped', async () => {
    const directory = new PeerDirectory({ size: 4096, vectors: 1 });
    directories.push(directory);
    const leaves: [number, string][] = [];
    directory.on('leave', (id, reason) => leaves.push([id, reason]));
    const a = await startPeer(directory, 'doorbell', 1);
    const b = await startPeer(directory, 'doorbell', 1);
    expect((await stats(a, b.id)).peerVectors).toBe(1);
    await b.worker.terminate();
    await until(() => leaves.length === 1, 'the directory sees the worker end');
    expect(leaves).toEqual([[b.id, 'its port closed']]);
    await until(async () => (await stats(a, b.id)).peerVectors === 0, "a forgets b's routes");
    a.worker.postMessage({ type: 'send', peer: b.id, vector: 0, value: 1 });
    await until(async () => (await stats(a)).counters.doorbellsDropped.noPeer === 1, 'the ring to b is dropped');
    a.worker.postMessage({ type: 'close' });
    expect(await next(a, 'closed')).toEqual({ type: 'closed', released: true });
    await until(() => leaves.length === 2, 'a closing its device leaves the directory');
  }, 30_000);
});
