// The one table at the end of `npm run bench`: every ratio the benchmarks measure against a
// baseline from the same run, with its target and whether it was met, gathered from the results
// files the benchmarks wrote (latency.json, native.json, mmio.json, atomics.json; a missing file is skipped and
// said so). Also written as summary.json: [{ name, value, unit, baseline, ratio, target, met }],
// where a target is the most `ratio` may be (or, for unit 'ns over C' and 'count', `value`); ratio is
// null where none applies (a count); target and met are null for a figure reported without one.
// Usage: node scripts/bench-summary.mjs [--dir bench/results]
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const at = process.argv.indexOf('--dir');
const dir = at >= 0 ? process.argv[at + 1] : join(process.cwd(), 'bench', 'results');
const read = (name) => (existsSync(join(dir, name)) ? JSON.parse(readFileSync(join(dir, name), 'utf8')) : undefined);
const rows = [];
const missing = [];
// target null: reported beside the others, judged by nobody (met null).
const add = (name, value, unit, baseline, ratio, target, judged = ratio) =>
  rows.push({
    name,
    value,
    unit,
    baseline,
    ratio,
    target,
    met: target === null ? null : Number.isFinite(judged) && judged <= target,
  });

const latency = read('latency.json');
if (latency === undefined) missing.push('latency.json');
else {
  const label = Object.fromEntries(latency.placements.map((p) => [p.id, p.label]));
  const series = (placement, kind, path) =>
    latency.series.find((s) => s.placement === placement && s.kind === kind && s.path === path);
  for (const r of latency.ratios) {
    const node = series(r.placement, 'node', r.path);
    const c = series(r.placement, 'c', r.baseline);
    // Two spinners on one CPU hand over only when the scheduler preempts one: such a run measures
    // time slices, not doorbells, and is bounded by time; it is reported in latency.md only.
    if (node === undefined || c === undefined || node.timeBounded || c.timeBounded) continue;
    const where = `${label[r.placement]}, ${node.label} vs ${c.label}`;
    add(`latency p50: ${where}`, node.percentiles.p50, 'ns', c.percentiles.p50, r.p50, r.target);
    // Predictability: the tail against C's tail in the same placement, and no GC while measured.
    add(`latency p99.9: ${where}`, node.percentiles.p999, 'ns', c.percentiles.p999, r.p999, 2);
    if (node.gcs !== undefined) {
      const gcs = node.gcs.ping + node.gcs.pong;
      add(`GCs while measured: ${label[r.placement]}, ${node.label} (ping + pong)`, gcs, 'count', 0, NaN, 0, gcs);
    }
    if (node.deopts !== undefined && node.deopts.ping >= 0) {
      const deopts = node.deopts.ping + node.deopts.pong;
      add(
        `JIT deoptimisations while measured: ${label[r.placement]}, ${node.label} (ping + pong)`,
        deopts,
        'count',
        0,
        NaN,
        null,
      );
    }
  }
  // The adaptive waiter has no target: where it lands between the two pure paths is the finding.
  for (const a of latency.adaptive ?? []) {
    for (const [base, name] of [
      ['node/spin', 'Node busy poll'],
      ['node/thread', 'Node blocking wait'],
    ]) {
      const r = a.vs[base];
      if (r === undefined) continue;
      add(`adaptive wait p50 vs ${name}: ${label[a.placement]}`, a.p50, 'ns', a.p50 / r.p50, r.p50, null);
      add(`adaptive wait p99.9 vs ${name}: ${label[a.placement]}`, a.p999, 'ns', a.p999 / r.p999, r.p999, null);
    }
  }
}

const native = read('native.json');
if (native === undefined) missing.push('native.json');
else {
  const task = (name) => native.eventfd.tasks.find((t) => t.task === name);
  const c = native.eventfd.tasks[0];
  for (const [name, label, maxRatio, maxNs] of [
    ['EventFd.signal (fast call where built)', 'eventfd write, EventFd.signal (V8 fast call)', 1.15, 40],
    ['addon eventfdSignal', 'eventfd write through the N-API addon', null, null],
    ['device doorbell → eventfd', 'IvshmemDevice.mmioWrite doorbell down to the eventfd', 1.25, 60],
  ]) {
    const t = task(name);
    if (t === undefined) continue;
    add(`${label} vs C write(2)`, t.p50, 'ns', c.p50, t.ratioToC, maxRatio);
    add(`${label}: ns over C`, t.p50 - c.p50, 'ns over C', 0, t.ratioToC, maxNs, t.p50 - c.p50);
  }
  // The floor: the same write(2) from C touching 32 random cache lines between calls, as a
  // process with a working set does; what the addon adds beyond it is its own.
  const f = native.writeFloor;
  const signal = task('EventFd.signal (fast call where built)') ?? task('addon eventfdSignal');
  if (f !== undefined && signal !== undefined) {
    const at32 = f.writeNs[f.lines.indexOf(32)];
    add(
      `eventfd write, ${signal.task}: ns over C write(2) touching 32 lines between calls`,
      signal.p50 - at32,
      'ns over C',
      0,
      signal.p50 / at32,
      null,
      signal.p50 - at32,
    );
  }
  // The floor the addon can reach: the same write through syscall(2) from a C process that has a
  // second thread, as every Node process does (glibc's write() costs more there; see write_floor.c).
  const floorNs = f?.tight?.twoThreads?.syscall;
  if (floorNs !== undefined) {
    for (const [name, label] of [
      ['EventFd.signal (fast call where built)', 'eventfd write, EventFd.signal'],
      ['device doorbell → eventfd', 'IvshmemDevice.mmioWrite doorbell down to the eventfd'],
    ]) {
      const t = task(name);
      if (t !== undefined)
        add(
          `${label} vs the floor: C syscall(2) write with a second thread`,
          t.p50,
          'ns',
          floorNs,
          t.p50 / floorNs,
          1.1,
        );
    }
  }
}

const worstDispatch = (results, what) => {
  const dispatch = results.tasks.filter((t) => t.task.startsWith('core wasm:'));
  if (dispatch.length === 0) return;
  const worst = dispatch.reduce((a, b) => (b.ratioToNop > a.ratioToNop ? b : a));
  const nop = results.tasks.find((t) => t.task.startsWith('no-op'));
  add(
    `WASM dispatch (${what}), worst: ${worst.task.replace(/\s+/g, ' ')} vs a no-op call`,
    worst.p50,
    'ns',
    nop?.p50 ?? NaN,
    worst.ratioToNop,
    2,
  );
};
const one = read('mmio-one-instance.json');
if (one === undefined) missing.push('mmio-one-instance.json');
else worstDispatch(one, 'one instance, as a VMM with one device');
const mmio = read('mmio.json');
if (mmio === undefined) missing.push('mmio.json');
else {
  worstDispatch(mmio, 'three instances in the process');
  // Judged on the harness-free loops (the path's own tail and garbage); tinybench's runs, whose
  // sample keeping allocates, are reported beside them.
  const tail = mmio.tasks.reduce((a, b) => (b.plainTailRatio > a.plainTailRatio ? b : a));
  add(
    `MMIO p99.9 / p50 (harness-free loop), worst: ${tail.task.replace(/\s+/g, ' ')}`,
    tail.plainTailRatio,
    'ratio',
    1,
    tail.plainTailRatio,
    3,
  );
  const plain = mmio.tasks.reduce((s, t) => s + t.gcPlainLoop, 0);
  add('GCs in the harness-free MMIO loops (every task)', plain, 'count', 0, NaN, 0, plain);
  const gcs = mmio.tasks.reduce((s, t) => s + t.gcTimed, 0);
  add("GCs during the timed MMIO runs (tinybench's samples included)", gcs, 'count', 0, NaN, null);
}

// No target: the doorbell round trip without eventfds, beside the eventfd one with the same wait.
const atomics = read('atomics.json');
if (atomics === undefined) missing.push('atomics.json');
else {
  for (const p of atomics.paths.filter((x) => x.backend === 'atomics')) {
    const base = atomics.paths.find((x) => x.backend === 'eventfd' && x.wait === p.wait);
    const where = p.label.startsWith('Chromium') ? p.label : `worker threads, ${p.label}`;
    add(`${where} p50 (÷ Node eventfd, same wait)`, p.p50, 'ns', base?.p50, p.p50OverEventfd, null);
  }
}

const ns = (v) =>
  v >= 1e6 ? `${(v / 1e6).toFixed(2)} ms` : v >= 10_000 ? `${(v / 1000).toFixed(1)} µs` : `${v.toFixed(0)} ns`;
const fmt = (v, unit) =>
  !Number.isFinite(v) ? '' : unit === 'ns' || unit === 'ns over C' ? ns(v) : String(+v.toFixed(2));
const cells = rows.map((r) => [
  r.name,
  fmt(r.value, r.unit),
  fmt(r.baseline, r.unit),
  Number.isFinite(r.ratio) ? r.ratio.toFixed(2) : '',
  r.target === null ? '' : `≤ ${r.target}`,
  r.met === null ? '(reported)' : r.met ? 'met' : 'NOT met',
]);
const head = ['measure', 'value', 'baseline', 'ratio', 'target', ''];
const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
const line = (c) =>
  c
    .map((s, i) => (i === 0 || i === 5 ? s.padEnd(widths[i]) : s.padStart(widths[i])))
    .join('  ')
    .trimEnd();
console.log(
  `\nsummary: ${rows.filter((r) => r.met).length} of ${rows.filter((r) => r.met !== null).length} targets met${missing.length ? ` (no ${missing.join(', ')}: not run)` : ''}`,
);
console.log(line(head));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const c of cells) console.log(line(c));
const file = join(dir, 'summary.json');
writeFileSync(file, `${JSON.stringify(rows, null, 2)}\n`);
console.log(`wrote ${file}`);
