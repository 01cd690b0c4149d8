// Doorbell figures for a Linux guest in v86 (issue #8): the Debian guest of test/monitors/v86.test.ts, our
// intx device (V86Transport), an in-process IvshmemServer and an IvshmemClient as the host peer.
//
// (i)  guest doorbell write → host peer interrupt. The guest rings the host N times in a shell
//      loop (`devmem 0xfe00000c 32 <host id << 16>`). Guest timestamps are not comparable with the
//      host's (the guest's clock is v86's), so the host timestamps what it sees: each 'interrupt'
//      event of its client. Reported: the host-side inter-arrival times, and the time from typing
//      the loop to the Nth interrupt divided by N. The same loop reading IVPosition instead of
//      ringing is the baseline: what the shell loop and busybox cost without any doorbell. Also,
//      because the guest's write is a JS call on the host (v86 runs BAR0 accesses as callbacks),
//      the host can timestamp the write itself: "write → interrupt" is the library's part (device
//      core → eventfd write → the client's fd watcher), on one clock.
// (ii) host doorbell → guest wake-up. The guest keeps /dev/uio0 open and loops: print an armed
//      marker, block in `dd` on /dev/uio0, print a woken marker, read IntrStatus (clears it),
//      re-arm INTx through config byte 5. The host waits for the armed marker (plus a short
//      pause, so that dd is blocked), rings the device's vector 0 with its client, and times how
//      long the woken marker (and then the next armed marker) takes to appear on the serial
//      console; console bytes are timestamped as v86 emits them.
//
// What bounds these: v86 interprets/JITs the guest and runs every BAR access as a JS callback;
// each `devmem`, `dd` and `printf | dd` is a busybox process start (fork + exec in the guest,
// ~20–40 ms here); the host's fd watcher shares Node's event loop with v86, which yields between
// its time slices (setImmediate, or a timer while the guest is idle).
//
// Run: npm run bench [-- --quick]; alone: node scripts/bundle.mjs --bench && node out/bench/v86.bench.js --quick
// Skips (exit 0, with a message) when the guest image or v86 is unavailable.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import hdr from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';
import { IvshmemClient } from '../src/client/ivshmem-client.js';
import { IvshmemDevice } from '../src/device/device.js';
import { IvshmemServer } from '../src/server/ivshmem-server.js';
import { V86Transport } from '../src/monitors/v86/v86-transport.js';
import { bootGuest, v86Unavailable } from '../test/support/v86-guest.js';
import type { Guest } from '../test/support/v86-guest.js';

const QUICK = process.argv.includes('--quick');
const ROUNDS = 3; // (i) rounds of { baseline loop, doorbell loop }
const PER_ROUND = QUICK ? 8 : 20; // (i) rings (and baseline iterations) per round
const WAKES = QUICK ? 24 : 60; // (ii) samples
const WARMUP = 3; // (ii) rounds not recorded
const PAUSE_MS = 30; // (ii) after the armed marker, before ringing
const BAR0 = 0xfe000000;
const UIO_CONFIG = '/sys/bus/pci/devices/0000:00:0f.0/config';

const unavailable = await v86Unavailable();
if (unavailable !== null) {
  console.log(`v86.bench: skipped: ${unavailable}`);
  process.exit(0);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const newHistogram = () =>
  hdr.build({ bitBucketSize: 64, numberOfSignificantValueDigits: 3, highestTrackableValue: 600e6 });

interface Summary {
  count: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}
/** Percentiles in ms of samples given in ms (recorded in µs). */
function summarize(samples: number[]): Summary {
  const h: Histogram = newHistogram();
  for (const s of samples) h.recordValue(Math.max(1, Math.round(s * 1000)));
  const ms = (us: number) => Math.round(us) / 1000;
  const out = {
    count: h.totalCount,
    min: ms(h.minNonZeroValue),
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    max: ms(h.maxValue),
    mean: ms(h.mean),
  };
  h.destroy();
  return out;
}
const row = (name: string, s: Summary) =>
  `  ${name.padEnd(50)} p50 ${s.p50.toFixed(2).padStart(7)}  p90 ${s.p90.toFixed(2).padStart(7)}  p99 ${s.p99.toFixed(2).padStart(7)}  ` +
  `min ${s.min.toFixed(2).padStart(7)}  max ${s.max.toFixed(2).padStart(7)} ms  (n=${s.count})`;
const diffs = (t: number[]) => t.slice(1).map((x, i) => x - t[i]);

// ---- setup ----

const dir = mkdtempSync(join(tmpdir(), 'ivshmem-v86-bench-'));
const server = IvshmemServer.start({
  socketPath: join(dir, 'server.sock'),
  memory: { shm: `ivshmem-v86-bench-${process.pid}` },
  size: 1 << 20,
  vectors: 1,
});
const host = await IvshmemClient.connect(server.socketPath, { vectors: 1 });
const transport = new V86Transport();
const device = await IvshmemDevice.create({ mode: 'intx', vectors: 1, server: server.socketPath, transport });

// Host timestamps: each doorbell write as v86 calls into the device, each host interrupt event.
const doorbellWrites: number[] = [];
const mmioWrite = device.mmioWrite.bind(device);
device.mmioWrite = (bar, offset, size, value) => {
  if (bar === 0 && offset === 0x0c) doorbellWrites.push(performance.now());
  mmioWrite(bar, offset, size, value);
};
const interrupts: number[] = [];
let coalesced = 0;
let coalescedTotal = 0;
host.on('interrupt', (_vector, count) => {
  interrupts.push(performance.now());
  if (count > 1) coalesced += count - 1;
});

let guest: Guest | undefined;
let exitCode = 0;
try {
  const tBoot = performance.now();
  guest = await bootGuest(device, transport, 120_000);
  const bootMs = performance.now() - tBoot;
  console.log(
    `v86.bench: guest booted in ${(bootMs / 1000).toFixed(1)} s; ${QUICK ? 'quick: ' : ''}${ROUNDS * PER_ROUND} rings, ${WAKES} wake-ups`,
  );
  await guest.run("echo '1af4 1110' > /sys/bus/pci/drivers/uio_pci_generic/new_id; ls /dev/uio0");

  // Console markers "<NAME>" timestamped as v86 emits their last byte.
  const markers = new Map<string, number>();
  let tail = '';
  guest.onOutput((c) => {
    tail = (tail + c).slice(-32);
    if (c === '>') {
      const at = tail.lastIndexOf('<');
      if (at >= 0) markers.set(tail.slice(at + 1, -1), performance.now());
    }
  });
  const marker = async (name: string, ms = 20_000) => {
    const end = Date.now() + ms;
    while (!markers.has(name)) {
      if (Date.now() > end)
        throw new Error(`the guest never printed <${name}>; console:\n${guest!.output().slice(-1500)}`);
      await sleep(1);
    }
    return markers.get(name)!;
  };
  const loop = (body: string, n: number) => `i=0; while [ $i -lt ${n} ]; do ${body}; i=$((i+1)); done`;

  // ---- (i) guest doorbell → host interrupt ----
  // A first loop warms up v86's JIT on the shell and busybox paths (the first one after boot runs
  // about twice as slow). Then rounds alternate the baseline loop (devmem reading IVPosition) and
  // the doorbell loop, so that drift in the machine's speed hits both alike.
  const readLoop = (n: number) => loop(`devmem 0x${(BAR0 + 8).toString(16)} 32 >/dev/null`, n);
  const ringLoop = (n: number) => loop(`devmem 0x${(BAR0 + 0x0c).toString(16)} 32 ${(host.id << 16) >>> 0}`, n);
  await guest.run(readLoop(PER_ROUND), 120_000);
  const gaps: number[] = [];
  const writeToInterruptMs: number[] = [];
  let baselineMs = 0;
  let loopMs = 0;
  let typedToLastMs = 0;
  for (let round = 0; round < ROUNDS; round++) {
    let t = performance.now();
    await guest.run(readLoop(PER_ROUND), 120_000);
    baselineMs += performance.now() - t;
    await sleep(100);
    interrupts.length = 0;
    doorbellWrites.length = 0;
    coalesced = 0;
    t = performance.now();
    await guest.run(ringLoop(PER_ROUND), 120_000);
    loopMs += performance.now() - t;
    const end = Date.now() + 5000;
    while (interrupts.length + coalesced < PER_ROUND && Date.now() < end) await sleep(5);
    if (interrupts.length + coalesced !== PER_ROUND || doorbellWrites.length !== PER_ROUND) {
      throw new Error(
        `(i): ${PER_ROUND} rings, ${doorbellWrites.length} doorbell writes, ${interrupts.length} interrupt events (+${coalesced} coalesced)`,
      );
    }
    gaps.push(...diffs(interrupts));
    typedToLastMs += interrupts[interrupts.length - 1] - t;
    // Pairs writes with interrupts only when none coalesced (one eventfd read for two rings).
    if (coalesced === 0) writeToInterruptMs.push(...interrupts.map((at, i) => at - doorbellWrites[i]));
    else coalescedTotal += coalesced;
  }
  const rings = ROUNDS * PER_ROUND;
  const interArrival = summarize(gaps);
  const writeToInterrupt = summarize(writeToInterruptMs);
  const perRingTotal = typedToLastMs / rings;
  const loopPerIteration = loopMs / rings;
  const baselinePerIteration = baselineMs / rings;

  // ---- (ii) host doorbell → guest uio wake-up ----
  const iterations = WARMUP + WAKES;
  guest.send(
    `(exec 3</dev/uio0; devmem 0x${BAR0.toString(16)} 32 0xffffffff; ` +
      loop(
        'echo "<A$((i+1000))>"; dd bs=4 count=1 <&3 >/dev/null 2>&1; echo "<W$((i+1000))>"; ' +
          `devmem 0x${(BAR0 + 4).toString(16)} 32 >/dev/null; printf '\\001' | dd of=${UIO_CONFIG} bs=1 seek=5 count=1 conv=notrunc 2>/dev/null`,
        iterations,
      ) +
      '; echo "<D$((7+0))>")',
  );
  const wake: number[] = [];
  const cycle: number[] = [];
  for (let i = 0; i < iterations; i++) {
    await marker(`A${i + 1000}`);
    await sleep(PAUSE_MS);
    const t = performance.now();
    host.ring(device.id, 0);
    const woke = await marker(`W${i + 1000}`);
    const armed = await marker(i + 1 < iterations ? `A${i + 1001}` : 'D7');
    if (i >= WARMUP) {
      wake.push(woke - t);
      cycle.push(armed - t);
    }
  }
  if (device.counters().interruptsDelivered !== iterations) {
    throw new Error(`(ii): ${iterations} rings but ${device.counters().interruptsDelivered} interrupts delivered`);
  }
  const wakeSummary = summarize(wake);
  const cycleSummary = summarize(cycle);

  // ---- report ----
  console.log('(i) guest doorbell write (devmem in a shell loop) → host peer interrupt, host clock:');
  console.log(row('interrupt inter-arrival', interArrival));
  console.log(row('doorbell write (v86 MMIO callback) → interrupt', writeToInterrupt));
  console.log(
    `  ${ROUNDS} loops of ${PER_ROUND} rings: ${perRingTotal.toFixed(2)} ms per ring (typed → Nth interrupt, / N); ` +
      `whole loop ${loopPerIteration.toFixed(2)} ms/iteration; same loop reading IVPosition instead: ${baselinePerIteration.toFixed(2)} ms/iteration`,
  );
  console.log('(ii) host ring (IvshmemClient.ring) → guest, host clock, console bytes timestamped as v86 emits them:');
  console.log(row('ring → woken marker (dd on /dev/uio0 returned)', wakeSummary));
  console.log(row('ring → re-armed (IntrStatus read, INTx re-enabled)', cycleSummary));
  console.log(
    '  bounds: each devmem/dd is a busybox process start in the guest (tens of ms); every BAR access is a JS callback in v86;',
  );
  console.log("  the host peer's fd watcher shares the event loop with v86, which yields between time slices.");

  const results = {
    benchmark: 'v86 guest doorbells: guest → host peer and host peer → guest (uio)',
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cpuCount: cpus().length,
    platform: `${process.platform}/${process.arch}`,
    quick: QUICK,
    v86: '0.5.462',
    bootMs: Math.round(bootMs),
    unit: 'ms, host clock (performance.now); percentiles from hdr-histogram-js at µs resolution',
    guestToHost: {
      method:
        'guest shell loop of N `devmem <BAR0+0xc> 32 <host id << 16>`; the host timestamps each IvshmemClient interrupt event. ' +
        'Guest timestamps are not comparable with the host clock, so the figures are host-side: inter-arrival of the interrupts, and ' +
        '(time from typing the loop to the Nth interrupt) / N. Rounds alternate a baseline loop of `devmem` reads of IVPosition and ' +
        'the doorbell loop. writeToInterrupt: from v86 calling the device for the doorbell write to the ' +
        "interrupt event, both host-side (the library's part plus the wait for v86 to yield).",
      rounds: ROUNDS,
      ringsPerRound: PER_ROUND,
      coalescedInterrupts: coalescedTotal,
      interArrival,
      writeToInterrupt,
      perRingTotalMs: perRingTotal,
      loopPerIterationMs: loopPerIteration,
      baselineDevmemReadLoopPerIterationMs: baselinePerIteration,
    },
    hostToGuest: {
      method:
        'guest keeps /dev/uio0 open and loops: echo <A>; dd bs=4 count=1 (blocks); echo <W>; read IntrStatus; re-arm INTx via config byte 5. ' +
        `The host waits for <A> plus ${PAUSE_MS} ms, rings vector 0 with its client, and takes the time until <W> (wake) and the next <A> (cycle).`,
      samples: WAKES,
      warmup: WARMUP,
      pauseMs: PAUSE_MS,
      wake: wakeSummary,
      cycle: cycleSummary,
    },
    bounds:
      'v86 runs each BAR access as a JS callback; each devmem/dd in the guest is a busybox process start (~20–40 ms); ' +
      "the host peer's fd watcher runs on the same Node event loop as v86, which yields between time slices.",
  };
  const resultsDir = join(process.cwd(), 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, 'v86.json'), `${JSON.stringify(results, null, 2)}\n`);
  console.log(`wrote ${join(resultsDir, 'v86.json')}`);
} catch (error) {
  console.error(`v86.bench: ${error instanceof Error ? error.stack : error}`);
  exitCode = 1;
} finally {
  await guest?.stop();
  device.close();
  host.close();
  server.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(exitCode);
