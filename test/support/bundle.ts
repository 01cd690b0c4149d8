// Bundles TypeScript from this repository into one plain ES module under out/test-<name>/, for
// worker threads and child processes, which cannot load TypeScript: they then run the very code
// the tests import. From out/test-<name>/ a bundle finds build/Release/ivshmem_native.node two
// levels up, as dist/ does. Built once per test process with esbuild's buildSync, written under a
// temporary name and renamed into place, so test files running side by side never see half a file.
import { mkdirSync, renameSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const built = new Map<string, string>();

/**
 * Absolute path of the bundle `name`, whose module source is `entry` (export lines, paths from the repository root).
 */
export function bundleModule(name: string, entry: readonly string[]): string {
  const done = built.get(name);
  if (done !== undefined) return done;
  const dir = `${ROOT}out/test-${name}`;
  const outfile = `${dir}/${name}.mjs`;
  const temp = `${dir}/${name}.${process.pid}.tmp.mjs`;
  mkdirSync(dir, { recursive: true });
  buildSync({
    stdin: { contents: entry.join('\n'), resolveDir: ROOT, loader: 'ts' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    loader: { '.wasm': 'binary' },
    outfile: temp,
    logLevel: 'error',
  });
  renameSync(temp, outfile);
  built.set(name, outfile);
  return outfile;
}
