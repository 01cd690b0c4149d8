// IvshmemDevice with the native wrappers bundled into one plain ES module under out/test-device/,
// for child processes that must run the device itself (a test whose failure mode is a fatal
// signal runs there, so it kills the child instead of vitest). Built once per test process with
// esbuild's buildSync, written under a temporary name and renamed into place.
import { mkdirSync, renameSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let built: string | undefined;

/** Absolute path of the bundle, which exports IvshmemDevice, native, UnixListener and UnixSocket. */
export function deviceBundle(): string {
  if (built !== undefined) return built;
  const dir = `${ROOT}out/test-device`;
  const outfile = `${dir}/device.mjs`;
  const temp = `${dir}/device.${process.pid}.tmp.mjs`;
  mkdirSync(dir, { recursive: true });
  const entry = [
    "export { IvshmemDevice } from './src/device.ts';",
    "export { native } from './src/native/binding.ts';",
    "export { UnixListener, UnixSocket } from './src/native/unix-socket.ts';",
  ].join('\n');
  buildSync({
    stdin: { contents: entry, resolveDir: ROOT, loader: 'ts' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    loader: { '.wasm': 'binary' },
    outfile: temp,
    logLevel: 'error',
  });
  renameSync(temp, outfile);
  built = outfile;
  return outfile;
}
