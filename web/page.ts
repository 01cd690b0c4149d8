// The demo page's main thread: the peer directory (what the ivshmem server is to QEMU peers), one
// Web Worker per peer, and the view. URL parameters: peers (default 3), senders (how many of them
// send, default all), count (messages per sender, default 0: until terminated), warmup (round
// trips each sender leaves out of the latency figures), guest (1: one more peer, a Linux guest in
// v86 that receives and acknowledges like the others; needs the prepared guest files).
// ?peers=2&senders=1&count=20000&warmup=1000 measures the doorbell round trip between two workers.
import { PeerDirectory } from '../src/web.js';
import { PAIR_MAILBOX_PEERS } from '../src/demo/mailbox.js';
import { DemoModel } from './demo-state.js';
import type { DemoState } from './demo-state.js';
import type { FromPeer, Go, Send, StartPeer } from './messages.js';
import { draw } from './view.js';

const DRAW_MS = 200;
const MEMORY_BYTES = 1 << 20;

function setting(params: URLSearchParams, name: string, fallback: number, max: number): number {
  const value = Number(params.get(name) ?? fallback);
  return Number.isInteger(value) && value >= 0 ? Math.min(value, max) : fallback;
}

const params = new URLSearchParams(location.search);
const workerPeers = Math.max(1, setting(params, 'peers', 3, 16));
const guest = setting(params, 'guest', 0, 1) === 1;
const settings = {
  peers: workerPeers + (guest ? 1 : 0),
  guest,
  senders: setting(params, 'senders', workerPeers, workerPeers),
  count: setting(params, 'count', 0, 1e7),
  warmup: setting(params, 'warmup', 0, 1e6),
};
const model = new DemoModel(settings);
const workers = new Map<number, Worker>();
const joined = new Set<number>();
const knowing = new Set<number>();
(window as unknown as { ivshmemDemo: DemoState }).ivshmemDemo = model.state;

function terminate(id: number): void {
  const worker = workers.get(id);
  if (worker === undefined) return;
  workers.delete(id);
  worker.terminate();
  // A terminated worker's port may never report its closing: the page says it is gone.
  directory.remove(id, 'its worker was terminated');
}

let directory: PeerDirectory;
try {
  directory = new PeerDirectory({ size: MEMORY_BYTES, vectors: 2 });
  directory.on('join', (id) => model.joined(id));
  directory.on('leave', (id, reason) => model.left(id, reason));
  for (let i = 0; i < settings.peers; i++) {
    const port = directory.connect() as unknown as MessagePort;
    const id = directory.peerIds.at(-1)!;
    if (id >= PAIR_MAILBOX_PEERS) throw new Error(`peer id ${id} has no mailbox`);
    const isGuest = guest && i === settings.peers - 1;
    const script = isGuest ? 'guest-worker.js' : 'peer-worker.js';
    const worker = new Worker(new URL(script, import.meta.url), { type: 'module', name: `peer ${id}` });
    worker.addEventListener('message', (event: MessageEvent<FromPeer>) => {
      const m = event.data;
      if (m.type === 'joined') joined.add(m.id);
      if (m.type === 'joined' && joined.size === settings.peers) {
        for (const w of workers.values()) w.postMessage({ type: 'go', peers: [...joined] } satisfies Go);
      }
      if (m.type === 'knows-all') knowing.add(m.id);
      if (m.type === 'knows-all' && knowing.size === settings.peers) {
        for (const w of workers.values()) w.postMessage({ type: 'send' } satisfies Send);
      }
      if (m.type === 'report') model.report(m);
      else if (m.type === 'failed') model.failed(`peer ${id}: ${m.code}: ${m.message}`);
    });
    worker.addEventListener('error', (event) => model.failed(`peer ${id}: ${event.message}`));
    const start: StartPeer = {
      type: 'start',
      port,
      send: !isGuest && i < settings.senders,
      count: settings.count,
      warmup: settings.warmup,
    };
    worker.postMessage(start, [port]);
    workers.set(id, worker);
  }
} catch (err) {
  const e = err as { code?: string; message?: string };
  model.failed(`${e.code ?? 'error'}: ${e.message ?? String(err)}`);
}

const redraw = () => draw(model.state, terminate);
redraw();
setInterval(redraw, DRAW_MS);
