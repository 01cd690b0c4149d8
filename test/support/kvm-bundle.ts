// The KVM monitor (src/kvm/*.ts, with the device and the WebAssembly core it pulls in) and the test
// guest (test/support/kvm-guest.ts) bundled into one plain ES module under out/test-kvm/, for child
// processes, which cannot load TypeScript (dist/index.js does not export the monitor: it is test
// plumbing). From out/test-kvm/ the bundle finds build/Release/ivshmem_native.node two levels up, as
// dist/ does. Built once per test process with esbuild's buildSync, written under a temporary name
// and renamed into place, so test files running side by side never see half a file.
import { mkdirSync, renameSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let built: string | undefined;

/** Absolute path of the bundle, which exports Kvm, KvmMonitor, MONITOR_DONE_PORT, everything of kvm-guest.ts, the MSI-X guest and runPingPongPeer. */
export function kvmBundle(): string {
  if (built !== undefined) return built;
  const dir = `${ROOT}out/test-kvm`;
  const outfile = `${dir}/kvm.mjs`;
  const temp = `${dir}/kvm.${process.pid}.tmp.mjs`;
  mkdirSync(dir, { recursive: true });
  const entry = [
    "export { Kvm } from './src/kvm/kvm.ts';",
    "export { KvmMonitor, MONITOR_DONE_PORT } from './src/kvm/monitor.ts';",
    "export * from './test/support/kvm-guest.ts';",
    "export { buildMsiGuest, loadMsiGuest, MSI_VECTOR } from './test/support/kvm-msi-guest.ts';",
    "export { runPingPongPeer } from './test/support/kvm-pingpong.ts';",
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
