// The per-doorbell eventfd calls through V8's fast API (native/fast/, src/os/fast-binding.ts) and
// the N-API addon they fall back to. Both must do exactly the same: every ring counted, the same
// errors (code, errno, syscall, message) and the same argument refusals. Which body ran is read
// from the module's own counters, so these tests show that optimised code really takes the fast
// call and unoptimised code the callback. IVSHMEM_FAST_API=0 switches the module off: a process
// started with it rings and drains through the addon alone.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { dirname, join } from 'node:path';
import { addonPath, native } from '../../src/os/binding.js';
import { EventFd, drainEventfd, signalEventfd } from '../../src/os/eventfd.js';
import { createWaiter } from '../../src/os/waiter.js';
import { fastBinding, fastCallStatus } from '../../src/os/fast-binding.js';
import { bundleModule } from '../support/bundle.js';
import { expectNoFdLeak } from '../support/fd-leaks.js';
import { warmUpSpawn } from '../support/native-spawn.js';

const caught = (f: () => unknown): Record<string, unknown> => {
  try {
    f();
  } catch (e) {
    return { ...(e as object), message: (e as Error).message, name: (e as Error).name };
  }
  throw new Error('did not throw');
};

let bundle = '';

describe('eventfd doorbells through V8 fast calls', () => {
  // esbuild's service and the first child's pipes stay for the test process.
  expectNoFdLeak(async () => {
    bundle = bundleModule('fast-calls', [
      "export { EventFd, signalEventfd, drainEventfd } from './src/os/eventfd.ts';",
      "export { fastBinding, fastCallStatus } from './src/os/fast-binding.ts';",
      "export { native } from './src/os/binding.ts';",
    ]);
    await warmUpSpawn();
  });

  it('is on in a build from source, on this Node, loaded from beside the addon (the ASan build beside the ASan addon)', () => {
    expect(fastCallStatus()).toBe(`on: ${join(dirname(addonPath()), 'ivshmem_fast.node')}`);
    expect(fastBinding()!.fastCalls).toBe(true);
  });

  it('optimised code takes the fast call, and not one ring is lost or doubled', () => {
    const e = EventFd.create();
    try {
      const before = fastBinding()!.calls();
      let drained = 0;
      const rounds = 200;
      for (let r = 0; r < rounds; r++) {
        for (let i = 0; i < 1000; i++) e.signal();
        drained += e.drain();
      }
      const after = fastBinding()!.calls();
      expect(drained).toBe(rounds * 1000);
      expect(after.fast - before.fast, 'fast bodies run').toBeGreaterThan(rounds * 500);
      expect(after.slow - before.slow, 'callbacks (before the loop was optimised)').toBeGreaterThan(0);
      expect(after.fast + after.slow - before.fast - before.slow).toBe(rounds * 1001);
    } finally {
      e.close();
    }
  });

  it('fails as the addon does: code, errno, syscall, message', () => {
    const gone = native().eventfdCreate();
    native().close(gone);
    const napiWrite = caught(() => native().eventfdSignal(gone));
    const napiRead = caught(() => native().eventfdDrain(gone));
    expect(napiWrite).toMatchObject({ code: 'EBADF', errno: -9, syscall: 'write' });
    expect(caught(() => signalEventfd(gone))).toEqual(napiWrite);
    expect(caught(() => drainEventfd(gone))).toEqual(napiRead);
  });

  it('cold code runs the callback, optimised code the fast body; both give the errno, thrown as the addon would (V8 told when to optimise, in a child)', () => {
    const script = `
      const { signalEventfd, drainEventfd, fastBinding, native } = await import(${JSON.stringify(bundle)});
      const f = fastBinding();
      const e = native().eventfdCreate();
      const gone = native().eventfdCreate();
      native().close(gone);
      // Cold: the first calls run the callbacks V8 falls back to.
      let s = f.calls().slow;
      const cold = [f.eventfdSignal(gone), f.eventfdDrain(gone), f.eventfdSignal(e), f.eventfdDrain(e), f.spinRead(gone, 5), f.spinRead(e, 5)];
      const coldSlow = f.calls().slow - s;
      function spin(fd) { return f.spinRead(fd, 100); }
      function ringRaw(fd) { return f.eventfdSignal(fd); }
      // The library's own functions, optimised as a hot doorbell path would have them.
      for (const fn of [ringRaw, signalEventfd, drainEventfd, spin]) {
        %PrepareFunctionForOptimization(fn);
        fn(e); fn(e);
        %OptimizeFunctionOnNextCall(fn);
        fn(e);
      }
      const caught = (g) => { try { g(); } catch (err) { return { code: err.code, errno: err.errno, syscall: err.syscall, message: err.message }; } };
      const at = () => f.calls().fast;
      let c = at(); signalEventfd(e); const drained = drainEventfd(e); const okFast = at() - c;
      c = at(); const raw = ringRaw(gone); const rawFast = at() - c;
      c = at(); const write = caught(() => signalEventfd(gone)); const writeFast = at() - c;
      c = at(); const read = caught(() => drainEventfd(gone)); const readFast = at() - c;
      signalEventfd(e); signalEventfd(e);
      c = at(); const spun = [spin(e), spin(e), spin(gone)]; const spinFast = at() - c;
      native().close(e);
      console.log(JSON.stringify({ cold, coldSlow, spun, spinFast, raw, rawFast, write, writeFast, read, readFast, drained, okFast }));
    `;
    const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const gone = native().eventfdCreate();
    native().close(gone);
    const napiWrite = caught(() => native().eventfdSignal(gone));
    const napiRead = caught(() => native().eventfdDrain(gone));
    const pick = ({ code, errno, syscall, message }: Record<string, unknown>) => ({ code, errno, syscall, message });
    expect(JSON.parse(r.stdout)).toEqual({
      // EBADF from write and read, a ring and its drain, a spin on a bad fd, a spin that finds nothing
      cold: [9, -9, 0, 1, -9, 0],
      coldSlow: 6,
      spun: [2, 0, -9], // two rings found, then 100 empty rounds, then EBADF
      spinFast: 3,
      raw: 9, // EBADF, returned by the fast body
      rawFast: 1,
      write: pick(napiWrite),
      writeFast: 1,
      read: pick(napiRead),
      readFast: 1,
      drained: 1, // the warm-up drains took the warm-up rings
      okFast: 2,
    });
  });

  it('a busy poll on one fd spins in the fast call; on two, through the addon; both report the same', () => {
    const a = EventFd.create();
    const b = EventFd.create();
    const one = createWaiter('spin', [a.fd], { spinRounds: 1000 });
    const two = createWaiter('spin', [a.fd, b.fd], { spinRounds: 1000 });
    try {
      const fast = fastBinding()!.calls().fast + fastBinding()!.calls().slow;
      a.signal();
      a.signal();
      a.signal();
      expect([one.waitOnce(), one.lastCount]).toEqual([0, 3]);
      expect(one.waitOnce(), 'the rounds ran out').toBe(-1);
      expect(
        fastBinding()!.calls().fast + fastBinding()!.calls().slow - fast,
        'three rings, two spins, and the look at the stop eventfd when the rounds ran out',
      ).toBe(6);
      b.signal();
      expect([two.waitOnce(), two.lastCount]).toEqual([1, 1]);
      expect(caught(() => one.waitOnce(1.5))).toEqual(caught(() => two.waitOnce(1.5)));
      expect(caught(() => one.waitOnce(1.5))).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    } finally {
      for (const x of [one, two, a, b]) x.close();
    }
  });

  it('refuses what the addon refuses, before any system call', () => {
    for (const bad of [1.5, NaN, 2 ** 40, -(2 ** 40)]) {
      expect(caught(() => signalEventfd(bad))).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      expect(caught(() => native().eventfdSignal(bad))).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    }
    for (const bad of ['3', null, undefined, {}]) {
      const fd = bad as unknown as number;
      expect(caught(() => drainEventfd(fd))).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      expect(caught(() => native().eventfdDrain(fd))).toMatchObject({
        name: 'TypeError',
        code: 'ERR_INVALID_ARG_TYPE',
      });
    }
  });

  it('IVSHMEM_FAST_API=0 switches it off: rings and drains go through the addon, with the same results', () => {
    const script = `
      const { EventFd, signalEventfd, fastBinding, fastCallStatus, native } = await import(${JSON.stringify(bundle)});
      const e = EventFd.create();
      for (let i = 0; i < 50000; i++) e.signal();
      const drained = e.drain();
      const gone = native().eventfdCreate();
      native().close(gone);
      let error;
      try { signalEventfd(gone); } catch (err) { error = { code: err.code, errno: err.errno, syscall: err.syscall }; }
      e.close();
      console.log(JSON.stringify({ status: fastCallStatus(), module: fastBinding(), drained, error }));
    `;
    const run = (env: Record<string, string>) => {
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        env: { ...process.env, ...env },
        timeout: 20_000,
      });
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { status: string; module: unknown; drained: number; error: unknown };
    };
    const off = run({ IVSHMEM_FAST_API: '0' });
    const on = run({ IVSHMEM_FAST_API: '' });
    expect(off).toEqual({
      status: 'off (IVSHMEM_FAST_API=0): the N-API addon',
      module: null,
      drained: 50000,
      error: { code: 'EBADF', errno: -9, syscall: 'write' },
    });
    expect(on).toMatchObject({ status: expect.stringMatching(/^on: /), drained: 50000, error: off.error });
  });
});
