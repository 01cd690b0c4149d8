// Bundles src/ for Node with esbuild, the release WebAssembly core embedded as bytes, and
// src/web.ts for browsers (dist/web.js, see browser-build.mjs). With --bench, bundles the
// benchmarks instead (into out/bench/).
import { build } from 'esbuild';
import { readdirSync } from 'node:fs';
import { browserBuild } from './browser-build.mjs';

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  loader: { '.wasm': 'binary' },
  sourcemap: true,
  logLevel: 'warning',
};

if (process.argv.includes('--bench')) {
  const entries = readdirSync('bench')
    .filter((f) => f.endsWith('.ts'))
    .map((f) => `bench/${f}`);
  await build({ ...common, entryPoints: entries, outdir: 'out/bench', packages: 'external' });
} else {
  await build({
    ...common,
    entryPoints: {
      index: 'src/index.ts',
      kvm: 'src/kvm.ts',
      cli: 'src/bin/ivshmem.ts',
      'ivshmem-server': 'src/bin/ivshmem-server.ts',
      'ivshmem-client': 'src/bin/ivshmem-client.ts',
    },
    outdir: 'dist',
  });
  await build({ ...browserBuild, entryPoints: { web: 'src/web.ts' }, outdir: 'dist' });
}
