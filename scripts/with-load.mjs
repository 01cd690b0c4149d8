// Runs a command while busy loops compete for every CPU, as on a shared or oversubscribed
// machine: `node scripts/with-load.mjs [--loops N] [--] command args...` (default: the test
// suite, `npx vitest run`). The loops are child processes that die with this script, whatever
// ends it; its exit status is the command's. Tests must pass like this: a test that needs the
// machine to itself measures speed, not behaviour.
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  options: { loops: { type: 'string' } },
  allowPositionals: true,
});
const loops = values.loops === undefined ? availableParallelism() + 1 : Number(values.loops);
if (!Number.isInteger(loops) || loops < 0) {
  console.error(`with-load: --loops takes a whole number, not ${values.loops}`);
  process.exit(2);
}
const command = positionals.length > 0 ? positionals : ['npx', 'vitest', 'run'];

// Each loop spins, and exits as soon as its parent is gone (its IPC channel closes).
const spinner =
  'process.on("disconnect", () => process.exit(0)); for (;;) { const end = Date.now() + 50; while (Date.now() < end); await new Promise((r) => setImmediate(r)); }';
const busy = Array.from({ length: loops }, () =>
  spawn(process.execPath, ['--input-type=module', '-e', spinner], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }),
);
const stopLoad = () => {
  for (const b of busy) if (b.exitCode === null) b.kill('SIGKILL');
};
process.on('exit', stopLoad);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    stopLoad();
    process.exit(130);
  });
}
console.error(
  `with-load: ${loops} busy loop(s) on ${availableParallelism()} CPU(s) while running: ${command.join(' ')}`,
);
const run = spawn(command[0], command.slice(1), { stdio: 'inherit' });
run.on('exit', (code, signal) => {
  stopLoad();
  process.exit(code ?? (signal ? 1 : 0));
});
