// Doorbell latency benchmark: two of our devices in two processes, each pinned with taskset, ring
// each other through one IvshmemServer, against C programs doing the same with nothing but the
// kernel in between. Then the server's cost as peers join and leave.
//
// 1. Round trips (RT) between two IvshmemDevices (doorbell mode, WebAssembly core), each in its
//    own process (bench/latency-peer.ts), both joined to an IvshmemServer started here, in this
//    process, on a temporary socket with its own /dev/shm name. Three wait paths:
//      loop    vectorWait 'loop' (uv_poll on the event loop); the transport's sendMsi rings back;
//      thread  a worker thread per process creates its device with vectorWait 'manual' and loops
//              on createWaiter('blocking', device.ownVectorFds).waitOnce() → fireVector → sendMsi;
//      spin    the same with createWaiter('spin', ...);
//      adaptive  the same with createWaiter('adaptive', ...) (200 rounds of reads, then poll(2)),
//              on different CPUs only (on one CPU the peer cannot ring while this one spins).
//    The ping side times each RT with the addon's CLOCK_MONOTONIC (monotonicNs: no allocation per sample, as with the C
// side's clock_gettime) and records it (ns) into an hdr histogram
//    (3 significant digits); the first 10 % of the RTs (at least 5,000) are a warm-up, left out.
// 2. C baselines (bench/c/pingpong.c, compiled here with cc -O2 into out/bench/): eventfd
//    ping-pong with a blocking read, with epoll_wait, with spinning non-blocking reads, and a
//    shared-memory spin (memfd, release/acquire, pause; no system call: the floor), also two
//    processes started with taskset, sharing descriptors made here.
// 3. Ratios, reported, not asserted: thread / C blocking (target ≤ 1.1×), loop / C epoll (≤ 1.6×),
//    spin / C eventfd spin-read (≤ 1.2×), per placement: same CPU (both on cpu 0), different CPUs (0 and 1).
// 4. Server scale: one IvshmemServer with 4 vectors; N raw UnixSocket peers (here, in this
//    process) join one after another, then leave; every message every peer gets is checked
//    (4 fds per join for each peer present, 1 leave message per leave, the newcomer's setup in
//    QEMU's order) and every fd received is closed; time per join/leave by buckets of peers
//    present, whether it grows linearly, fds and RSS at the peak and after.
//
// Writes latency.json (percentiles, hdr bucket data, encoded histograms), latency.md and
// latency.svg (percentile curves, one series per path and C baseline) into bench/results/.
//
// Run: npm run bench [-- --quick]      node out/bench/latency.bench.js [--quick] [--tiny] [--out DIR]
//   --quick  5,000 RTs per path, 128 scale peers     (default 100,000 and 1,024)
//   --tiny   500 RTs, 16 scale peers: plumbing checks only (test/tools/bench-plumbing.test.ts)
//   --out    results directory (default bench/results)
//   CC=<compiler> picks another C compiler.
//
// Reading the ratios: the blocking waiter on its one vector blocks in read(2) itself, as the C
// baseline does (one system call per wake-up; it is stopped through that same eventfd). The
// busy-poll path still rings with an
// eventfd write(2) and spins on non-blocking read(2)s; its baseline spins on shared memory with
// no system call at all. Two pure spinners pinned to one CPU can only hand over when the
// scheduler preempts one, so the same-CPU spin rows measure time slices, not doorbells: they are
// bounded by time, not count.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import hdr from 'hdr-histogram-js';
import type { Histogram, JsHistogram } from 'hdr-histogram-js';
import { native } from '../src/os/binding.js';
import { EventFd } from '../src/os/eventfd.js';
import { SharedMemory } from '../src/os/shared-memory.js';
import { UnixSocket } from '../src/os/unix-socket.js';
import { IvshmemServer } from '../src/server/ivshmem-server.js';
import type { PeerConfig, PeerResult, WaitPath } from './latency-peer.js';
import { compileC } from './support/cc.js';

// ---------------------------------------------------------------------------------------------
// Options

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const TINY = argv.includes('--tiny');
const outAt = argv.indexOf('--out');
if (outAt >= 0 && (argv[outAt + 1] === undefined || argv[outAt + 1].startsWith('--'))) {
  console.error('latency.bench: --out needs a directory');
  process.exit(2);
}

const HERE = dirname(fileURLToPath(import.meta.url));
/** The package root: the bundle lives in out/bench/. */
const ROOT =
  [resolve(HERE, '..', '..'), process.cwd()].find((d) => existsSync(join(d, 'bench', 'c', 'pingpong.c'))) ??
  process.cwd();
const RESULTS = outAt >= 0 ? resolve(argv[outAt + 1]) : join(ROOT, 'bench', 'results');
const PEER_SCRIPT = join(HERE, 'latency-peer.js');
const C_SOURCE = join(ROOT, 'bench', 'c', 'pingpong.c');
const C_BINARY = join(ROOT, 'out', 'bench', 'pingpong');

/** Measured round trips per path. */
const MEASURED = TINY ? 500 : QUICK ? 5_000 : 100_000;
/**
 * Round trips made first and left out: 10 % of all, and at least 5,000 (except --tiny). Each Node
 * process stalls for 0.5-8 ms at the same round-trip counts (999, 1017, 1130, 1619, ...) in every
 * run and every wait path, which points at the JIT tiering the device's JavaScript and WebAssembly
 * up (they stay with --single-threaded); they thin out after the first 5,000-12,000. The stalls
 * each run saw are in latency.json (`stalls`). A time-bounded run (below) leaves out a tenth of
 * what it made, at most this many.
 */
const WARMUP = Math.max(Math.ceil(MEASURED / 9), TINY ? 0 : 5_000);
const TOTAL = MEASURED + WARMUP;
/** Ping stops measuring after this long even if TOTAL was not reached (reported as time-bounded). */
const DEADLINE_MS = TINY ? 8_000 : QUICK ? 10_000 : 30_000;
/** Same-CPU spin: each RT waits for a preemption, so these runs are bounded by time. */
const SPIN_SAME_CPU_MS = TINY ? 400 : QUICK ? 1_500 : 5_000;
/** A child that sees nothing for this long gives up; the orchestrator kills a pair after deadline + this. */
const IDLE_MS = 15_000;
const SCALE_PEERS = TINY ? 16 : QUICK ? 128 : 1024;
const SCALE_VECTORS = 4;
const SCALE_STEP_TIMEOUT_MS = 15_000;

const TARGETS: Record<Exclude<WaitPath, 'adaptive'>, { baseline: CMode; max: number }> = {
  thread: { baseline: 'blocking', max: 1.1 },
  loop: { baseline: 'epoll', max: 1.6 },
  spin: { baseline: 'spinread', max: 1.2 },
};
type CMode = 'blocking' | 'epoll' | 'spinread' | 'spin';
const PATH_LABEL: Record<WaitPath, string> = {
  loop: 'Node event loop',
  thread: 'Node worker, blocking wait',
  spin: 'Node worker, busy poll',
  adaptive: 'Node worker, adaptive wait',
};
const C_LABEL: Record<CMode, string> = {
  blocking: 'C eventfd, blocking read',
  epoll: 'C eventfd + epoll_wait',
  spinread: 'C eventfd spin-read',
  spin: 'C shared-memory spin',
};

/** Where ping and pong run (CPU numbers for taskset; -1 = wherever the scheduler puts them). */
interface Placement {
  id: 'same' | 'cross' | 'unpinned';
  label: string;
  ping: number;
  pong: number;
}
const PLACEMENTS: Placement[] = [
  { id: 'same', label: 'same CPU (0, 0)', ping: 0, pong: 0 },
  { id: 'cross', label: 'different CPUs (0, 1)', ping: 0, pong: 1 },
];

// ---------------------------------------------------------------------------------------------
// Cleanup: everything this process starts or creates is undone on every way out.

const live = new Set<ChildProcess>();
const servers = new Set<IvshmemServer>();
const shmNames = new Set<string>();
const scratch = mkdtempSync(join(tmpdir(), 'ivshmem-latency-'));
let cleanedUp = false;

function cleanup(): void {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const child of live) child.kill('SIGKILL');
  for (const server of servers) {
    try {
      server.close();
    } catch {
      // already broken: the shm name is removed below
    }
  }
  for (const name of shmNames) {
    try {
      unlinkSync(join('/dev/shm', name));
    } catch {
      // server.close() removed it
    }
  }
  rmSync(scratch, { recursive: true, force: true });
}

function fail(message: string): never {
  console.error(`latency.bench: ${message}`);
  cleanup();
  process.exit(1);
}

process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    console.error(`latency.bench: ${signal}, stopping`);
    cleanup();
    process.exit(130);
  });
}

// ---------------------------------------------------------------------------------------------
// Environment: compiler, taskset, CPUs.

const notes: string[] = [];

function findTaskset(): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const candidate = join(dir, 'taskset');
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

const compiler = (() => {
  try {
    return compileC(C_SOURCE, C_BINARY);
  } catch (error) {
    return fail((error as Error).message);
  }
})();
const TASKSET = findTaskset();
const cpuCount = cpus().length;
const canPin = (cpu: number) => TASKSET !== null && spawnSync(TASKSET, ['-c', String(cpu), 'true']).status === 0;
let placements = PLACEMENTS;
if (TASKSET === null) {
  notes.push(
    'taskset was not found (util-linux): one unpinned placement instead of same CPU / different CPUs; the scheduler placed every process.',
  );
  console.warn(
    'latency.bench: NOTE: taskset not found; running unpinned, one placement only (install util-linux for CPU placement)',
  );
  placements = [{ id: 'unpinned', label: 'unpinned (no taskset)', ping: -1, pong: -1 }];
} else if (!canPin(0) || !canPin(1)) {
  const only = canPin(0) ? 'only cpu 0' : 'neither cpu 0 nor cpu 1';
  notes.push(`taskset can pin to ${only}: the different-CPUs placement was skipped.`);
  console.warn(`latency.bench: NOTE: ${only} can be pinned to; skipping the different-CPUs placement`);
  placements = canPin(0) ? [PLACEMENTS[0]] : [];
  if (placements.length === 0) fail('taskset cannot pin to cpu 0');
}

// ---------------------------------------------------------------------------------------------
// Child processes

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}
interface Proc {
  child: ChildProcess;
  exit: Promise<Exit>;
  name: string;
}

/** Starts `cmd` pinned to `cpu` with taskset (unpinned without it); `fds` become fds 3, 4, ... */
function start(name: string, cpu: number, cmd: string, args: string[], fds: number[] = []): Proc {
  const [file, fileArgs] = TASKSET !== null && cpu >= 0 ? [TASKSET, ['-c', String(cpu), cmd, ...args]] : [cmd, args];
  const child = spawn(file, fileArgs, { stdio: ['ignore', 'pipe', 'pipe', ...fds] });
  live.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exit = new Promise<Exit>((resolveExit) => {
    child.on('error', (err) => {
      stderr += `\n${err.message}`;
    });
    child.on('close', (code, signal) => {
      live.delete(child);
      resolveExit({ code, signal, stdout, stderr });
    });
  });
  return { child, exit, name };
}

/** Waits for both; kills both on the first failure or after `timeoutMs`. */
async function finishPair(a: Proc, b: Proc, timeoutMs: number): Promise<[Exit, Exit]> {
  let timer: NodeJS.Timeout | undefined;
  const killBoth = () => {
    a.child.kill('SIGKILL');
    b.child.kill('SIGKILL');
  };
  const watch = (p: Proc) =>
    p.exit.then((e) => {
      if (e.code !== 0) killBoth();
      return e;
    });
  const timeout = new Promise<'timeout'>((r) => {
    timer = setTimeout(() => r('timeout'), timeoutMs);
  });
  const both = Promise.all([watch(a), watch(b)]);
  const first = await Promise.race([both, timeout]);
  clearTimeout(timer);
  if (first === 'timeout') {
    killBoth();
    const [ea, eb] = await both;
    throw new Error(
      `${a.name} / ${b.name}: no result within ${timeoutMs} ms; both killed\n${a.name}: ${ea.stderr.trim()}\n${b.name}: ${eb.stderr.trim()}`,
    );
  }
  for (const [p, e] of [
    [a, first[0]],
    [b, first[1]],
  ] as const) {
    if (e.code !== 0) {
      throw new Error(
        `${p.name} failed (${e.signal ?? `exit ${e.code}`}):\n${e.stderr.trim() || '(no output)'}\n` +
          `other side: ${(p === a ? first[1] : first[0]).stderr.trim() || '(no output)'}`,
      );
    }
  }
  return first;
}

function lastJson<T>(who: string, e: Exit): T {
  const line = e.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`${who} printed no JSON result: ${JSON.stringify(e.stdout.slice(-300))}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Histograms

interface Percentiles {
  min: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  p9999: number;
  max: number;
  mean: number;
  count: number;
}

interface Series {
  id: string;
  placement: Placement['id'];
  kind: 'node' | 'c';
  path: WaitPath | CMode;
  label: string;
  cpus: [number, number];
  /** RTs made, warm-up included; the warm-up (the first `warmup`) is not in the figures. */
  done: number;
  warmup: number;
  /** Stopped by the time bound before `TOTAL` round trips. */
  timeBounded: boolean;
  percentiles: Percentiles;
  /** One-way latency: median RT / 2. */
  oneWayP50: number;
  /** CPU time stolen by the host while it ran, % of both vCPUs (from /proc/stat). */
  stealPct: number;
  wallMs: number;
  /** Node: round trips over 200 µs, warm-up included, [index, ns] (the first 100). */
  stalls?: [number, number][];
  /** Node: garbage collections in ping and in pong while the measured round trips ran. */
  gcs?: { ping: number; pong: number };
  /** Pong's median time from its wait returning to its ring back (every 16th answer after the
   *  warm-up; C eventfd modes and Node's thread paths). RT ≈ 2 × (wake-up + answer). */
  answerP50?: number;
  /** Node: JIT deoptimisations in ping's and pong's process over the same window, and the first few. */
  deopts?: { ping: number; pong: number; samples: string[] };
  /** The C program's own nearest-rank figures on the same samples (a cross-check of hdr's). */
  cReported?: { p50: number; p99: number; p999: number };
  /** [percentile, ns] points of the percentile curve (the SVG draws these). */
  curve: [number, number][];
  /** hdr's recorded buckets: [highest equivalent value ns, count]. */
  buckets: [number, number][];
  /** The histogram itself: hdr compressed base64 (decodeFromCompressedBase64). */
  hdr: string;
}

const newHistogram = () =>
  hdr.build({
    bitBucketSize: 64,
    lowestDiscernibleValue: 1,
    highestTrackableValue: 1e11,
    numberOfSignificantValueDigits: 3,
  });

/** hdr reports a percentile as the top of its bucket (3 significant digits); capped at the exact max. */
const at = (h: Histogram, p: number) => Math.min(h.getValueAtPercentile(p), h.maxValue);

function percentilesOf(h: Histogram): Percentiles {
  return {
    min: h.minNonZeroValue,
    p50: at(h, 50),
    p90: at(h, 90),
    p99: at(h, 99),
    p999: at(h, 99.9),
    p9999: at(h, 99.99),
    max: h.maxValue,
    mean: h.mean,
    count: h.totalCount,
  };
}

/** Percentile curve on a "nines" axis: x = log10(1 / (1 - p)), from 0 up to the data's resolution. */
function curveOf(h: Histogram): [number, number][] {
  const points: [number, number][] = [];
  const top = Math.log10(Math.max(h.totalCount, 10));
  for (let x = 0; x < top; x += 0.02) {
    const p = 100 * (1 - 10 ** -x);
    points.push([Number(p.toFixed(6)), at(h, p)]);
  }
  points.push([100, h.maxValue]);
  return points;
}

function bucketsOf(h: Histogram): [number, number][] {
  const it = (h as JsHistogram).recordedValuesIterator;
  it.reset();
  const out: [number, number][] = [];
  while (it.hasNext()) {
    const v = it.next();
    out.push([v.valueIteratedTo, v.countAtValueIteratedTo]);
  }
  return out;
}

function seriesOf(base: Omit<Series, 'percentiles' | 'oneWayP50' | 'curve' | 'buckets' | 'hdr'>, h: Histogram): Series {
  const percentiles = percentilesOf(h);
  return {
    ...base,
    percentiles,
    oneWayP50: percentiles.p50 / 2,
    curve: curveOf(h),
    buckets: bucketsOf(h),
    hdr: hdr.encodeIntoCompressedBase64(h),
  };
}

/** Jiffies stolen by the host and elapsed, all CPUs, from /proc/stat. */
function cpuStat(): { steal: number; total: number } {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return { steal: f[7] ?? 0, total: f.slice(0, 8).reduce((a, b) => a + b, 0) };
  } catch {
    return { steal: 0, total: 0 };
  }
}
const stealPct = (a: ReturnType<typeof cpuStat>, b: ReturnType<typeof cpuStat>) =>
  b.total > a.total ? (100 * (b.steal - a.steal)) / (b.total - a.total) : 0;

// ---------------------------------------------------------------------------------------------
// One Node run: a server here, ping and pong processes there.

let runs = 0;

function deadlineFor(placement: Placement, path: string): { ms: number; bounded: boolean } {
  // Unpinned spinners may land on one CPU too.
  return (path === 'spin' || path === 'spinread') && (placement.ping === placement.pong || TASKSET === null)
    ? { ms: SPIN_SAME_CPU_MS, bounded: true }
    : { ms: DEADLINE_MS, bounded: false };
}

async function runNode(placement: Placement, path: WaitPath): Promise<Series> {
  const n = runs++;
  const shm = `ivshmem-bench-latency-${process.pid}-${n}`;
  shmNames.add(shm);
  const server = IvshmemServer.start({
    socketPath: join(scratch, `s${n}.sock`),
    memory: { shm },
    size: 1 << 16,
    vectors: 1,
  });
  servers.add(server);
  const deadline = deadlineFor(placement, path);
  const deoptLog = (role: 'ping' | 'pong') => join(scratch, `deopt-${n}-${role}.log`);
  const cfg = (role: 'ping' | 'pong'): string =>
    JSON.stringify({
      role,
      path,
      socket: server.socketPath,
      total: TOTAL,
      warmup: WARMUP,
      deadlineMs: deadline.ms,
      idleTimeoutMs: IDLE_MS,
      deoptLog: deoptLog(role),
    } satisfies PeerConfig);
  // V8 appends each deoptimisation to the file as it happens; the peer counts its window's.
  const nodeArgs = (role: 'ping' | 'pong') => [
    '--trace-deopt',
    '--redirect-code-traces',
    `--redirect-code-traces-to=${deoptLog(role)}`,
    PEER_SCRIPT,
    cfg(role),
  ];
  const before = cpuStat();
  const t0 = performance.now();
  try {
    const pong = start(`pong (${path})`, placement.pong, process.execPath, nodeArgs('pong'));
    const ping = start(`ping (${path})`, placement.ping, process.execPath, nodeArgs('ping'));
    const [pingExit, pongExit] = await finishPair(ping, pong, deadline.ms + IDLE_MS + 15_000);
    const wallMs = performance.now() - t0;
    const p = lastJson<PeerResult>('ping', pingExit);
    const q = lastJson<PeerResult>('pong', pongExit);
    // Every doorbell answered once, every interrupt delivered, nothing dropped or coalesced.
    const c = p.counters;
    const problems: string[] = [];
    if (q.done !== p.done) problems.push(`pong answered ${q.done} doorbells, ping made ${p.done} round trips`);
    if (c.interruptsDelivered !== p.done || p.msi !== p.done)
      problems.push(`ping got ${c.interruptsDelivered} interrupts (${p.msi} MSIs) for ${p.done} round trips`);
    if (c.doorbellsSent !== p.done + 1) problems.push(`ping rang ${c.doorbellsSent} doorbells, expected ${p.done + 1}`);
    if (q.counters.doorbellsSent !== q.done)
      problems.push(`pong rang ${q.counters.doorbellsSent} doorbells for ${q.done} answers`);
    const dropped = (x: PeerResult['counters']) =>
      x.doorbellsDropped.noPeer +
      x.doorbellsDropped.noVector +
      x.interruptsPended +
      x.interruptsDropped.msixDisabled +
      x.interruptsDropped.noBusMaster +
      x.interruptsDropped.badVector;
    if (dropped(c) + dropped(q.counters) !== 0) problems.push('doorbells or interrupts were dropped or pended');
    if (p.coalesced + q.coalesced !== 0)
      problems.push(`${p.coalesced + q.coalesced} eventfd reads found more than one signal`);
    if (problems.length > 0) throw new Error(`CHECK FAILED (${path}, ${placement.label}): ${problems.join('; ')}`);
    const h = hdr.decodeFromCompressedBase64(p.histogram, 64);
    const s = seriesOf(
      {
        id: `${placement.id}/node/${path}`,
        placement: placement.id,
        kind: 'node',
        path,
        label: PATH_LABEL[path],
        cpus: [placement.ping, placement.pong],
        done: p.done,
        warmup: p.warmup,
        timeBounded: p.done < TOTAL,
        stealPct: stealPct(before, cpuStat()),
        wallMs,
        stalls: p.stalls ?? [],
        gcs: { ping: p.gcs, pong: q.gcs },
        ...(q.answerP50 !== undefined ? { answerP50: q.answerP50 } : {}),
        deopts: {
          ping: p.deopts,
          pong: q.deopts,
          samples: [...p.deoptSamples.map((x) => `ping: ${x}`), ...q.deoptSamples.map((x) => `pong: ${x}`)],
        },
      },
      h,
    );
    h.destroy();
    return s;
  } finally {
    server.close();
    servers.delete(server);
    for (const role of ['ping', 'pong'] as const) rmSync(deoptLog(role), { force: true });
  }
}

// One C run: descriptors made here, both sides pinned and started as for Node.
async function runC(placement: Placement, mode: CMode): Promise<Series> {
  const n = runs++;
  const pingFd = EventFd.create();
  const pongFd = EventFd.create();
  const memory = SharedMemory.open({ memfd: 'pingpong' }, { size: 4096 });
  const samplesPath = join(scratch, `c${n}.samples`);
  const deadline = deadlineFor(placement, mode);
  const fds = [pingFd.fd, pongFd.fd, memory.fd];
  const before = cpuStat();
  const t0 = performance.now();
  try {
    const pong = start(
      `C pong (${mode})`,
      placement.pong,
      C_BINARY,
      [mode, 'pong', String(TOTAL), String(WARMUP), String(deadline.ms)],
      fds,
    );
    const ping = start(
      `C ping (${mode})`,
      placement.ping,
      C_BINARY,
      [mode, 'ping', String(TOTAL), String(WARMUP), String(deadline.ms), samplesPath],
      fds,
    );
    const [pingExit, pongExit] = await finishPair(ping, pong, deadline.ms + IDLE_MS + 15_000);
    const wallMs = performance.now() - t0;
    const p = lastJson<{ done: number; warmup: number; p50: number; p99: number; p999: number }>('C ping', pingExit);
    const q = lastJson<{ answered: number; answerP50: number }>('C pong', pongExit);
    if (q.answered !== p.done)
      throw new Error(`CHECK FAILED (C ${mode}, ${placement.label}): pong answered ${q.answered}, ping made ${p.done}`);
    const raw = readFileSync(samplesPath);
    const samples = new BigUint64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8);
    if (samples.length !== p.done) throw new Error(`C ping wrote ${samples.length} samples, said ${p.done}`);
    const h = newHistogram();
    for (let i = p.warmup; i < samples.length; i++) h.recordValue(Math.max(1, Number(samples[i])));
    const s = seriesOf(
      {
        id: `${placement.id}/c/${mode}`,
        placement: placement.id,
        kind: 'c',
        path: mode,
        label: C_LABEL[mode],
        cpus: [placement.ping, placement.pong],
        done: p.done,
        warmup: p.warmup,
        timeBounded: p.done < TOTAL,
        stealPct: stealPct(before, cpuStat()),
        wallMs,
        cReported: { p50: p.p50, p99: p.p99, p999: p.p999 },
        ...(mode === 'spin' ? {} : { answerP50: q.answerP50 }),
      },
      h,
    );
    h.destroy();
    return s;
  } finally {
    pingFd.close();
    pongFd.close();
    memory.close();
    rmSync(samplesPath, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Server scale

interface ScaleBucket {
  from: number;
  to: number;
  meanPeersPresent: number;
  admitUs: Stat;
  completeUs: Stat;
  perPeerCompleteNs: number;
}
interface Stat {
  mean: number;
  p50: number;
  max: number;
}
interface ScaleResult {
  peers: number;
  vectors: number;
  joins: ScaleBucket[];
  leaves: ScaleBucket[];
  /** Fits of the time until every peer had its notifications (join, leave) and of the server's admit alone. */
  fit: { join: Fit; leave: Fit; joinAdmit: Fit };
  linear: { join: boolean; leave: boolean };
  messages: {
    received: number;
    fdsReceived: number;
    fdsClosed: number;
    mismatches: number;
    firstMismatch: string | null;
    extraFdsClosed: number;
  };
  fds: {
    beforeServer: number;
    baseline: number;
    peak: number;
    perPeer: number;
    afterAllLeft: number;
    afterServerClosed: number;
    returnedToBaseline: boolean;
  };
  rssMiB: { baseline: number; peak: number; afterAllLeft: number };
  heapUsedMiB: { baseline: number; peak: number; afterAllLeft: number };
  totalMs: number;
}
/** Least-squares t = a + b·n over every join (leave), and the log-log growth exponent over buckets 2.. */
interface Fit {
  interceptUs: number;
  slopeNsPerPeer: number;
  r2: number;
  exponent: number;
}

const fdCount = () => readdirSync('/proc/self/fd').length;
const rssMiB = () => process.memoryUsage.rss() / 2 ** 20;
const heapMiB = () => process.memoryUsage().heapUsed / 2 ** 20;
/** With --expose-gc (npm run bench passes it), memory figures are taken after a full GC. */
const collect: () => void = typeof gc === 'function' ? () => gc!() : () => {};
const yieldLoop = () => new Promise<void>((r) => setImmediate(r));

function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  return {
    mean: xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1),
    p50: s[Math.floor((s.length - 1) / 2)] ?? 0,
    max: s.at(-1) ?? 0,
  };
}

function fit(
  points: { n: number; admitUs: number; completeUs: number }[],
  buckets: ScaleBucket[],
  key: 'admitUs' | 'completeUs',
): Fit {
  const m = points.length;
  const mx = points.reduce((a, p) => a + p.n, 0) / m;
  const my = points.reduce((a, p) => a + p[key], 0) / m;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (const p of points) {
    sxy += (p.n - mx) * (p[key] - my);
    sxx += (p.n - mx) ** 2;
    syy += (p[key] - my) ** 2;
  }
  const b = sxx > 0 ? sxy / sxx : 0;
  const r2 = sxx > 0 && syy > 0 ? (sxy * sxy) / (sxx * syy) : 0;
  // Growth exponent k in t ∝ n^k, from the buckets past the first (where fixed costs dominate).
  const upper = buckets.slice(1).filter((x) => x.meanPeersPresent > 0 && x[key].mean > 0);
  let exponent = NaN;
  if (upper.length >= 2) {
    const lx = upper.map((x) => Math.log(x.meanPeersPresent));
    const ly = upper.map((x) => Math.log(x[key].mean));
    const ax = lx.reduce((a, v) => a + v, 0) / lx.length;
    const ay = ly.reduce((a, v) => a + v, 0) / ly.length;
    let num = 0;
    let den = 0;
    for (let i = 0; i < lx.length; i++) {
      num += (lx[i] - ax) * (ly[i] - ay);
      den += (lx[i] - ax) ** 2;
    }
    exponent = den > 0 ? num / den : NaN;
  }
  return { interceptUs: my - b * mx, slopeNsPerPeer: b * 1000, r2, exponent };
}

async function scaleTest(peersWanted: number): Promise<ScaleResult> {
  const tStart = performance.now();
  const fdsBeforeServer = fdCount();
  const n = runs++;
  const shm = `ivshmem-bench-latency-${process.pid}-${n}`;
  shmNames.add(shm);
  const server = IvshmemServer.start({
    socketPath: join(scratch, `scale${n}.sock`),
    memory: { shm },
    size: 1 << 16,
    vectors: SCALE_VECTORS,
  });
  servers.add(server);
  server.setMaxListeners(0);
  const baseline = fdCount();
  collect();
  const rssBase = rssMiB();
  const heapBase = heapMiB();

  interface Peer {
    id: number;
    socket: UnixSocket;
    expect: number[];
    at: number;
  }
  const peers: Peer[] = []; // in join order (the server's connection order)
  const msg = {
    received: 0,
    fdsReceived: 0,
    fdsClosed: 0,
    mismatches: 0,
    firstMismatch: null as string | null,
    extraFdsClosed: 0,
  };
  // expect holds pairs: value, 1 if an fd must come with it.
  const expect = (p: Peer, value: number, fd: boolean, times = 1) => {
    for (let i = 0; i < times; i++) p.expect.push(value, fd ? 1 : 0);
  };

  /** Reads what every peer is owed, checking each message; closes every fd received. */
  async function drain(what: string): Promise<void> {
    const end = Date.now() + SCALE_STEP_TIMEOUT_MS;
    let pending = peers.filter((p) => p.at < p.expect.length);
    while (pending.length > 0) {
      for (const p of pending) {
        while (p.at < p.expect.length) {
          const m = p.socket.receive();
          if (m === null) break;
          msg.received++;
          if (m.fd >= 0) {
            msg.fdsReceived++;
            native().close(m.fd);
            msg.fdsClosed++;
          }
          const value = p.expect[p.at];
          const fd = p.expect[p.at + 1] === 1;
          p.at += 2;
          if (Number(m.value) !== value || m.fd >= 0 !== fd) {
            msg.mismatches++;
            msg.firstMismatch ??= `${what}: peer ${p.id} got (${m.value}, ${m.fd >= 0 ? 'fd' : 'no fd'}), expected (${value}, ${fd ? 'fd' : 'no fd'})`;
          }
        }
      }
      pending = pending.filter((p) => {
        if (p.at < p.expect.length) return true;
        p.expect.length = 0; // all read: keep the harness's own memory flat
        p.at = 0;
        return false;
      });
      if (pending.length === 0) break;
      if (Date.now() > end)
        throw new Error(
          `scale: ${what}: ${pending.length} peers still owed messages after ${SCALE_STEP_TIMEOUT_MS} ms`,
        );
      await yieldLoop(); // the server flushes what did not fit in a socket when it becomes writable
    }
  }

  function nextEvent(event: 'join' | 'leave'): Promise<{ id: number; at: number }> {
    return new Promise((resolveEvent, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`scale: no ${event} event within ${SCALE_STEP_TIMEOUT_MS} ms`)),
        SCALE_STEP_TIMEOUT_MS,
      );
      server.once(event, (id: number) => {
        clearTimeout(timer);
        resolveEvent({ id, at: performance.now() });
      });
    });
  }

  const joins: { n: number; admitUs: number; completeUs: number }[] = [];
  const leaves: { n: number; admitUs: number; completeUs: number }[] = [];
  try {
    for (let i = 0; i < peersWanted; i++) {
      const present = peers.length;
      const joined = nextEvent('join');
      const t0 = performance.now();
      const socket = UnixSocket.connect(server.socketPath);
      const { id, at } = await joined;
      const peer: Peer = { id, socket, expect: [], at: 0 };
      // The newcomer: version, its id, the shm fd; each peer's vectors in connection order; its own.
      expect(peer, 0, false);
      expect(peer, id, false);
      expect(peer, -1, true);
      for (const other of peers) {
        expect(peer, other.id, true, SCALE_VECTORS);
        expect(other, id, true, SCALE_VECTORS); // every peer present: 4 fds for the newcomer
      }
      expect(peer, id, true, SCALE_VECTORS);
      peers.push(peer);
      await drain(`join of ${id}`);
      joins.push({ n: present, admitUs: (at - t0) * 1000, completeUs: (performance.now() - t0) * 1000 });
    }
    // Nothing beyond what was expected: give the server a moment, then every socket must be empty.
    await new Promise((r) => setTimeout(r, 20));
    for (const p of peers) {
      const extra = p.socket.receive();
      if (extra !== null) {
        msg.mismatches++;
        msg.firstMismatch ??= `after the joins: peer ${p.id} got an unexpected (${extra.value}) message`;
        if (extra.fd >= 0) native().close(extra.fd);
      }
    }
    const peak = fdCount();
    collect();
    const rssPeak = rssMiB();
    const heapPeak = heapMiB();
    while (peers.length > 0) {
      const leaving = peers.shift()!;
      const present = peers.length + 1;
      const left = nextEvent('leave');
      const t0 = performance.now();
      msg.extraFdsClosed += leaving.socket.extraFdsClosed;
      leaving.socket.close();
      const { id, at } = await left;
      if (id !== leaving.id) throw new Error(`scale: peer ${leaving.id} left but the server reported ${id}`);
      for (const other of peers) expect(other, id, false); // one leave message each, no fd
      await drain(`leave of ${id}`);
      leaves.push({ n: present, admitUs: (at - t0) * 1000, completeUs: (performance.now() - t0) * 1000 });
    }
    await new Promise((r) => setTimeout(r, 20));
    const afterAllLeft = fdCount();
    collect();
    const rssAfter = rssMiB();
    const heapAfter = heapMiB();
    server.close();
    servers.delete(server);
    const afterServerClosed = fdCount();

    const bucketSize = Math.max(1, Math.ceil(peersWanted / 8));
    const bucketize = (xs: { n: number; admitUs: number; completeUs: number }[]): ScaleBucket[] => {
      const out: ScaleBucket[] = [];
      for (let from = 0; from < peersWanted; from += bucketSize) {
        const inB = xs.filter((x) => x.n >= from && x.n < from + bucketSize);
        if (inB.length === 0) continue;
        const meanPeers = inB.reduce((a, x) => a + x.n, 0) / inB.length;
        const complete = stat(inB.map((x) => x.completeUs));
        out.push({
          from,
          to: from + bucketSize - 1,
          meanPeersPresent: meanPeers,
          admitUs: stat(inB.map((x) => x.admitUs)),
          completeUs: complete,
          perPeerCompleteNs: meanPeers > 0 ? (complete.mean * 1000) / meanPeers : NaN,
        });
      }
      return out;
    };
    const joinBuckets = bucketize(joins);
    const leaveBuckets = bucketize(leaves);
    const joinFit = fit(joins, joinBuckets, 'completeUs');
    const leaveFit = fit(leaves, leaveBuckets, 'completeUs');
    const admitFit = fit(joins, joinBuckets, 'admitUs');
    const isLinear = (f: Fit) => Number.isFinite(f.exponent) && f.exponent <= 1.3;
    return {
      peers: peersWanted,
      vectors: SCALE_VECTORS,
      joins: joinBuckets,
      leaves: leaveBuckets,
      fit: { join: joinFit, leave: leaveFit, joinAdmit: admitFit },
      linear: { join: isLinear(joinFit), leave: isLinear(leaveFit) },
      messages: msg,
      fds: {
        beforeServer: fdsBeforeServer,
        baseline,
        peak,
        perPeer: (peak - baseline) / peersWanted,
        afterAllLeft,
        afterServerClosed,
        returnedToBaseline: afterAllLeft === baseline && afterServerClosed === fdsBeforeServer,
      },
      rssMiB: { baseline: rssBase, peak: rssPeak, afterAllLeft: rssAfter },
      heapUsedMiB: { baseline: heapBase, peak: heapPeak, afterAllLeft: heapAfter },
      totalMs: performance.now() - tStart,
    };
  } finally {
    for (const p of peers) p.socket.close();
    if (servers.has(server)) {
      server.close();
      servers.delete(server);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Run

const series: Series[] = [];
const t0 = performance.now();
console.log(
  `doorbell latency: ${MEASURED.toLocaleString('en-US')} measured round trips per path (+${WARMUP} warm-up), ` +
    `placements ${placements.map((p) => p.label).join(' and ')}${TASKSET === null ? ' [UNPINNED: no taskset]' : ''}; ` +
    `C baselines from ${compiler}${QUICK ? ' [--quick]' : ''}${TINY ? ' [--tiny]' : ''}`,
);

// C and Node take turns, so drift in the machine's speed falls on both alike.
const ORDER: ({ kind: 'c'; mode: CMode } | { kind: 'node'; path: WaitPath })[] = [
  { kind: 'c', mode: 'blocking' },
  { kind: 'node', path: 'thread' },
  { kind: 'c', mode: 'epoll' },
  { kind: 'node', path: 'loop' },
  { kind: 'c', mode: 'spin' },
  { kind: 'c', mode: 'spinread' },
  { kind: 'node', path: 'spin' },
  { kind: 'node', path: 'adaptive' },
];
// The adaptive waiter spins before it blocks: on one CPU, the peer that would ring cannot run meanwhile.
const runsIn = (step: (typeof ORDER)[number], placement: Placement) =>
  !(step.kind === 'node' && step.path === 'adaptive' && (placement.ping === placement.pong || TASKSET === null));

const fmtNs = (ns: number): string => {
  if (!Number.isFinite(ns)) return 'n/a';
  if (ns < 1_000) return `${ns.toFixed(0)} ns`;
  if (ns < 1_000_000) return `${(ns / 1_000).toFixed(ns < 10_000 ? 2 : 1)} µs`;
  return `${(ns / 1_000_000).toFixed(2)} ms`;
};

try {
  for (const placement of placements) {
    for (const step of ORDER.filter((x) => runsIn(x, placement))) {
      const s = step.kind === 'c' ? await runC(placement, step.mode) : await runNode(placement, step.path);
      series.push(s);
      console.log(
        `  ${placement.label.padEnd(22)} ${s.label.padEnd(28)} p50 ${fmtNs(s.percentiles.p50).padStart(9)}  ` +
          `p99 ${fmtNs(s.percentiles.p99).padStart(9)}  n=${s.percentiles.count}${s.timeBounded ? ' (time-bounded)' : ''}  ` +
          `${(s.wallMs / 1000).toFixed(1)} s`,
      );
    }
  }
} catch (err) {
  fail((err as Error).message);
}

console.log(`  server scale: ${SCALE_PEERS} peers × ${SCALE_VECTORS} vectors join, then leave ...`);
let scale: ScaleResult;
try {
  scale = await scaleTest(SCALE_PEERS);
} catch (err) {
  fail((err as Error).message);
}

// ---------------------------------------------------------------------------------------------
// Report

interface Ratio {
  placement: Placement['id'];
  path: WaitPath;
  baseline: CMode;
  target: number;
  p50: number;
  p99: number;
  p999: number;
  met: boolean;
}
const find = (placement: string, kind: 'node' | 'c', path: string) =>
  series.find((s) => s.placement === placement && s.kind === kind && s.path === path);
const ratios: Ratio[] = [];
for (const placement of placements) {
  for (const path of ['thread', 'loop', 'spin'] as const) {
    const node = find(placement.id, 'node', path);
    const c = find(placement.id, 'c', TARGETS[path].baseline);
    if (node === undefined || c === undefined) continue;
    const r = (k: 'p50' | 'p99' | 'p999') => node.percentiles[k] / c.percentiles[k];
    ratios.push({
      placement: placement.id,
      path,
      baseline: TARGETS[path].baseline,
      target: TARGETS[path].max,
      p50: r('p50'),
      p99: r('p99'),
      p999: r('p999'),
      met: r('p50') <= TARGETS[path].max,
    });
  }
}
/** The C program a Node path is compared with: the adaptive waiter's is the eventfd spin-read. */
const baselineOf = (path: WaitPath): CMode => (path === 'adaptive' ? 'spinread' : TARGETS[path].baseline);
const ratioFor = (s: Series) =>
  s.kind === 'node' ? ratios.find((r) => r.placement === s.placement && r.path === s.path) : undefined;

// The adaptive waiter against both pure paths it sits between (Node spin and blocking) and their
// C baselines: where its p50 and p99.9 land. Reported; no target.
type AdaptiveBase = 'node/spin' | 'node/thread' | 'c/spinread' | 'c/blocking';
interface AdaptiveComparison {
  placement: Placement['id'];
  p50: number;
  p999: number;
  vs: Partial<Record<AdaptiveBase, { p50: number; p999: number }>>;
}
const adaptive: AdaptiveComparison[] = [];
for (const placement of placements) {
  const a = find(placement.id, 'node', 'adaptive');
  if (a === undefined) continue;
  const vs: AdaptiveComparison['vs'] = {};
  for (const base of ['node/spin', 'node/thread', 'c/spinread', 'c/blocking'] as const) {
    const [kind, path] = base.split('/') as ['node' | 'c', string];
    const b = find(placement.id, kind, path);
    if (b !== undefined)
      vs[base] = { p50: a.percentiles.p50 / b.percentiles.p50, p999: a.percentiles.p999 / b.percentiles.p999 };
  }
  adaptive.push({ placement: placement.id, p50: a.percentiles.p50, p999: a.percentiles.p999, vs });
}

interface Row {
  cells: string[];
}
const HEAD = [
  'placement',
  'path',
  'n',
  'p50 RT',
  'one-way',
  'p99',
  'p99.9',
  'max',
  'vs',
  'p50 ×',
  'target',
  'p99 ×',
  'p99.9 ×',
];
const rows: Row[] = [];
for (const placement of placements) {
  // The shared-memory spin is shown beside the spin path (no system call at all: the floor), its
  // target baseline being the eventfd spin-read.
  const ordered = (['thread', 'loop', 'spin'] as const).flatMap((path) => [
    ...(path === 'spin' ? [find(placement.id, 'c', 'spin')] : []),
    find(placement.id, 'c', TARGETS[path].baseline),
    find(placement.id, 'node', path),
  ]);
  ordered.push(find(placement.id, 'node', 'adaptive'));
  for (const s of ordered) {
    if (s === undefined) continue;
    const r = ratioFor(s);
    const p = s.percentiles;
    const a = s.path === 'adaptive' ? adaptive.find((x) => x.placement === s.placement)?.vs['c/spinread'] : undefined;
    if (a !== undefined) {
      rows.push({
        cells: [
          placement.label,
          s.label,
          `${p.count}`,
          fmtNs(p.p50),
          fmtNs(s.oneWayP50),
          fmtNs(p.p99),
          fmtNs(p.p999),
          fmtNs(p.max),
          'C spin-read',
          a.p50.toFixed(2),
          '(no target)',
          (p.p99 / find(placement.id, 'c', 'spinread')!.percentiles.p99).toFixed(2),
          a.p999.toFixed(2),
        ],
      });
      continue;
    }
    rows.push({
      cells: [
        placement.label,
        s.label,
        `${p.count}${s.timeBounded ? '*' : ''}`,
        fmtNs(p.p50),
        fmtNs(s.oneWayP50),
        fmtNs(p.p99),
        fmtNs(p.p999),
        fmtNs(p.max),
        r ? C_LABEL[r.baseline].replace('C eventfd, ', 'C ').replace('C eventfd + ', 'C ') : 'baseline',
        r ? `${r.p50.toFixed(2)}` : '1.00',
        r ? `≤ ${r.target} ${r.met ? 'met' : 'NOT met'}` : '',
        r ? r.p99.toFixed(2) : '1.00',
        r ? r.p999.toFixed(2) : '1.00',
      ],
    });
  }
}

function printTable(header: string[], cells: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) =>
    c
      .map((s, i) => (i < 2 || i === 8 || i === 10 ? s.padEnd(widths[i]) : s.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  console.log();
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const c of cells) console.log(line(c));
}
printTable(
  HEAD,
  rows.map((r) => r.cells),
);
console.log(
  'RT = round trip (ring → peer wakes → rings back → we wake); one-way = p50 RT / 2; ratios are Node ÷ its C baseline, same placement.',
);
if (series.some((s) => s.timeBounded)) {
  console.log(
    `* time-bounded: stopped after ${SPIN_SAME_CPU_MS} ms (same-CPU spin) or ${DEADLINE_MS} ms before ${TOTAL} round trips; ` +
      'two spinners on one CPU hand over only when the scheduler preempts one, so those rows measure time slices.',
  );
}

// Predictability: each Node path's tail over its median beside its C baseline's, and what the
// runtime did inside the measured window (garbage collections, JIT deoptimisations).
const predictability = series
  .filter((s) => s.kind === 'node')
  .map((s) => {
    const base = baselineOf(s.path as WaitPath);
    const c = find(s.placement, 'c', base);
    const spread = (x: Series) => x.percentiles.p999 / x.percentiles.p50;
    return {
      placement: s.placement,
      path: s.path,
      baseline: base,
      nodeSpread: spread(s),
      cSpread: c ? spread(c) : NaN,
      gcs: s.gcs!.ping + s.gcs!.pong,
      deopts: s.deopts!.ping + s.deopts!.pong,
      deoptSamples: s.deopts!.samples,
    };
  });
const predictabilityLine = (x: (typeof predictability)[number]) =>
  `${placements.find((p) => p.id === x.placement)!.label}, ${PATH_LABEL[x.path as WaitPath]}: p99.9/p50 ${x.nodeSpread.toFixed(1)} ` +
  `(${C_LABEL[x.baseline]}: ${x.cSpread.toFixed(1)}); in the window ${x.gcs} GCs, ${x.deopts < 0 ? 'deoptimisations not counted' : `${x.deopts} deoptimisations`}` +
  (x.deoptSamples.length > 0 ? ` (${x.deoptSamples.slice(0, 2).join('; ')})` : '');
console.log('\npredictability (ping + pong, measured window):');
for (const x of predictability) console.log(`  ${predictabilityLine(x)}`);

// Where each thread path's gap to C goes: a round trip is two wake-ups and two answers, and pong
// timed its answers (wait returned → ring made), so 2 × (Node answer − C answer) is what our code
// adds between waking and ringing; the rest of the gap is in the wake-ups (the kernel waking a
// thread and the process being switched in, its caches and TLB refilled).
const breakdown = series
  .filter((s) => s.kind === 'node' && s.answerP50 !== undefined)
  .flatMap((s) => {
    const base = baselineOf(s.path as WaitPath);
    const c = find(s.placement, 'c', base);
    if (c?.answerP50 === undefined || c.timeBounded || s.timeBounded) return [];
    const gap = s.percentiles.p50 - c.percentiles.p50;
    const answers = 2 * (s.answerP50! - c.answerP50);
    return [
      {
        placement: s.placement,
        path: s.path,
        baseline: base,
        rtGapNs: gap,
        nodeAnswerNs: s.answerP50!,
        cAnswerNs: c.answerP50,
        answersNs: answers,
        wakeupsNs: gap - answers,
      },
    ];
  });
const breakdownLine = (x: (typeof breakdown)[number]) =>
  `${placements.find((p) => p.id === x.placement)!.label}, ${PATH_LABEL[x.path as WaitPath]}: RT p50 ${fmtNs(x.rtGapNs)} over ${C_LABEL[x.baseline]}; ` +
  `answer (woken → rung back) ${fmtNs(x.nodeAnswerNs)} vs ${fmtNs(x.cAnswerNs)}, so ${fmtNs(x.answersNs)} per RT in our code, ` +
  `${fmtNs(x.wakeupsNs)} in the two wake-ups`;
console.log('\nwhere the gap goes (p50; RT ≈ 2 × (wake-up + answer)):');
for (const x of breakdown) console.log(`  ${breakdownLine(x)}`);

const adaptiveLine = (x: AdaptiveComparison): string =>
  `adaptive wait, ${placements.find((p) => p.id === x.placement)!.label}: p50 ${fmtNs(x.p50)}, p99.9 ${fmtNs(x.p999)}; ` +
  (Object.entries(x.vs) as [AdaptiveBase, { p50: number; p999: number }][])
    .map(
      ([base, r]) =>
        `${r.p50.toFixed(2)}× / ${r.p999.toFixed(2)}× ${base === 'node/spin' ? 'Node busy poll' : base === 'node/thread' ? 'Node blocking' : C_LABEL[base.slice(2) as CMode]}`,
    )
    .join(', ') +
  ' (p50 / p99.9)';
for (const x of adaptive) console.log(adaptiveLine(x));

const sc = scale!;
console.log();
console.log(
  `server scale: ${sc.peers} peers × ${sc.vectors} vectors, joins then leaves, in ${(sc.totalMs / 1000).toFixed(1)} s`,
);
const scaleHead = [
  'peers present',
  'join: admit p50',
  'join: all notified mean',
  'per peer',
  'leave: all notified mean',
  'per peer',
];
const scaleCells = sc.joins.map((j) => {
  const l = sc.leaves.find((x) => x.from === j.from);
  return [
    `${j.from}–${j.to}`,
    `${j.admitUs.p50.toFixed(0)} µs`,
    `${j.completeUs.mean.toFixed(0)} µs`,
    Number.isFinite(j.perPeerCompleteNs) ? fmtNs(j.perPeerCompleteNs) : '—',
    l ? `${l.completeUs.mean.toFixed(0)} µs` : '—',
    l && Number.isFinite(l.perPeerCompleteNs) ? fmtNs(l.perPeerCompleteNs) : '—',
  ];
});
{
  const widths = scaleHead.map((h, i) => Math.max(h.length, ...scaleCells.map((c) => c[i].length)));
  console.log(scaleHead.map((h, i) => (i === 0 ? h.padEnd(widths[i]) : h.padStart(widths[i]))).join('  '));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const c of scaleCells)
    console.log(c.map((s, i) => (i === 0 ? s.padEnd(widths[i]) : s.padStart(widths[i]))).join('  '));
}
const SCALE_LEGEND =
  "admit = connect → the server's join event (it has sent what the sockets took; the rest waits in its queue, " +
  'flushed when the socket becomes writable); all notified = until every peer has read, checked and closed all it was owed (the peers are read here, ' +
  'so this includes their reads); per peer = all notified ÷ peers present.';
const memoryLine = (r: ScaleResult) =>
  `RSS ${r.rssMiB.baseline.toFixed(0)} → ${r.rssMiB.peak.toFixed(0)} (all joined) → ${r.rssMiB.afterAllLeft.toFixed(0)} MiB (all left); ` +
  `JS heap used ${r.heapUsedMiB.baseline.toFixed(1)} → ${r.heapUsedMiB.peak.toFixed(1)} → ${r.heapUsedMiB.afterAllLeft.toFixed(1)} MiB` +
  (typeof gc === 'function' ? ' (after full GCs)' : ' (no --expose-gc: without forced GCs)');
const fitLine = (name: string, f: Fit, linear: boolean) =>
  `${name}: t ≈ ${f.interceptUs.toFixed(0)} µs + ${f.slopeNsPerPeer.toFixed(0)} ns × peers present (R² ${f.r2.toFixed(2)}), ` +
  `growth exponent ${Number.isFinite(f.exponent) ? f.exponent.toFixed(2) : 'n/a'} → ${linear ? 'linear' : 'NOT linear'}`;
console.log(SCALE_LEGEND);
console.log(fitLine('join, until every peer has its 4 fds', sc.fit.join, sc.linear.join));
console.log(fitLine('join, server admit alone', sc.fit.joinAdmit, sc.fit.joinAdmit.exponent <= 1.3));
console.log(fitLine('leave, until every peer was told', sc.fit.leave, sc.linear.leave));
console.log(
  `notifications: ${sc.messages.received} messages, ${sc.messages.fdsReceived} fds received and closed, ` +
    `${sc.messages.mismatches} wrong${sc.messages.firstMismatch ? ` (first: ${sc.messages.firstMismatch})` : ''}`,
);
console.log(
  `fds: ${sc.fds.baseline} with the server up, peak ${sc.fds.peak} (${sc.fds.perPeer.toFixed(2)} per peer), ` +
    `${sc.fds.afterAllLeft} after all left, ${sc.fds.afterServerClosed} after close (${sc.fds.beforeServer} before) → ` +
    `${sc.fds.returnedToBaseline ? 'back to baseline' : 'LEAK'}`,
);
console.log(`memory: ${memoryLine(sc)}`);

const leftoverShm = readdirSync('/dev/shm').filter((f) => f.startsWith(`ivshmem-bench-latency-${process.pid}-`));
if (leftoverShm.length > 0) notes.push(`left in /dev/shm: ${leftoverShm.join(', ')}`);
const checksPassed =
  sc.messages.mismatches === 0 &&
  sc.messages.extraFdsClosed === 0 &&
  sc.fds.returnedToBaseline &&
  leftoverShm.length === 0;

mkdirSync(RESULTS, { recursive: true });
const meta = {
  date: new Date().toISOString(),
  node: process.version,
  v8: process.versions.v8,
  cpu: cpus()[0]?.model ?? 'unknown',
  cpuCount,
  platform: `${process.platform}/${process.arch}`,
  quick: QUICK,
  tiny: TINY,
  compiler,
  taskset: TASKSET,
};
const jsonFile = join(RESULTS, 'latency.json');
writeFileSync(
  jsonFile,
  JSON.stringify(
    {
      benchmark: 'doorbell latency between two processes; ivshmem server scale',
      ...meta,
      roundTrips: {
        measured: MEASURED,
        total: TOTAL,
        warmup: WARMUP,
        deadlineMs: DEADLINE_MS,
        spinSameCpuMs: SPIN_SAME_CPU_MS,
      },
      units:
        'ns (round trip); hdr histograms with 3 significant digits; curve = [percentile, ns]; buckets = [highest equivalent ns, count]',
      placements,
      series,
      ratios,
      adaptive,
      predictability,
      breakdown,
      scale: sc,
      checks: checksPassed ? 'passed' : 'FAILED',
      notes,
      totalMs: performance.now() - t0,
    },
    null,
    1,
  ) + '\n',
);

const md: string[] = [];
md.push('# Doorbell latency', '');
md.push(
  `${meta.date} · Node ${meta.node} · ${meta.cpu} × ${cpuCount} · ${compiler} · ${MEASURED.toLocaleString('en-US')} measured round trips per path (after ${WARMUP.toLocaleString('en-US')} warm-up round trips, discarded)` +
    `${QUICK ? ' · --quick' : ''}${TINY ? ' · --tiny' : ''}${TASKSET === null ? ' · **unpinned (no taskset)**' : ''}`,
  '',
);
md.push(
  `| ${HEAD.join(' | ')} |`,
  `|${HEAD.map((_, i) => (i < 2 || i === 8 || i === 10 ? '---' : '---:')).join('|')}|`,
);
for (const r of rows) md.push(`| ${r.cells.join(' | ')} |`);
md.push(
  '',
  'RT = round trip; one-way = p50 RT / 2; × = Node ÷ its C baseline in the same placement (reported, not asserted).',
);
for (const x of adaptive) md.push('', `- ${adaptiveLine(x)}`);
md.push('', '## Predictability (ping + pong, measured window)', '');
for (const x of predictability) md.push(`- ${predictabilityLine(x)}`);
md.push('', '## Where the gap goes (p50; a round trip is two wake-ups and two answers)', '');
for (const x of breakdown) md.push(`- ${breakdownLine(x)}`);
if (series.some((s) => s.timeBounded))
  md.push(
    `\\* time-bounded (same-CPU spin: ${SPIN_SAME_CPU_MS} ms): two spinners on one CPU hand over only when the scheduler preempts one.`,
  );
md.push('', `## Server scale: ${sc.peers} peers × ${sc.vectors} vectors`, '');
md.push(
  `| ${scaleHead.join(' | ')} |`,
  `|---|${scaleHead
    .slice(1)
    .map(() => '---:')
    .join('|')}|`,
);
for (const c of scaleCells) md.push(`| ${c.join(' | ')} |`);
md.push('', SCALE_LEGEND, '');
md.push(
  `- ${fitLine('join, until every peer has its 4 fds', sc.fit.join, sc.linear.join)}`,
  `- ${fitLine('join, server admit alone', sc.fit.joinAdmit, sc.fit.joinAdmit.exponent <= 1.3)}`,
  `- ${fitLine('leave, until every peer was told', sc.fit.leave, sc.linear.leave)}`,
);
md.push(
  `- notifications: ${sc.messages.received} messages checked, ${sc.messages.fdsReceived} fds received and closed, ${sc.messages.mismatches} wrong`,
);
md.push(
  `- fds: ${sc.fds.baseline} → peak ${sc.fds.peak} → ${sc.fds.afterAllLeft} after all left (${sc.fds.returnedToBaseline ? 'back to baseline' : '**leak**'})`,
);
md.push(`- memory: ${memoryLine(sc)}`);
for (const note of notes) md.push(`- note: ${note}`);
md.push('', '![latency distribution](latency.svg)', '');
const mdFile = join(RESULTS, 'latency.md');
writeFileSync(mdFile, md.join('\n'));

const svgFile = join(RESULTS, 'latency.svg');
writeFileSync(svgFile, renderSvg(series, placements));

console.log(`\nchecks: ${checksPassed ? 'passed' : 'FAILED'}${notes.length ? `; notes: ${notes.join(' ')}` : ''}`);
console.log(`wrote ${jsonFile}, ${mdFile}, ${svgFile} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
cleanup();
if (!checksPassed) process.exit(1);

// ---------------------------------------------------------------------------------------------
// SVG: one panel per placement, percentile curves on log-log axes ("nines" × ns), hand-written.

function renderSvg(all: Series[], where: Placement[]): string {
  const W = 1240;
  const H = 590;
  const gap = 110;
  const panelW = (W - 90 - 50 - gap * (where.length - 1)) / Math.max(where.length, 1);
  const top = 96;
  const plotH = 360;
  // Each Node path in the colour of its C baseline (the busy poll's is the eventfd spin-read; the
  // shared-memory spin, the floor, has a colour of its own).
  const colors: Record<string, string> = {
    thread: '#2ca02c',
    blocking: '#2ca02c',
    loop: '#1f77b4',
    epoll: '#1f77b4',
    spin: '#d62728',
    spinread: '#d62728',
    adaptive: '#ff7f0e',
  };
  const color = (s: Series) => (s.kind === 'c' && s.path === 'spin' ? '#9467bd' : colors[s.path]);
  const values = all.flatMap((s) => s.curve.map((p) => p[1])).filter((v) => v > 0);
  const yMin = Math.floor(Math.log10(Math.min(...values, 1e3)));
  const yMax = Math.ceil(Math.log10(Math.max(...values, 1e4)));
  const xMax = Math.max(2, Math.ceil(Math.max(...all.map((s) => Math.log10(Math.max(s.percentiles.count, 10))))));
  const decade = (d: number) =>
    ['1 ns', '10 ns', '100 ns', '1 µs', '10 µs', '100 µs', '1 ms', '10 ms', '100 ms', '1 s', '10 s', '100 s'][d] ??
    `1e${d} ns`;
  const esc = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`,
  );
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(
    `<text x="${W / 2}" y="26" text-anchor="middle" font-size="16" font-weight="bold">Doorbell round-trip latency by percentile (${esc(meta.date.slice(0, 10))}, ${MEASURED.toLocaleString('en-US')} RTs per path${QUICK ? ', --quick' : ''}${TINY ? ', --tiny' : ''})</text>`,
  );
  out.push(
    `<text x="${W / 2}" y="48" text-anchor="middle" fill="#555">solid: Node (ivshmem-ts devices, two processes) · dashed: C baseline · log scales; lower is better</text>`,
  );
  where.forEach((placement, k) => {
    const x0 = 90 + k * (panelW + gap);
    const X = (nines: number) => x0 + (Math.min(nines, xMax) / xMax) * panelW;
    const Y = (ns: number) => top + plotH - ((Math.log10(Math.max(ns, 10 ** yMin)) - yMin) / (yMax - yMin)) * plotH;
    out.push(`<g>`);
    out.push(
      `<text x="${x0 + panelW / 2}" y="${top - 10}" text-anchor="middle" font-size="14" font-weight="bold">${esc(placement.label)}</text>`,
    );
    out.push(`<rect x="${x0}" y="${top}" width="${panelW}" height="${plotH}" fill="none" stroke="#333"/>`);
    for (let d = yMin; d <= yMax; d++) {
      const y = Y(10 ** d);
      out.push(`<line x1="${x0}" y1="${y.toFixed(1)}" x2="${x0 + panelW}" y2="${y.toFixed(1)}" stroke="#ddd"/>`);
      out.push(`<text x="${x0 - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end">${decade(d)}</text>`);
    }
    for (let nines = 0; nines <= xMax; nines++) {
      const x = X(nines);
      const label = nines === 0 ? '0%' : `${(100 * (1 - 10 ** -nines)).toFixed(Math.max(0, nines - 2))}%`;
      out.push(`<line x1="${x.toFixed(1)}" y1="${top}" x2="${x.toFixed(1)}" y2="${top + plotH}" stroke="#ddd"/>`);
      out.push(`<text x="${x.toFixed(1)}" y="${top + plotH + 16}" text-anchor="middle">${label}</text>`);
    }
    out.push(`<text x="${x0 + panelW / 2}" y="${top + plotH + 34}" text-anchor="middle" fill="#555">percentile</text>`);
    out.push(
      `<text transform="translate(${x0 - 58},${top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#555">round trip</text>`,
    );
    for (const s of all.filter((x) => x.placement === placement.id)) {
      const pts = s.curve
        .map(([p, v]) => `${X(p >= 100 ? xMax : -Math.log10(1 - p / 100)).toFixed(1)},${Y(v).toFixed(1)}`)
        .join(' ');
      const dash = s.kind === 'c' ? ' stroke-dasharray="6 4"' : '';
      out.push(
        `<polyline data-series="${esc(s.id)}" fill="none" stroke="${color(s)}" stroke-width="${s.kind === 'c' ? 1.5 : 2.2}"${dash} points="${pts}"/>`,
      );
    }
    out.push(`</g>`);
  });
  // Legend
  // Legend: a column per wait path, Node above its C baseline.
  const legend: [string, string, boolean][] = [
    [PATH_LABEL.thread, colors.thread, false],
    [PATH_LABEL.loop, colors.loop, false],
    [PATH_LABEL.spin, colors.spin, false],
    [C_LABEL.blocking, colors.blocking, true],
    [C_LABEL.epoll, colors.epoll, true],
    [C_LABEL.spinread, colors.spinread, true],
    [PATH_LABEL.adaptive, colors.adaptive, false],
    ['', '', false],
    [C_LABEL.spin, '#9467bd', true],
  ];
  const ly = top + plotH + 62;
  legend.forEach(([label, stroke, dashed], i) => {
    if (label === '') return; // a gap in the grid
    const x = 90 + (i % 3) * 370;
    const y = ly + Math.floor(i / 3) * 22;
    out.push(
      `<line x1="${x}" y1="${y}" x2="${x + 36}" y2="${y}" stroke="${stroke}" stroke-width="${dashed ? 1.5 : 2.2}"${dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
    );
    out.push(`<text x="${x + 44}" y="${y + 4}">${esc(label)}</text>`);
  });
  if (all.some((s) => s.timeBounded)) {
    out.push(
      `<text x="90" y="${ly + 56}" fill="#555">Same-CPU spin curves are time-bounded runs: two spinners on one CPU hand over only when the scheduler preempts one.</text>`,
    );
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
