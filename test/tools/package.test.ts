// The package as a user gets it: `npm pack` of a copy of this checkout (its prepack makes the
// prebuilt addons), installed into an empty project where no compiler, make or python3 can be
// found, loads the prebuild it ships (nothing compiled at install: no build/ folder), prints
// `ivshmem info`, and carries a doorbell from one process to another through its own
// ivshmem-server. The copy keeps this checkout's build/ and dist/ out of reach of the other tests
// running beside this one.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../support/until.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PREBUILD = 'prebuilds/linux-x64/ivshmem-ts.glibc.node';
const ARM64_PREBUILD = 'prebuilds/linux-arm64/ivshmem-ts.glibc.node';
// What a build from source needs; the user's PATH below has none of them.
const TOOLCHAIN = ['g++', 'c++', 'gcc', 'cc', 'make', 'python3'];
const SHM = `ivshmem-test-pack-${process.pid}`;

const onPath = (command: string) =>
  (process.env.PATH ?? '').split(delimiter).some((dir) => dir && existsSync(join(dir, command)));
const npmCli = [
  process.env.npm_execpath,
  join(dirname(process.execPath), '../lib/node_modules/npm/bin/npm-cli.js'),
].find((c) => c !== undefined && c.endsWith('npm-cli.js') && existsSync(c));
const skipReason =
  process.platform !== 'linux' || process.arch !== 'x64'
    ? `the package ships its prebuild for linux-x64, not ${process.platform}-${process.arch}`
    : npmCli === undefined
      ? 'npm-cli.js not found beside this node'
      : !onPath('g++')
        ? 'g++ is missing, and npm pack needs it to make the prebuild'
        : null;
if (skipReason !== null) console.warn(`tools/package.test.ts: skipping the packed-package test: ${skipReason}`);

let dir: string;
const running = new Set<ChildProcessWithoutNullStreams>();

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ivshmem-pack-'));
});
afterAll(() => {
  for (const child of running) child.kill('SIGKILL');
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  rmSync(join('/dev/shm', SHM), { force: true });
});

// This process's environment less what the outer npm run set and the ASan run's addon override,
// so each command sees what it would in a user's shell.
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('npm_') && !k.startsWith('IVSHMEM_')),
  );
  return { ...env, ...extra };
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs = 30_000) {
  const r = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, out: `${r.stdout}${r.stderr}${r.error ? String(r.error) : ''}` };
}

function start(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv) {
  const child = spawn(command, args, { cwd, env });
  running.add(child);
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => (running.delete(child), resolve(code))),
  );
  return {
    child,
    exited,
    out: () => out,
    waitFor: (pattern: RegExp) =>
      until(() => pattern.test(out), `${pattern} in the output`, 10_000).catch((err: Error) => {
        throw new Error(`${err.message}; the output: ${out}`);
      }),
  };
}

// An ELF file's e_machine: 62 is x86-64, 183 AArch64.
const elfMachine = (file: string) => readFileSync(file).readUInt16LE(18);

describe.skipIf(skipReason !== null)('the packed package, installed where nothing can be compiled', () => {
  it(
    'ships prebuilds, installs without compiling, runs ivshmem info and a doorbell between two processes',
    { timeout: 240_000 },
    async () => {
      // The tarball, from a copy of the checkout without anything built.
      const source = join(dir, 'source');
      const skip = new Set(
        ['node_modules', 'build', 'out', 'dist', 'prebuilds', '.git', '.cache'].map((f) => join(ROOT, f)),
      );
      cpSync(ROOT, source, { recursive: true, filter: (src) => !skip.has(src.replace(/\/$/, '')) });
      symlinkSync(join(ROOT, 'node_modules'), join(source, 'node_modules'));
      const packed = run(process.execPath, [npmCli!, 'pack', '--pack-destination', dir], source, cleanEnv({}), 200_000);
      expect(packed.status, packed.out).toBe(0);
      const tarball = join(
        dir,
        readdirSync(dir).find((f) => f.endsWith('.tgz'))!,
      );
      const listed = run('tar', ['-tzf', tarball], dir, cleanEnv({}));
      const files = listed.out.split('\n').map((f) => f.replace(/^package\//, ''));
      expect(files).toEqual(
        expect.arrayContaining([PREBUILD, 'dist/index.js', 'dist/cli.js', 'binding.gyp', 'native/addon.cc']),
      );
      if (onPath('aarch64-linux-gnu-g++')) expect(files).toContain(ARM64_PREBUILD);
      expect(files.filter((f) => f.startsWith('build/'))).toEqual([]);
      // postpack takes the prebuilds away again: a checkout must load what its own sources build.
      expect(existsSync(join(source, 'prebuilds'))).toBe(false);

      // The user's PATH: node, npm, a shell and a few tools, and no toolchain.
      const bin = join(dir, 'bin');
      mkdirSync(bin);
      symlinkSync(process.execPath, join(bin, 'node'));
      symlinkSync(npmCli!, join(bin, 'npm'));
      for (const tool of ['sh', 'env', 'cat', 'ls', 'rm', 'mkdir', 'tar', 'gzip']) {
        const found = ['/usr/bin', '/bin'].map((d) => join(d, tool)).find((f) => existsSync(f));
        if (found) symlinkSync(found, join(bin, tool));
      }
      const user = (extra: Record<string, string> = {}) => cleanEnv({ PATH: bin, ...extra });
      const hidden = run(
        '/bin/sh',
        ['-c', `for t in ${TOOLCHAIN.join(' ')}; do command -v $t; done; true`],
        dir,
        user(),
      );
      expect(hidden.out).toBe('');
      const project = (name: string) => {
        const p = join(dir, name);
        mkdirSync(p);
        writeFileSync(
          join(p, 'package.json'),
          JSON.stringify({ name, version: '1.0.0', private: true, type: 'module' }),
        );
        return p;
      };
      const install = ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball];

      // The control: forced to build from source here, the install fails, so a passing install
      // below cannot have compiled anything.
      const control = run(
        process.execPath,
        [npmCli!, ...install],
        project('control'),
        user({ npm_config_build_from_source: 'true' }),
        60_000,
      );
      expect(control.status, control.out).not.toBe(0);
      expect(control.out).toMatch(/gyp ERR!/);

      const app = project('app');
      const installed = run(process.execPath, [npmCli!, ...install], app, user(), 60_000);
      expect(installed.status, installed.out).toBe(0);
      const pkg = join(app, 'node_modules/ivshmem-ts');
      expect(existsSync(join(pkg, 'build'))).toBe(false);
      expect(elfMachine(join(pkg, PREBUILD))).toBe(62);
      if (files.includes(ARM64_PREBUILD)) expect(elfMachine(join(pkg, ARM64_PREBUILD))).toBe(183);

      const info = run(join(app, 'node_modules/.bin/ivshmem'), ['info'], app, user());
      expect(info.status, info.out).toBe(0);
      expect(info.out).toMatch(/^1af4:1110 RAM memory: Inter-VM shared memory \(rev 01\), mode doorbell\n/);
      expect(info.out).toContain('BAR2: memory, 64-bit, prefetchable, size 1048576 bytes');
      expect(info.out).toContain('MSI-X: 4 vectors, table BAR1+0x000, PBA BAR1+0x800');

      // The doorbell: the installed ivshmem-server, one peer waiting, the other ringing it.
      copyFileSync(join(ROOT, 'test/support/package-peer.mjs'), join(app, 'peer.mjs'));
      const socket = join(dir, 'server.sock');
      const server = start(
        join(app, 'node_modules/.bin/ivshmem-server'),
        ['-F', '-v', '-S', socket, '-M', SHM, '-l', '1M'],
        app,
        user(),
      );
      await server.waitFor(/listening on/);
      const waiter = start(process.execPath, ['peer.mjs', socket, 'wait'], app, user());
      await waiter.waitFor(/^id 0 addon .*\n/);
      expect(waiter.out()).toContain(`id 0 addon ${join(pkg, PREBUILD)}\n`);
      const ringer = start(process.execPath, ['peer.mjs', socket, 'ring', '0'], app, user());
      expect(await ringer.exited, ringer.out()).toBe(0);
      expect(ringer.out()).toMatch(/^id 1 addon .*\nrang 0\n$/);
      expect(await waiter.exited, waiter.out()).toBe(0);
      expect(waiter.out()).toMatch(/\ninterrupt vector 0\n$/);

      server.child.kill('SIGTERM');
      expect(await server.exited, server.out()).toBe(0);
      expect(existsSync(socket)).toBe(false);
      expect(existsSync(join('/dev/shm', SHM))).toBe(false);
    },
  );
});
