// The prebuilt addons the package ships (`npm pack` runs this as prepack): prebuildify builds
// binding.gyp once per architecture into prebuilds/<platform>-<arch>/ivshmem-ts.napi.glibc.node,
// stripped, with warnings as errors, where node-gyp-build finds it at install and at run time.
// linux-x64 always; linux-arm64 when Debian's cross compiler (g++-aarch64-linux-gnu) is there.
// With --clean (postpack), removes prebuilds/ again, so a checkout never loads a stale prebuild
// in place of the build from its own sources.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const PREBUILDS = join(ROOT, 'prebuilds');
// prebuildify builds in <cwd>/build and moves the result out of it: a staging copy of the
// sources keeps the checkout's own build/Release (which the tests load) untouched. Inside the
// checkout, so node-addon-api still resolves from its node_modules.
const STAGE = join(ROOT, 'out/prebuild');

function fail(message) {
  console.error(`prebuild: ${message}`);
  process.exit(1);
}

const onPath = (command) =>
  (process.env.PATH ?? '').split(delimiter).some((dir) => dir && existsSync(join(dir, command)));

// npm hands scripts its own node-gyp (npm_config_node_gyp); run directly, the copy beside this node.
function nodeGyp() {
  const found = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
  ].find((c) => c && existsSync(c));
  if (!found) fail('node-gyp not found: run this through npm (npm pack)');
  return found;
}

// Built against the headers of the Node running this, when it has them: node-gyp would download
// them otherwise. N-API makes the result load on every Node with NAPI_VERSION 8.
function nodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = dirname(dirname(process.execPath));
  return existsSync(join(prefix, 'include/node/node_api.h')) ? prefix : undefined;
}

function prebuild(arch, extraArgs, extraEnv) {
  const args = [
    join(ROOT, 'node_modules/prebuildify/bin.js'),
    STAGE,
    `--out=${ROOT}`,
    '--napi',
    '--strip',
    '--tag-libc',
    `--target=node@${process.versions.node}`,
    `--arch=${arch}`,
    `--node-gyp=${nodeGyp()}`,
    ...extraArgs,
  ];
  const dir = nodeDir();
  const env = {
    ...process.env,
    IVSHMEM_WERROR: '1',
    // The N-API addon only: the fast-call module binds to one Node's V8 (binding.gyp).
    IVSHMEM_FAST_BUILD: '0',
    JOBS: 'max',
    ...(dir ? { npm_config_nodedir: dir } : {}),
    ...extraEnv,
  };
  const t0 = performance.now();
  const r = spawnSync(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) fail(`prebuildify for linux-${arch} failed`);
  const built = readdirSync(join(PREBUILDS, `linux-${arch}`));
  console.log(
    `prebuild: prebuilds/linux-${arch}/${built.join(', ')} in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
}

rmSync(PREBUILDS, { recursive: true, force: true });
if (process.argv.includes('--clean')) process.exit(0);
if (process.platform !== 'linux' || process.arch !== 'x64')
  fail(`prebuilds are made on linux-x64, not ${process.platform}-${process.arch}`);

rmSync(STAGE, { recursive: true, force: true });
mkdirSync(STAGE, { recursive: true });
for (const entry of ['package.json', 'binding.gyp', 'native'])
  cpSync(join(ROOT, entry), join(STAGE, entry), { recursive: true });

prebuild('x64', [], {});
if (onPath('aarch64-linux-gnu-g++')) {
  prebuild('arm64', ['--strip-bin=aarch64-linux-gnu-strip'], {
    CC: 'aarch64-linux-gnu-gcc',
    CXX: 'aarch64-linux-gnu-g++',
    LINK: 'aarch64-linux-gnu-g++',
  });
} else {
  console.log('prebuild: no aarch64-linux-gnu-g++ (apt-get install g++-aarch64-linux-gnu): linux-arm64 is left out');
}
rmSync(STAGE, { recursive: true, force: true });
