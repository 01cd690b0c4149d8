// Runs every bundled benchmark (out/bench/*.bench.js) in its own process, passing on our
// arguments (e.g. --quick); stops at the first failure.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

const benches = readdirSync('out/bench').filter((f) => f.endsWith('.bench.js')).sort();
for (const file of benches) {
  const r = spawnSync(process.execPath, ['--expose-gc', `out/bench/${file}`, ...process.argv.slice(2)], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
