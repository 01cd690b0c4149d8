// Which build of the native addon the tests really run: the package's own (build/Release/) in
// the ordinary suite, and under `npm run test:asan` (scripts/test-asan.mjs, which sets
// IVSHMEM_NATIVE_ADDON and IVSHMEM_EXPECT_ASAN=1) the AddressSanitizer build, with the sanitizer's
// runtime mapped, in this process, in a worker thread and in a child process alike. So the ASan
// run cannot pass on an uninstrumented addon without saying so.
import { spawnSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { native } from '../../src/os/binding.js';
import { nativeBundle } from '../support/native-bundle.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const expectAsan = process.env.IVSHMEM_EXPECT_ASAN === '1';
const expectedAddon = realpathSync(process.env.IVSHMEM_NATIVE_ADDON || `${ROOT}build/Release/ivshmem_native.node`);

interface Loaded {
  addons: string[];
  asanRuntime: boolean;
}

// What a process has mapped: every file of an ivshmem_native addon, and whether libasan is there.
function loadedIn(maps: string): Loaded {
  const files = maps.split('\n').map((line) => line.split(/\s+/).slice(5).join(' '));
  return {
    addons: [...new Set(files.filter((f) => /ivshmem_native[^/]*\.node$/.test(f)))],
    asanRuntime: files.some((f) => /\/libasan\.so[.\d]*$/.test(f)),
  };
}

// An instrumented object imports the sanitizer's entry points by name.
const instrumented = (file: string) => readFileSync(file).includes('__asan_init');

// Runs `body` (an ES module's text) in a fresh process or thread with the wrappers' bundle as
// `bundle`; it ends by reporting the process's maps.
const probe = (bundle: string) => `
  const { native } = await import(${JSON.stringify(pathToFileURL(bundle).href)});
  const b = native();
  b.close(b.eventfdCreate()); // really use it
  const maps = (await import('node:fs')).readFileSync('/proc/self/maps', 'utf8');
`;

describe('the addon the native tests load', () => {
  it(`is ${expectAsan ? 'the AddressSanitizer build' : 'the package build'}, in this process`, () => {
    const b = native();
    b.close(b.eventfdCreate());
    const seen = loadedIn(readFileSync('/proc/self/maps', 'utf8'));
    expect(seen.addons).toEqual([expectedAddon]);
    expect(seen.asanRuntime).toBe(expectAsan);
    expect(instrumented(expectedAddon)).toBe(expectAsan);
  });

  it('is the same one in a worker thread, which loads the addon again', async () => {
    const code = `(async () => {${probe(nativeBundle())}
      require('node:worker_threads').parentPort.postMessage(maps);
    })();`; // a rejection is uncaught in the worker: its 'error' event
    const worker = new Worker(code, { eval: true });
    const maps = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the probe worker did not answer within 15 s')), 15_000);
      worker.once('message', (m: string) => {
        clearTimeout(timer);
        resolve(m);
      });
      worker.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    await worker.terminate();
    const seen = loadedIn(maps);
    expect(seen.addons).toEqual([expectedAddon]);
    expect(seen.asanRuntime).toBe(expectAsan);
  });

  it('is the same one in a child process, which inherits the choice', () => {
    const code = `${probe(nativeBundle())} process.stdout.write(maps);`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
      encoding: 'utf8',
      timeout: 15_000,
    });
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    const seen = loadedIn(child.stdout);
    expect(seen.addons).toEqual([expectedAddon]);
    expect(seen.asanRuntime).toBe(expectAsan);
  });
});
