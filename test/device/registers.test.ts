// BAR0 registers: initial values, readback, read-to-clear, and QEMU's results for every access
// size and alignment (the expected values below were read from QEMU 7.2 through qtest).
import { describe, expect, it } from 'vitest';
import { CORE_VARIANTS, makeDevice } from '../support/device-harness.js';
import type { IvshmemDevice } from '../../src/device/device.js';

const peekRegs = (d: IvshmemDevice) => {
  // Reading IntrStatus clears it, so put it back: the peek must not disturb what it observes.
  const mask = d.mmioRead(0, 0, 4);
  const status = d.mmioRead(0, 4, 4);
  d.mmioWrite(0, 4, 4, status);
  return { mask, status, position: d.mmioRead(0, 8, 4) };
};

describe.each(CORE_VARIANTS)('BAR0 registers (%s core)', (variant) => {
  it('start at zero, with IVPosition the device id', async () => {
    const { device } = await makeDevice(variant, { mode: 'doorbell', vectors: 2, id: 7 });
    expect(peekRegs(device)).toEqual({ mask: 0, status: 0, position: 7 });
    expect(device.mmioRead(0, 0x0c, 4)).toBe(0);
  });

  it('IntrMask reads back; IntrStatus reads back once, then reads 0', async () => {
    const { device } = await makeDevice(variant, { mode: 'plain' });
    device.mmioWrite(0, 0, 4, 0xffffffff);
    expect(device.mmioRead(0, 0, 4)).toBe(0xffffffff);
    device.mmioWrite(0, 4, 4, 1);
    expect(device.mmioRead(0, 4, 4)).toBe(1);
    expect(device.mmioRead(0, 4, 4)).toBe(0);
  });

  it('ignores writes to IVPosition and counts them', async () => {
    const { device } = await makeDevice(variant, { mode: 'doorbell', vectors: 1, id: 3 });
    device.mmioWrite(0, 8, 4, 1);
    expect(device.mmioRead(0, 8, 4)).toBe(3);
    expect(device.counters().invalidGuestAccesses).toBe(1);
  });

  it("gives QEMU's results for narrow, wide and unaligned accesses", async () => {
    const { device: d } = await makeDevice(variant, { mode: 'plain' });
    d.mmioWrite(0, 0, 4, 0x11223344);
    expect([0, 1, 2, 3].map((o) => d.mmioRead(0, o, 1))).toEqual([0x44, 0, 0, 0]);
    expect([0, 1, 2, 3].map((o) => d.mmioRead(0, o, 2))).toEqual([0x3344, 0, 0, 0]);
    expect([0, 1, 2, 3].map((o) => d.mmioRead(0, o, 4))).toEqual([0x11223344, 0, 0, 0]);

    const status = (offset: number, size: 1 | 2 | 4 | 8) => {
      d.mmioWrite(0, 4, 4, 0x55667788);
      const value = d.mmioRead(0, offset, size);
      return [value, d.mmioRead(0, 4, 4)];
    };
    expect(status(5, 1)).toEqual([0, 0x55667788]); // no register at 5: nothing read, nothing cleared
    expect(status(4, 1)).toEqual([0x88, 0]); // one byte of IntrStatus read; all of it cleared
    expect(status(2, 4)).toEqual([0x77880000, 0]);
    expect(status(3, 4)).toEqual([0x778800, 0]);
    expect(status(0, 8)).toEqual([0x5566778811223344n, 0]);
    expect(status(4, 8)).toEqual([0x55667788n, 0]);
    expect(status(2, 8)).toEqual([0x556677880000n, 0]);

    const after = (offset: number, size: number, value: number | bigint) => {
      d.mmioWrite(0, offset, size, value);
      return [d.mmioRead(0, 0, 4), d.mmioRead(0, 4, 4)];
    };
    expect(after(5, 1, 0xab)).toEqual([0x11223344, 0xab]); // a byte replaces the whole register
    expect(after(3, 1, 0xcd)).toEqual([0xcd, 0]);
    expect(after(2, 4, 0xaabbccdd)).toEqual([0xccdd, 0xaabb]);
    expect(after(1, 4, 0xaabbccdd)).toEqual([0xbbcc, 0xaa]);
    expect(after(2, 2, 0x1234)).toEqual([0x1234, 0]);
    expect(after(1, 2, 0x5678)).toEqual([0x56, 0]);
    expect(after(0, 8, 0x1111222233334444n)).toEqual([0x33334444, 0x11112222]);
    expect(after(4, 8, 0x5555666677778888n)).toEqual([0x33334444, 0x77778888]);
  });

  it('treats every access to reserved space as invalid: reads 0, changes nothing', async () => {
    const { device: d } = await makeDevice(variant, { mode: 'doorbell', vectors: 1, id: 9 });
    d.mmioWrite(0, 0, 4, 0xa5a5a5a5);
    d.mmioWrite(0, 4, 4, 0x5a5a5a5a);
    let expectedInvalid = d.counters().invalidGuestAccesses;
    for (let offset = 0x10; offset < 0x100; offset++) {
      for (const size of [1, 2, 4, 8]) {
        if (offset + size > 0x100) continue;
        expect(d.mmioRead(0, offset, size)).toEqual(size === 8 ? 0n : 0);
        d.mmioWrite(0, offset, size, size === 8 ? 0xffffffffffffffffn : 0xffffffff);
        expectedInvalid += 2;
      }
    }
    expect(d.counters().invalidGuestAccesses).toBe(expectedInvalid);
    expect(peekRegs(d)).toEqual({ mask: 0xa5a5a5a5, status: 0x5a5a5a5a, position: 9 });
    expect(d.counters().doorbellsSent + d.counters().doorbellsDropped.noPeer).toBe(0);
  });

  it('treats impossible sizes and offsets as invalid without side effects', async () => {
    const { device: d } = await makeDevice(variant, { mode: 'plain' });
    d.mmioWrite(0, 0, 4, 0x12345678);
    const before = d.counters().invalidGuestAccesses;
    const cases: [number, number][] = [
      [0, 0],
      [0, 9],
      [0, 16],
      [0, -1],
      [0x100, 4],
      [0x1000, 1],
      [-4, 4],
      [2 ** 31, 4],
    ];
    for (const [offset, size] of cases) {
      expect(d.mmioRead(0, offset, size)).toBe(0);
      d.mmioWrite(0, offset, size, 0);
    }
    for (const bar of [3, 4, 5, 7, 1]) {
      expect(d.mmioRead(bar, 0, 4)).toBe(0); // plain has no BAR1; BAR3.. do not exist
      d.mmioWrite(bar, 0, 4, 0);
    }
    expect(d.mmioRead(0, 0, 4)).toBe(0x12345678);
    expect(d.counters().invalidGuestAccesses - before).toBe(2 * (cases.length + 5));
  });

  it('refuses BARs, offsets and sizes that are not 32-bit integers rather than truncate them onto a register', async () => {
    // Found by test/device/hostile-guest.test.ts: offset 2^32 + 0x0c rang the doorbell, 2^32 wrote IntrMask.
    const { device: d, log } = await makeDevice(variant, { mode: 'doorbell', vectors: 1 });
    d.connectPeerVector(0, 7);
    d.mmioWrite(0, 0, 4, 0x12345678);
    const before = d.counters().invalidGuestAccesses;
    const cases: [number, number, number][] = [
      [0, 2 ** 32 + 0x0c, 4],
      [0, 12.5, 4],
      [0, 2 ** 32, 4],
      [0, 2 ** 32, 8],
      [0, 0x0c, 2 ** 32 + 4],
      [2 ** 32, 0x0c, 4],
      [0.5, 0, 4],
      [2 ** 32 + 1, 0, 4],
    ];
    for (const [bar, offset, size] of cases) {
      d.mmioWrite(bar, offset, size, 0); // peer 0, vector 0; or IntrMask = 0
      expect(d.mmioRead(bar, offset, size)).toBe(size === 8 ? 0n : 0);
    }
    expect(log.rings).toEqual([]);
    expect(d.mmioRead(0, 0, 4)).toBe(0x12345678);
    expect(d.counters().invalidGuestAccesses - before).toBe(2 * cases.length);
  });

  it('reads and writes BAR2 as little-endian RAM of any size and alignment', async () => {
    const memory = new ArrayBuffer(4096);
    const { device: d } = await makeDevice(variant, { mode: 'plain', memory });
    d.mmioWrite(2, 1, 4, 0xdeadbeef);
    expect([...new Uint8Array(memory, 0, 6)]).toEqual([0, 0xef, 0xbe, 0xad, 0xde, 0]);
    expect(d.mmioRead(2, 1, 2)).toBe(0xbeef);
    d.mmioWrite(2, 4088, 8, 0x0102030405060708n);
    expect(d.mmioRead(2, 4088, 8)).toBe(0x0102030405060708n);
    expect(d.mmioRead(2, 4093, 4)).toBe(0);
    expect(d.counters().invalidGuestAccesses).toBe(1);
  });
});
