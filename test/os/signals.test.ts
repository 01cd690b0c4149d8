// Signal buffers, the eventfd stand-in of peers without kernel objects: rings counted and taken
// like an eventfd's (one report per batch, with its count), woken across threads by Atomics on
// the event loop (waitAsync) and in a blocked worker (Atomics.wait), rung through route handles,
// and refused with a coded error when the buffer is not a SharedArrayBuffer of the right shape.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { SignalDoorbell, Signals, signalBytes } from '../../src/os/signals.js';
import { until } from '../support/until.js';

// A worker that rings `vector` of the buffer `rings` times, `gapMs` apart, through raw Atomics as
// another peer's SignalDoorbell would.
const RINGER = `
const { workerData } = require('node:worker_threads');
const words = new Int32Array(workerData.buffer);
let n = 0;
const ring = () => {
  Atomics.add(words, 1 + workerData.vector, 1);
  Atomics.add(words, 0, 1);
  Atomics.notify(words, 0);
  if (++n < workerData.rings) setTimeout(ring, workerData.gapMs);
};
setTimeout(ring, workerData.gapMs);
`;

function ringer(signals: Signals, vector: number, rings: number, gapMs: number): Worker {
  return new Worker(RINGER, { eval: true, workerData: { buffer: signals.buffer, vector, rings, gapMs } });
}

const exited = (w: Worker) => new Promise<void>((resolve) => w.once('exit', () => resolve()));

describe('signal buffers', () => {
  it('count rings per vector and hand each batch over once, as an eventfd read does', () => {
    const s = Signals.create(3);
    expect(s.buffer.byteLength).toBe(signalBytes(3));
    s.ring(1);
    s.ring(1);
    s.ring(2);
    expect(s.bell()).toBe(3);
    const seen: [number, number][] = [];
    expect(s.takeAll((v, n) => seen.push([v, n]))).toBe(2);
    expect(seen).toEqual([
      [1, 2],
      [2, 1],
    ]);
    expect([s.take(0), s.take(1), s.take(2)]).toEqual([0, 0, 0]);
  });

  it('wake an event-loop watcher from another thread; every ring is counted, and close() stops it', async () => {
    const s = Signals.create(2);
    const counts: number[] = [];
    const watcher = s.watch((v, n) => {
      expect(v).toBe(1);
      counts.push(n);
    });
    const w = ringer(s, 1, 20, 1);
    await exited(w);
    await until(() => counts.reduce((a, b) => a + b, 0) === 20, 'all 20 rings reported');
    expect(counts.length, 'reports come in batches, never more than the rings').toBeLessThanOrEqual(20);
    watcher.close();
    expect(watcher.closed).toBe(true);
    s.ring(1);
    await new Promise((r) => setTimeout(r, 20));
    expect(
      counts.reduce((a, b) => a + b, 0),
      'nothing after close()',
    ).toBe(20);
    expect(s.take(1), 'the ring after close() is still pending in the buffer').toBe(1);
  });

  it('wake a thread blocked in Atomics.wait, and time out when nobody rings', async () => {
    const s = Signals.create(1);
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      const words = new Int32Array(workerData.buffer);
      const seen = [];
      // The blocking loop of Signals.waitBlocking, as a vCPU worker runs it (bundled code is not needed for this).
      const end = Date.now() + 5000;
      for (;;) {
        const bell = Atomics.load(words, 0);
        const n = Atomics.exchange(words, 1, 0);
        if (n > 0) { seen.push(n); break; }
        Atomics.wait(words, 0, bell, end - Date.now());
        if (Date.now() > end) break;
      }
      parentPort.postMessage(seen);
    `;
    const w = new Worker(code, { eval: true, workerData: { buffer: s.buffer } });
    const reported = new Promise<number[]>((resolve) => w.once('message', resolve));
    await new Promise((r) => setTimeout(r, 30));
    s.ring(0);
    expect(await reported).toEqual([1]);
    await exited(w);

    const t0 = Date.now();
    expect(s.waitBlocking(30, () => {})).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
    s.ring(0);
    const got: [number, number][] = [];
    expect(s.waitBlocking(1000, (v, n) => got.push([v, n]))).toBe(1);
    expect(got).toEqual([[0, 1]]);
  });

  it('ring through route handles: (slot, vector) names the buffer and the word; a removed slot rings nothing', () => {
    const a = Signals.create(2);
    const b = Signals.create(4);
    const bell = new SignalDoorbell();
    const sa = bell.add(a);
    const sb = bell.add(b);
    bell.ring(bell.handle(sb, 3));
    bell.ring(bell.handle(sa, 1));
    bell.ring(bell.handle(sa, 1));
    bell.ring(bell.handle(sa, 2)); // past a's last vector: ignored
    expect([a.take(0), a.take(1), b.take(3)]).toEqual([0, 2, 1]);
    bell.remove(sa);
    bell.ring(bell.handle(sa, 1));
    expect(a.take(1)).toBe(0);
    expect(bell.add(Signals.create(1)), 'the freed slot is reused').toBe(sa);
  });

  it('refuse a buffer that is not a SharedArrayBuffer of whole words with a bell and a vector', () => {
    expect(() => new Signals(new ArrayBuffer(8))).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new Signals(new SharedArrayBuffer(6))).toThrow(
      expect.objectContaining({ code: 'ERR_IVSHMEM_INVALID_SIZE' }),
    );
    expect(() => Signals.create(1).waitBlocking(NaN, () => {})).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }),
    );
    expect(() => new Signals(new SharedArrayBuffer(4))).toThrow(
      expect.objectContaining({ code: 'ERR_IVSHMEM_INVALID_SIZE' }),
    );
  });
});
