// Runs every bundled benchmark (out/bench/*.bench.js) in its own process, passing on our
// arguments (e.g. --quick); stops at the first failure, and ends with the summary of every target. The in-process
// benchmarks come first; the
// latency benchmark (pinned child processes, the longest) runs last.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

const LAST = ['latency.bench.js'];
const rank = (f) => (LAST.includes(f) ? 1 : 0);
const benches = readdirSync('out/bench')
  .filter((f) => f.endsWith('.bench.js'))
  .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
// The MMIO benchmark runs a second time with one WebAssembly instance, as a VMM with one device.
const runs = benches.flatMap((f) => (f === 'mmio.bench.js' ? [[f], [f, '--one-instance']] : [[f]]));
for (const [file, ...extra] of runs) {
  const r = spawnSync(process.execPath, ['--expose-gc', `out/bench/${file}`, ...extra, ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
// Every ratio, its target and whether it was met, in one table and in bench/results/summary.json.
const summary = spawnSync(process.execPath, ['scripts/bench-summary.mjs'], { stdio: 'inherit' });
process.exit(summary.status ?? 1);
