// `npm run test:asan`: the native tests once more, against the addon built with AddressSanitizer
// (test/asan/binding.gyp, built into test/asan/build/ so the package's build/ is untouched), with
// the sanitizer's runtime preloaded into Node and every process it starts. Fails if vitest fails
// or if any process wrote a sanitizer report; test/os/asan-build.test.ts fails unless the ASan build
// and runtime really are the ones loaded. Prints one closing line with the counts and wall time.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const ASAN_DIR = join(ROOT, 'test/asan');
const ADDON = join(ASAN_DIR, 'build/Release/ivshmem_native.node');
const REPORTS = join(ROOT, 'out/asan');
// The files whose tests drive the addon directly (sockets, eventfds, memory, waiters, KVM), in
// this process, in worker threads and in child processes, and the server, whose every client
// connection, fd passed and doorbell goes through it.
// protocol/hostile-server.test.ts is left out: its control case dies of SIGBUS on purpose, which ASan reports.
const FILES = [
  ...readdirSync(join(ROOT, 'test/os'))
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => `os/${f}`),
  'server/server.test.ts',
  'monitors/kvm.test.ts',
  'monitors/kvm-monitor.test.ts',
  'monitors/kvm-msi.test.ts',
  'server/handover.test.ts',
  'device/handover.test.ts',
].map((f) => `test/${f}`);

const t0 = performance.now();

function fail(message) {
  console.error(`test:asan: ${message}`);
  process.exit(1);
}

// npm hands its own node-gyp to scripts (with its nodedir and other settings in npm_config_*);
// run directly, fall back to the copy bundled with npm beside this node.
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
  ];
  const found = candidates.find((c) => c && existsSync(c));
  if (!found) fail('node-gyp not found: run this through `npm run test:asan`');
  return found;
}

// configure every time (cheap, and picks up sources added to binding.gyp); make then recompiles
// only what changed.
function buildAddon() {
  const gyp = nodeGyp();
  for (const step of ['configure', 'build']) {
    // Warnings fail this build as they fail CI's (binding.gyp's ivshmem_werror).
    const env = { ...process.env, IVSHMEM_WERROR: '1' };
    const r = spawnSync(process.execPath, [gyp, step, '--jobs=max', '--loglevel=warn'], {
      cwd: ASAN_DIR,
      env,
      stdio: 'inherit',
    });
    if (r.status !== 0) fail(`node-gyp ${step} of the ASan addon failed`);
  }
  if (!readFileSync(ADDON).includes('__asan_init')) fail(`${ADDON} is not instrumented`);
}

// The runtime must come first in the process (ASan refuses to start otherwise), and Node itself
// is not instrumented: so it is preloaded rather than linked in.
function asanRuntime() {
  let name;
  try {
    name = execFileSync('g++', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).trim();
  } catch {
    fail('g++ not found: it is needed to build the addon and to find libasan');
  }
  // g++ echoes the bare name back when it has no such file.
  if (!name.startsWith('/') || !existsSync(name))
    fail(`libasan.so not found (g++ says ${name}); install gcc's libasan`);
  return realpathSync(name);
}

buildAddon();
const libasan = asanRuntime();
rmSync(REPORTS, { recursive: true, force: true });
mkdirSync(REPORTS, { recursive: true });

const env = {
  ...process.env,
  LD_PRELOAD: libasan,
  IVSHMEM_NATIVE_ADDON: ADDON,
  IVSHMEM_EXPECT_ASAN: '1',
  // detect_leaks=0: Node does not free its heap, isolates or static allocations at exit (by
  // design: the OS reclaims them faster), so LeakSanitizer would report Node's own memory, not
  // ours. The addon's own resources are checked by the tests' fd and mapping leak checks instead.
  // abort_on_error/halt_on_error: the first report kills the process, so the test around it fails.
  // log_path: each process writes its reports to REPORTS/report.<pid> rather than to a stderr a
  // test may capture and ignore; any such file fails the run.
  ASAN_OPTIONS: `detect_leaks=0:abort_on_error=1:halt_on_error=1:log_path=${REPORTS}/report`,
};
delete env.CI; // vitest's CI reporter would overwrite the main suite's out/vitest-report.json

const vitest = spawn(
  process.execPath,
  [
    join(ROOT, 'node_modules/vitest/vitest.mjs'),
    'run',
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${REPORTS}/vitest-report.json`,
    ...FILES,
  ],
  { cwd: ROOT, env, stdio: 'inherit' },
);
// Every test is bounded by itself; this only stops a hung run from holding CI forever.
const watchdog = setTimeout(() => {
  console.error('test:asan: still running after 15 minutes; killing vitest');
  vitest.kill('SIGKILL');
}, 15 * 60_000);
const code = await new Promise((resolve) => vitest.on('close', (c, signal) => resolve(c ?? signal)));
clearTimeout(watchdog);

// A file may hold only warnings (a process spawned by a test, e.g. one using swapcontext, gets
// the runtime too): shown, but only an ERROR fails the run.
const reports = [];
for (const f of readdirSync(REPORTS).filter((name) => name.startsWith('report'))) {
  const text = readFileSync(join(REPORTS, f), 'utf8');
  const error = /ERROR: \w*Sanitizer|Sanitizer:DEADLYSIGNAL/.test(text);
  if (error) reports.push(f);
  console.error(`\n==== AddressSanitizer ${error ? 'report' : 'warnings'} ${f} ====\n${text}`);
}
let counts = 'no vitest report';
try {
  const r = JSON.parse(readFileSync(join(REPORTS, 'vitest-report.json'), 'utf8'));
  counts = `${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped in ${r.testResults.length} files`;
} catch {
  // no report: the run failed before vitest wrote one, which the exit code already says
}
const seconds = ((performance.now() - t0) / 1000).toFixed(1);
const ok = code === 0 && reports.length === 0;
console.log(
  `ASan native tests: ${ok ? 'PASS' : 'FAIL'} — ${counts}, ${reports.length} sanitizer reports, ${seconds} s (build included)`,
);
process.exit(ok ? 0 : 1);
