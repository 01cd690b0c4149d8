// `npm run web`: builds the browser demo (web/, bundled with the library from source by esbuild,
// as dist/web.js is) into out/web/ and serves it over HTTP on 127.0.0.1, cross-origin isolated
// (COOP same-origin, COEP require-corp), which a page needs to have SharedArrayBuffer at all.
// It also serves dist/web.js, the published browser bundle, and for the page's v86 peer (?guest=1)
// the v86 package's module build and the cached guest files (prepare-v86-guest.mjs makes them; a
// missing file is a 404 that says so). Prints the page's URL, then serves until stopped. Options: --port N (default 8080; 0 picks a free one), --host H.
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { browserBuild } from './browser-build.mjs';
import { GUEST_DIR, GUEST_FILES, checkCache } from './prepare-v86-guest.mjs';

process.chdir(fileURLToPath(new URL('..', import.meta.url))); // the paths below are the repository's
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const port = Number(option('--port', process.env.PORT ?? 8080));
const host = option('--host', '127.0.0.1');

await build({
  ...browserBuild,
  entryPoints: { page: 'web/page.ts', 'peer-worker': 'web/peer-worker.ts', 'guest-worker': 'web/guest-worker.ts' },
  outdir: 'out/web',
});

// Everything the page may load, by URL path; nothing else is served.
const FILES = {
  '/': ['web/index.html', 'text/html; charset=utf-8'],
  '/index.html': ['web/index.html', 'text/html; charset=utf-8'],
  '/page.js': ['out/web/page.js', 'text/javascript; charset=utf-8'],
  '/page.js.map': ['out/web/page.js.map', 'application/json'],
  '/peer-worker.js': ['out/web/peer-worker.js', 'text/javascript; charset=utf-8'],
  '/peer-worker.js.map': ['out/web/peer-worker.js.map', 'application/json'],
  '/guest-worker.js': ['out/web/guest-worker.js', 'text/javascript; charset=utf-8'],
  '/guest-worker.js.map': ['out/web/guest-worker.js.map', 'application/json'],
  '/dist/web.js': ['dist/web.js', 'text/javascript; charset=utf-8'],
};
const v86Build = (name) => {
  try {
    return createRequire(import.meta.url).resolve(`v86/build/${name}`);
  } catch {
    return `node_modules/v86/build/${name} (not installed)`;
  }
};
FILES['/v86/libv86.mjs'] = [v86Build('libv86.mjs'), 'text/javascript; charset=utf-8'];
FILES['/v86/v86.wasm'] = [v86Build('v86.wasm'), 'application/wasm'];
// Only a complete, checked cache is served: a half-prepared guest would fail later and less clearly.
const guestReady = checkCache() !== null;
for (const name of GUEST_FILES) FILES[`/guest/${name}`] = [join(GUEST_DIR, name), 'application/octet-stream'];
const ISOLATED = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

const server = createServer(async (req, res) => {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  const file = FILES[path];
  if (file !== undefined && path.startsWith('/guest/') && !guestReady) {
    res.writeHead(404, { ...ISOLATED, 'Content-Type': 'text/plain' }).end(`no prepared guest in ${GUEST_DIR}\n`);
    return;
  }
  if (file === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(404, { ...ISOLATED, 'Content-Type': 'text/plain' }).end('not found\n');
    return;
  }
  try {
    const body = await readFile(file[0]);
    res.writeHead(200, { ...ISOLATED, 'Content-Type': file[1], 'Content-Length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  } catch {
    res.writeHead(404, { ...ISOLATED, 'Content-Type': 'text/plain' }).end(`${file[0]} is not built\n`);
  }
});
server.listen(port, host, () => {
  const { port: bound } = server.address();
  console.log(`ivshmem-ts browser demo: http://${host}:${bound}/`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
process.on('SIGINT', () => server.close(() => process.exit(0)));
