// Waiting for eventfds four ways (loop: libuv on the calling thread; blocking: poll(2);
// spin: non-blocking reads; adaptive: a spin budget, then poll(2)): each signal reported once, with its count and the
// right index;
// bounded waits; stopping from another thread; unref() letting a process end; and the loop
// and blocking waiters inside worker threads.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../../src/os/binding.js';
import { EventFd } from '../../src/os/eventfd.js';
import { UnixListener, UnixSocket } from '../../src/os/unix-socket.js';
import { createWaiter, stopWaiter } from '../../src/os/waiter.js';
import type { EventfdWaiter, WaitKind } from '../../src/os/waiter.js';
import { expectNoFdLeak } from '../support/fd-leaks.js';
import { runChild, startWorker } from '../support/native-spawn.js';
import { until } from '../support/until.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let cleanups: (() => void)[] = [];
const eventfds = (n: number) =>
  Array.from({ length: n }, () => {
    const e = EventFd.create();
    cleanups.push(() => e.close());
    return e;
  });
const waiterOn = (kind: WaitKind, fds: number[], options?: Parameters<typeof createWaiter>[2]): EventfdWaiter => {
  const w = createWaiter(kind, fds, options);
  cleanups.unshift(() => w.close()); // before the fds it watches
  return w;
};
afterEach(() => {
  for (const c of cleanups) c();
  cleanups = [];
});

describe.each(['loop', 'blocking', 'spin', 'adaptive'] as const)('%s waiter', (kind) => {
  expectNoFdLeak();
  // Budgets are milliseconds where the wait ends blocked, rounds where it only spins.
  const blocks = kind === 'blocking' || kind === 'adaptive';

  it('reports each signal once, with its count and the index of its fd', async () => {
    const es = eventfds(3);
    const waiter = waiterOn(
      kind,
      es.map((e) => e.fd),
    );
    expect(waiter.kind).toBe(kind);
    const reports: [number, number][] = [];
    es[1].signal();
    es[1].signal();
    if (kind === 'loop') {
      waiter.run((index, count) => reports.push([index, count]));
      es[2].signal(); // before the loop turns: still one report each
      await until(() => reports.length >= 2, 'reports.length >= 2', 5000, 2);
      await sleep(50); // a quiet period: nothing more
      expect(reports.sort()).toEqual([
        [1, 2],
        [2, 1],
      ]);
      es[0].signal();
      await until(() => reports.length >= 3, 'reports.length >= 3', 5000, 2);
      await sleep(30);
      expect(reports[2]).toEqual([0, 1]);
      expect(reports).toHaveLength(3);
    } else {
      expect(waiter.waitOnce(blocks ? 5000 : 100_000)).toBe(1);
      expect(waiter.lastCount).toBe(2);
      expect(waiter.waitOnce(blocks ? 30 : 1000)).toBe(-1); // reported once only
      es[2].signal();
      es[0].signal();
      es[0].signal();
      es[0].signal();
      // run() reports in fd order until the stop signal, which comes last in the list.
      waiter.stop();
      waiter.run((index, count) => reports.push([index, count]));
      expect(reports).toEqual([
        [0, 3],
        [2, 1],
      ]);
      expect(waiter.waitOnce(blocks ? 10 : 100)).toBe(-1);
    }
    for (const e of es) expect(e.drain()).toBe(0); // the waiter drained what it reported
  });

  if (kind !== 'loop') {
    it('gives up after its budget with -1', () => {
      const [e] = eventfds(1);
      const waiter = waiterOn(kind, [e.fd], { spinRounds: 5000 });
      const t0 = performance.now();
      expect(waiter.waitOnce(blocks ? 50 : 20_000)).toBe(-1);
      const ms = performance.now() - t0;
      if (blocks) expect(ms).toBeGreaterThanOrEqual(45);
      expect(waiter.waitOnce(0)).toBe(-1);
      e.signal();
      expect(waiter.waitOnce(blocks ? 5000 : undefined)).toBe(0); // default spin budget
    });

    it('returns -1 from waitOnce once stop() was called, and stopWaiter(stopFd, stopValue) stops it too', () => {
      const [e] = eventfds(1);
      const waiter = waiterOn(kind, [e.fd]);
      stopWaiter(waiter.stopFd, waiter.stopValue);
      expect(waiter.waitOnce(5000)).toBe(-1);
      waiter.stop();
      expect(waiter.waitOnce(5000)).toBe(-1);
      waiter.close();
      expect(() => waiter.stopFd).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_CLOSED' }));
      // Closed, it no longer waits on fd numbers that may name someone else's files by now.
      expect(() => waiter.waitOnce(0)).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_CLOSED' }));
    });
  }
});

describe('waiter edge cases', () => {
  expectNoFdLeak();

  it('refuses bad fd lists and kinds, and waitOnce on a loop waiter', () => {
    expect(() => createWaiter('loop', [])).toThrow(TypeError);
    expect(() => createWaiter('blocking', [-1])).toThrow(TypeError);
    expect(() => createWaiter('spin', [1.5])).toThrow(TypeError);
    expect(() => createWaiter('busy' as WaitKind, [0])).toThrow(/unknown wait kind/);
    expect(() => createWaiter('adaptive', [0], { spinRounds: -1 })).toThrow(
      expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }),
    );
    expect(() => createWaiter('spin', [0], { spinRounds: 2.5 })).toThrow(RangeError);
    const [e] = eventfds(1);
    const loop = waiterOn('loop', [e.fd]);
    expect(() => loop.waitOnce()).toThrow(TypeError);
    loop.close();
    expect(() => loop.run(() => {})).toThrow(expect.objectContaining({ code: 'ERR_IVSHMEM_CLOSED' })); // like every closed handle
  });

  it('reports a failed read to onError (a loop waiter on a listening socket)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ivshmem-native-wait-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const listener = UnixListener.listen(join(dir, 's'));
    cleanups.push(() => listener.close());
    const client = UnixSocket.connect(listener.path); // makes the listener readable
    cleanups.push(() => client.close());
    const errors: Error[] = [];
    const waiter = waiterOn('loop', [listener.fd], {
      onError: (err) => {
        errors.push(err);
        waiter.stop();
      },
    });
    waiter.run(() => errors.push(new Error('reported as ready')));
    await until(() => errors.length > 0, 'errors.length > 0', 5000, 2);
    expect(errors[0]).toMatchObject({ syscall: 'read' });
    expect(String((errors[0] as { code?: string }).code)).toMatch(/^E[A-Z]+$/);
  });

  it('stops a loop waiter: no reports after stop(), and run() again starts afresh', async () => {
    const [e] = eventfds(1);
    const reports: number[] = [];
    const waiter = waiterOn('loop', [e.fd]);
    waiter.run((_, count) => reports.push(count));
    waiter.stop();
    e.signal();
    await sleep(30);
    expect(reports).toEqual([]);
    waiter.run((_, count) => reports.push(count));
    await until(() => reports.length === 1, 'reports.length === 1', 5000, 2);
    expect(reports).toEqual([1]);
  });
});

describe('watcher lifetime', () => {
  expectNoFdLeak();
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;

  // Each watcher is made in a function of its own: closures made in one scope share a context,
  // and one rooted callback would then keep the others' watchers reachable.
  type Watcher = InstanceType<ReturnType<typeof native>['FdWatcher']>;
  const selfReferencing = (fd: number): Watcher => {
    const holder: { w?: Watcher } = {};
    holder.w = new (native().FdWatcher)(fd, true, () => holder.w!.close());
    return holder.w;
  };
  const plain = (fd: number, onReport: (count: number) => void = () => {}): Watcher =>
    new (native().FdWatcher)(fd, true, (_err, count) => onReport(count!));

  it('lets a closed or stopped watcher be collected, and keeps a running one', async () => {
    const [a, b, c] = eventfds(3);
    const collected: string[] = [];
    const registry = new FinalizationRegistry((what: string) => collected.push(what));
    const reports: number[] = [];
    const track = (w: Watcher, what: string) => {
      registry.register(w, what);
      return new WeakRef(w);
    };
    (() => {
      const closed = selfReferencing(a.fd); // its callback reaches it: only close() can free it
      closed.start();
      closed.close();
      track(closed, 'started, closed');
      const stopped = plain(b.fd);
      stopped.start();
      stopped.stop();
      track(stopped, 'started, stopped');
    })();
    const running = (() => {
      const w = plain(c.fd, (count) => reports.push(count));
      w.start();
      return track(w, 'running');
    })();
    cleanups.unshift(() => running.deref()?.close()); // before its eventfd closes, pass or fail
    for (let i = 0; i < 40 && collected.length < 2; i++) {
      gc();
      await sleep(5);
    }
    await sleep(20);
    expect(collected.sort()).toEqual(['started, closed', 'started, stopped']);
    c.signal();
    await until(() => reports.length === 1, 'reports.length === 1', 5000, 2); // the running one was kept, and still watches
    expect(reports).toEqual([1]);
    expect(running.deref()).toBeDefined();
  });
});

describe('loop waiter and the process', () => {
  it("unref() lets the process exit; a ref'd waiter keeps it until it reports", async () => {
    const unref = await runChild('unref');
    expect(unref).toMatchObject({ code: 0, signal: null, stderr: '' });
    expect(unref.stdout).toBe('exited\n');
    const ref = await runChild('ref');
    expect(ref).toMatchObject({ code: 0, signal: null, stderr: '' });
    expect(ref.stdout).toBe('ready 0 2\n');
  });
});

describe('a blocking waiter on one fd', () => {
  expectNoFdLeak();
  // O_NONBLOCK (04000 octal) in the fd's flags, as /proc shows them.
  const nonBlocking = (fd: number) =>
    (parseInt(/flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1], 8) & 0o4000) !== 0;

  it('blocks in read(2) on the fd itself, reports doorbells that came with a stop before stopping, and gives the fd back non-blocking', () => {
    const [e] = eventfds(1);
    const waiter = waiterOn('blocking', [e.fd]);
    expect([waiter.stopFd, waiter.stopValue, nonBlocking(e.fd)]).toEqual([e.fd, 'mark', false]);
    e.signal();
    e.signal();
    waiter.stop(); // the stop mark lands in the same counter as the two doorbells
    const reports: [number, number][] = [];
    waiter.run((index, count) => reports.push([index, count]));
    expect(reports).toEqual([[0, 2]]); // nothing lost, then stopped
    e.signal();
    expect(waiter.waitOnce()).toBe(0);
    expect(waiter.lastCount).toBe(1);
    expect(waiter.waitOnce(20)).toBe(-1); // a timed wait polls first
    waiter.close();
    expect(nonBlocking(e.fd)).toBe(true);
    expect(e.drain()).toBe(0); // returns at once: the description is non-blocking again
  });
});

describe('waiters in worker threads', () => {
  expectNoFdLeak();

  it.each([
    ['blocking', 2],
    ['spin', 2],
    ['blocking', 1],
    ['adaptive', 1],
    ['adaptive', 2],
  ] as const)('a %s waiter on %i fds in a worker, woken and stopped from the main thread', async (kind, fdCount) => {
    const es = eventfds(fdCount);
    const last = fdCount - 1;
    es[last].signal();
    es[last].signal(); // before the worker even starts: one report, count 2
    const run = startWorker({ scenario: 'thread-waiter', kind, fds: es.map((e) => e.fd) });
    let stop: { fd: number; value: 'one' | 'mark' } | undefined;
    try {
      stop = (await run.next((m) => m.type === 'stopFd')) as unknown as { fd: number; value: 'one' | 'mark' };
      // One fd: the waiter blocks in read(2) on it and is stopped through it; more: its own eventfd.
      expect(stop.value).toBe(fdCount === 1 && kind === 'blocking' ? 'mark' : 'one');
      expect(await run.next((m) => m.type === 'ready')).toEqual({ type: 'ready', index: last, count: 2 });
      es[0].signal();
      expect(await run.next((m) => m.type === 'ready' && m.count === 1)).toEqual({ type: 'ready', index: 0, count: 1 });
      stopWaiter(stop.fd, stop.value);
      await run.next((m) => m.type === 'stopped');
      expect(await run.exited).toBe(0);
      expect(run.messages.filter((m) => m.type === 'ready')).toHaveLength(2);
      if (stop.value === 'one')
        expect(native().isOwnedFd(stop.fd)).toBe(false); // the worker closed its stop eventfd
      else {
        // The vector is handed back non-blocking and empty: a drain returns at once.
        expect(es[0].drain()).toBe(0);
      }
    } finally {
      // terminate() cannot interrupt a blocking system call: on failure, stop the wait first.
      if (stop !== undefined && !run.messages.some((m) => m.type === 'stopped')) stopWaiter(stop.fd, stop.value);
      await run.worker.terminate();
    }
  });

  it("a loop waiter on a worker's own event loop", async () => {
    const es = eventfds(3);
    es[2].signal();
    es[2].signal();
    es[2].signal();
    const run = startWorker({ scenario: 'loop-waiter', fds: es.map((e) => e.fd), reports: 2 });
    try {
      expect(await run.next((m) => m.type === 'ready')).toEqual({ type: 'ready', index: 2, count: 3 });
      es[0].signal();
      expect(await run.next((m) => m.type === 'ready' && m.index === 0)).toEqual({ type: 'ready', index: 0, count: 1 });
      expect(await run.exited).toBe(0); // closing its waiter let the worker's loop run dry
      expect(run.messages.filter((m) => m.type === 'ready')).toHaveLength(2);
      for (const e of es) expect(e.drain()).toBe(0);
    } finally {
      await run.worker.terminate();
    }
  });
});
