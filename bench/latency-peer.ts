// One end of the doorbell latency benchmark (bench/latency.bench.ts starts two of these, each
// pinned with taskset). Not a benchmark itself: scripts/run-bench.mjs only runs *.bench.js.
//
// Each end is an IvshmemDevice (doorbell mode, WebAssembly core) joined to the orchestrator's
// IvshmemServer, with MSI-X enabled and its vector unmasked, as a guest driver would leave it.
// A round trip: ping rings pong's vector 0 (a BAR0 doorbell write → eventfd), pong's wait path
// sees its eventfd, fireVector(0) → the core sends MSI-X → pong's transport.sendMsi rings ping's
// vector 0 from inside the callback → ping's wait path → fireVector → sendMsi ends the round trip.
// Wait paths:
//   loop    vectorWait 'loop': the device watches its vectors on the main event loop (uv_poll);
//   thread  a worker thread creates the device with vectorWait 'manual' and loops on a
//           blocking waiter's waitOnce() (read(2) on its one vector, on the thread), then fireVector;
//   spin    the same with a spinning waiter (non-blocking reads in a loop);
//   adaptive  the same with an adaptive waiter (a budget of non-blocking reads, then poll(2)).
// Shared memory (BAR2, from the server) carries the handshake: pong says it is ready (it knows
// ping's routes, so its answers cannot be dropped), and ping says stop before its last ring.
//
// Usage: node out/bench/latency-peer.js '<json PeerConfig>'; prints one JSON line (PeerResult).
import { readFileSync, statSync } from 'node:fs';
import { GCProfiler } from 'node:v8';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { native } from '../src/os/binding.js';
import hdr from 'hdr-histogram-js';
import { REG_DOORBELL as DOORBELL } from '../src/core/abi.js';
import { IvshmemDevice } from '../src/device/device.js';
import { createWaiter } from '../src/os/waiter.js';
import { enableMsix, programVector } from '../test/support/device-harness.js';

export type WaitPath = 'loop' | 'thread' | 'spin' | 'adaptive';

export interface PeerConfig {
  role: 'ping' | 'pong';
  path: WaitPath;
  socket: string;
  /** Round trips to make (ping), warm-up included. */
  total: number;
  /** The first `warmup` round trips are left out (a tenth of those made, if the deadline came first). */
  warmup: number;
  /** Ping stops measuring after this long, even if `total` was not reached. */
  deadlineMs: number;
  /** Give up when nothing happens for this long (a lost doorbell, a dead peer). */
  idleTimeoutMs: number;
  /** Where V8 writes this process's deoptimisations (the orchestrator starts us with --trace-deopt
   *  --redirect-code-traces-to=it); absent: not counted. */
  deoptLog?: string;
}

export interface PeerResult {
  role: 'ping' | 'pong';
  path: WaitPath;
  id: number;
  /** ping: round trips made (warm-up included); pong: round trips answered. */
  done: number;
  /** ping: the first `warmup` round trips, not in the histogram. */
  warmup: number;
  /** ping: hdr histogram of the measured round trips (ns), compressed base64. */
  histogram: string;
  /** ping: wall time of the measured round trips, ms. */
  elapsedMs: number;
  /** Garbage collections in this process (thread) while the measured round trips ran: those after
   *  the first `warmup` (answers, for pong). The target is 0 on every path. */
  gcs: number;
  /** JIT deoptimisations in this process over the same window (-1: not counted), and the first
   *  few of them (kind, reason, function). */
  deopts: number;
  deoptSamples: string[];
  /** Eventfd reads that found more than one signal (coalesced doorbells): must be 0. */
  coalesced: number;
  msi: number;
  counters: ReturnType<IvshmemDevice['counters']>;
  /** ping: the first 100 round trips over 200 µs, warm-up included: [index, ns]. */
  stalls?: [number, number][];
  /** pong on a thread path: median ns from its wait returning to its ring back having been made
   *  (fireVector → sendMsi → doorbell write), over every 16th answer after the warm-up. */
  answerP50?: number;
}

const VECTORS = 1;
// Words of BAR2 used for the handshake.
const PONG_READY = 0;
const STOP = 16;

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A device on the server, set up as a guest driver would: memory + bus master, MSI-X on, vector unmasked. */
async function join(
  cfg: PeerConfig,
  onMsi: { fn: (vector: number) => void },
  vectorWait: 'loop' | 'manual',
): Promise<{ device: IvshmemDevice; words: Int32Array; other: number }> {
  const device = await IvshmemDevice.create({
    mode: 'doorbell',
    vectors: VECTORS,
    server: cfg.socket,
    vectorWait,
    setupTimeoutMs: 10_000,
    transport: { setIrqLevel() {}, sendMsi: (_address, _data, vector) => onMsi.fn(vector) },
  });
  enableMsix(device);
  for (let v = 0; v < VECTORS; v++) programVector(device, v, 0xfee00000, 0x40 + v, false);
  // Our own vectors arrive after setup, the other end's when it joins: wait for both.
  const end = Date.now() + cfg.idleTimeoutMs;
  let other = -1;
  for (;;) {
    const conn = device.connection!;
    for (const [peer, fds] of conn.peers) if (peer !== device.id && fds.length === VECTORS) other = peer;
    if (other >= 0 && device.ownVectorFds.length === VECTORS && device.peerVectors(other) === VECTORS) break;
    if (Date.now() > end) throw new Error(`${cfg.role}: the other end did not join within ${cfg.idleTimeoutMs} ms`);
    await tick(1);
  }
  // Ping rings only once pong says it is ready (pong does, once its handlers are in place).
  const words = new Int32Array(device.sharedMemory.buffer, 0, 64);
  if (cfg.role === 'ping') {
    while (Atomics.load(words, PONG_READY) !== 1) {
      if (Date.now() > end) throw new Error('ping: pong never said it was ready');
      await tick(1);
    }
  }
  return { device, words, other };
}

function histogramOf(samples: Float64Array, from: number, to: number): string {
  const h = hdr.build({
    bitBucketSize: 64,
    lowestDiscernibleValue: 1,
    highestTrackableValue: 1e11,
    numberOfSignificantValueDigits: 3,
  });
  for (let i = from; i < to; i++) h.recordValue(Math.max(1, Math.round(samples[i])));
  const encoded = hdr.encodeIntoCompressedBase64(h);
  h.destroy();
  return encoded;
}

// The measured window's garbage collections, as V8 records them (synchronously: a blocked
// event loop would never deliver a PerformanceObserver's entries), and its deoptimisations, as
// V8 appends them to the trace file (one "[bailout (kind: ..., reason: ...): ..." line each, every
// thread of the process). Started when `done` reaches the warm-up, by a check each round trip
// costs one comparison.
class MeasuredWindow {
  readonly #profiler = new GCProfiler();
  readonly #deoptLog: string | undefined;
  #started = false;
  #logAt = 0;

  constructor(deoptLog: string | undefined) {
    this.#deoptLog = deoptLog;
  }

  at(done: number, warmup: number): void {
    if (done === warmup && !this.#started) {
      this.#started = true;
      this.#profiler.start();
      this.#logAt = this.#logSize();
    }
  }

  #logSize(): number {
    try {
      return statSync(this.#deoptLog!).size;
    } catch {
      return 0; // nothing deoptimised yet: V8 creates the file on the first one
    }
  }

  /** Ends the window: its GC count, deoptimisation count and the first few deoptimisations. */
  end(): { gcs: number; deopts: number; deoptSamples: string[] } {
    const gcs = this.#started ? (this.#profiler.stop()?.statistics.length ?? 0) : 0;
    if (this.#deoptLog === undefined) return { gcs, deopts: -1, deoptSamples: [] };
    let lines: string[] = [];
    if (this.#started) {
      try {
        lines = readFileSync(this.#deoptLog)
          .subarray(this.#logAt)
          .toString('utf8')
          .split('\n')
          .filter((l) => l.startsWith('[bailout'));
      } catch {
        // no file: no deoptimisation at all
      }
    }
    const sample = (l: string) =>
      /^\[bailout \(kind: ([^,]+), reason: ([^)]*)\).*?<JSFunction ?([^ >]*)/.exec(l)?.slice(1).join(', ') ??
      l.slice(0, 120);
    return { gcs, deopts: lines.length, deoptSamples: lines.slice(0, 5).map(sample) };
  }
}

// The round trips are timed with the addon's CLOCK_MONOTONIC written into this array (ns): no
// allocation per sample, where performance.now() allocates a heap number per call in Node 20
// (about one scavenge every 60,000 calls, each a millisecond-long stall inside the window).
const clock = new Float64Array(2);
const stamp = (slot: 0 | 1): number => {
  native().monotonicNs(clock, slot);
  return clock[slot];
};

type WindowFigures = ReturnType<MeasuredWindow['end']>;

function pingResult(
  cfg: PeerConfig,
  device: IvshmemDevice,
  samples: Float64Array,
  done: number,
  coalesced: number,
  msi: number,
  w: WindowFigures,
): PeerResult {
  const warmup = done >= cfg.total ? cfg.warmup : Math.min(cfg.warmup, Math.floor(done / 10));
  // Round trips over 200 µs, warm-up included (index, ns): where in the run the stalls fell.
  const stalls: [number, number][] = [];
  for (let i = 0; i < done && stalls.length < 100; i++)
    if (samples[i] > 200_000) stalls.push([i, Math.round(samples[i])]);
  let elapsed = 0;
  for (let i = warmup; i < done; i++) elapsed += samples[i];
  return {
    role: 'ping',
    path: cfg.path,
    id: device.id,
    done,
    warmup,
    histogram: histogramOf(samples, warmup, done),
    elapsedMs: elapsed / 1e6,
    ...w,
    coalesced,
    msi,
    counters: device.counters(),
    stalls,
  };
}

// ---- event loop path: both ends on their main thread's event loop ----

function runLoop(cfg: PeerConfig): Promise<PeerResult> {
  return new Promise((resolve, reject) => {
    const onMsi = { fn: (_v: number) => {} };
    join(cfg, onMsi, 'loop').then(({ device, words, other }) => {
      const ring = (other << 16) | 0;
      let done = 0;
      let msi = 0;
      const gc = new MeasuredWindow(cfg.deoptLog);
      let lastProgress = Date.now();
      let seen = 0;
      const watchdog = setInterval(() => {
        if (done !== seen) {
          seen = done;
          lastProgress = Date.now();
        } else if (Date.now() - lastProgress > cfg.idleTimeoutMs) {
          clearInterval(watchdog);
          reject(new Error(`${cfg.role} (loop): no doorbell for ${cfg.idleTimeoutMs} ms after ${done} round trips`));
        }
      }, 200);
      const finish = (result: () => PeerResult) => {
        clearInterval(watchdog);
        setImmediate(() => {
          try {
            const r = result();
            device.close();
            resolve(r);
          } catch (err) {
            reject(err);
          }
        });
      };
      if (cfg.role === 'pong') {
        let stopped = false;
        Atomics.store(words, PONG_READY, 1); // the handler below is in place before anything can fire
        onMsi.fn = () => {
          msi++;
          if (stopped) return;
          if (Atomics.load(words, STOP) === 1) {
            stopped = true;
            const w = gc.end();
            finish(() => ({
              role: 'pong',
              path: cfg.path,
              id: device.id,
              done,
              warmup: 0,
              histogram: '',
              elapsedMs: 0,
              ...w,
              coalesced: 0,
              msi,
              counters: device.counters(),
            }));
            return;
          }
          gc.at(++done, cfg.warmup);
          device.mmioWrite(0, DOORBELL, 4, ring);
        };
        return;
      }
      const samples = new Float64Array(cfg.total);
      const total = cfg.total;
      const deadline = stamp(0) + cfg.deadlineMs * 1e6;
      let t0 = 0;
      onMsi.fn = () => {
        const t1 = stamp(1);
        msi++;
        samples[done++] = t1 - t0;
        gc.at(done, cfg.warmup);
        if (done >= total || t1 > deadline) {
          const w = gc.end();
          Atomics.store(words, STOP, 1);
          device.mmioWrite(0, DOORBELL, 4, ring);
          finish(() => pingResult(cfg, device, samples, done, 0, msi, w));
          return;
        }
        t0 = stamp(0);
        device.mmioWrite(0, DOORBELL, 4, ring);
      };
      t0 = stamp(0);
      device.mmioWrite(0, DOORBELL, 4, ring);
    }, reject);
  });
}

// ---- dedicated thread paths (blocking, spin): run inside a worker ----

async function runThread(cfg: PeerConfig): Promise<PeerResult> {
  let msi = 0;
  let answer = -1; // pong: the doorbell value that rings ping back, from inside sendMsi
  const onMsi = {
    fn: (_v: number) => {
      msi++;
      if (answer >= 0) device.mmioWrite(0, DOORBELL, 4, answer);
    },
  };
  const { device, words, other } = await join(cfg, onMsi, 'manual');
  const waiter = createWaiter(
    cfg.path === 'thread' ? 'blocking' : cfg.path === 'spin' ? 'spin' : 'adaptive',
    device.ownVectorFds,
  );
  // Blocking and adaptive: no budget, so each wait is the one read(2) (or the spin, then poll(2));
  // a hung pair is killed by the orchestrator. Spin: rounds of reads per native call.
  const budget = cfg.path === 'spin' ? 10_000 : undefined;
  const ring = (other << 16) | 0;
  let coalesced = 0;
  let done = 0;
  const gc = new MeasuredWindow(cfg.deoptLog);
  try {
    if (cfg.role === 'pong') {
      answer = ring;
      Atomics.store(words, PONG_READY, 1);
      let last = stamp(0) / 1e6;
      // Every 16th answer after the warm-up is timed (as the C pong does): two clock reads each.
      const answers = new Float64Array(Math.ceil(cfg.total / 16) + 1);
      let timed = 0;
      for (;;) {
        const index = waiter.waitOnce(budget);
        if (index < 0) {
          if (stamp(1) / 1e6 - last > cfg.idleTimeoutMs)
            throw new Error(`pong (${cfg.path}): no doorbell for ${cfg.idleTimeoutMs} ms after ${done} round trips`);
          continue;
        }
        if (Atomics.load(words, STOP) === 1) break;
        if (waiter.lastCount !== 1) coalesced++;
        const sampled = (done & 15) === 0 && done >= cfg.warmup && timed < answers.length;
        const a = sampled ? stamp(0) : 0;
        device.fireVector(index); // → sendMsi → rings ping
        if (sampled) answers[timed++] = stamp(1) - a;
        gc.at(++done, cfg.warmup);
        last = stamp(0) / 1e6;
      }
      const window = gc.end();
      const answerP50 = timed > 0 ? answers.subarray(0, timed).sort()[Math.floor((timed - 1) / 2)] : 0;
      return {
        role: 'pong',
        path: cfg.path,
        id: device.id,
        done,
        warmup: 0,
        histogram: '',
        elapsedMs: 0,
        ...window,
        coalesced,
        msi,
        counters: device.counters(),
        answerP50,
      };
    }
    const samples = new Float64Array(cfg.total);
    const total = cfg.total;
    const idle = cfg.idleTimeoutMs;
    const deadline = stamp(0) + cfg.deadlineMs * 1e6;
    while (done < total) {
      const t0 = stamp(0);
      device.mmioWrite(0, DOORBELL, 4, ring);
      let index: number;
      while ((index = waiter.waitOnce(budget)) < 0) {
        if (stamp(1) - t0 > idle * 1e6)
          throw new Error(`ping (${cfg.path}): no answer for ${idle} ms after ${done} round trips`);
      }
      if (waiter.lastCount !== 1) coalesced++;
      device.fireVector(index);
      const t1 = stamp(1);
      samples[done++] = t1 - t0;
      gc.at(done, cfg.warmup);
      if (t1 > deadline) break;
    }
    const w = gc.end();
    Atomics.store(words, STOP, 1);
    device.mmioWrite(0, DOORBELL, 4, ring);
    return pingResult(cfg, device, samples, done, coalesced, msi, w);
  } finally {
    waiter.close();
    device.close();
  }
}

// ---- entry ----

if (isMainThread) {
  const fail = (err: unknown) => {
    process.stderr.write(`latency-peer: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  };
  const print = (r: PeerResult) => {
    process.stdout.write(JSON.stringify(r) + '\n');
    process.exit(0);
  };
  let cfg: PeerConfig;
  try {
    cfg = JSON.parse(process.argv[2] ?? '') as PeerConfig;
  } catch {
    fail(new Error("usage: latency-peer '<json config>' (started by latency.bench.js)"));
  }
  if (cfg!.path === 'loop') runLoop(cfg!).then(print, fail);
  else {
    const worker = new Worker(new URL(import.meta.url), { workerData: cfg! });
    // The worker has closed its device when it posts the result; exiting ends it.
    worker.on('message', print);
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`worker exited with code ${code} and no result`)));
  }
} else {
  runThread(workerData as PeerConfig).then((r) => parentPort!.postMessage(r));
}
