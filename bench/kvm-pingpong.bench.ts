// KVM doorbell round trip, both directions: guest A rings guest B, B's MSI wakes it, B rings A,
// A's MSI wakes it — two KVM guests (test/support/kvm-msi-guest.ts), each on its own worker
// thread with its own KvmMonitor and IvshmemDevice, joined to one in-process ivshmem server.
// Three configurations of the same guests:
//   wasm   — every ring is an MMIO exit into the WASM core, every interrupt a kick of the
//            vCPU thread, the core's MSI-X logic and KVM_SIGNAL_MSI;
//   irqfd  — rings as above, interrupts injected by KVM (irqfd): the inbound fast path alone;
//   fast   — ioeventfd + irqfd: ring to interrupt stays in the kernel (the floor for this machine).
// Host time of the initiator's whole loop / rounds = one round trip. Ratios are against `fast`
// measured in the same run. This file is also the workers' entry point (not the main thread).
import { writeFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Kvm } from '../src/monitors/kvm/kvm.js';
import { IvshmemServer } from '../src/server/ivshmem-server.js';
import { runPingPongPeer } from '../test/support/kvm-pingpong.js';
import type { PingPongConfig, PingPongPort } from '../test/support/kvm-pingpong.js';
import { machine, resultsFile } from './support/results.js';
import { median, printTable } from './support/table.js';

if (!isMainThread) {
  await runPingPongPeer(workerData as PingPongConfig, parentPort as unknown as PingPongPort);
} else {
  await main();
}

type Mode = 'wasm' | 'irqfd' | 'fast';
type Message = Record<string, unknown> & { type: string };

async function main(): Promise<void> {
  const QUICK = process.argv.includes('--quick');
  const N = QUICK ? 2_000 : 10_000;
  const RUNS = QUICK ? 3 : 7;
  const WARMUP = 200;
  const fail = (message: string): never => {
    console.error(`kvm-pingpong.bench: ${message}`);
    process.exit(1);
  };
  try {
    Kvm.open().close();
  } catch (err) {
    console.log(`kvm-pingpong.bench: skipped, /dev/kvm cannot be opened (${(err as { code?: string }).code ?? err})`);
    return;
  }

  const dir = mkdtempSync(join(tmpdir(), 'ivshmem-kvm-pingpong-'));
  const self = fileURLToPath(import.meta.url);

  async function measure(mode: Mode): Promise<number[]> {
    const server = IvshmemServer.start({
      socketPath: join(dir, `${mode}.sock`),
      memory: { shm: `ivshmem-kvm-pingpong-${process.pid}-${mode}` },
      size: 0x10000,
      vectors: 1,
    });
    const fast = mode !== 'wasm';
    const peers = (['initiator', 'responder'] as const).map((role) => {
      const config: PingPongConfig = { socketPath: server.socketPath, role, irqfd: fast, ioeventfd: mode === 'fast' };
      const worker = new Worker(self, { workerData: config });
      const inbox: Message[] = [];
      let wake: (() => void) | undefined;
      worker.on('message', (m: Message) => {
        inbox.push(m);
        wake?.();
      });
      worker.on('error', (e) => fail(`${mode} ${role}: ${e.stack ?? e}`));
      const next = async (type: string): Promise<Message> => {
        const deadline = Date.now() + 60_000;
        for (;;) {
          const m = inbox.shift();
          if (m !== undefined) {
            if (m.type === 'fatal') fail(`${mode} ${role}: ${String(m.error)}`);
            if (m.type !== type) fail(`${mode} ${role}: ${m.type} instead of ${type}`);
            return m;
          }
          if (Date.now() > deadline) fail(`${mode} ${role}: no ${type} within 60 s`);
          await new Promise<void>((r) => {
            wake = r;
            setTimeout(r, 1000);
          });
        }
      };
      return { role, worker, next };
    });
    const [a, b] = peers;
    const readyA = await a.next('ready');
    const readyB = await b.next('ready');
    const round = async (rounds: number) => {
      b.worker.postMessage({ op: 'go', peer: readyA.id, rounds });
      a.worker.postMessage({ op: 'go', peer: readyB.id, rounds });
      const [da, db] = [await a.next('done'), await b.next('done')];
      for (const d of [da, db]) {
        if (d.done !== 2) fail(`${mode}: a guest ended with ${String(d.done)}`);
      }
      return Number(da.ns);
    };
    await round(WARMUP);
    const perRoundTrip: number[] = [];
    for (let i = 0; i < RUNS; i++) perRoundTrip.push((await round(N)) / N / 1000);
    // The guests' own counts: every interrupt waited for was taken (checked on the last loop).
    for (const p of peers) {
      p.worker.postMessage({ op: 'close' });
      await p.next('closed');
      await p.worker.terminate();
    }
    server.close();
    return perRoundTrip;
  }

  console.log(`kvm-pingpong.bench: ${N} round trips per loop, ${RUNS} loops per path${QUICK ? ' [--quick]' : ''}`);
  const modes: Mode[] = ['wasm', 'irqfd', 'fast'];
  const results = new Map<Mode, number[]>();
  for (const mode of modes) results.set(mode, await measure(mode));
  rmSync(dir, { recursive: true, force: true });

  const LABELS: Record<Mode, string> = {
    wasm: 'WASM path both ways (exit + core; kick + core + KVM_SIGNAL_MSI)',
    irqfd: 'rings through the WASM core, interrupts by irqfd',
    fast: 'ioeventfd + irqfd (kernel only)',
  };
  const fastUs = median(results.get('fast')!);
  const rows = modes.map((mode) => {
    const xs = results.get(mode)!;
    return {
      mode,
      path: LABELS[mode],
      usPerRoundTripMedian: median(xs),
      min: Math.min(...xs),
      max: Math.max(...xs),
      overFast: median(xs) / fastUs,
      loops: xs,
    };
  });
  const header = ['path', 'µs/round trip p50', 'min', 'max', '÷ fast'];
  const cells = rows.map((r) => [
    r.path,
    r.usPerRoundTripMedian.toFixed(2),
    r.min.toFixed(2),
    r.max.toFixed(2),
    `${r.overFast.toFixed(2)}×`,
  ]);
  printTable(header, cells);

  const file = resultsFile('kvm-pingpong.json');
  writeFileSync(
    file,
    JSON.stringify(
      {
        benchmark: 'kvm doorbell round trip: guest A rings B, B interrupted, B rings A, A interrupted',
        ...machine(),
        quick: QUICK,
        roundTripsPerLoop: N,
        loops: RUNS,
        unit: "µs per round trip (host time of the initiator's loop / N), median over loops",
        paths: rows,
      },
      null,
      2,
    ) + '\n',
  );
  console.log(`\nwrote ${file}`);
}
