// Where the loader (src/os/binding.ts) finds the addon, and how it says it cannot: in the package
// layout a user installs (the wrappers' bundle in dist/ of a folder whose package.json is
// ivshmem-ts), a build from source in build/Release wins over a shipped prebuild, a prebuild alone
// is loaded, and no addon at all, an IVSHMEM_NATIVE_ADDON that is missing, relative or not an
// addon each give ERR_IVSHMEM_NATIVE with a message that names what was looked for. Each case runs
// in a child process, since the addon is loaded once per process.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeBundle } from '../support/native-bundle.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BUILT = join(ROOT, 'build/Release/ivshmem_native.node');
const PREBUILD = `prebuilds/${process.platform}-${process.arch}/ivshmem-ts.glibc.node`;

let dir: string;
let n = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ivshmem-loader-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A package folder as npm installs it, holding the wrappers' bundle and `addons` (path in it → file to copy). */
function fakePackage(addons: Record<string, string>): string {
  const root = join(dir, `pkg${n++}`);
  mkdirSync(join(root, 'dist'), { recursive: true });
  writeFileSync(join(root, 'package.json'), JSON.stringify({ name: 'ivshmem-ts', version: '0.0.0' }));
  symlinkSync(join(ROOT, 'node_modules'), join(root, 'node_modules')); // node-gyp-build, as installed beside it
  copyFileSync(nativeBundle(), join(root, 'dist/native.mjs'));
  for (const [to, from] of Object.entries(addons)) {
    mkdirSync(join(root, to, '..'), { recursive: true });
    copyFileSync(from, join(root, to));
  }
  return root;
}

// Loads the addon in a fresh process; reports the addon file mapped, or the error's code and message.
function load(bundle: string, override?: string): { addon?: string; code?: string; message?: string } {
  const code = `
    const { native } = await import(${JSON.stringify(pathToFileURL(bundle).href)});
    try {
      native().close(native().eventfdCreate());
      const maps = (await import('node:fs')).readFileSync('/proc/self/maps', 'utf8');
      const addon = maps.split('\\n').map((l) => l.split(/\\s+/).slice(5).join(' ')).find((f) => f.endsWith('.node'));
      console.log(JSON.stringify({ addon }));
    } catch (err) {
      console.log(JSON.stringify({ code: err.code, message: err.message }));
    }`;
  const env = { ...process.env };
  delete env.IVSHMEM_NATIVE_ADDON;
  if (override !== undefined) env.IVSHMEM_NATIVE_ADDON = override;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    encoding: 'utf8',
    timeout: 15_000,
    env,
  });
  expect(child.status, child.stderr).toBe(0);
  return JSON.parse(child.stdout);
}

describe('the addon loader', () => {
  it('loads a shipped prebuild when there is no build from source', () => {
    const root = fakePackage({ [PREBUILD]: BUILT });
    expect(load(join(root, 'dist/native.mjs'))).toEqual({ addon: join(root, PREBUILD) });
  });

  it('prefers build/Release, the fallback build from source, over the prebuild', () => {
    const root = fakePackage({ [PREBUILD]: BUILT, 'build/Release/ivshmem_native.node': BUILT });
    expect(load(join(root, 'dist/native.mjs'))).toEqual({ addon: join(root, 'build/Release/ivshmem_native.node') });
  });

  it('without any addon, says what it looked for, where, and how to build it', () => {
    const root = fakePackage({});
    const r = load(join(root, 'dist/native.mjs'));
    expect(r.code).toBe('ERR_IVSHMEM_NATIVE');
    expect(r.message).toContain(
      `found neither build/Release/ivshmem_native.node (built from source) nor prebuilds/${process.platform}-${process.arch}/*.node`,
    );
    expect(r.message).toContain(` in ${root}.`);
    expect(r.message).toContain('npm rebuild ivshmem-ts');
  });

  it('refuses an IVSHMEM_NATIVE_ADDON that is relative, missing or not an addon, with ERR_IVSHMEM_NATIVE', () => {
    const bundle = nativeBundle();
    expect(load(bundle, 'build/Release/ivshmem_native.node')).toEqual({
      code: 'ERR_IVSHMEM_NATIVE',
      message: 'IVSHMEM_NATIVE_ADDON must be an absolute path, not build/Release/ivshmem_native.node',
    });
    const missing = join(dir, 'missing.node');
    expect(load(bundle, missing)).toEqual({
      code: 'ERR_IVSHMEM_NATIVE',
      message: `IVSHMEM_NATIVE_ADDON names ${missing}, which does not exist`,
    });
    const notAddon = join(dir, 'text.node');
    writeFileSync(notAddon, 'not an ELF object\n');
    const r = load(bundle, notAddon);
    expect(r.code).toBe('ERR_IVSHMEM_NATIVE');
    expect(r.message).toMatch(new RegExp(`^the native addon ${notAddon} cannot be loaded: .+`)); // and dlopen's reason
  });
});
