// Native addon benchmark: what the addon adds on top of the system calls and the memory it maps.
//
// 1. Doorbell wire: one eventfd write(2) through the addon (`eventfdSignal`), and the whole ring
//    path (IvshmemDevice doorbell write → WebAssembly core → eventfdDoorbell sink → write(2)),
//    against the same write(2) from a C program (bench/c/eventfd_write.c, compiled here with the
//    system compiler into out/bench/). Each iteration is a batch of 1,024 writes followed by one
//    drain, in JavaScript and in C alike; ns/write = batch time / 1,024. Target: ≤ 1.2× C.
//    EventFd.signal() is timed too: the public path every ring takes, a V8 fast call straight
//    into C where the fast-call module is built (native/fast/), else the same N-API call.
//    A reference row times an addon call that makes no system call (isOwnedFd: the N-API crossing
//    plus a mutex and a hash lookup), an upper bound on what crossing into the addon costs.
//    The machine's speed drifts (shared vCPUs: the same write(2) costs ~180 or ~230 ns from one
//    run to the next), so C and JavaScript take turns in short rounds; each round gives a ratio,
//    and the targets use the median ratio over the rounds.
// 2. Mapped memory: Float64Array/Uint32Array fill (builtin) and sum (JS loop) over a 64 MiB memfd
//    mapping (SharedMemory, MAP_SHARED) against a plain ArrayBuffer of the same size; GB/s and the
//    ratio mapped/plain (reported, no target), also over rounds with the two buffers alternating.
//
// Run: npm run bench [-- --quick]   (CC=<compiler> picks another C compiler)
import { spawnSync } from 'node:child_process';
import { readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Bench } from 'tinybench';
import type { Statistics, Task } from 'tinybench';
import { REG_DOORBELL } from '../src/core/abi.js';
import { IvshmemDevice } from '../src/device/device.js';
import { native } from '../src/os/binding.js';
import { EventFd, eventfdDoorbell } from '../src/os/eventfd.js';
import { fastBinding, fastCallStatus } from '../src/os/fast-binding.js';
import { SharedMemory } from '../src/os/shared-memory.js';
import { compileC } from './support/cc.js';
import { machine, resultsFile } from './support/results.js';
import { median, printTable } from './support/table.js';
import { enableMsix, programVector } from '../test/support/device-harness.js';

const QUICK = process.argv.includes('--quick');
/** Timed time per task (and for the C program), split over ROUNDS rounds. */
const TASK_MS = QUICK ? 200 : 1500;
const ROUNDS = QUICK ? 2 : 5;
const ROUND_MS = TASK_MS / ROUNDS;
const ROUND_WARMUP_MS = QUICK ? 30 : 60;
const BATCH = 1024;
const PUBLIC_SIGNAL = 'EventFd.signal (fast call where built)';
const FAST_NOP = 'V8 fast call, no syscall';
const MEM_SIZE = 64 * 1024 * 1024;
const TARGET_RATIO = 1.2;

const ROOT = process.cwd();
const C_SOURCE = join(ROOT, 'bench', 'c', 'eventfd_write.c');
const OUT_DIR = join(ROOT, 'out', 'bench');
const C_BINARY = join(OUT_DIR, 'eventfd_write');

function fail(message: string): never {
  console.error(`native.bench: ${message}`);
  process.exit(1);
}

const collect: () => void = typeof gc === 'function' ? gc : () => {};

// ---------------------------------------------------------------------------------------------
// The C baseline: compiled first, then run at the start of every round of the eventfd tasks.

interface CResult {
  batch: number;
  batches: number;
  p50: number;
  p99: number;
  p999: number;
  mean: number;
  min: number;
  max: number;
}

function runC(): CResult {
  const r = spawnSync(C_BINARY, [String(BATCH), String(ROUND_MS), String(ROUND_WARMUP_MS)], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (r.error !== undefined || r.status !== 0)
    fail(`${C_BINARY} failed: ${r.error?.message ?? `exit ${r.status}`} ${r.stderr}`);
  try {
    return JSON.parse(r.stdout) as CResult;
  } catch {
    return fail(`${C_BINARY} printed no JSON: ${JSON.stringify(r.stdout)}`);
  }
}

// First, so a missing compiler fails the run before anything else is set up.
const compiler = (() => {
  try {
    return compileC(C_SOURCE, C_BINARY);
  } catch (error) {
    return fail((error as Error).message);
  }
})();
console.log(`C baseline: ${C_BINARY} (${compiler})`);
// The floor for a process that touches memory between calls (see bench/c/write_floor.c).
const FLOOR_BINARY = join(OUT_DIR, 'write_floor');
try {
  compileC(join(ROOT, 'bench', 'c', 'write_floor.c'), FLOOR_BINARY);
} catch (error) {
  fail((error as Error).message);
}

// ---------------------------------------------------------------------------------------------
// Doorbell wire setup and checks.

const raw = native();
const signalFd = EventFd.create();
const ringFd = EventFd.create();
const device = await IvshmemDevice.create({
  mode: 'doorbell',
  vectors: 1,
  memory: new ArrayBuffer(4096),
  doorbell: eventfdDoorbell,
  transport: { setIrqLevel() {}, sendMsi() {} },
});
device.connectPeerVector(1, ringFd.fd);
const RING_PEER1_VECTOR0 = 1 << 16;

// A pong's answer as the latency benchmark makes it: its vector fires (fireVector), the core
// sends the MSI-X message, and the transport rings the other peer from inside sendMsi. Once
// with that ring, once with a transport that does nothing (the interrupt half alone).
const answering = { ring: true };
const answerDevice = await IvshmemDevice.create({
  mode: 'doorbell',
  vectors: 1,
  memory: new ArrayBuffer(4096),
  doorbell: eventfdDoorbell,
  transport: {
    setIrqLevel() {},
    sendMsi: () => {
      if (answering.ring) answerDevice.mmioWrite(0, REG_DOORBELL, 4, RING_PEER1_VECTOR0);
    },
  },
});
enableMsix(answerDevice);
programVector(answerDevice, 0, 0xfee00000, 0x41, false);
const answerFd = EventFd.create();
answerDevice.connectPeerVector(1, answerFd.fd);

// Every signal must reach its eventfd: counted per batch here, compared with the drains below.
const tally = {
  ownedCalls: 0,
  signalBatches: 0,
  signalDrained: 0,
  nopNonZero: 0,
  publicBatches: 0,
  publicDrained: 0,
  ringBatches: 0,
  ringDrained: 0,
  answerBatches: 0,
  answerDrained: 0,
};

// A first ring by hand: the doorbell must reach exactly this eventfd.
device.mmioWrite(0, REG_DOORBELL, 4, RING_PEER1_VECTOR0);
if (ringFd.drain() !== 1 || signalFd.drain() !== 0)
  fail('CHECK FAILED: the doorbell to peer 1 vector 0 did not signal its eventfd once');
if (!raw.isOwnedFd(signalFd.fd)) fail('CHECK FAILED: the addon does not know the eventfd it created');

// ---------------------------------------------------------------------------------------------
// Mapped memory setup and checks.

const shm = SharedMemory.open({ memfd: 'bench' }, { size: MEM_SIZE });
const mapped = shm.map();
const plain = new ArrayBuffer(MEM_SIZE);
if (mapped.byteLength !== MEM_SIZE)
  fail(`CHECK FAILED: the memfd mapping has ${mapped.byteLength} bytes, not ${MEM_SIZE}`);
// The mapping is the memfd's memory: a store through it is what read(2) of the fd returns.
new Float64Array(mapped)[MEM_SIZE / 8 - 1] = Math.E;
const probe = Buffer.alloc(8);
if (readSync(shm.fd, probe, 0, 8, MEM_SIZE - 8) !== 8 || probe.readDoubleLE(0) !== Math.E) {
  fail('CHECK FAILED: a store into the mapping is not in the memfd');
}

const sink = new Float64Array(1); // sums land here, so nothing is optimised away

// Sum loops: each buffer has its own copy (identical bodies), called with the array as an argument,
// so each is optimised on its own feedback and on neither array as a constant. (A closure per
// buffer from one literal would let V8 specialise the first one compiled on its captured array
// and not the next; one shared function made the result depend on which buffer it met first.)
function sumF64Mapped(a: Float64Array): number {
  let s = 0;
  const n = a.length;
  for (let i = 0; i < n; i++) s += a[i];
  return s;
}

function sumF64Plain(a: Float64Array): number {
  let s = 0;
  const n = a.length;
  for (let i = 0; i < n; i++) s += a[i];
  return s;
}

function sumU32Mapped(a: Uint32Array): number {
  let s = 0;
  const n = a.length;
  for (let i = 0; i < n; i++) s = (s + a[i]) | 0;
  return s;
}

function sumU32Plain(a: Uint32Array): number {
  let s = 0;
  const n = a.length;
  for (let i = 0; i < n; i++) s = (s + a[i]) | 0;
  return s;
}

type MemOp = 'f64 fill' | 'f64 sum' | 'u32 fill' | 'u32 sum';
const MEM_OPS: readonly MemOp[] = ['f64 fill', 'f64 sum', 'u32 fill', 'u32 sum'];

function memTasks(
  buffer: ArrayBuffer,
  sums: { f64: typeof sumF64Plain; u32: typeof sumU32Plain },
): Record<MemOp, () => void> {
  const f64 = new Float64Array(buffer);
  const u32 = new Uint32Array(buffer);
  const { f64: sumF64, u32: sumU32 } = sums;
  return {
    'f64 fill': () => {
      f64.fill(1.5);
    },
    'f64 sum': () => {
      sink[0] = sumF64(f64);
    },
    'u32 fill': () => {
      u32.fill(7);
    },
    'u32 sum': () => {
      sink[0] = sumU32(u32);
    },
  };
}

const MAPPED_LABEL = 'memfd mapping';
const PLAIN_LABEL = 'ArrayBuffer';
const mappedTasks = memTasks(mapped, { f64: sumF64Mapped, u32: sumU32Mapped });
const plainTasks = memTasks(plain, { f64: sumF64Plain, u32: sumU32Plain });

function checkMemory(label: string, tasks: Record<MemOp, () => void>): void {
  tasks['f64 fill']();
  tasks['f64 sum']();
  if (sink[0] !== 1.5 * (MEM_SIZE / 8)) fail(`CHECK FAILED: ${label}: f64 sum ${sink[0]} after fill(1.5)`);
  tasks['u32 fill']();
  tasks['u32 sum']();
  if (sink[0] !== ((7 * (MEM_SIZE / 4)) | 0)) fail(`CHECK FAILED: ${label}: u32 sum ${sink[0]} after fill(7)`);
}
checkMemory(MAPPED_LABEL, mappedTasks);
checkMemory(PLAIN_LABEL, plainTasks);

// ---------------------------------------------------------------------------------------------
// Run

// tinybench runs at least `iterations` calls per task (64 by default): a memory pass takes
// milliseconds, so the memory bench asks for fewer.
function makeBench(time: number, warmupTime: number, iterations = 64, warmupIterations = 16): Bench {
  return new Bench({ time, warmupTime, iterations, warmupIterations, throws: true, setup: () => collect() });
}

const fastModule = fastBinding();
const WIRE_TASKS: [name: string, fn: () => void][] = [
  [
    'addon isOwnedFd, no syscall',
    () => {
      const fd = signalFd.fd;
      let owned = 0;
      for (let i = 0; i < BATCH; i++) owned += raw.isOwnedFd(fd) ? 1 : 0;
      tally.ownedCalls += owned;
    },
  ],
  // Only where the fast-call module is built: without it there is no fast call to time.
  ...(fastModule === null
    ? []
    : [
        [
          FAST_NOP,
          () => {
            const fd = signalFd.fd;
            let zero = 0;
            for (let i = 0; i < BATCH; i++) zero |= fastModule.nop(fd);
            tally.nopNonZero += zero;
          },
        ] as [string, () => void],
      ]),
  [
    'addon eventfdSignal',
    () => {
      const fd = signalFd.fd;
      for (let i = 0; i < BATCH; i++) raw.eventfdSignal(fd);
      tally.signalBatches++;
      tally.signalDrained += raw.eventfdDrain(fd);
    },
  ],
  [
    // What EventFd.signal() and every doorbell ring use: V8's fast call where the module is built.
    PUBLIC_SIGNAL,
    () => {
      for (let i = 0; i < BATCH; i++) signalFd.signal();
      tally.publicBatches++;
      tally.publicDrained += signalFd.drain();
    },
  ],
  [
    'device doorbell → eventfd',
    () => {
      for (let i = 0; i < BATCH; i++) device.mmioWrite(0, REG_DOORBELL, 4, RING_PEER1_VECTOR0);
      tally.ringBatches++;
      tally.ringDrained += ringFd.drain();
    },
  ],
  [
    'device fireVector → MSI-X, no ring',
    () => {
      answering.ring = false;
      for (let i = 0; i < BATCH; i++) answerDevice.fireVector(0);
      answering.ring = true;
    },
  ],
  [
    'device answer: fireVector → MSI-X → doorbell → eventfd',
    () => {
      for (let i = 0; i < BATCH; i++) answerDevice.fireVector(0);
      tally.answerBatches++;
      tally.answerDrained += answerFd.drain();
    },
  ],
];

function latencyOf(task: Task): Statistics {
  const r = task.result;
  if (r.state !== 'completed') throw new Error(`task ${task.name} did not complete (${r.state})`);
  return r.latency;
}

const perWrite = (ms: number) => (ms * 1e6) / BATCH;
type Figures = Pick<CResult, 'p50' | 'p99' | 'p999' | 'mean' | 'min' | 'batches'>;

console.log(
  `running the C baseline and ${WIRE_TASKS.length} eventfd tasks in ${ROUNDS} rounds of ${ROUND_MS} ms each, ` +
    `then 8 memory tasks (64 MiB) in as many rounds; batch ${BATCH}${QUICK ? ' [--quick]' : ''}`,
);

/** Per round: the C figures and each JavaScript task's, in ns/write. */
const rounds: { c: CResult; tasks: Record<string, Figures> }[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const c = runC();
  const wire = makeBench(ROUND_MS, ROUND_WARMUP_MS);
  for (const [name, fn] of WIRE_TASKS) wire.add(name, fn);
  await wire.run();
  const tasks: Record<string, Figures> = {};
  for (const task of wire.tasks) {
    const l = latencyOf(task);
    tasks[task.name] = {
      p50: perWrite(l.p50),
      p99: perWrite(l.p99),
      p999: perWrite(l.p999),
      mean: perWrite(l.mean),
      min: perWrite(l.min),
      batches: l.samplesCount,
    };
  }
  rounds.push({ c, tasks });
}

if (tally.ownedCalls === 0 || tally.ownedCalls % BATCH !== 0)
  fail('CHECK FAILED: isOwnedFd answered false during the run');
if (tally.signalDrained !== tally.signalBatches * BATCH) {
  fail(`CHECK FAILED: ${tally.signalBatches * BATCH} eventfd signals, ${tally.signalDrained} drained`);
}
if (tally.nopNonZero !== 0) fail('CHECK FAILED: the fast no-op returned something other than 0');
if (tally.publicDrained !== tally.publicBatches * BATCH)
  fail(`CHECK FAILED: ${tally.publicBatches * BATCH} EventFd.signal calls, ${tally.publicDrained} drained`);
if (tally.ringDrained !== tally.ringBatches * BATCH)
  fail(`CHECK FAILED: ${tally.ringBatches * BATCH} doorbells, ${tally.ringDrained} drained`);
if (tally.answerDrained !== tally.answerBatches * BATCH)
  fail(`CHECK FAILED: ${tally.answerBatches * BATCH} answers, ${tally.answerDrained} rings drained`);
if (device.counters().doorbellsSent !== tally.ringBatches * BATCH + 1)
  fail('CHECK FAILED: the device counted a different number of doorbells');

// Rounds again, and within a round the two buffers alternate op by op, so drift in the machine's
// speed falls on both alike.
const memRounds: Record<string, { p50: number; p99: number; mean: number; passes: number }>[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const memory = QUICK ? makeBench(ROUND_MS, ROUND_WARMUP_MS, 3, 1) : makeBench(ROUND_MS, ROUND_WARMUP_MS, 8, 2);
  for (const op of MEM_OPS) {
    memory.add(`${MAPPED_LABEL}: ${op}`, mappedTasks[op]);
    memory.add(`${PLAIN_LABEL}: ${op}`, plainTasks[op]);
  }
  await memory.run();
  const figures: (typeof memRounds)[number] = {};
  for (const task of memory.tasks) {
    const l = latencyOf(task);
    figures[task.name] = { p50: l.p50, p99: l.p99, mean: l.mean, passes: l.samplesCount };
  }
  memRounds.push(figures);
}

// ---------------------------------------------------------------------------------------------
// Report

interface WireRow {
  task: string;
  /** Medians over the rounds of each round's figure, ns/write. */
  p50: number;
  p99: number;
  p999: number;
  mean: number;
  /** The lowest batch of all rounds. */
  min: number;
  batches: number;
  /** Median over the rounds of (this p50 / that round's C p50). */
  ratioToC: number;
  ratioToCRange: [number, number];
  roundP50s: number[];
}

function wireRow(task: string, of: (r: (typeof rounds)[number]) => Figures): WireRow {
  const figures = rounds.map(of);
  const ratios = rounds.map((r, i) => figures[i].p50 / r.c.p50);
  return {
    task,
    p50: median(figures.map((f) => f.p50)),
    p99: median(figures.map((f) => f.p99)),
    p999: median(figures.map((f) => f.p999)),
    mean: median(figures.map((f) => f.mean)),
    min: Math.min(...figures.map((f) => f.min)),
    batches: figures.reduce((n, f) => n + f.batches, 0),
    ratioToC: median(ratios),
    ratioToCRange: [Math.min(...ratios), Math.max(...ratios)],
    roundP50s: figures.map((f) => f.p50),
  };
}

const wireRows: WireRow[] = [
  wireRow('C write(2)', (r) => r.c),
  ...WIRE_TASKS.map(([name]) => wireRow(name, (r) => r.tasks[name])),
];

interface MemRow {
  task: string;
  /** Medians over the rounds, ms per pass over the buffer. */
  p50Ms: number;
  p99Ms: number;
  gbPerS: number;
  meanGbPerS: number;
  passes: number;
  /** Median over the rounds of (this GB/s / the ArrayBuffer's GB/s in that round). */
  ratioToArrayBuffer: number;
  ratioRange: [number, number];
}
const gbPerS = (ms: number) => MEM_SIZE / (ms * 1e6);
const memRows: MemRow[] = Object.keys(memRounds[0]).map((task) => {
  const base = `${PLAIN_LABEL}: ${task.split(': ')[1]}`;
  const ratios = memRounds.map((r) => r[base].p50 / r[task].p50);
  return {
    task,
    p50Ms: median(memRounds.map((r) => r[task].p50)),
    p99Ms: median(memRounds.map((r) => r[task].p99)),
    gbPerS: gbPerS(median(memRounds.map((r) => r[task].p50))),
    meanGbPerS: gbPerS(median(memRounds.map((r) => r[task].mean))),
    passes: memRounds.reduce((n, r) => n + r[task].passes, 0),
    ratioToArrayBuffer: median(ratios),
    ratioRange: [Math.min(...ratios), Math.max(...ratios)],
  };
});

printTable(
  ['eventfd write', 'p50 ns', 'p99 ns', 'p99.9 ns', 'mean ns', 'min ns', 'p50/C', 'p50/C range', 'batches'],
  wireRows.map((r) => [
    r.task,
    r.p50.toFixed(1),
    r.p99.toFixed(1),
    r.p999.toFixed(1),
    r.mean.toFixed(1),
    r.min.toFixed(1),
    r.ratioToC.toFixed(2),
    `${r.ratioToCRange[0].toFixed(2)}–${r.ratioToCRange[1].toFixed(2)}`,
    String(r.batches),
  ]),
);
printTable(
  ['memory, 64 MiB pass', 'p50 ms', 'p99 ms', 'GB/s (p50)', 'GB/s (mean)', '÷ ArrayBuffer', 'range', 'passes'],
  memRows.map((r) => [
    r.task,
    r.p50Ms.toFixed(2),
    r.p99Ms.toFixed(2),
    r.gbPerS.toFixed(2),
    r.meanGbPerS.toFixed(2),
    r.ratioToArrayBuffer.toFixed(2),
    `${r.ratioRange[0].toFixed(2)}–${r.ratioRange[1].toFixed(2)}`,
    String(r.passes),
  ]),
);

const cRow = wireRows[0];
const bareRow = wireRows.find((r) => r.task === 'addon isOwnedFd, no syscall')!;
const signalRow = wireRows.find((r) => r.task === 'addon eventfdSignal')!;
const publicRow = wireRows.find((r) => r.task === PUBLIC_SIGNAL)!;
const ringRow = wireRows.find((r) => r.task === 'device doorbell → eventfd')!;
const mappedRows = memRows.filter((r) => r.task.startsWith(MAPPED_LABEL));
const slowest = mappedRows.reduce((a, b) => (b.ratioToArrayBuffer < a.ratioToArrayBuffer ? b : a));
const targets = {
  addonSignalWithin1_2xC: {
    met: signalRow.ratioToC <= TARGET_RATIO,
    ratio: signalRow.ratioToC,
    range: signalRow.ratioToCRange,
  },
  doorbellRingWithin1_2xC: {
    met: ringRow.ratioToC <= TARGET_RATIO,
    ratio: ringRow.ratioToC,
    range: ringRow.ratioToCRange,
  },
};
const verdict = (met: boolean) => (met ? 'met    ' : 'NOT met');
const range = (r: WireRow) => `rounds ${r.ratioToCRange[0].toFixed(2)}–${r.ratioToCRange[1].toFixed(2)}`;
console.log();
console.log(`C p50 per round: ${cRow.roundP50s.map((x) => x.toFixed(1)).join(', ')} ns/write`);
console.log(
  `target: addon eventfdSignal <= 1.2x C        ${verdict(targets.addonSignalWithin1_2xC.met)}  ${signalRow.ratioToC.toFixed(2)}x median (${range(signalRow)}; ${signalRow.p50.toFixed(1)} vs ${cRow.p50.toFixed(1)} ns)`,
);
console.log(
  `target: doorbell ring path <= 1.2x C         ${verdict(targets.doorbellRingWithin1_2xC.met)}  ${ringRow.ratioToC.toFixed(2)}x median (${range(ringRow)}; ${ringRow.p50.toFixed(1)} vs ${cRow.p50.toFixed(1)} ns)`,
);
console.log(
  `report: EventFd.signal (${fastCallStatus().split(':')[0]})  ${publicRow.p50.toFixed(1)} ns = ${(publicRow.p50 - cRow.p50).toFixed(1)} ns over C, ` +
    `${(signalRow.p50 - publicRow.p50).toFixed(1)} ns less than through N-API; a fast call without a syscall ` +
    `${wireRows.find((r) => r.task === FAST_NOP)?.p50.toFixed(1) ?? '(not built)'} ns (medians)`,
);
console.log(
  `report: where the time goes                 addon call without a syscall (isOwnedFd) ${bareRow.p50.toFixed(1)} ns; addon signal - C ${(signalRow.p50 - cRow.p50).toFixed(1)} ns; ` +
    `device doorbell - addon signal ${(ringRow.p50 - signalRow.p50).toFixed(1)} ns (medians)`,
);
console.log(
  `report: memfd mapping vs ArrayBuffer         slowest op ${slowest.task.split(': ')[1]} at ${slowest.ratioToArrayBuffer.toFixed(2)}x; ` +
    mappedRows.map((r) => `${r.task.split(': ')[1]} ${r.ratioToArrayBuffer.toFixed(2)}x`).join(', '),
);

// The same write(2) from C with 0..128 random cache lines touched between calls: how much of the
// addon's overhead over the tight C loop is the system call itself costing more in a process that
// touches memory, as every Node process does.
const floorRun = spawnSync(FLOOR_BINARY, [QUICK ? '100000' : '400000'], { encoding: 'utf8', timeout: 60_000 });
if (floorRun.status !== 0) fail(`${FLOOR_BINARY} failed: exit ${floorRun.status} ${floorRun.stderr}`);
const floor = JSON.parse(floorRun.stdout) as {
  lines: number[];
  writeNs: number[];
  loopNs: number[];
  tight: Record<'oneThread' | 'twoThreads', { write: number; syscall: number }>;
};
const floorAt = (lines: number) => floor.writeNs[floor.lines.indexOf(lines)];
console.log(
  `report: the syscall floor under memory pressure  C write(2) with 0/8/32/128 random lines touched between calls: ` +
    `${floor.writeNs.map((n) => n.toFixed(0)).join('/')} ns; addon eventfdSignal ${signalRow.p50.toFixed(0)} ns = ` +
    `${(signalRow.p50 - floorAt(32)).toFixed(0)} ns over the 32-line floor (a bare addon call: ${bareRow.p50.toFixed(0)} ns); ` +
    `EventFd.signal ${publicRow.p50.toFixed(0)} ns = ${(publicRow.p50 - floorAt(32)).toFixed(0)} ns over it`,
);

const t = floor.tight;
console.log(
  `report: glibc's write() vs syscall(2) in C     one thread ${t.oneThread.write.toFixed(0)} / ${t.oneThread.syscall.toFixed(0)} ns, ` +
    `two threads ${t.twoThreads.write.toFixed(0)} / ${t.twoThreads.syscall.toFixed(0)} ns; EventFd.signal ${publicRow.p50.toFixed(0)} ns = ` +
    `${(publicRow.p50 / t.twoThreads.syscall).toFixed(2)}x the two-thread syscall(2) floor (+${(publicRow.p50 - t.twoThreads.syscall).toFixed(0)} ns)`,
);

const file = resultsFile('native.json', ROOT);
writeFileSync(
  file,
  JSON.stringify(
    {
      benchmark: 'native addon: eventfd wire and mapped memory',
      ...machine(),
      quick: QUICK,
      batch: BATCH,
      compiler,
      check: 'passed',
      fastCalls: fastCallStatus(),
      writeFloor: {
        ...floor,
        unit: 'ns per write(2) with that many random cache lines of 64 MiB touched between calls',
      },
      eventfd: {
        unit: 'ns per write (batch time / batch, one drain per batch included)',
        rounds: ROUNDS,
        roundTimeMs: ROUND_MS,
        roundWarmupMs: ROUND_WARMUP_MS,
        summary: 'medians over the rounds; ratioToC is the median of per-round ratios',
        tasks: wireRows,
        perRound: rounds,
      },
      memory: {
        unit: 'one pass over the buffer',
        bytes: MEM_SIZE,
        rounds: ROUNDS,
        roundTimeMs: ROUND_MS,
        summary: 'medians over the rounds',
        tasks: memRows,
        perRound: memRounds,
      },
      targets,
    },
    null,
    2,
  ) + '\n',
);
console.log(`\nwrote ${file}`);

device.close();
signalFd.close();
ringFd.close();
answerDevice.close();
answerFd.close();
shm.close();
