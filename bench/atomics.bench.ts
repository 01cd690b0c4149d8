// Doorbell round trip between two VMs in worker threads of one process, with no eventfd (a
// PeerDirectory: Atomics on signal buffers) beside the same round trip with eventfds (an
// IvshmemServer in the main thread), in the same run, the same process and the same threads:
//   ping's BAR0 doorbell write → pong's wait sees its vector → fireVector → the core's MSI-X →
//   pong's transport.sendMsi rings ping's vector 0 from inside the callback → ping's wait sees
//   it → fireVector → sendMsi ends the round trip.
// Two ways to wait for each backend:
//   blocking  vectorWait 'manual': the worker blocks (Atomics.wait on the bell, or read(2) on the
//             eventfd through a blocking waiter) and calls fireVector itself;
//   loop      vectorWait 'loop': the worker's event loop (Atomics.waitAsync, or uv_poll).
// Percentiles per path (hdr-histogram-js), and each Atomics path's ratio to the eventfd path with
// the same way of waiting. The threads are not pinned (worker threads share the process's CPUs).
// Where Debian's chromium is installed, the browser demo's round trip between two Web Workers
// (Atomics.waitAsync on each worker's event loop, with the demo's mailbox work per message) is
// measured too, and set beside the Node event-loop paths.
// This file is also the workers' entry point.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import hdr from 'hdr-histogram-js';
import { REG_DOORBELL } from '../src/core/abi.js';
import { IvshmemDevice } from '../src/device/device.js';
import { createWaiter } from '../src/os/waiter.js';
import { PeerDirectory } from '../src/server/directory.js';
import { IvshmemServer } from '../src/server/ivshmem-server.js';
import { enableMsix, programVector } from '../test/support/device-harness.js';
import { chromiumRoundTrip } from './support/chromium-round-trip.js';
import type { RoundTripFigures } from './support/chromium-round-trip.js';
import { machine, resultsFile } from './support/results.js';
import { printTable } from './support/table.js';

type Backend = 'atomics' | 'eventfd';
type Wait = 'blocking' | 'loop';

interface PeerData {
  role: 'ping' | 'pong';
  backend: Backend;
  wait: Wait;
  /** A directory port (atomics) or a server socket path (eventfd). */
  port?: unknown;
  socket?: string;
  total: number;
  warmup: number;
}

type PingResult = RoundTripFigures;

if (!isMainThread) await peer(workerData as PeerData);
else await main();

// ---- one VM: a device on the directory or the server, MSI-X set up as a driver leaves it ----

async function peer(d: PeerData): Promise<void> {
  const port = parentPort!;
  let other = -1;
  let onMsi = () => {};
  const device = await IvshmemDevice.create({
    mode: 'doorbell',
    vectors: 1,
    vectorWait: d.wait === 'loop' ? 'loop' : 'manual',
    ...(d.backend === 'atomics' ? { directory: d.port as never } : { server: d.socket! }),
    transport: { setIrqLevel() {}, sendMsi: () => onMsi() },
  });
  enableMsix(device);
  programVector(device, 0, 0xfee00000, 0x40, false);
  const ring = () => device.mmioWrite(0, REG_DOORBELL, 4, (other << 16) | 0);
  let running = true;
  const waitOnce = (): void => {
    if (d.backend === 'atomics') {
      device.ownSignals!.waitBlocking(1000, (v) => device.fireVector(v));
    } else if (waiter!.waitOnce(1000) >= 0) device.fireVector(0);
  };
  const waiter =
    d.backend === 'eventfd' && d.wait === 'blocking' ? createWaiter('blocking', device.ownVectorFds) : null;
  const finished = new Promise<void>((resolve) => {
    port.on('message', async (m: { op: string; peer: number }) => {
      if (m.op !== 'go') return;
      other = m.peer;
      // The other VM's routes arrive on this thread's event loop: have them before blocking it.
      while (device.peerVectors(other) === 0) await new Promise((r) => setTimeout(r, 1));
      if (d.role === 'pong') {
        onMsi = ring; // every interrupt is answered at once, from inside the callback
        port.postMessage({ type: 'ready' });
        if (d.wait === 'blocking') {
          while (running) {
            waitOnce();
            if (device.counters().interruptsDelivered >= d.total) running = false;
          }
          resolve();
        } else {
          const check = setInterval(() => {
            if (device.counters().interruptsDelivered >= d.total) {
              clearInterval(check);
              resolve();
            }
          }, 20);
        }
        return;
      }
      // ping: time each round trip from its ring to the interrupt that answers it
      const h = hdr.build({
        lowestDiscernibleValue: 1,
        highestTrackableValue: 10_000_000_000,
        numberOfSignificantValueDigits: 3,
      });
      let done = 0;
      let t = 0n;
      const next = () => {
        t = process.hrtime.bigint();
        ring();
      };
      const answered = (): boolean => {
        const ns = Number(process.hrtime.bigint() - t);
        if (done++ >= d.warmup) h.recordValue(ns);
        if (done >= d.total) return false;
        next();
        return true;
      };
      const report = () => {
        const c = device.counters();
        const at = (p: number) => Math.min(h.getValueAtPercentile(p), h.maxValue);
        const r: PingResult = {
          p50: at(50),
          p99: at(99),
          p999: at(99.9),
          max: h.maxValue,
          count: h.totalCount,
          interrupts: c.interruptsDelivered,
          doorbells: c.doorbellsSent,
        };
        port.postMessage({ type: 'result', result: r });
        resolve();
      };
      if (d.wait === 'blocking') {
        let more = true;
        onMsi = () => {
          more = answered();
        };
        next();
        while (more) waitOnce();
        report();
      } else {
        onMsi = () => {
          if (!answered()) report();
        };
        next();
      }
    });
  });
  port.postMessage({ type: 'joined', id: device.id });
  await finished;
  waiter?.close();
  device.close();
  port.unref(); // nothing more will come: let the thread end
}

// ---- the orchestrator ----

async function main(): Promise<void> {
  const QUICK = process.argv.includes('--quick');
  const TOTAL = QUICK ? 20_000 : 100_000;
  const WARMUP = Math.ceil(TOTAL / 10);
  const self = fileURLToPath(import.meta.url);
  const scratch = mkdtempSync(join(tmpdir(), 'ivshmem-atomics-bench-'));
  const fail = (message: string): never => {
    console.error(`atomics.bench: ${message}`);
    rmSync(scratch, { recursive: true, force: true });
    process.exit(1);
  };
  let runs = 0;

  async function measure(backend: Backend, wait: Wait): Promise<PingResult> {
    const n = runs++;
    const directory = backend === 'atomics' ? new PeerDirectory({ size: 4096, vectors: 1 }) : undefined;
    const server =
      backend === 'eventfd'
        ? IvshmemServer.start({
            socketPath: join(scratch, `s${n}.sock`),
            memory: { shm: `ivshmem-atomics-bench-${process.pid}-${n}` },
            size: 4096,
            vectors: 1,
          })
        : undefined;
    try {
      const start = (role: 'ping' | 'pong') => {
        const port = directory?.connect();
        const data: PeerData = { role, backend, wait, port, socket: server?.socketPath, total: TOTAL, warmup: WARMUP };
        const worker = new Worker(self, { workerData: data, transferList: port ? [port as never] : [] });
        const inbox: { type: string; id?: number; result?: PingResult }[] = [];
        worker.on('message', (m) => inbox.push(m));
        worker.on('error', (e) => fail(`${backend}/${wait} ${role}: ${e.stack ?? e}`));
        const next = async (type: string) => {
          const deadline = Date.now() + 120_000;
          for (;;) {
            const i = inbox.findIndex((m) => m.type === type);
            if (i >= 0) return inbox.splice(i, 1)[0];
            if (Date.now() > deadline) fail(`${backend}/${wait} ${role}: no ${type} within 120 s`);
            await new Promise((r) => setTimeout(r, 5));
          }
        };
        return { worker, next };
      };
      const pong = start('pong');
      const ping = start('ping');
      const pongId = (await pong.next('joined')).id!;
      const pingId = (await ping.next('joined')).id!;
      pong.worker.postMessage({ op: 'go', peer: pingId });
      await pong.next('ready');
      ping.worker.postMessage({ op: 'go', peer: pongId });
      const r = (await ping.next('result')).result!;
      if (r.interrupts !== TOTAL || r.doorbells !== TOTAL) {
        fail(`${backend}/${wait}: ${r.doorbells} doorbells and ${r.interrupts} interrupts for ${TOTAL} round trips`);
      }
      await Promise.all([ping.worker.terminate(), pong.worker.terminate()]);
      return r;
    } finally {
      directory?.close();
      server?.close();
    }
  }

  console.log(
    `atomics.bench: ${TOTAL - WARMUP} measured round trips per path (+${WARMUP} warm-up), two worker threads${QUICK ? ' [--quick]' : ''}`,
  );
  const order: [Backend, Wait][] = [
    ['eventfd', 'blocking'],
    ['atomics', 'blocking'],
    ['eventfd', 'loop'],
    ['atomics', 'loop'],
  ];
  const results = new Map<string, PingResult>();
  for (const [backend, wait] of order) results.set(`${backend}/${wait}`, await measure(backend, wait));
  rmSync(scratch, { recursive: true, force: true });

  const LABEL: Record<string, string> = {
    'eventfd/blocking': 'eventfd, blocking read in the worker',
    'atomics/blocking': 'Atomics.wait in the worker',
    'eventfd/loop': "eventfd, the worker's event loop (uv_poll)",
    'atomics/loop': "Atomics.waitAsync, the worker's event loop",
  };
  const us = (ns: number) => (ns / 1000).toFixed(2);
  const rows: (PingResult & { backend: Backend; wait: Wait; label: string; p50OverEventfd: number })[] = order.map(
    ([backend, wait]) => {
      const r = results.get(`${backend}/${wait}`)!;
      const base = results.get(`eventfd/${wait}`)!;
      return { backend, wait, label: LABEL[`${backend}/${wait}`], ...r, p50OverEventfd: r.p50 / base.p50 };
    },
  );
  const browser = await chromiumRoundTrip(TOTAL, WARMUP).catch((err: unknown) => fail(`Chromium: ${String(err)}`));
  if (browser !== null) {
    if (browser.interrupts !== 2 * TOTAL || browser.doorbells !== 2 * TOTAL) {
      fail(`Chromium: ${browser.doorbells} doorbells and ${browser.interrupts} interrupts for ${TOTAL} round trips`);
    }
    const { browser: name, ...r } = browser;
    rows.push({
      backend: 'atomics',
      wait: 'loop',
      label: `${name}, two Web Workers (the demo page), Atomics.waitAsync`,
      ...r,
      // per round trip, as the Node paths count them: one doorbell and one interrupt each way is two
      interrupts: TOTAL,
      doorbells: TOTAL,
      p50OverEventfd: r.p50 / results.get('eventfd/loop')!.p50,
    });
  }
  printTable(
    ['path', 'p50 µs', 'p99 µs', 'p99.9 µs', 'max µs', '÷ eventfd p50'],
    rows.map((r) => [r.label, us(r.p50), us(r.p99), us(r.p999), us(r.max), `${r.p50OverEventfd.toFixed(2)}×`]),
  );
  const file = resultsFile('atomics.json');
  writeFileSync(
    file,
    JSON.stringify(
      {
        benchmark: 'doorbell round trip between two worker threads: Atomics (peer directory) beside eventfds (server)',
        ...machine(),
        quick: QUICK,
        measured: TOTAL - WARMUP,
        unit: 'ns per round trip',
        paths: rows,
      },
      null,
      2,
    ) + '\n',
  );
  console.log(`\nwrote ${file}`);
}
