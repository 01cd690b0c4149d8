// esbuild options for code that runs in a browser (dist/web.js and the demo page of web/): the
// Node modules the library still names are replaced — EventEmitter by the `events` package,
// diagnostics_channel and util.debuglog by the stand-ins in src/browser/ — and the WebAssembly
// core is embedded as bytes, as in the Node bundle. Anything else of Node's fails the build.
// Paths are the repository's, wherever the build is started from.
import { fileURLToPath } from 'node:url';

export const browserBuild = {
  absWorkingDir: fileURLToPath(new URL('..', import.meta.url)),
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: 'es2022',
  loader: { '.wasm': 'binary' },
  sourcemap: true,
  logLevel: 'warning',
  alias: {
    'node:events': 'events',
    'node:diagnostics_channel': './src/browser/diagnostics-channel.ts',
    'node:util': './src/browser/util.ts',
  },
};
