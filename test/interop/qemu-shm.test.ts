// Interop with a real QEMU on real shared memory: QEMU's ivshmem-plain backed by
// memory-backend-file on /dev/shm/NAME (share=on), and our IvshmemDevice on the same POSIX shm
// object ({ shm: NAME }). QEMU runs paused under qtest; its guest-physical reads and writes of BAR2
// must meet our mapping byte for byte, both ways, whichever side created the object.
//
// Skipped, with a console warning, when qemu-system-x86_64 (or /dev/shm) is unavailable.
// QEMU_SHM_SEED=<n> changes the random seed; QEMU_SYSTEM_X86_64=<path> picks another QEMU binary.
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng as BaseRng } from '../support/rng.js';
import { IvshmemDevice } from '../../src/device/device.js';
import type { BarAddress, VmmTransport } from '../../src/device/transport.js';
import { QEMU_BAR0, QEMU_BAR2 } from '../support/qemu-peer.js';
import { DEFAULT_QEMU, QTest, qemuUnavailableReason } from '../support/qtest.js';

const QEMU = process.env.QEMU_SYSTEM_X86_64 ?? DEFAULT_QEMU;
const unavailable = qemuUnavailableReason(QEMU) ?? (existsSync('/dev/shm') ? null : '/dev/shm does not exist');
if (unavailable !== null)
  console.warn(`interop/qemu-shm.test.ts: skipping the shared-memory interop tests against QEMU: ${unavailable}`);

const SEED = Number(process.env.QEMU_SHM_SEED ?? 0x5a5eed);
const SIZE = 1 << 20;
// BAR2 of ivshmem-plain: 64-bit, prefetchable memory.
const BAR2_FLAGS = 0xc;

type Size = 1 | 2 | 4 | 8;
const SIZES: readonly Size[] = [1, 2, 4, 8];
const h = (v: number | bigint) => `0x${v.toString(16)}`;

/** Deterministic random numbers (mulberry32). */
class Rng extends BaseRng {
  /** A value of `size` bytes, sometimes a corner value. */
  value(size: Size): bigint {
    const v = this.chance(0.1)
      ? this.pick([0n, 0xffffffffffffffffn, 0x8000000000000000n, 0x80n, 1n])
      : (BigInt(this.u32()) << 32n) | BigInt(this.u32());
    return BigInt.asUintN(size * 8, v);
  }
}

/** `size` bytes of `bytes` at `offset`, little-endian. */
function le(bytes: Uint8Array, offset: number, size: number): bigint {
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[offset + i]);
  return v;
}

function putLe(bytes: Uint8Array, offset: number, size: number, value: bigint): void {
  for (let i = 0; i < size; i++) bytes[offset + i] = Number((value >> BigInt(8 * i)) & 0xffn);
}

/** The first differing index of two equal-length byte ranges, or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function expectSameBytes(what: string, actual: Uint8Array, expected: Uint8Array, base = 0): void {
  const at = firstDifference(actual, expected);
  if (at >= 0) {
    const around = (b: Uint8Array) => Buffer.from(b.subarray(Math.max(0, at - 4), at + 12)).toString('hex');
    expect.fail(
      `${what}: first difference at ${h(base + at)}: got ${around(actual)}, expected ${around(expected)} (seed ${h(SEED)})`,
    );
  }
}

// ---- shm names: unique per process, always unlinked at the end ----

const created: string[] = [];
let nameCount = 0;
function uniqueName(): string {
  const name = `ivshmem-test-${process.pid}-${nameCount++}`;
  created.push(name);
  return name;
}
const shmPath = (name: string) => `/dev/shm/${name}`;

afterAll(() => {
  for (const name of created) rmSync(shmPath(name), { force: true });
});

// ---- the two sides ----

interface Session {
  name: string;
  q: QTest;
  dev: IvshmemDevice;
  /** Our MAP_SHARED mapping of the object. */
  mem: Uint8Array;
  mapped: Map<number, BarAddress>;
}

function transport(mapped: Map<number, BarAddress>): VmmTransport {
  return {
    setIrqLevel: () => {
      throw new Error('a plain device has no interrupts');
    },
    sendMsi: () => {
      throw new Error('a plain device has no interrupts');
    },
    barMapped: (bar, address) => mapped.set(bar, address),
  };
}

function startQemu(name: string): Promise<QTest> {
  return QTest.start(
    [
      '-object',
      `memory-backend-file,id=m,mem-path=${shmPath(name)},size=1M,share=on`,
      '-device',
      'ivshmem-plain,memdev=m',
    ],
    { qemu: QEMU, lifetimeS: 120 },
  );
}

/** QEMU's side of BAR programming: BAR0, BAR2 (64-bit: low then high dword), then memory decoding. */
async function programQemu(q: QTest): Promise<void> {
  await q.findDevice();
  expect(await q.cfgRead(0x18, 4)).toBe(BAR2_FLAGS);
  await q.cfgWrite(0x10, 4, QEMU_BAR0);
  await q.cfgWrite(0x18, 4, QEMU_BAR2);
  await q.cfgWrite(0x1c, 4, 0);
  await q.cfgWrite(0x04, 2, 0x2);
  expect(await q.cfgRead(0x18, 4)).toBe((QEMU_BAR2 | BAR2_FLAGS) >>> 0);
  expect(await q.cfgRead(0x1c, 4)).toBe(0);
}

/** The same configuration writes on our device; BAR2 must then decode at the same address. */
function programOurs(dev: IvshmemDevice): void {
  expect(dev.configRead(0x18, 4)).toBe(BAR2_FLAGS);
  dev.configWrite(0x10, 4, QEMU_BAR0);
  dev.configWrite(0x18, 4, QEMU_BAR2);
  dev.configWrite(0x1c, 4, 0);
  dev.configWrite(0x04, 2, 0x2);
  expect(dev.configRead(0x18, 4)).toBe((QEMU_BAR2 | BAR2_FLAGS) >>> 0);
  expect(dev.barAddress(2)).toBe(BigInt(QEMU_BAR2));
}

/** The whole object as QEMU's guest sees it through BAR2, in 64 KiB hex reads. */
async function qemuView(q: QTest, offset = 0, length = SIZE): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  for (let at = 0; at < length; at += 0x10000) {
    const n = Math.min(0x10000, length - at);
    out.set(await q.memRead(QEMU_BAR2 + offset + at, n), at);
  }
  return out;
}

// Offsets of single accesses: the start, odd alignments, page edges, the middle, the very end.
function probeOffsets(size: Size): number[] {
  const list = [
    0,
    1,
    3,
    5,
    8,
    0xfff,
    0x1000 - size,
    0x1001,
    0x7ffff,
    0x80000,
    SIZE - 9,
    SIZE - 8,
    SIZE - 5,
    SIZE - 4,
    SIZE - 2,
    SIZE - 1,
  ];
  return [...new Set(list.map((o) => Math.min(o, SIZE - size)))];
}

type Order = 'ours-first' | 'qemu-first';
const ORDERS: readonly Order[] = ['ours-first', 'qemu-first'];

describe.skipIf(unavailable !== null)('ivshmem-plain on /dev/shm: QEMU and IvshmemDevice share BAR2', () => {
  for (const order of ORDERS) {
    describe(
      order === 'ours-first'
        ? 'our device creates the object, QEMU opens it'
        : 'QEMU creates the object, our device opens it',
      () => {
        let session: Session | undefined;
        let q: QTest | undefined;
        let dev: IvshmemDevice | undefined;
        /** What each side wrote before the other one opened the object, and what the other then saw. */
        const early: Record<'written' | 'writtenEnd' | 'seenStart' | 'seenEnd', Uint8Array> = {
          written: new Uint8Array(0),
          writtenEnd: new Uint8Array(0),
          seenStart: new Uint8Array(0),
          seenEnd: new Uint8Array(0),
        };
        const mapped = new Map<number, BarAddress>();
        const rng = new Rng(SEED ^ (order === 'ours-first' ? 0x1 : 0x2));

        beforeAll(async () => {
          const name = uniqueName();
          early.written = rng.bytes(64);
          early.writtenEnd = rng.bytes(64);
          if (order === 'ours-first') {
            dev = await IvshmemDevice.create({
              mode: 'plain',
              memory: { shm: name, create: 'always' },
              size: SIZE,
              transport: transport(mapped),
            });
            const mem = new Uint8Array(dev.sharedMemory.buffer);
            mem.set(early.written, 0);
            mem.set(early.writtenEnd, SIZE - 64);
            q = await startQemu(name);
            await programQemu(q);
            early.seenStart = await q.memRead(QEMU_BAR2, 64);
            early.seenEnd = await q.memRead(QEMU_BAR2 + SIZE - 64, 64);
          } else {
            expect(existsSync(shmPath(name))).toBe(false);
            q = await startQemu(name);
            expect(statSync(shmPath(name)).size).toBe(SIZE);
            await programQemu(q);
            await q.memWrite(QEMU_BAR2, early.written);
            await q.memWrite(QEMU_BAR2 + SIZE - 64, early.writtenEnd);
            // QEMU made it: an exclusive create must fail, and must not disturb it.
            await expect(
              IvshmemDevice.create({
                mode: 'plain',
                memory: { shm: name, create: 'always' },
                size: SIZE,
                transport: transport(mapped),
              }),
            ).rejects.toThrow();
            dev = await IvshmemDevice.create({
              mode: 'plain',
              memory: { shm: name, create: 'never' },
              size: SIZE,
              transport: transport(mapped),
            });
            const mem = new Uint8Array(dev.sharedMemory.buffer);
            early.seenStart = mem.slice(0, 64);
            early.seenEnd = mem.slice(SIZE - 64);
          }
          expect(dev.sharedMemory.size).toBe(SIZE);
          expect(dev.sharedMemory.fd).toBeGreaterThanOrEqual(0);
          programOurs(dev);
          expect(mapped.get(2)).toBe(BigInt(QEMU_BAR2));
          session = { name, q, dev, mem: new Uint8Array(dev.sharedMemory.buffer), mapped };
        });

        afterAll(async () => {
          try {
            await q?.close();
          } finally {
            dev?.close();
          }
        });

        /** Zeroes the object (from our side) and checks QEMU sees zeroes at both ends. */
        async function cleared(): Promise<Session> {
          const s = session!;
          s.mem.fill(0);
          expect(await s.q.read(QEMU_BAR2, 8)).toBe(0n);
          expect(await s.q.read(QEMU_BAR2 + SIZE - 8, 8)).toBe(0n);
          return s;
        }

        it('the second side sees what the first wrote before it opened the object (same object, not truncated)', () => {
          expect(session).toBeDefined();
          expectSameBytes('start of BAR2', early.seenStart, early.written);
          expectSameBytes('end of BAR2', early.seenEnd, early.writtenEnd, SIZE - 64);
        });

        it('QEMU → ours: writeb/w/l/q at many offsets (the last bytes too) and bulk writes land in our mapping and mmioRead', async () => {
          const s = await cleared();
          const model = new Uint8Array(SIZE);
          for (const size of SIZES) {
            for (const offset of probeOffsets(size)) {
              const v = rng.value(size) | 1n; // never 0, so a missed write shows
              await s.q.write(QEMU_BAR2 + offset, size, v);
              putLe(model, offset, size, v);
              expect(le(s.mem, offset, size), `mapping after QEMU write${size} at ${h(offset)}`).toBe(v);
              expect(BigInt(s.dev.mmioRead(2, offset, size)), `mmioRead${size} at ${h(offset)}`).toBe(v);
            }
          }
          // Bulk writes of a few KiB (qtest's "write ADDR LEN 0xHEX"): unaligned, and ending at the last byte.
          for (const [offset, length] of [
            [0x2003, 3000],
            [0x40000, 4096],
            [SIZE - 5000, 5000],
          ] as const) {
            const bytes = rng.bytes(length);
            await s.q.memWrite(QEMU_BAR2 + offset, bytes);
            model.set(bytes, offset);
            expectSameBytes(
              `mapping after a ${length}-byte QEMU write at ${h(offset)}`,
              s.mem.subarray(offset, offset + length),
              bytes,
              offset,
            );
            for (const at of [offset, offset + 1, offset + length - 8]) {
              expect(s.dev.mmioRead(2, at, 8)).toBe(le(bytes, at - offset, 8));
            }
          }
          expectSameBytes('whole mapping', s.mem, model);
          expectSameBytes('the shm file', new Uint8Array(readFileSync(shmPath(s.name))), model);
        });

        it("ours → QEMU: mmioWrite and direct stores into the mapped ArrayBuffer are read back through QEMU's BAR2", async () => {
          const s = await cleared();
          const model = new Uint8Array(SIZE);
          const view = new DataView(s.mem.buffer, s.mem.byteOffset, s.mem.byteLength);
          for (const size of SIZES) {
            for (const offset of probeOffsets(size)) {
              const v = rng.value(size) | 1n;
              s.dev.mmioWrite(2, offset, size, size === 8 ? v : Number(v));
              putLe(model, offset, size, v);
              expect(await s.q.read(QEMU_BAR2 + offset, size), `QEMU read${size} at ${h(offset)} after mmioWrite`).toBe(
                v,
              );
            }
          }
          // Direct stores: DataView, typed arrays and bulk copies into the mapping.
          view.setBigUint64(SIZE - 8, 0x0123456789abcdefn, true);
          putLe(model, SIZE - 8, 8, 0x0123456789abcdefn);
          expect(await s.q.read(QEMU_BAR2 + SIZE - 8, 8)).toBe(0x0123456789abcdefn);
          expect(await s.q.read(QEMU_BAR2 + SIZE - 1, 1)).toBe(0x01n);
          const words = new Uint32Array(s.mem.buffer, 0x10000, 16);
          for (let i = 0; i < words.length; i++) words[i] = (0xdead0000 | i) >>> 0;
          for (let i = 0; i < words.length; i++) putLe(model, 0x10000 + 4 * i, 4, BigInt((0xdead0000 | i) >>> 0));
          expect(await s.q.read(QEMU_BAR2 + 0x10000 + 4 * 15, 4)).toBe(0xdead000fn);
          new Float64Array(s.mem.buffer, 0x20000, 1)[0] = Math.PI;
          putLe(model, 0x20000, 8, new BigUint64Array(new Float64Array([Math.PI]).buffer)[0]);
          expect(await s.q.read(QEMU_BAR2 + 0x20000, 8)).toBe(le(model, 0x20000, 8));
          for (const [offset, length] of [
            [0x3001, 3000],
            [0x50000, 4096],
            [SIZE - 4096, 4096],
          ] as const) {
            const bytes = rng.bytes(length);
            s.mem.set(bytes, offset);
            model.set(bytes, offset);
            expectSameBytes(
              `QEMU's read of ${length} bytes at ${h(offset)}`,
              await s.q.memRead(QEMU_BAR2 + offset, length),
              bytes,
              offset,
            );
          }
          expectSameBytes("QEMU's view of the whole object", await qemuView(s.q), model);
        });

        it('a seeded sequence of 500 mixed writes from both sides agrees from both sides', async () => {
          const s = await cleared();
          const model = new Uint8Array(SIZE);
          const view = new DataView(s.mem.buffer, s.mem.byteOffset, s.mem.byteLength);
          const HOT = 0x8000 - 128; // a window straddling a page boundary, where writes overlap
          const counts = { qemuSingle: 0, qemuBulk: 0, oursMmio: 0, oursStore: 0, oursBulk: 0 };
          const place = (length: number) => {
            const r = rng.u32() / 2 ** 32;
            const offset = r < 0.6 ? HOT + rng.int(256) : r < 0.8 ? SIZE - 1 - rng.int(512) : rng.int(SIZE);
            return Math.max(0, Math.min(offset, SIZE - length));
          };
          for (let step = 0; step < 500; step++) {
            const what = rng.u32() / 2 ** 32;
            const bulk = rng.chance(0.15);
            const size = rng.pick(SIZES);
            const length = bulk ? 1 + (rng.chance(0.2) ? rng.int(4096) : rng.int(300)) : size;
            const offset = place(length);
            const tag = `step ${step} (seed ${h(SEED)})`;
            if (what < 0.5) {
              // QEMU's guest writes; we check at once through the mapping and mmioRead.
              if (bulk) {
                const bytes = rng.bytes(length);
                await s.q.memWrite(QEMU_BAR2 + offset, bytes);
                model.set(bytes, offset);
                counts.qemuBulk++;
              } else {
                const v = rng.value(size);
                await s.q.write(QEMU_BAR2 + offset, size, v);
                putLe(model, offset, size, v);
                counts.qemuSingle++;
              }
              expectSameBytes(
                `${tag}: mapping after QEMU's write`,
                s.mem.subarray(offset, offset + length),
                model.subarray(offset, offset + length),
                offset,
              );
              const probe = Math.min(offset, SIZE - 8);
              expect(BigInt(s.dev.mmioRead(2, probe, 8)), `${tag}: mmioRead8 at ${h(probe)}`).toBe(le(model, probe, 8));
            } else {
              // Our writes: mmioWrite, a DataView store, or a bulk copy; QEMU reads them back at once.
              if (bulk) {
                const bytes = rng.bytes(length);
                s.mem.set(bytes, offset);
                model.set(bytes, offset);
                counts.oursBulk++;
              } else {
                const v = rng.value(size);
                if (rng.chance(0.5)) {
                  s.dev.mmioWrite(2, offset, size, size === 8 ? v : Number(v));
                  counts.oursMmio++;
                } else {
                  if (size === 1) view.setUint8(offset, Number(v));
                  else if (size === 2) view.setUint16(offset, Number(v), true);
                  else if (size === 4) view.setUint32(offset, Number(v), true);
                  else view.setBigUint64(offset, v, true);
                  counts.oursStore++;
                }
                putLe(model, offset, size, v);
              }
              if (length <= 8 && !bulk) {
                expect(
                  await s.q.read(QEMU_BAR2 + offset, size as Size),
                  `${tag}: QEMU read${size} at ${h(offset)}`,
                ).toBe(le(model, offset, size));
              } else {
                expectSameBytes(
                  `${tag}: QEMU's read after our write`,
                  await s.q.memRead(QEMU_BAR2 + offset, length),
                  model.subarray(offset, offset + length),
                  offset,
                );
              }
            }
            if (step % 100 === 99) {
              expectSameBytes(
                `${tag}: hot window through QEMU`,
                await s.q.memRead(QEMU_BAR2 + HOT, 512),
                model.subarray(HOT, HOT + 512),
                HOT,
              );
              expectSameBytes(`${tag}: whole mapping`, s.mem, model);
            }
          }
          expectSameBytes("final: QEMU's view of the whole object", await qemuView(s.q), model);
          expectSameBytes('final: our mapping', s.mem, model);
          expectSameBytes('final: the shm file', new Uint8Array(readFileSync(shmPath(s.name))), model);
          for (const n of Object.values(counts)) expect(n).toBeGreaterThan(10);
        });

        it("QEMU's /ivshmem/single recipe: host memset seen by guest reads, guest u32 writes i at 4*i seen by the host", async () => {
          const s = await cleared();
          s.mem.fill(0x42);
          for (const offset of [0, 4, 0x1000, 0x80000, SIZE - 4])
            expect(await s.q.read(QEMU_BAR2 + offset, 4)).toBe(0x42424242n);
          expectSameBytes(
            'guest read of the memset',
            await s.q.memRead(QEMU_BAR2, 4096),
            new Uint8Array(4096).fill(0x42),
          );
          for (let i = 0; i < 1024; i++) await s.q.write(QEMU_BAR2 + 4 * i, 4, i);
          const host = new Uint32Array(s.mem.buffer, 0, 1025);
          for (let i = 0; i < 1024; i++)
            if (host[i] !== i) expect.fail(`host u32 ${i} is ${h(host[i])}, guest wrote ${h(i)}`);
          expect(host[1024]).toBe(0x42424242); // nothing past the guest's writes
          for (const i of [0, 1, 511, 1023]) expect(s.dev.mmioRead(2, 4 * i, 4)).toBe(i);
          const back = new Uint32Array((await s.q.memRead(QEMU_BAR2, 4096)).slice().buffer);
          for (let i = 0; i < 1024; i++) if (back[i] !== i) expect.fail(`guest read-back of u32 ${i} is ${h(back[i])}`);
        });
      },
    );
  }
});
