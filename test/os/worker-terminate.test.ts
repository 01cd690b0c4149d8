// A worker thread terminated while its fd watcher is reporting doorbells must go quietly. Before
// the watcher called back through N-API's checked C interface, a report arriving as the worker's
// JavaScript was being stopped made node-addon-api build an Error in an environment that could not
// run JavaScript any more, and the whole process died with "FATAL ERROR: Error::Error
// napi_define_properties". The rounds run in a child process, so a crash fails this test instead
// of ending the test runner.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { nativeBundle } from '../support/native-bundle.js';

const CHILD = fileURLToPath(new URL('../support/terminate-watching-worker.mjs', import.meta.url));

describe('terminating a worker that watches a busy eventfd', () => {
  it('leaves the process alive, every round', () => {
    const r = spawnSync(process.execPath, [CHILD, nativeBundle(), '80'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).not.toMatch(/FATAL ERROR/);
    expect({ status: r.status, signal: r.signal }).toEqual({ status: 0, signal: null });
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.survived).toBe(80);
    expect(out.signalled).toBeGreaterThan(80);
  }, 90_000);
});
