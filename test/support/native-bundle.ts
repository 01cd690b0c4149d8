// The native wrappers (src/native/*.ts) bundled into one plain ES module under out/, for worker
// threads and child processes, which cannot load TypeScript: they then run the very code the
// tests import. From out/test-native/ the bundle finds build/Release/ivshmem_native.node two
// levels up, as dist/ does. Rebuilt once per test process (esbuild's buildSync runs its binary to
// completion, so nothing of esbuild stays open in the test process), written under a temporary
// name and renamed into place, so test files running side by side never see half a file.
import { mkdirSync, renameSync } from 'node:fs';
import { buildSync } from 'esbuild';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let built: string | undefined;

/** Absolute path of the bundle, which exports native(), EventFd, SharedMemory, UnixSocket, createWaiter. */
export function nativeBundle(): string {
  if (built !== undefined) return built;
  const dir = `${ROOT}out/test-native`;
  const outfile = `${dir}/native.mjs`;
  const temp = `${dir}/native.${process.pid}.tmp.mjs`;
  mkdirSync(dir, { recursive: true });
  const entry = ['binding', 'eventfd', 'shared-memory', 'unix-socket', 'waiter']
    .map((m) => `export * from './src/native/${m}.ts';`)
    .join('\n');
  buildSync({
    stdin: { contents: entry, resolveDir: ROOT, loader: 'ts' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: temp,
    logLevel: 'error',
  });
  renameSync(temp, outfile);
  built = outfile;
  return outfile;
}
