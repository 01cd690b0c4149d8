// KVM doorbell benchmark: a real-mode guest rings a peer N times in a tight loop
// (`es: mov [0x0c], eax; dec ecx; jnz`), and the host times the whole loop (one KvmMonitor.run()).
//  1. Through the WASM path: every ring is an MMIO exit that KvmMonitor hands to
//     device.mmioWrite → WebAssembly core → eventfd write(2).
//  2. Through the ioeventfd fast path (KvmMonitor `ioeventfd: true`): KVM signals the peer's
//     eventfd itself, no exit.
//  3. The monitor overhead baseline: a small C monitor (bench/c/kvm_mmio.c, compiled here with the
//     system compiler into out/bench/) runs the same guest bytes (passed in a file) and handles
//     each MMIO exit by writing an eventfd directly.
// The peer is a bare ServerConnection of the in-process IvshmemServer (it does not watch its
// eventfd), so after every loop its eventfd counter is drained and must equal N; the C monitor
// checks its own eventfd the same way. Modes alternate in rounds (the machine's speed drifts);
// figures are medians over the rounds. Ratios: WASM path ÷ fast path, WASM path ÷ C monitor
// (target ≤ 1.1×, reported, not asserted). Skipped (exit 0) when /dev/kvm cannot be opened.
//
// Run: npm run bench [-- --quick]   (N = 20,000 rings per loop, 2,000 with --quick; CC=<compiler>)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IvshmemDevice } from '../src/device/device.js';
import { Kvm } from '../src/monitors/kvm/kvm.js';
import { KvmMonitor, MONITOR_DONE_PORT } from '../src/monitors/kvm/monitor.js';
import { ServerConnection } from '../src/protocol/connection.js';
import { IvshmemServer } from '../src/server/ivshmem-server.js';
import type { Asm16 } from '../test/support/asm16.js';
import { BAR0_GPA, CODE_GPA, SHM_SIZE, bar0Prologue } from '../test/support/kvm-guest.js';
import { until as waitUntil } from '../test/support/until.js';
import { C_COMPILER, compileC } from './support/cc.js';
import { machine, resultsFile } from './support/results.js';
import { median, printTable } from './support/table.js';

const QUICK = process.argv.includes('--quick');
const N = QUICK ? 2_000 : 20_000;
const ROUNDS = QUICK ? 3 : 7;
const WARMUP_RINGS = Math.max(200, N / 10);
const TARGET_RATIO_C = 1.1;

const ROOT = process.cwd();
const C_SOURCE = join(ROOT, 'bench', 'c', 'kvm_mmio.c');
const OUT_DIR = join(ROOT, 'out', 'bench');
const C_BINARY = join(OUT_DIR, 'kvm_mmio');
const GUEST_IMAGE = join(OUT_DIR, 'kvm_guest.bin');

function fail(message: string): never {
  console.error(`kvm.bench: ${message}`);
  process.exit(1);
}

let kvm: Kvm;
try {
  kvm = Kvm.open();
} catch (err) {
  console.log(`kvm.bench: skipped, /dev/kvm cannot be opened (${(err as { code?: string }).code ?? err})`);
  process.exit(0);
}

const collect: () => void = typeof gc === 'function' ? gc : () => {};

// ---------------------------------------------------------------------------------------------
// The guest. Phase 1 (OUT done, 1): program BAR0 of 00:<slot>.0 and enable memory decoding.
// Then, once per run (OUT done, 2): ES = bar0seg, EAX = doorbell, ECX = count; ring count times.

function buildGuest(slot: number): Asm16 {
  const a = bar0Prologue(slot);
  a.outb(MONITOR_DONE_PORT, 1);
  a.label('bench');
  a.load32('bar0seg').movSegAx('es');
  a.emit(0x66, 0x8b, 0x0e).addr16('count'); // mov ecx, [count]
  a.load32('doorbell');
  a.label('ring');
  a.es().store32(0x0c);
  a.emit(0x66, 0x49); // dec ecx
  a.jcc('jne', 'ring');
  a.outb(MONITOR_DONE_PORT, 2);
  a.jmp('bench');
  a.dd('bar0seg', BAR0_GPA >> 4)
    .dd('count')
    .dd('doorbell');
  return a;
}

// ---------------------------------------------------------------------------------------------
// Setup: an in-process server, the peer (a bare connection), and one monitor + device per path.

const dir = mkdtempSync(join(tmpdir(), 'ivshmem-kvm-bench-'));
const server = IvshmemServer.start({
  socketPath: join(dir, 's.sock'),
  memory: { shm: `ivshmem-kvm-bench-${process.pid}` },
  size: SHM_SIZE,
  vectors: 1,
});
const peer = await ServerConnection.connect(server.socketPath, { vectors: 1 });
await until(() => peer.ownVectors.length === 1, 'the peer gets its eventfd');
const peerEventfd = peer.ownVectors[0];

/** Waits, bounded, for `check`; a bench that cannot set up stops with its own message. */
async function until(check: () => boolean, what: string): Promise<void> {
  await waitUntil(check, what).catch((error: Error) => fail(error.message));
}

interface Path {
  name: string;
  monitor: KvmMonitor;
  device: IvshmemDevice;
  data: DataView;
  program: Asm16;
}

async function makePath(name: string, ioeventfd: boolean): Promise<Path> {
  const monitor = new KvmMonitor(kvm, { ioeventfd });
  if (ioeventfd && !monitor.ioeventfd) fail('KVM lacks KVM_CAP_IOEVENTFD: no fast path to measure');
  const device = await monitor.createDevice({ mode: 'doorbell', vectors: 1, server: server.socketPath });
  await until(() => device.connection!.peers.has(peer.id), `${name}: the device knows the peer`);
  const program = buildGuest(monitor.slot);
  monitor.load(program.assemble(), CODE_GPA);
  const data = new DataView(monitor.ram.buffer, monitor.ram.byteOffset, monitor.ram.byteLength);
  data.setUint32(program.address('doorbell'), peer.id * 0x10000, true);
  monitor.start(CODE_GPA);
  const setup = monitor.run(1000);
  if (setup.done !== 1) fail(`${name}: the guest's setup phase ended with ${setup.done}`);
  if (ioeventfd && !monitor.ioeventfds.some((r) => r.peer === peer.id)) fail(`${name}: no ioeventfd for the peer`);
  return { name, monitor, device, data, program };
}

const wasmPath = await makePath('WASM path', false);
const fastPath = await makePath('fast path', true);
peerEventfd.drain();

interface Round {
  ns: number;
  rings: number;
  exits: number;
  doorbellExits: number;
  coreSent: number;
}

/** One guest loop of `count` rings; the host times monitor.run() and drains the peer's counter. */
function runLoop(path: Path, count: number): Round {
  path.data.setUint32(path.program.address('count'), count, true);
  const exitsBefore = path.monitor.stats.doorbellExits;
  const sentBefore = path.device.counters().doorbellsSent;
  collect();
  const t0 = process.hrtime.bigint();
  const r = path.monitor.run(count + 16);
  const t1 = process.hrtime.bigint();
  if (r.done !== 2) fail(`${path.name}: the loop ended with ${r.done}`);
  const rings = peerEventfd.drain();
  return {
    ns: Number(t1 - t0),
    rings,
    exits: r.exits,
    doorbellExits: path.monitor.stats.doorbellExits - exitsBefore,
    coreSent: path.device.counters().doorbellsSent - sentBefore,
  };
}

// ---------------------------------------------------------------------------------------------
// The C monitor: compiled first, then given the same guest bytes (with the same data words).

function writeGuestImage(count: number): void {
  const bytes = buildGuest(wasmPath.monitor.slot).assemble();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = (label: string) => wasmPath.program.address(label) - CODE_GPA;
  view.setUint32(at('count'), count, true);
  view.setUint32(at('doorbell'), peer.id * 0x10000, true);
  writeFileSync(GUEST_IMAGE, bytes);
}

function runC(count: number): Round {
  writeGuestImage(count);
  const args = [
    GUEST_IMAGE,
    `0x${CODE_GPA.toString(16)}`,
    `0x${BAR0_GPA.toString(16)}`,
    `0x${MONITOR_DONE_PORT.toString(16)}`,
    '1',
  ];
  const r = spawnSync(C_BINARY, args, { encoding: 'utf8', timeout: 120_000 });
  if (r.error !== undefined || r.status !== 0)
    fail(`${C_BINARY} failed: ${r.error?.message ?? `exit ${r.status}`} ${r.stderr}`);
  let parsed: { rounds: { ns: number; rings: number; exits: number }[] };
  try {
    parsed = JSON.parse(r.stdout) as typeof parsed;
  } catch {
    return fail(`${C_BINARY} printed no JSON: ${JSON.stringify(r.stdout)}`);
  }
  const round = parsed.rounds[0];
  return { ns: round.ns, rings: round.rings, exits: round.exits, doorbellExits: round.exits - 1, coreSent: 0 };
}

const compiler = (() => {
  try {
    const how = compileC(C_SOURCE, C_BINARY, { optional: true });
    if (how === null)
      console.warn(
        `kvm.bench: no C compiler ('${C_COMPILER}' not found): the C monitor baseline is skipped (install gcc or set CC)`,
      );
    return how;
  } catch (error) {
    return fail((error as Error).message);
  }
})();

// ---------------------------------------------------------------------------------------------
// Run: a warm-up loop per path, then ROUNDS rounds with the modes alternating.

type Mode = 'wasm' | 'fast' | 'c';
const modes: Mode[] = compiler === null ? ['wasm', 'fast'] : ['wasm', 'fast', 'c'];
const run = (mode: Mode, count: number): Round =>
  mode === 'wasm' ? runLoop(wasmPath, count) : mode === 'fast' ? runLoop(fastPath, count) : runC(count);

function check(mode: Mode, round: Round, count: number): void {
  if (round.rings !== count) fail(`${mode}: the peer's eventfd counted ${round.rings} rings, not ${count}`);
  if (mode === 'wasm' && (round.doorbellExits !== count || round.coreSent !== count)) {
    fail(`wasm: ${round.doorbellExits} doorbell exits and ${round.coreSent} core sends, not ${count}`);
  }
  if (mode === 'fast' && (round.doorbellExits !== 0 || round.exits !== 1)) {
    fail(`fast: ${round.doorbellExits} doorbell exits and ${round.exits} KVM_RUN returns (expected 0 and 1)`);
  }
  if (mode === 'c' && round.exits !== count + 1) fail(`c: ${round.exits} exits, not ${count + 1}`);
}

console.log(
  `kvm.bench: ${N} rings per loop, ${ROUNDS} rounds${QUICK ? ' [--quick]' : ''}; C monitor: ${compiler ?? 'skipped'}`,
);
for (const mode of modes) check(mode, run(mode, WARMUP_RINGS), WARMUP_RINGS);
const results = new Map<Mode, Round[]>(modes.map((m) => [m, []]));
for (let i = 0; i < ROUNDS; i++) {
  for (const mode of modes) {
    const round = run(mode, N);
    check(mode, round, N);
    results.get(mode)!.push(round);
  }
}

// ---------------------------------------------------------------------------------------------
// Report

const LABELS: Record<Mode, string> = {
  wasm: 'WASM path: MMIO exit → KvmMonitor → device.mmioWrite → eventfd',
  fast: 'ioeventfd fast path: no exit',
  c: 'C monitor: MMIO exit → eventfd write',
};

const rows = modes.map((mode) => {
  const rounds = results.get(mode)!;
  const perRing = rounds.map((r) => r.ns / 1000 / N);
  return {
    mode,
    path: LABELS[mode],
    usPerRingMedian: median(perRing),
    usPerRingMin: Math.min(...perRing),
    usPerRingMax: Math.max(...perRing),
    exitsPerLoop: median(rounds.map((r) => r.exits)),
    ringsCounted: rounds.map((r) => r.rings),
    rounds: rounds.map((r) => ({ ns: r.ns, rings: r.rings, exits: r.exits })),
  };
});
const us = (mode: Mode) => rows.find((r) => r.mode === mode)?.usPerRingMedian;
const wasmUs = us('wasm')!;
const fastUs = us('fast')!;
const cUs = us('c');
const ratios = {
  wasmOverFast: wasmUs / fastUs,
  wasmOverC: cUs === undefined ? null : wasmUs / cUs,
};
const target = {
  wasmMonitorWithin1_1xC:
    cUs === undefined
      ? { met: null, detail: 'C monitor skipped' }
      : {
          met: ratios.wasmOverC! <= TARGET_RATIO_C,
          detail: `WASM-path monitor ÷ C monitor = ${ratios.wasmOverC!.toFixed(3)}× (target ≤ ${TARGET_RATIO_C}×)`,
        },
};

const header = ['path', 'µs/ring p50', 'min', 'max', 'exits/loop', 'rings ok'];
const cells = rows.map((r) => [
  r.path,
  r.usPerRingMedian.toFixed(3),
  r.usPerRingMin.toFixed(3),
  r.usPerRingMax.toFixed(3),
  String(r.exitsPerLoop),
  `${ROUNDS}×${N}`,
]);
printTable(header, cells);
console.log();
console.log(`ratio: WASM path ÷ fast path   ${ratios.wasmOverFast.toFixed(2)}×`);
if (ratios.wasmOverC !== null) {
  console.log(
    `ratio: WASM path ÷ C monitor   ${ratios.wasmOverC.toFixed(3)}×   target ≤ ${TARGET_RATIO_C}×: ${target.wasmMonitorWithin1_1xC.met ? 'met' : 'NOT met'} (reported, not asserted)`,
  );
}

const file = resultsFile('kvm.json', ROOT);
writeFileSync(
  file,
  JSON.stringify(
    {
      benchmark: 'kvm doorbell: guest ring → peer eventfd',
      ...machine(),
      quick: QUICK,
      ringsPerLoop: N,
      rounds: ROUNDS,
      warmupRings: WARMUP_RINGS,
      compiler,
      unit: 'µs per ring (host time of the whole guest loop / N), median over rounds',
      check: 'passed: the peer eventfd counter equals N after every loop',
      paths: rows,
      ratios,
      target,
    },
    null,
    2,
  ) + '\n',
);
console.log(`\nwrote ${file}`);

// ---------------------------------------------------------------------------------------------
// Teardown

for (const p of [fastPath, wasmPath]) {
  p.device.close();
  p.monitor.close();
}
peer.close();
server.close();
kvm.close();
rmSync(dir, { recursive: true, force: true });
