// Two Node processes on one shared memory object, signalling each other through eventfds
// inherited as fds 3..5 (100 round trips, every value checked); and the addon's cleanup hooks:
// a process or worker thread that leaves an eventfd, a memfd mapping and an active watcher open
// ends cleanly, and a worker's leftovers are closed when it ends (workers share our fd table).
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../../src/os/binding.js';
import { EventFd } from '../../src/os/eventfd.js';
import { SharedMemory } from '../../src/os/shared-memory.js';
import { createWaiter } from '../../src/os/waiter.js';
import { expectNoFdLeak, openFdCount } from '../support/fd-leaks.js';
import { runChild, startWorker, warmUpSpawn } from '../support/native-spawn.js';

const ROUNDS = 100;
const mappedCount = (name: string) =>
  readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.includes(`/memfd:${name}`)).length;

describe('two processes on shared memory and eventfds', () => {
  expectNoFdLeak(warmUpSpawn);
  const cleanups: (() => void)[] = [];
  afterAll(() => {
    for (const c of cleanups.reverse()) c();
  });

  it(`make ${ROUNDS} round trips: the child writes and rings, the parent reads and answers`, async () => {
    const memory = SharedMemory.open({ memfd: 'round-trips', seal: true }, { size: 4096 });
    cleanups.push(() => memory.close());
    const fromChild = EventFd.create();
    cleanups.push(() => fromChild.close());
    const toChild = EventFd.create();
    cleanups.push(() => toChild.close());
    const view = new Int32Array(memory.map());
    const seen: number[] = [];
    const counts: number[] = [];
    const waiter = createWaiter('loop', [fromChild.fd]);
    cleanups.push(() => waiter.close());
    waiter.run((_index, count) => {
      counts.push(count);
      seen.push(view[0]);
      view[1] = view[0] + 1;
      toChild.signal();
    });
    const result = await runChild('round-trips', String(ROUNDS), [memory.fd, fromChild.fd, toChild.fd]);
    expect(result).toMatchObject({ code: 0, signal: null, stderr: '' });
    expect(seen).toEqual(Array.from({ length: ROUNDS }, (_, i) => (i + 1) * 7919 - 1000));
    expect(counts.every((c) => c === 1)).toBe(true);
    expect(view[1]).toBe(ROUNDS * 7919 - 1000 + 1);
  });
});

describe('cleanup when JavaScript leaves things open', () => {
  it.each(['exit', 'return'])(
    'a process that ends by %s with an eventfd, a mapping and a watcher open exits cleanly',
    async (how) => {
      const result = await runChild('leave-open', how);
      expect(result).toMatchObject({ code: 0, signal: null, stderr: '' });
    },
  );

  it.each(['exit', 'return'])('a worker that ends by %s gives back every fd and mapping it opened', async (how) => {
    const before = openFdCount();
    const run = startWorker({ scenario: 'leave-open', how });
    try {
      const { fds } = (await run.next((m) => m.type === 'opened')) as { fds: number[] };
      expect(fds).toHaveLength(4);
      expect(await run.exited).toBe(0);
      expect(openFdCount()).toBe(before);
      for (const fd of fds) expect(native().isOwnedFd(fd)).toBe(false);
      expect(mappedCount('ivshmem-worker-leftover')).toBe(0);
    } finally {
      await run.worker.terminate();
    }
  });

  it("a worker's cleanup leaves the fds the main thread owns alone", async () => {
    const mine = EventFd.create();
    try {
      const run = startWorker({ scenario: 'leave-open', how: 'exit' });
      await run.next((m) => m.type === 'opened');
      expect(await run.exited).toBe(0);
      mine.signal(); // still open, still ours
      expect(mine.drain()).toBe(1);
      expect(native().isOwnedFd(mine.fd)).toBe(true);
    } finally {
      mine.close();
    }
  });
});
